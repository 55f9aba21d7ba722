//! `mifas user add|passwd|remove|list`: portal accounts. With the server stopped the command
//! opens the index itself; while `mifas serve` holds the index it sends the command over the
//! server's admin socket instead (see `web::admin_socket`).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;
use crate::archive::{OpenError, UserError, Users};
use crate::config::{Config, Overrides};
use crate::web::admin_socket::{self, AdminReply, AdminRequest};
use crate::web::auth::Role;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin (one line) or prompted for twice.
    Add {
        name: String,
        /// viewer (search, view, download), uploader (and upload) or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        target: Target,
    },
    /// Change a user's password (ends the user's sessions).
    Passwd {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a user (ends the user's sessions).
    Remove {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List users: name, role, created (UTC seconds since the epoch).
    List {
        #[command(flatten)]
        target: Target,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

#[derive(Debug, Args, Clone)]
pub struct Target {
    /// TOML configuration file (see mifas.example.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory; overrides storage.data_dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Target {
    fn load(&self) -> Result<Config, CliError> {
        let overrides = Overrides {
            data_dir: self.data_dir.clone(),
            dicom_port: None,
            aet: None,
            http_port: None,
        };
        Ok(Config::load(self.config.as_deref(), &overrides)?)
    }
}

/// What went wrong, with the exit code: 2 for what the operator must fix in the invocation.
struct Failure(u8, String);

pub async fn run(command: UserCommand) -> Result<ExitCode, CliError> {
    match execute(command).await {
        Ok(message) => {
            if !message.is_empty() {
                println!("{message}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Failure(code, message)) => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(code))
        }
    }
}

async fn execute(command: UserCommand) -> Result<String, Failure> {
    let (target, request) = match command {
        UserCommand::Add { name, role, target } => {
            check_name(&name)?;
            let password = read_password()?;
            (
                target,
                AdminRequest::Add {
                    name,
                    password,
                    role,
                },
            )
        }
        UserCommand::Passwd { name, target } => {
            check_name(&name)?;
            let password = read_password()?;
            (target, AdminRequest::Passwd { name, password })
        }
        UserCommand::Remove { name, target } => {
            check_name(&name)?;
            (target, AdminRequest::Remove { name })
        }
        UserCommand::List { target } => (target, AdminRequest::List),
    };
    let config = target.load().map_err(|e| Failure(2, e.to_string()))?;
    let data_dir = &config.storage.data_dir;
    let socket = admin_socket::socket_path(data_dir);
    // A server running on this data directory answers on its socket; otherwise the index is
    // ours to open.
    let reply = match admin_socket::request(&socket, &request).await {
        Ok(Some(reply)) => reply,
        Ok(None) => local(data_dir, request).await?,
        Err(e) => {
            return Err(Failure(
                1,
                format!("the server's admin socket {} failed: {e}", socket.display()),
            ));
        }
    };
    if !reply.ok {
        return Err(Failure(if reply.bad_input { 2 } else { 1 }, reply.message));
    }
    if reply.users.is_empty() {
        Ok(reply.message)
    } else {
        Ok(reply
            .users
            .iter()
            .map(|(name, role, created)| format!("{name}\t{}\t{created}", role.as_str()))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

fn check_name(name: &str) -> Result<(), Failure> {
    crate::archive::users_validate_name(name).map_err(|e| Failure(2, e.to_string()))
}

/// The request carried out on the index directly (no server running).
async fn local(data_dir: &std::path::Path, request: AdminRequest) -> Result<AdminReply, Failure> {
    let users = Users::open(data_dir).map_err(|e| match e {
        OpenError::Index(path, _) => Failure(
            1,
            format!(
                "the index at {} is in use, but no server answers on {}: is another command using this data directory?",
                path.display(),
                admin_socket::socket_path(data_dir).display()
            ),
        ),
        other => Failure(1, other.to_string()),
    })?;
    let done = |r: Result<(), UserError>, message: String| match r {
        Ok(()) => Ok(AdminReply {
            ok: true,
            message,
            ..AdminReply::default()
        }),
        Err(e) => Err(Failure(if e.is_bad_input() { 2 } else { 1 }, e.to_string())),
    };
    match request {
        AdminRequest::Add {
            name,
            password,
            role,
        } => done(
            users.add_user(&name, &password, role).await,
            format!("user {name} added ({})", role.as_str()),
        ),
        AdminRequest::Passwd { name, password } => done(
            users.set_password(&name, &password).await,
            format!("password of {name} changed"),
        ),
        AdminRequest::Remove { name } => done(
            users.remove_user(&name).await,
            format!("user {name} removed"),
        ),
        AdminRequest::List => match users.list().await {
            Ok(list) => Ok(AdminReply {
                ok: true,
                users: list
                    .into_iter()
                    .map(|u| (u.name, u.role, u.created))
                    .collect(),
                ..AdminReply::default()
            }),
            Err(e) => Err(Failure(1, e.to_string())),
        },
        AdminRequest::StgcmtStatus => Err(Failure(
            2,
            "not a user command (see mifas stgcmt status)".into(),
        )),
    }
}

/// One line from stdin when it is not a terminal (scripts); otherwise prompted twice without
/// echo. Checked here so a weak password fails before anything is opened.
fn read_password() -> Result<String, Failure> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| Failure(1, format!("cannot read the password: {e}")))?;
        let second = rpassword::prompt_password("Password again: ")
            .map_err(|e| Failure(1, format!("cannot read the password: {e}")))?;
        if first != second {
            return Err(Failure(2, "the passwords differ".into()));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure(2, format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    crate::archive::users_validate_password(&password).map_err(|e| Failure(2, e.to_string()))?;
    Ok(password)
}
