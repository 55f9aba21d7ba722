//! The HAServiceProtocol client: one TCP connection per namenode, kept between calls (as the
//! ZKFC's health monitor does) and re-made on the next call after anything went wrong with it.
//!
//! Calls are sequential (`&mut self`), so a connection has at most one call in flight and a
//! response whose call id is not the one we wait for is a protocol error, not a late answer to
//! match up. A call that did not end with a complete answer drops its connection (see
//! `call_once`), so the client is safe to use under any outer timeout or `select!`.

use std::time::{Duration, Instant};

use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::messages::{
    Empty, GetServiceStatusResponse, HaRequestSourceProto, HaServiceStateProto,
    HaStateChangeRequestInfo, RpcStatus, TransitionRequest,
};
use super::wire::{self, FrameError};
use super::{
    HA_SERVICE_PROTOCOL, HEALTH_CHECK_FAILED, HaState, IpcConfig, IpcError, RequestSource,
};

/// The answer to `getServiceStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub state: HaState,
    /// A standby that could be made active now (it has caught up, is out of startup).
    pub ready_to_become_active: bool,
    pub not_ready_reason: Option<String>,
}

/// A client of one namenode's HAServiceProtocol (its RPC address, `host:port`; a namenode
/// serves the protocol on its client RPC port and, when one is configured, its service RPC port).
#[derive(Debug)]
pub struct HaServiceClient {
    addr: String,
    config: IpcConfig,
    user: String,
    /// Random per client: the server keys its retry cache by client id and call id.
    client_id: [u8; 16],
    next_call_id: i32,
    /// Kept between calls; None while a call uses it (see `call_once`).
    conn: Option<TcpStream>,
    /// What the current call is doing, to name it in a timeout error.
    phase: &'static str,
}

impl HaServiceClient {
    /// A client that connects on its first call.
    pub fn new(addr: impl Into<String>, config: IpcConfig) -> Self {
        let user = config.effective_user();
        HaServiceClient {
            addr: addr.into(),
            config,
            user,
            client_id: rand::random(),
            next_call_id: 0,
            conn: None,
            phase: "connect",
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn config(&self) -> &IpcConfig {
        &self.config
    }

    /// Whether a connection is kept now (it may still turn out broken on the next call).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Drops the connection; the next call makes a new one.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// The namenode's HA state and readiness.
    pub async fn get_service_status(&mut self) -> Result<ServiceStatus, IpcError> {
        let timeout = self.config.call_timeout;
        let r: GetServiceStatusResponse = self.call("getServiceStatus", &Empty {}, timeout).await?;
        let state = match HaServiceStateProto::try_from(r.state) {
            Ok(HaServiceStateProto::Initializing) => HaState::Initializing,
            Ok(HaServiceStateProto::Active) => HaState::Active,
            Ok(HaServiceStateProto::Standby) => HaState::Standby,
            Ok(HaServiceStateProto::Observer) => HaState::Observer,
            Err(_) => {
                return Err(IpcError::Protocol {
                    addr: self.addr.clone(),
                    op: "getServiceStatus",
                    detail: format!("unknown HA state number {}", r.state),
                });
            }
        };
        Ok(ServiceStatus {
            state,
            ready_to_become_active: r.ready_to_become_active.unwrap_or(false),
            not_ready_reason: r.not_ready_reason.filter(|s| !s.is_empty()),
        })
    }

    /// Ok when the namenode reports itself healthy; [`IpcError::HealthCheckFailed`] when it
    /// reports otherwise (e.g. its name directories are out of space).
    pub async fn monitor_health(&mut self) -> Result<(), IpcError> {
        let timeout = self.config.call_timeout;
        match self
            .call::<_, Empty>("monitorHealth", &Empty {}, timeout)
            .await
        {
            Ok(_) => Ok(()),
            Err(IpcError::Remote {
                addr,
                class,
                message,
                ..
            }) if class == HEALTH_CHECK_FAILED => {
                Err(IpcError::HealthCheckFailed { addr, message })
            }
            Err(e) => Err(e),
        }
    }

    /// Makes the namenode active, within `timeout` (a promotion tails the last edits first, so
    /// it takes longer than a status call). The caller must have fenced any other active
    /// namenode first: the namenode itself does not check.
    pub async fn transition_to_active(
        &mut self,
        source: RequestSource,
        timeout: Duration,
    ) -> Result<(), IpcError> {
        self.transition("transitionToActive", source, timeout).await
    }

    /// Makes the namenode standby within `timeout` (a graceful fence of an active one).
    pub async fn transition_to_standby(
        &mut self,
        source: RequestSource,
        timeout: Duration,
    ) -> Result<(), IpcError> {
        self.transition("transitionToStandby", source, timeout)
            .await
    }

    async fn transition(
        &mut self,
        method: &'static str,
        source: RequestSource,
        timeout: Duration,
    ) -> Result<(), IpcError> {
        let req_source = match source {
            RequestSource::User => HaRequestSourceProto::RequestByUser,
            RequestSource::UserForced => HaRequestSourceProto::RequestByUserForced,
            RequestSource::Zkfc => HaRequestSourceProto::RequestByZkfc,
        };
        let request = TransitionRequest {
            req_info: HaStateChangeRequestInfo {
                req_source: req_source as i32,
            },
        };
        self.call::<_, Empty>(method, &request, timeout).await?;
        Ok(())
    }

    /// One call with a deadline over everything it does, connecting included.
    async fn call<Req: Message, Resp: Message + Default>(
        &mut self,
        method: &'static str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, IpcError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, self.call_retrying(method, request)).await;
        outcome.unwrap_or_else(|_| {
            Err(IpcError::Timeout {
                addr: self.addr.clone(),
                op: self.phase,
                after: started.elapsed(),
            })
        })
    }

    /// A kept connection the server has meanwhile closed (idle scan, namenode restart) fails at
    /// the first write or read; that says nothing about the namenode now, so such a call is
    /// tried once more on a fresh connection. Safe for transitions too: they are idempotent.
    async fn call_retrying<Req: Message, Resp: Message + Default>(
        &mut self,
        method: &'static str,
        request: &Req,
    ) -> Result<Resp, IpcError> {
        let reused = self.conn.is_some();
        match self.call_once(method, request).await {
            Err(IpcError::Disconnected { .. }) if reused => self.call_once(method, request).await,
            r => r,
        }
    }

    /// The connection is taken out of `self` for the call and put back only after a complete
    /// answer. Whatever else ends the call (an error, our timeout, a caller dropping the future)
    /// drops it, half-read frames with it: the next call starts on a fresh one.
    async fn call_once<Req: Message, Resp: Message + Default>(
        &mut self,
        method: &'static str,
        request: &Req,
    ) -> Result<Resp, IpcError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => {
                self.phase = "connect";
                self.open().await?
            }
        };
        self.phase = method;
        let call_id = self.next_call_id;
        // call ids only need to differ between calls in flight; stay non-negative, as Java's do
        self.next_call_id = self.next_call_id.checked_add(1).unwrap_or(0);
        let frame = wire::request(
            call_id,
            &self.client_id,
            HA_SERVICE_PROTOCOL,
            method,
            request,
        );
        let lost = |source: std::io::Error| IpcError::Disconnected {
            addr: self.addr.clone(),
            op: method,
            source,
        };
        let protocol = |detail: String| IpcError::Protocol {
            addr: self.addr.clone(),
            op: method,
            detail,
        };
        conn.write_all(&frame).await.map_err(lost)?;
        let bytes = wire::read_frame(&mut conn).await.map_err(|e| match e {
            FrameError::Io(io) => lost(io),
            other => protocol(other.to_string()),
        })?;
        let (header, body) = wire::split_response(&bytes).map_err(|e| protocol(e.to_string()))?;
        let status = RpcStatus::try_from(header.status)
            .map_err(|_| protocol(format!("unknown RPC status {}", header.status)))?;
        if status != RpcStatus::Fatal && header.call_id as i32 != call_id {
            return Err(protocol(format!(
                "response for call {} while waiting for call {call_id}",
                header.call_id as i32
            )));
        }
        if status != RpcStatus::Success {
            let error = IpcError::Remote {
                addr: self.addr.clone(),
                op: method,
                class: header.exception_class_name.unwrap_or_default(),
                message: header.error_msg.unwrap_or_default(),
            };
            // ERROR leaves the connection usable; after FATAL (refused connection context,
            // version mismatch; its call id may be a connection-level one) the server closes it
            if status == RpcStatus::Error {
                self.conn = Some(conn);
            }
            return Err(error);
        }
        let response = wire::response_body(body, method).map_err(|e| protocol(e.to_string()))?;
        self.conn = Some(conn);
        Ok(response)
    }

    /// Connects and sends the preamble and connection context.
    async fn open(&self) -> Result<TcpStream, IpcError> {
        let connect = |source| IpcError::Connect {
            addr: self.addr.clone(),
            source,
        };
        let mut stream =
            match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(&self.addr))
                .await
            {
                Ok(r) => r.map_err(connect)?,
                Err(_) => {
                    return Err(IpcError::Timeout {
                        addr: self.addr.clone(),
                        op: "connect",
                        after: self.config.connect_timeout,
                    });
                }
            };
        // requests are single small frames: do not let Nagle hold one back
        stream.set_nodelay(true).map_err(connect)?;
        let start = wire::connection_start(&self.client_id, &self.user, HA_SERVICE_PROTOCOL);
        stream.write_all(&start).await.map_err(connect)?;
        Ok(stream)
    }
}
