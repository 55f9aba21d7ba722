//! The monitor's control socket, `<state_dir>/ha.sock` (mode 0600): `mifas ha status` and
//! `mifas ha switchover SITE` reach a running monitor (inside `mifas serve` or `mifas
//! ha-monitor`) here. One JSON line each way per connection, as the admin socket does; sled
//! lets only the monitor's process open its state database while it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::monitor::HaHandle;
use super::status::HaStatus;

pub const SOCKET_NAME: &str = "ha.sock";
const MAX_LINE: u64 = 4096;
/// A switchover answers once the machine has decided (started or rejected), not when the
/// promotion is done: well within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ControlRequest {
    Status,
    Switchover { site: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ControlReply {
    pub ok: bool,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: Option<HaStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("ha control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ha control socket: no answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("ha control socket: unreadable answer: {0}")]
    Protocol(String),
}

/// Serves the socket until `shutdown`. A stale socket file of a dead monitor is replaced.
pub fn spawn(
    state_dir: &Path,
    handle: HaHandle,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let path = socket_path(state_dir);
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(&path).map_err(io)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "ha control socket accept failed");
                        continue;
                    }
                },
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, serve_one(stream, handle)).await;
            });
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn serve_one(stream: UnixStream, handle: HaHandle) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_LINE))
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<ControlRequest>(&line) {
        Err(e) => ControlReply {
            ok: false,
            message: format!("bad request: {e}"),
            status: None,
        },
        Ok(ControlRequest::Status) => ControlReply {
            ok: true,
            message: String::new(),
            status: Some(handle.status()),
        },
        Ok(ControlRequest::Switchover { site }) => match handle.switchover(&site).await {
            Ok(message) => ControlReply {
                ok: true,
                message,
                status: None,
            },
            Err(message) => ControlReply {
                ok: false,
                message,
                status: None,
            },
        },
    };
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

/// Sends one request to a running monitor. `Ok(None)`: no monitor listens.
pub async fn request(
    state_dir: &Path,
    req: &ControlRequest,
) -> Result<Option<ControlReply>, ControlError> {
    let path = socket_path(state_dir);
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(io(e)),
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut bytes =
            serde_json::to_vec(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
        bytes.push(b'\n');
        write.write_all(&bytes).await.map_err(io)?;
        let mut line = String::new();
        BufReader::new(read.take(64 << 20))
            .read_line(&mut line)
            .await
            .map_err(io)?;
        serde_json::from_str::<ControlReply>(&line)
            .map_err(|e| ControlError::Protocol(e.to_string()))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(r) => r.map(Some),
        Err(_) => Err(ControlError::Timeout),
    }
}
