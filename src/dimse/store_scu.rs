//! The C-STORE SCU of C-MOVE/C-GET sub-operations: which presentation context carries an
//! instance (its stored transfer syntax when accepted, else an uncompressed one it is converted
//! to), sending the request with the data set streamed from the archive, and awaiting the
//! C-STORE-RSP. Works on any association: one opened to a move destination, or the C-GET one.

use std::time::Duration;

use dicom_dictionary_std::uids;
use dicom_ul::pdu::{
    PDataValueType, PresentationContextNegotiated, PresentationContextResultReason,
};

use super::assembler::Assembler;
use super::message::{StoreRequest, command_field};
use super::session::{Event, Exit, Link, Session};
use super::status::{Category, Status};
use crate::archive::{Archive, DatasetQueue, DatasetStream, RetrieveItem, convert_object};
use crate::config::RemoteAe;
use crate::tls::DicomTls;

/// Uncompressed syntaxes every storage SCP accepts, in our order of preference.
pub const UNCOMPRESSED: [&str; 2] = [
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
];

/// Presentation context IDs are odd numbers 1..=255: at most 128 per association.
const MAX_CONTEXTS: usize = 128;

/// An accepted presentation context on which we may send C-STORE-RQ.
#[derive(Debug, Clone)]
pub struct StoreContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// How an instance goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub context_id: u8,
    /// `None`: the stored data set as it is; `Some(ts)`: converted to `ts` first.
    pub convert_to: Option<String>,
}

/// The context for `item`: one with its stored transfer syntax, else an uncompressed one.
pub fn route(contexts: &[StoreContext], item: &RetrieveItem) -> Result<Route, String> {
    let of_class = || {
        contexts
            .iter()
            .filter(|c| c.abstract_syntax == item.sop_class_uid)
    };
    if let Some(c) = of_class().find(|c| c.transfer_syntax == item.transfer_syntax) {
        return Ok(Route {
            context_id: c.id,
            convert_to: None,
        });
    }
    for ts in UNCOMPRESSED {
        if let Some(c) = of_class().find(|c| c.transfer_syntax == ts) {
            return Ok(Route {
                context_id: c.id,
                convert_to: Some(ts.to_string()),
            });
        }
    }
    if of_class().next().is_none() {
        Err(format!(
            "the receiver accepted no presentation context for SOP class {}",
            item.sop_class_uid
        ))
    } else {
        Err(format!(
            "the receiver accepted SOP class {} only in transfer syntaxes we cannot convert {} to",
            item.sop_class_uid, item.transfer_syntax
        ))
    }
}

/// The contexts we propose to a move destination for these instances: per SOP class, one with
/// each stored syntax other than Explicit VR Little Endian (so it can go out unchanged whatever
/// the destination prefers), and one with both uncompressed little endian syntaxes (the fallback
/// that always works after conversion).
pub fn proposed_contexts(items: &[RetrieveItem]) -> (Vec<(String, Vec<String>)>, usize) {
    let mut contexts: Vec<(String, Vec<String>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for item in items {
        if seen.insert((item.sop_class_uid.as_str(), "")) {
            contexts.push((
                item.sop_class_uid.clone(),
                UNCOMPRESSED.iter().map(|s| s.to_string()).collect(),
            ));
        }
        if item.transfer_syntax != uids::EXPLICIT_VR_LITTLE_ENDIAN
            && seen.insert((item.sop_class_uid.as_str(), item.transfer_syntax.as_str()))
        {
            contexts.push((
                item.sop_class_uid.clone(),
                vec![item.transfer_syntax.clone()],
            ));
        }
    }
    // Uncompressed contexts first, so every class keeps its fallback if we must cut.
    contexts.sort_by_key(|(_, ts)| ts.len() != UNCOMPRESSED.len());
    let dropped = contexts.len().saturating_sub(MAX_CONTEXTS);
    contexts.truncate(MAX_CONTEXTS);
    (contexts, dropped)
}

pub(crate) type ClientSession = Session;

/// Open an association to `remote` (over TLS when its entry says `tls = true`, verifying its
/// certificate against `dicom.tls.ca` for the name in `host`, presenting ours), within
/// `timeout` for the connection, the handshake and the negotiation together.
pub(crate) async fn establish(
    options: dicom_ul::ClientAssociationOptions<'_>,
    remote: &RemoteAe,
    tls: Option<&DicomTls>,
    timeout: Duration,
) -> Result<(Link, Vec<PresentationContextNegotiated>), String> {
    let address = format!("{}:{}", remote.host.trim(), remote.port);
    let outcome = if remote.tls {
        let client = tls.and_then(DicomTls::client_config).ok_or_else(|| {
            format!(
                "{} is marked tls = true but dicom.tls.ca is not configured",
                remote.aet
            )
        })?;
        let options = options.tls_config(client).server_name(remote.host.trim());
        tokio::time::timeout(timeout, options.establish_tls_async(address.clone()))
            .await
            .map(|r| {
                r.map(|mut a| {
                    if let Err(e) = a.inner_stream().get_ref().0.set_nodelay(true) {
                        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                    }
                    let contexts = a.presentation_contexts().to_vec();
                    (Link::ClientTls(a), contexts)
                })
            })
    } else {
        tokio::time::timeout(timeout, options.establish_async(address.clone()))
            .await
            .map(|r| {
                r.map(|mut a| {
                    if let Err(e) = a.inner_stream().set_nodelay(true) {
                        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                    }
                    let contexts = a.presentation_contexts().to_vec();
                    (Link::Client(a), contexts)
                })
            })
    };
    match outcome {
        Err(_) => Err(format!(
            "no association with {address} within {} s",
            timeout.as_secs()
        )),
        Ok(Err(e)) => Err(format!("association with {address} failed: {e}")),
        Ok(Ok((mut link, contexts))) => {
            if let Some((version, suite)) = link.tls_session() {
                tracing::info!(remote = %remote.aet, tls_version = %version, tls_suite = %suite, "outgoing association over TLS");
            }
            Ok((link, contexts))
        }
    }
}

/// Open an association to a move destination, proposing `contexts`.
pub(crate) async fn connect(
    destination: &RemoteAe,
    tls: Option<&DicomTls>,
    calling_aet: &str,
    max_pdu: u32,
    contexts: Vec<(String, Vec<String>)>,
    timeout: Duration,
    limits: (usize, Duration),
) -> Result<(ClientSession, Vec<StoreContext>), String> {
    let mut options = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title(calling_aet.to_string())
        .called_ae_title(destination.aet.trim().to_string())
        .max_pdu_length(max_pdu)
        .connection_timeout(timeout);
    for (abstract_syntax, transfer_syntaxes) in contexts {
        options = options.with_presentation_context(abstract_syntax, transfer_syntaxes);
    }
    let (assoc, negotiated) = establish(options, destination, tls, timeout).await?;
    let accepted: Vec<StoreContext> = negotiated
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| StoreContext {
            id: pc.id,
            abstract_syntax: pc.abstract_syntax.trim_end_matches('\0').to_string(),
            transfer_syntax: pc.transfer_syntax.trim_end_matches('\0').to_string(),
        })
        .collect();
    let (max_sequence_depth, write_timeout) = limits;
    let assembler = Assembler::new(accepted.iter().map(|c| c.id), max_sequence_depth);
    Ok((Session::new(assoc, assembler, write_timeout), accepted))
}

/// The result of one sub-operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    Completed,
    Warning(Status),
    Failed(String),
}

/// Who we send for: the C-MOVE's originator, so the destination can tell moves apart.
#[derive(Debug, Clone, Copy)]
pub struct StoreRequestInfo<'a> {
    pub message_id: u16,
    pub priority: u16,
    pub move_originator: Option<(&'a str, u16)>,
    pub response_timeout: Duration,
}

/// An instance ready to go: its context, and its data set opened (first range read) or
/// converted. Everything that can fail for this instance alone happens while preparing.
struct Prepared {
    context_id: u8,
    payload: Payload,
}

enum Payload {
    Stream(DatasetStream),
    Converted(Vec<u8>),
}

/// Take the next object from the queue (always, so the queue stays in step with the items) and
/// open or convert it for its route.
async fn prepare(
    queue: &mut DatasetQueue,
    contexts: &[StoreContext],
    item: &RetrieveItem,
) -> Result<Prepared, String> {
    let (index, object) = queue
        .next_object()
        .await
        .ok_or_else(|| "the retrieve queue ended early".to_string())?;
    let object = object.map_err(|e| e.to_string())?;
    let route = route(contexts, item)?;
    let payload = match &route.convert_to {
        None => Payload::Stream(queue.open(index, object).await.map_err(|e| e.to_string())?),
        Some(ts) => {
            let bytes = convert_object(object, &item.sop_instance_uid, ts)
                .await
                .map_err(|e| e.to_string())?;
            tracing::debug!(sop_instance_uid = %item.sop_instance_uid, from = %item.transfer_syntax, to = %ts, "converted for the receiver");
            Payload::Converted(bytes)
        }
    };
    Ok(Prepared {
        context_id: route.context_id,
        payload,
    })
}

/// The sub-operations of one C-MOVE/C-GET, one instance per [`SubOperations::step`]. The
/// archive fetches the instances ahead from every site holding copies (co-allocated, a bounded
/// number at once) while the receiver works; the next one is opened while the receiver answers
/// the current one. Instances that need conversion are not opened ahead, so at most one
/// converted object is held.
pub struct SubOperations<'a> {
    contexts: &'a [StoreContext],
    items: &'a [RetrieveItem],
    queue: DatasetQueue,
    next: usize,
    ahead: Option<Result<Prepared, String>>,
}

impl<'a> SubOperations<'a> {
    pub fn new(
        archive: &'a Archive,
        contexts: &'a [StoreContext],
        items: &'a [RetrieveItem],
    ) -> SubOperations<'a> {
        SubOperations {
            contexts,
            items,
            queue: archive.open_datasets(items),
            next: 0,
            ahead: None,
        }
    }

    /// The instance the next step stores, if any.
    pub fn peek(&self) -> Option<&'a RetrieveItem> {
        self.items.get(self.next)
    }

    /// Store the next instance: `None` when all are done; `Some(Ok)` with its index and outcome
    /// (failures of this instance alone); `Some(Err)` when the association is unusable. A
    /// C-CANCEL arriving meanwhile fires the token the session watches; the caller checks it.
    pub(crate) async fn step(
        &mut self,
        session: &mut Session,
        info: StoreRequestInfo<'_>,
    ) -> Option<Result<(usize, StoreOutcome), Exit>> {
        let index = self.next;
        let item = self.items.get(index)?;
        self.next += 1;
        let prepared = match self.ahead.take() {
            Some(p) => p,
            None => prepare(&mut self.queue, self.contexts, item).await,
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(reason) => return Some(Ok((index, StoreOutcome::Failed(reason)))),
        };
        // Every write is bounded by the session's write deadline: a receiver that stops
        // reading cannot hold the association (and its slot) forever.
        if let Err(e) = send(session, item, prepared, &info).await {
            return Some(Err(e));
        }
        let (queue, contexts) = (&mut self.queue, self.contexts);
        let read_ahead = async {
            let next = self.items.get(self.next)?;
            let streamable = route(contexts, next).is_ok_and(|r| r.convert_to.is_none());
            if streamable {
                Some(prepare(queue, contexts, next).await)
            } else {
                None
            }
        };
        let (status, ahead) = tokio::join!(await_response(session, info), read_ahead);
        self.ahead = ahead;
        Some(status.map(|status| {
            let outcome = match status.category() {
                Category::Success => StoreOutcome::Completed,
                Category::Warning => StoreOutcome::Warning(status),
                _ => StoreOutcome::Failed(format!("the receiver answered status {status}")),
            };
            (index, outcome)
        }))
    }
}

/// Send the C-STORE-RQ and its data set.
async fn send(
    session: &mut Session,
    item: &RetrieveItem,
    prepared: Prepared,
    info: &StoreRequestInfo<'_>,
) -> Result<(), Exit> {
    let command = StoreRequest {
        message_id: info.message_id,
        sop_class_uid: &item.sop_class_uid,
        sop_instance_uid: &item.sop_instance_uid,
        priority: info.priority,
        move_originator: info.move_originator,
    }
    .encode()
    .map_err(|e| Exit::Abort(e.to_string()))?;
    let context_id = prepared.context_id;
    session
        .send(context_id, PDataValueType::Command, &command, true)
        .await?;
    match prepared.payload {
        Payload::Converted(bytes) => {
            session
                .send(context_id, PDataValueType::Data, &bytes, true)
                .await?;
        }
        Payload::Stream(mut stream) => loop {
            // A read error now leaves a half-sent data set: the association must go.
            let chunk = stream.next_chunk().await.map_err(|e| {
                Exit::Abort(format!("reading the stored object failed mid-send: {e}"))
            })?;
            let Some(chunk) = chunk else {
                return Err(Exit::Abort("stored data set is empty".into()));
            };
            let last = stream.is_done();
            session
                .send(context_id, PDataValueType::Data, &chunk, last)
                .await?;
            if last {
                break;
            }
        },
    }
    Ok(())
}

/// Wait for the C-STORE-RSP to `info.message_id`.
async fn await_response(session: &mut Session, info: StoreRequestInfo<'_>) -> Result<Status, Exit> {
    let event = session
        .next_event(Some(info.response_timeout))
        .await
        .map_err(|e| match e {
            Exit::Abort(reason) => Exit::Abort(format!(
                "no C-STORE response within {} s: {reason}",
                info.response_timeout.as_secs()
            )),
            other => other,
        })?;
    let store_rsp = command_field::C_STORE_RQ | command_field::RESPONSE_BIT;
    match event {
        Event::Command { command, .. }
            if command.command_field == store_rsp && command.message_id == info.message_id =>
        {
            Ok(Status(command.status.unwrap_or(0xC000)))
        }
        Event::Command { command, .. } => Err(Exit::Abort(format!(
            "unexpected command 0x{:04X} while waiting for a C-STORE response",
            command.command_field
        ))),
        Event::Data { .. } => Err(Exit::Abort(
            "unexpected data while waiting for a C-STORE response".into(),
        )),
        Event::Release => Err(Exit::Abort(
            "the receiver asked to release while a store was pending".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(class: &str, ts: &str) -> RetrieveItem {
        RetrieveItem::for_test("1.2.3", class, ts)
    }

    fn ctx(id: u8, class: &str, ts: &str) -> StoreContext {
        StoreContext {
            id,
            abstract_syntax: class.into(),
            transfer_syntax: ts.into(),
        }
    }

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const JPEG: &str = "1.2.840.10008.1.2.4.70";

    #[test]
    fn stored_syntax_first_then_uncompressed() {
        let contexts = [
            ctx(1, CT, uids::IMPLICIT_VR_LITTLE_ENDIAN),
            ctx(3, CT, JPEG),
        ];
        assert_eq!(
            route(&contexts, &item(CT, JPEG)),
            Ok(Route {
                context_id: 3,
                convert_to: None
            })
        );
        assert_eq!(
            route(&contexts[..1], &item(CT, JPEG)),
            Ok(Route {
                context_id: 1,
                convert_to: Some(uids::IMPLICIT_VR_LITTLE_ENDIAN.into())
            })
        );
        assert!(route(&contexts[1..], &item(CT, "1.2.840.10008.1.2.5")).is_err());
        assert!(route(&contexts, &item("1.2.840.10008.5.1.4.1.1.4", JPEG)).is_err());
    }

    #[test]
    fn proposes_stored_syntax_and_fallback_per_class() {
        let items = [
            item(CT, JPEG),
            item(CT, uids::EXPLICIT_VR_LITTLE_ENDIAN),
            item(CT, JPEG),
        ];
        let (contexts, dropped) = proposed_contexts(&items);
        assert_eq!(dropped, 0);
        assert_eq!(contexts.len(), 2);
        assert_eq!(contexts[0].1.len(), 2);
        assert_eq!(contexts[1].1, vec![JPEG.to_string()]);
    }
}
