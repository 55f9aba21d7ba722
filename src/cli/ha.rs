//! `mifas ha-monitor` (the monitor alone), `mifas ha status`, `mifas ha switchover SITE`, and
//! the monitor's start inside `mifas serve`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::{CliError, init_logging};
use crate::config::{Config, HaConfig};
use crate::ha::control::{self, ControlRequest};
use crate::ha::{HaHandle, monitor};

/// Starts the monitor and its control socket (used by `serve` and `ha-monitor`).
pub(super) fn start_monitor(
    ha: &HaConfig,
    data_dir: &Path,
    shutdown: CancellationToken,
) -> Result<(HaHandle, tokio::task::JoinHandle<()>), CliError> {
    let (handle, task) = monitor::start(ha, data_dir, shutdown.clone())
        .map_err(|e| CliError::Other(e.to_string()))?;
    let dir = monitor::state_dir(ha, data_dir);
    control::spawn(&dir, handle.clone(), shutdown).map_err(|e| CliError::Other(e.to_string()))?;
    Ok((handle, task))
}

fn ha_of(config: &Config) -> Result<&HaConfig, CliError> {
    config.ha.as_ref().ok_or_else(|| {
        CliError::Other("the configuration has no [ha] table (see mifas.example.toml)".into())
    })
}

pub async fn monitor(config: Config) -> Result<ExitCode, CliError> {
    init_logging(&config);
    let ha = ha_of(&config)?.clone();
    let shutdown = CancellationToken::new();
    let signals = super::serve::Signals::install()?;
    let (handle, task) = start_monitor(&ha, &config.storage.data_dir, shutdown.clone())?;
    let mut http_addr = String::from("-");
    let web = if ha.http_bind.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&ha.http_bind)
            .await
            .map_err(|source| CliError::Bind {
                addr: ha.http_bind.clone(),
                source,
            })?;
        if let Ok(a) = listener.local_addr() {
            http_addr = a.to_string();
        }
        let state = crate::web::WebState::new().with_ha(handle.clone());
        Some(tokio::spawn(crate::web::serve(
            listener,
            None,
            state,
            shutdown.clone(),
        )))
    };
    tokio::spawn(signals.watch(shutdown.clone()));
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "MIFAS HA READY http={http_addr} state={}",
            monitor::state_dir(&ha, &config.storage.data_dir).display()
        );
        let _ = out.flush();
    }
    let _ = task.await;
    if let Some(web) = web {
        let _ = web.await;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(config: Config) -> Result<ExitCode, CliError> {
    init_logging(&config);
    let ha = ha_of(&config)?;
    let dir = monitor::state_dir(ha, &config.storage.data_dir);
    match control::request(&dir, &ControlRequest::Status).await {
        Ok(Some(reply)) => match reply.status {
            Some(status) if reply.ok => {
                print!("{}", status.to_text());
                Ok(ExitCode::SUCCESS)
            }
            _ => Err(CliError::Other(reply.message)),
        },
        Ok(None) => {
            // no monitor runs: its saved state (the database is free)
            let store = crate::ha::store::HaStore::open(&dir)
                .map_err(|e| CliError::Other(e.to_string()))?;
            let Some(state) = store
                .load_state()
                .map_err(|e| CliError::Other(e.to_string()))?
            else {
                return Err(CliError::Other(format!(
                    "no HA monitor runs and none has saved a state in {}",
                    dir.display()
                )));
            };
            let mut status = crate::ha::status::HaStatus::default();
            let mut extras = crate::ha::status::ProbeExtras::default();
            for site in &ha.sites {
                for nn in &site.namenodes {
                    extras
                        .nn_addrs
                        .insert(nn.vm.clone(), (nn.rpc.clone(), nn.http.clone()));
                }
            }
            status.refresh(&state, &extras);
            status.events = store
                .recent_events(1)
                .map_err(|e| CliError::Other(e.to_string()))?;
            print!("{}", status.to_text());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(CliError::Other(e.to_string())),
    }
}

pub async fn switchover(config: Config, site: &str) -> Result<ExitCode, CliError> {
    init_logging(&config);
    let ha = ha_of(&config)?;
    let dir = monitor::state_dir(ha, &config.storage.data_dir);
    let req = ControlRequest::Switchover {
        site: site.to_string(),
    };
    match control::request(&dir, &req).await {
        Ok(Some(reply)) if reply.ok => {
            println!("switchover: started");
            println!("reason: {}", reply.message);
            Ok(ExitCode::SUCCESS)
        }
        Ok(Some(reply)) => Err(CliError::Other(format!(
            "switchover refused: {}",
            reply.message
        ))),
        Ok(None) => Err(CliError::Other(format!(
            "no HA monitor runs (no socket at {})",
            control::socket_path(&dir).display()
        ))),
        Err(e) => Err(CliError::Other(e.to_string())),
    }
}
