//! The namenode's own view of its HA state over its HTTP port: `/isActive` (200 when active,
//! 405 otherwise; made for load balancers) and the JMX bean `NameNodeStatus` (its `State`).
//!
//! Two GETs of a few hundred bytes do not justify an HTTP client stack: this is a minimal
//! HTTP/1.0 GET over a TcpStream. HTTP/1.0 because then the server may not answer chunked and
//! closes the connection after the body, so the response is simply everything up to EOF.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ha::ipc::HaState;

/// The JMX query for the namenode's HA status bean.
pub const JMX_STATUS_PATH: &str = "/jmx?qry=Hadoop:service=NameNode,name=NameNodeStatus";

/// A response larger than this is not the small JSON or text these endpoints send; the bytes
/// come from the peer, so reading stops there.
const MAX_RESPONSE: usize = 256 * 1024;

/// Why an HTTP probe got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpProbeError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("GET {path} from {addr}: no answer within {} ms", after.as_millis())]
    Timeout {
        addr: String,
        path: &'static str,
        after: Duration,
    },
    #[error("GET {path} from {addr}: {source}")]
    Io {
        addr: String,
        path: &'static str,
        source: std::io::Error,
    },
    #[error("GET {path} from {addr}: {detail}")]
    Bad {
        addr: String,
        path: &'static str,
        detail: String,
    },
}

impl HttpProbeError {
    /// No answer at all (as opposed to an answer we could not use).
    pub fn is_unreachable(&self) -> bool {
        !matches!(self, HttpProbeError::Bad { .. })
    }
}

/// Status code and body of a response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GET `path` from `addr` (`host:port`), all of it within `timeout`.
pub async fn get(
    addr: &str,
    path: &'static str,
    timeout: Duration,
) -> Result<HttpResponse, HttpProbeError> {
    match tokio::time::timeout(timeout, get_inner(addr, path)).await {
        Ok(r) => r,
        Err(_) => Err(HttpProbeError::Timeout {
            addr: addr.to_string(),
            path,
            after: timeout,
        }),
    }
}

async fn get_inner(addr: &str, path: &'static str) -> Result<HttpResponse, HttpProbeError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HttpProbeError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let io = |source| HttpProbeError::Io {
        addr: addr.to_string(),
        path,
        source,
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    // one byte over the limit tells "too large" apart from "exactly at the limit"
    (&mut stream)
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut raw)
        .await
        .map_err(io)?;
    parse_response(&raw).map_err(|detail| HttpProbeError::Bad {
        addr: addr.to_string(),
        path,
        detail,
    })
}

/// Splits a whole HTTP/1.x response into status code and body.
fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    if raw.len() > MAX_RESPONSE {
        return Err(format!("response larger than {MAX_RESPONSE} bytes"));
    }
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("bad status line {status_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status = code
        .parse::<u16>()
        .map_err(|_| format!("bad status code {code:?}"))?;
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if chunked {
        // a server must not do this to an HTTP/1.0 request; say so rather than misread it
        return Err("chunked response to an HTTP/1.0 request".into());
    }
    Ok(HttpResponse {
        status,
        body: raw[head_end + 4..].to_vec(),
    })
}

/// `/isActive`: Ok(true) for 200, Ok(false) for 405 (standby or observer), else an error.
pub async fn is_active(addr: &str, timeout: Duration) -> Result<bool, HttpProbeError> {
    let r = get(addr, "/isActive", timeout).await?;
    match r.status {
        200 => Ok(true),
        405 => Ok(false),
        other => Err(HttpProbeError::Bad {
            addr: addr.to_string(),
            path: "/isActive",
            detail: format!("HTTP status {other}"),
        }),
    }
}

/// What the JMX bean `NameNodeStatus` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmxStatus {
    pub state: HaState,
    /// `HostAndPort`: the RPC address of the namenode the bean describes. The bean name is the
    /// same for every namenode and MBeans are per JVM, so when two namenodes share a JVM
    /// (MiniDFSCluster) both HTTP ports show the first one's bean; this tells them apart.
    pub host_and_port: Option<String>,
}

impl JmxStatus {
    /// Whether the bean describes the namenode whose RPC address is `rpc` (`host:port`).
    /// Only ports are compared: the bean names the host as the namenode resolved it
    /// (`localhost`), the configuration may use an address.
    pub fn describes(&self, rpc: &str) -> bool {
        let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_string());
        self.host_and_port
            .as_deref()
            .is_none_or(|h| port(h).is_some() && port(h) == port(rpc))
    }
}

/// The JMX bean `NameNodeStatus` of the namenode at `addr`.
pub async fn jmx_status(addr: &str, timeout: Duration) -> Result<JmxStatus, HttpProbeError> {
    let r = get(addr, JMX_STATUS_PATH, timeout).await?;
    let bad = |detail: String| HttpProbeError::Bad {
        addr: addr.to_string(),
        path: JMX_STATUS_PATH,
        detail,
    };
    if r.status != 200 {
        return Err(bad(format!("HTTP status {}", r.status)));
    }
    jmx_status_of(&r.body).map_err(bad)
}

/// `{"beans":[{"name":"Hadoop:service=NameNode,name=NameNodeStatus", "State":"active",
/// "HostAndPort":"localhost:8020", ...}]}`
fn jmx_status_of(body: &[u8]) -> Result<JmxStatus, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("JMX answer is not JSON: {e}"))?;
    let bean = v
        .get("beans")
        .and_then(|b| b.as_array())
        .and_then(|beans| beans.iter().find(|b| b.get("State").is_some()))
        .ok_or("no NameNodeStatus bean in the JMX answer")?;
    let state = bean
        .get("State")
        .and_then(|s| s.as_str())
        .ok_or("the NameNodeStatus State is not a string")?;
    Ok(JmxStatus {
        state: state.parse()?,
        host_and_port: bean
            .get("HostAndPort")
            .and_then(|h| h.as_str())
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let r = parse_response(b"HTTP/1.1 405 Method Not Allowed\r\nX: y\r\n\r\nI am not Active!")
            .unwrap();
        assert_eq!(r.status, 405);
        assert_eq!(r.body, b"I am not Active!");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n").is_err()
        );
        assert!(parse_response(&vec![b'a'; MAX_RESPONSE + 1]).is_err());
    }

    #[test]
    fn jmx_status_from_bean() {
        let body = br#"{"beans":[{"name":"Hadoop:service=NameNode,name=NameNodeStatus","State":"standby","HostAndPort":"localhost:8020"}]}"#;
        let j = jmx_status_of(body).unwrap();
        assert_eq!(j.state, HaState::Standby);
        assert!(j.describes("127.0.0.1:8020"));
        assert!(!j.describes("127.0.0.1:8021"));
        assert!(jmx_status_of(br#"{"beans":[]}"#).is_err());
        assert!(jmx_status_of(br#"{"beans":[{"State":"sleepy"}]}"#).is_err());
        assert!(jmx_status_of(b"<html>").is_err());
    }
}
