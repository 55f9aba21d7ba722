//! The admin socket: `<data_dir>/admin.sock` (mode 0600), through which `mifas user ...`
//! reaches a running server. sled lets only one process open the index, so while `mifas serve`
//! runs the command line cannot change users itself: it sends one JSON line per connection
//! and reads one JSON line back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::auth::{Auth, Role};
use crate::archive::{Archive, UserError};

pub const SOCKET_NAME: &str = "admin.sock";
/// Longest request line (a name and a password fit many times over).
const MAX_LINE: u64 = 16 * 1024;
/// A client that does not finish its request in this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum AdminRequest {
    Add {
        name: String,
        password: String,
        role: Role,
    },
    Passwd {
        name: String,
        password: String,
    },
    Remove {
        name: String,
    },
    List,
    /// The open Storage Commitment transactions, as `mifas stgcmt status` prints them.
    StgcmtStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AdminReply {
    pub ok: bool,
    /// The request was wrong (bad name, weak password, unknown user): exit code 2.
    #[serde(default)]
    pub bad_input: bool,
    #[serde(default)]
    pub message: String,
    /// For `list`: name, role, created (seconds since the epoch).
    #[serde(default)]
    pub users: Vec<(String, Role, u64)>,
    /// For `stgcmtstatus`: the open Storage Commitment transactions.
    #[serde(default)]
    pub commitments: Vec<crate::index::CommitmentRecord>,
}

impl AdminReply {
    fn failed(e: &UserError) -> AdminReply {
        AdminReply {
            ok: false,
            bad_input: e.is_bad_input(),
            message: e.to_string(),
            ..AdminReply::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    #[error("cannot create the admin socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Listen on `<data_dir>/admin.sock` until `shutdown`; the socket file is removed at the end.
/// The caller holds the index (so no other server uses this data directory): a socket file
/// left by a crash is stale and replaced.
pub fn spawn(
    data_dir: &Path,
    archive: Archive,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, AdminSocketError> {
    let path = socket_path(data_dir);
    // Bound under a temporary name, restricted to the owner, then renamed into place: nobody
    // can connect during the moment the socket still has the umask's mode.
    let temp = data_dir.join(format!(".{SOCKET_NAME}.{}", std::process::id()));
    let bind_err = |source| AdminSocketError::Bind {
        path: path.clone(),
        source,
    };
    let _ = std::fs::remove_file(&temp);
    let listener = UnixListener::bind(&temp).map_err(bind_err)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
            .map_err(bind_err)?;
    }
    std::fs::rename(&temp, &path).map_err(bind_err)?;
    tracing::info!(path = %path.display(), "admin socket listening");
    Ok(tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (archive, auth) = (archive.clone(), auth.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, &archive, &auth).await {
                    tracing::warn!(error = %e, "admin socket request failed");
                }
            });
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn serve_one(stream: UnixStream, archive: &Archive, auth: &Auth) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_LINE));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let reply = match serde_json::from_str::<AdminRequest>(line.trim_end()) {
        Ok(request) => handle(request, archive, auth).await,
        Err(e) => AdminReply {
            ok: false,
            bad_input: true,
            message: format!("malformed admin request: {e}"),
            ..AdminReply::default()
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    tokio::time::timeout(REQUEST_TIMEOUT, write.write_all(&out))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Carry out one request on the running archive; password changes and removals end the
/// user's sessions.
pub async fn handle(request: AdminRequest, archive: &Archive, auth: &Auth) -> AdminReply {
    let result = match &request {
        AdminRequest::Add {
            name,
            password,
            role,
        } => archive
            .add_user(name, password, *role)
            .await
            .map(|()| format!("user {name} added ({})", role.as_str())),
        AdminRequest::Passwd { name, password } => {
            archive.set_password(name, password).await.map(|()| {
                let n = auth.end_sessions_of(name);
                format!("password of {name} changed; {n} session(s) ended")
            })
        }
        AdminRequest::Remove { name } => archive.remove_user(name).await.map(|()| {
            let n = auth.end_sessions_of(name);
            format!("user {name} removed; {n} session(s) ended")
        }),
        AdminRequest::StgcmtStatus => {
            return match archive.open_commitments() {
                Ok(open) => AdminReply {
                    ok: true,
                    commitments: open,
                    ..AdminReply::default()
                },
                Err(e) => AdminReply {
                    ok: false,
                    message: format!("cannot read the index: {e}"),
                    ..AdminReply::default()
                },
            };
        }
        AdminRequest::List => {
            return match archive.list_users().await {
                Ok(list) => AdminReply {
                    ok: true,
                    users: list
                        .into_iter()
                        .map(|u| (u.name, u.role, u.created))
                        .collect(),
                    ..AdminReply::default()
                },
                Err(e) => AdminReply::failed(&e),
            };
        }
    };
    match result {
        Ok(message) => {
            tracing::info!(%message, "admin socket");
            AdminReply {
                ok: true,
                message,
                ..AdminReply::default()
            }
        }
        Err(e) => AdminReply::failed(&e),
    }
}

/// The client side: one request to the server listening at `path`. `Ok(None)` when no server
/// listens there (no socket file, or a stale one).
pub async fn request(path: &Path, request: &AdminRequest) -> std::io::Result<Option<AdminReply>> {
    let connect = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(path)).await;
    let stream = match connect {
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ));
        }
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(stream)) => stream,
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // Hashing a password takes well under a second; a server that does not answer in 30 s is
    // stuck, and the operator should hear so.
    let answer = async {
        write.write_all(&line).await?;
        write.shutdown().await?;
        let mut reply = String::new();
        BufReader::new(read.take(1 << 24))
            .read_line(&mut reply)
            .await?;
        serde_json::from_str::<AdminReply>(reply.trim_end()).map_err(std::io::Error::other)
    };
    tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer from the server")
        })?
        .map(Some)
}
