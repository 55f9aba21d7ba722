//! One association in use, as the services see it: whole messages in (through the
//! [`Assembler`]), responses and data sets out, a deadline on every read and write, and the
//! C-CANCEL tokens. Both ends use it: the associations peers open to us and the ones we open to
//! a Move Destination.
//!
//! Deadlines: a peer that stops reading fills the TCP window and would block a write forever,
//! holding its association slot (64 such peers lock everyone out). Every write, the A-ABORT and
//! the A-RELEASE-RP included, is bounded by `dicom.write_timeout_secs`; after a write timed out
//! the stream may end mid-PDU, so nothing more is written and the socket is simply closed.
//!
//! C-CANCEL (PS3.7 §9.3.2.3) is observed here and only here: a service registers a token for the
//! message it runs ([`Session::watch`]); a C-CANCEL naming that message ID fires it, one naming
//! any other message is ignored. Services wait with [`Session::until`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use dicom_ul::Pdu;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::pdu::PDataValueType;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::assembler::{Assembled, Assembler};
use super::message::{Command, Response, command_field};

/// Why the association must end now.
#[derive(Debug)]
pub(crate) enum Exit {
    /// A protocol violation, a network error or a deadline: abort.
    Abort(String),
    /// A write did not complete: the stream may be cut mid-PDU, close it without a word.
    Broken(String),
    /// The peer aborted or closed: nothing more to send.
    Closed,
}

/// What arrives on an association, assembled.
#[derive(Debug)]
pub(crate) enum Event {
    Command {
        context_id: u8,
        command: Command,
    },
    /// A fragment of the data set announced by the last command (the assembler checked its
    /// presentation context).
    Data {
        data: Vec<u8>,
        last: bool,
    },
    /// A-RELEASE-RQ.
    Release,
}

/// The association under a session: ours or the peer's, over plain TCP or TLS. An enum rather
/// than a type parameter, so the services are compiled once whatever the transport.
pub(crate) enum Link {
    Server(AsyncServerAssociation<TcpStream>),
    ServerTls(AsyncServerAssociation<dicom_ul::association::server::AsyncTlsStream>),
    Client(AsyncClientAssociation<TcpStream>),
    ClientTls(AsyncClientAssociation<dicom_ul::association::client::AsyncTlsStream>),
}

/// Run `$body` with `$a` bound to the association, whatever its transport.
macro_rules! on_link_impl {
    ($link:expr, $a:ident => $body:expr) => {
        match $link {
            Link::Server($a) => $body,
            Link::ServerTls($a) => $body,
            Link::Client($a) => $body,
            Link::ClientTls($a) => $body,
        }
    };
}

pub(crate) use on_link_impl as on_link;

impl Link {
    /// TLS version and cipher suite, when over TLS.
    pub(crate) fn tls_session(&mut self) -> Option<(String, String)> {
        match self {
            Link::ServerTls(a) => Some(crate::tls::describe(a.inner_stream().get_ref().1)),
            Link::ClientTls(a) => Some(crate::tls::describe(a.inner_stream().get_ref().1)),
            _ => None,
        }
    }
}

pub(crate) struct Session {
    assoc: Link,
    assembler: Assembler,
    /// Assembled events of a PDU not yet handed out (one PDU may carry several PDVs).
    queued: VecDeque<Event>,
    write_timeout: Duration,
    /// Tokens of the running messages that a C-CANCEL may stop, by message ID.
    cancels: HashMap<u16, CancellationToken>,
}

impl Session {
    pub(crate) fn new(assoc: Link, assembler: Assembler, write_timeout: Duration) -> Self {
        Session {
            assoc,
            assembler,
            queued: VecDeque::new(),
            write_timeout,
            cancels: HashMap::new(),
        }
    }

    /// Replace the assembler (once the accepted contexts are known).
    pub(crate) fn set_assembler(&mut self, assembler: Assembler) {
        self.assembler = assembler;
    }

    /// Between messages: no command or data set partly received.
    pub(crate) fn is_idle(&self) -> bool {
        self.queued.is_empty() && self.assembler.is_idle()
    }

    /// The next message part from the peer, waiting at most `timeout` (`None`: no limit — the
    /// peer is rightly silent while it waits for our results). C-CANCELs are consumed here.
    pub(crate) async fn next_event(&mut self, timeout: Option<Duration>) -> Result<Event, Exit> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Ok(event);
            }
            // dicom-ul reads into a buffer kept across calls, so this is cancel-safe (`until`).
            let receive =
                async { on_link!(&mut self.assoc, a => AsyncAssociation::receive(a).await) };
            let received = match timeout {
                Some(t) => tokio::time::timeout(t, receive).await.map_err(|_| {
                    Exit::Abort(format!("the peer sent nothing for {} s", t.as_secs()))
                })?,
                None => receive.await,
            };
            let pdu = received.map_err(|e| match e {
                dicom_ul::association::Error::ReceivePdu { .. } => {
                    Exit::Abort(format!("bad PDU or connection lost: {e}"))
                }
                _ => Exit::Abort(format!("network error: {e}")),
            })?;
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        match self.assembler.push(pdv).map_err(|v| Exit::Abort(v.0))? {
                            None => {}
                            Some(Assembled::Command { command, .. })
                                if command.command_field == command_field::C_CANCEL_RQ =>
                            {
                                self.on_cancel(command.message_id)
                            }
                            Some(Assembled::Command {
                                context_id,
                                command,
                            }) => self.queued.push_back(Event::Command {
                                context_id,
                                command,
                            }),
                            Some(Assembled::Data { data, last }) => {
                                self.queued.push_back(Event::Data { data, last })
                            }
                        }
                    }
                }
                Pdu::ReleaseRQ => self.queued.push_back(Event::Release),
                Pdu::AbortRQ { source } => {
                    tracing::info!(?source, "association aborted by the peer");
                    return Err(Exit::Closed);
                }
                other => {
                    return Err(Exit::Abort(format!(
                        "unexpected {}",
                        other.short_description()
                    )));
                }
            }
        }
    }

    fn on_cancel(&mut self, message_id: u16) {
        match self.cancels.get(&message_id) {
            Some(token) => {
                tracing::info!(message_id, "C-CANCEL received");
                token.cancel();
            }
            // Nothing running under that ID: nothing to cancel (PS3.7 9.3.2.3).
            None => tracing::debug!(message_id, "C-CANCEL for no running message; ignored"),
        }
    }

    /// Hand an event back, to be the next one read (a service met the end of its part).
    pub(crate) fn requeue(&mut self, event: Event) {
        self.queued.push_front(event);
    }

    /// A token a C-CANCEL of `message_id` fires; dropped with [`Session::unwatch`].
    pub(crate) fn watch(&mut self, message_id: u16) -> CancellationToken {
        self.cancels.entry(message_id).or_default().clone()
    }

    pub(crate) fn unwatch(&mut self, message_id: u16) {
        self.cancels.remove(&message_id);
    }

    /// Run `work` while reading the peer: `Ok(None)` if `cancel` fired first. Only C-CANCEL may
    /// arrive meanwhile (PS3.7 §9.3.2.3); anything else is a protocol violation.
    pub(crate) async fn until<T>(
        &mut self,
        cancel: &CancellationToken,
        work: impl Future<Output = T>,
    ) -> Result<Option<T>, Exit> {
        tokio::pin!(work);
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            tokio::select! {
                out = &mut work => return Ok(Some(out)),
                event = self.next_event(None) => {
                    let event = event?;
                    if !cancel.is_cancelled() {
                        return Err(Exit::Abort(format!(
                            "only C-CANCEL may arrive while an operation runs, got {}",
                            describe(&event)
                        )));
                    }
                    // Arrived together with the cancel: the operation ends first.
                    self.queued.push_front(event);
                }
            }
        }
    }

    /// The whole data set announced by the last command (an identifier), at most `max` bytes.
    pub(crate) async fn read_dataset(
        &mut self,
        timeout: Duration,
        max: usize,
    ) -> Result<Vec<u8>, Exit> {
        let mut buf = Vec::new();
        loop {
            match self.next_event(Some(timeout)).await? {
                Event::Data { data, last, .. } => {
                    if buf.len() + data.len() > max {
                        return Err(Exit::Abort(format!("data set larger than {max} bytes")));
                    }
                    buf.extend_from_slice(&data);
                    if last {
                        return Ok(buf);
                    }
                }
                other => {
                    return Err(Exit::Abort(format!(
                        "{} where a data set was expected",
                        describe(&other)
                    )));
                }
            }
        }
    }

    /// Send a command set or part of a data set (`last` marks its final fragment).
    pub(crate) async fn send(
        &mut self,
        context_id: u8,
        value_type: PDataValueType,
        bytes: &[u8],
        last: bool,
    ) -> Result<(), Exit> {
        let send = async {
            on_link!(&mut self.assoc, a => super::pdata::send_pdvs(a, context_id, value_type, bytes, last).await)
        };
        match tokio::time::timeout(self.write_timeout, send).await {
            Err(_) => Err(Exit::Broken(format!(
                "the peer took no data for {} s",
                self.write_timeout.as_secs()
            ))),
            Ok(Err(e)) => Err(Exit::Broken(format!("cannot send: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    pub(crate) async fn respond(
        &mut self,
        context_id: u8,
        response: &Response,
    ) -> Result<(), Exit> {
        let bytes = response.encode().map_err(|e| Exit::Abort(e.to_string()))?;
        self.send(context_id, PDataValueType::Command, &bytes, true)
            .await
    }

    /// A response followed by its data set (C-FIND pending, a final C-MOVE/C-GET with the Failed
    /// SOP Instance UID List).
    pub(crate) async fn respond_with(
        &mut self,
        context_id: u8,
        response: Response,
        dataset: &[u8],
    ) -> Result<(), Exit> {
        self.respond(context_id, &response.with_dataset()).await?;
        self.send(context_id, PDataValueType::Data, dataset, true)
            .await
    }

    /// End the association as `exit` requires, within the write deadline.
    pub(crate) async fn end(self, exit: Exit) {
        match exit {
            Exit::Closed => {}
            Exit::Broken(reason) => {
                tracing::warn!(%reason, "connection closed without A-ABORT (send did not complete)")
            }
            Exit::Abort(reason) => {
                tracing::warn!(%reason, "aborting the association");
                self.abort().await;
            }
        }
    }

    pub(crate) async fn abort(self) {
        let abort = async {
            let _ = on_link!(self.assoc, a => AsyncAssociation::abort(a).await);
        };
        if tokio::time::timeout(self.write_timeout, abort)
            .await
            .is_err()
        {
            tracing::warn!("A-ABORT not sent within the write deadline; connection closed");
        }
    }

    /// Answer the peer's A-RELEASE-RQ.
    pub(crate) async fn release_reply(mut self) {
        let send = async {
            on_link!(&mut self.assoc, a => AsyncAssociation::send(a, &Pdu::ReleaseRP).await)
        };
        match tokio::time::timeout(self.write_timeout, send).await {
            Ok(Ok(())) => tracing::info!("association released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot send A-RELEASE-RP"),
            Err(_) => tracing::warn!("A-RELEASE-RP not sent within the write deadline"),
        }
    }

    /// Release an association we opened.
    pub(crate) async fn release(self, timeout: Duration) {
        let release = async {
            let _ = on_link!(self.assoc, a => AsyncAssociation::release(a).await);
        };
        if tokio::time::timeout(timeout, release).await.is_err() {
            tracing::warn!("the peer did not answer our A-RELEASE-RQ");
        }
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Command { command, .. } => format!("command 0x{:04X}", command.command_field),
        Event::Data { .. } => "a data set".into(),
        Event::Release => "A-RELEASE-RQ".into(),
    }
}
