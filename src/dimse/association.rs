//! One association as a server: the accepted presentation contexts, and the loop that takes each
//! request from the [`Session`] to its service. Every exit path releases or aborts (within the
//! write deadline).

use std::collections::HashMap;
use std::net::SocketAddr;

use dicom_ul::association::Association;
use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::pdu::PresentationContextResultReason;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::assembler::Assembler;
use super::message::{Command, Response, command_field};
use super::session::{Event, Exit, Link, Session};
use super::status::Status;
use super::{DimseContext, c_echo, c_find, c_get, c_move, c_store, negotiation, retrieve, stgcmt};
use crate::config::Service;
use crate::query::Model;

pub(crate) type ServerSession = Session;

/// What negotiation settled, read off the association before it goes into a [`Link`].
pub(crate) struct Negotiated {
    calling_aet: String,
    called_aet: String,
    contexts: HashMap<u8, Context>,
    peer_max_pdu: u32,
}

impl Negotiated {
    pub(crate) fn of<S>(assoc: &AsyncServerAssociation<S>) -> Negotiated
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        Negotiated {
            calling_aet: assoc.peer_ae_title().trim().to_string(),
            called_aet: assoc.called_ae_title().trim().to_string(),
            contexts: accepted_contexts(assoc),
            peer_max_pdu: assoc.requestor_max_pdu_length(),
        }
    }
}

/// An accepted presentation context.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) abstract_syntax: String,
    pub(crate) transfer_syntax: String,
    /// Combined date-time matching accepted by extended negotiation (C-FIND contexts).
    pub(crate) combined_datetime: bool,
    /// Fuzzy semantic matching of person names accepted by extended negotiation (C-FIND).
    pub(crate) fuzzy_names: bool,
    /// The requestor took the SCP role for this SOP class (it receives C-GET sub-operations).
    pub(crate) requestor_is_scp: bool,
}

/// A whole C-FIND, C-MOVE or C-GET request: what its service needs.
pub(crate) struct QueryRequest {
    pub(crate) context_id: u8,
    pub(crate) context: Context,
    pub(crate) command: Command,
    /// The information model of the context's SOP class.
    pub(crate) model: Model,
    pub(crate) identifier: Vec<u8>,
    /// Fired by a C-CANCEL of this request's Message ID.
    pub(crate) cancel: CancellationToken,
}

/// What the services need to know of the association beyond its session.
pub(crate) struct Peer {
    /// The audit trail's view of this association (reports the stored studies when dropped).
    pub(crate) audit: super::audit_hooks::AssociationAudit,
    pub(crate) ctx: DimseContext,
    pub(crate) contexts: HashMap<u8, Context>,
    pub(crate) calling_aet: String,
    pub(crate) addr: SocketAddr,
    pub(crate) over_tls: bool,
    /// Message ID of our last C-STORE-RQ (C-GET sub-operations) or N-EVENT-REPORT-RQ.
    pub(crate) sub_message_id: u16,
    /// With a Storage Commitment context: this association's id in the report routes, and the
    /// reports to send on it.
    pub(crate) report_route: Option<(u64, tokio::sync::mpsc::Receiver<stgcmt::ReportJob>)>,
    /// N-EVENT-REPORT-RQs sent on this association, awaiting their RSP, by Message ID.
    pending_reports: HashMap<u16, tokio::sync::oneshot::Sender<Result<(), String>>>,
    /// Shared by this association's C-STOREs: the default character set is logged once.
    pub(crate) charset_notice: crate::archive::CharsetNotice,
}

pub(crate) async fn run(
    mut link: Link,
    negotiated: Negotiated,
    ctx: DimseContext,
    peer_addr: SocketAddr,
) {
    let Negotiated {
        calling_aet,
        called_aet,
        contexts,
        peer_max_pdu,
    } = negotiated;
    let tls = link.tls_session();
    let span = tracing::info_span!(
        "association",
        calling_aet = %calling_aet,
        called_aet = %called_aet,
        peer = %peer_addr
    );
    async move {
        let write_timeout = ctx.config.write_timeout();
        let assembler = Assembler::new(
            contexts.keys().copied(),
            ctx.config.dicom.max_sequence_depth,
        );
        let mut session = Session::new(link, assembler, write_timeout);
        if contexts.is_empty() {
            tracing::warn!("no acceptable presentation context; aborting");
            session.abort().await;
            return;
        }
        match &tls {
            Some((version, suite)) => tracing::info!(
                contexts = contexts.len(),
                peer_max_pdu,
                tls_version = %version,
                tls_suite = %suite,
                "association accepted over TLS"
            ),
            None => tracing::info!(
                contexts = contexts.len(),
                peer_max_pdu,
                "association accepted"
            ),
        }
        let report_route = contexts
            .values()
            .any(|c| c.abstract_syntax == stgcmt::SOP_CLASS)
            .then(|| ctx.reports.register());
        let mut peer = Peer {
            audit: super::audit_hooks::AssociationAudit::new(&ctx, &calling_aet, peer_addr),
            ctx,
            contexts,
            calling_aet,
            addr: peer_addr,
            over_tls: tls.is_some(),
            sub_message_id: 0,
            report_route,
            pending_reports: HashMap::new(),
            charset_notice: Default::default(),
        };
        let result = serve(&mut session, &mut peer).await;
        if let Some((id, _)) = &peer.report_route {
            peer.ctx.reports.unregister(*id);
        }
        match result {
            Ok(()) => session.release_reply().await,
            Err(exit) => session.end(exit).await,
        }
    }
    .instrument(span)
    .await
}

fn accepted_contexts(assoc: &impl Association) -> HashMap<u8, Context> {
    assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| {
            let abstract_syntax = pc.abstract_syntax.trim_end_matches('\0');
            (
                pc.id,
                Context {
                    abstract_syntax: abstract_syntax.to_string(),
                    transfer_syntax: pc.transfer_syntax.trim_end_matches('\0').to_string(),
                    combined_datetime: negotiation::combined_datetime_accepted(
                        assoc.extended_negotiation_for(abstract_syntax),
                    ),
                    fuzzy_names: negotiation::fuzzy_names_accepted(
                        assoc.extended_negotiation_for(abstract_syntax),
                    ),
                    requestor_is_scp: assoc.requestor_roles_for(abstract_syntax).scp,
                },
            )
        })
        .collect()
}

/// Requests until the peer releases (`Ok`) or the association must end (`Err`).
async fn serve(session: &mut ServerSession, peer: &mut Peer) -> Result<(), Exit> {
    let idle = peer.ctx.config.idle_timeout();
    loop {
        // Shutdown does not interrupt an association: the listener stops accepting and waits
        // (bounded) for the peer to finish and release. Between messages, a commitment report
        // for this requester may go out (PS3.4 J.3.3).
        let between_messages = session.is_idle();
        let received = tokio::select! {
            job = next_report(&mut peer.report_route), if between_messages => {
                if let Some(job) = job {
                    send_report(session, peer, job).await?;
                }
                continue;
            }
            received = session.next_event(Some(idle)) => received,
        };
        let event = received.map_err(|e| match e {
            Exit::Abort(reason) if session.is_idle() => {
                Exit::Abort(format!("association idle or broken: {reason}"))
            }
            other => other,
        })?;
        match event {
            Event::Release => {
                if !session.is_idle() {
                    tracing::warn!(
                        "release requested in the middle of a message; the partial message is dropped"
                    );
                }
                return Ok(());
            }
            Event::Command {
                context_id,
                command,
            } => on_command(session, peer, context_id, command).await?,
            Event::Data { .. } => {
                return Err(Exit::Abort("data set fragment nobody asked for".into()));
            }
        }
    }
}

/// The next report queued for this association (never, without a Storage Commitment context).
async fn next_report(
    route: &mut Option<(u64, tokio::sync::mpsc::Receiver<stgcmt::ReportJob>)>,
) -> Option<stgcmt::ReportJob> {
    match route {
        Some((_, jobs)) => jobs.recv().await,
        None => std::future::pending().await,
    }
}

/// Send an N-EVENT-REPORT-RQ; its RSP arrives later among the requester's messages.
async fn send_report(
    session: &mut ServerSession,
    peer: &mut Peer,
    job: stgcmt::ReportJob,
) -> Result<(), Exit> {
    let Some((context_id, ts)) = peer
        .contexts
        .iter()
        .find(|(_, c)| c.abstract_syntax == stgcmt::SOP_CLASS)
        .map(|(id, c)| (*id, c.transfer_syntax.clone()))
    else {
        let _ = job.done.send(Err("no Storage Commitment context".into()));
        return Ok(());
    };
    let (event_type, dataset) =
        match stgcmt::report::encode(&job.record, &ts, &peer.ctx.config.dicom.aet) {
            Ok(encoded) => encoded,
            Err(e) => {
                let _ = job.done.send(Err(e));
                return Ok(());
            }
        };
    peer.sub_message_id = peer.sub_message_id.wrapping_add(1).max(1);
    let message_id = peer.sub_message_id;
    let command = super::message::EventReportRequest {
        message_id,
        sop_class_uid: stgcmt::SOP_CLASS,
        sop_instance_uid: stgcmt::SOP_INSTANCE,
        event_type_id: event_type,
    }
    .encode()
    .map_err(|e| Exit::Abort(e.to_string()))?;
    tracing::info!(
        transaction_uid = %job.record.transaction_uid,
        event_type,
        "sending the storage commitment report on the requester's association"
    );
    peer.pending_reports.insert(message_id, job.done);
    session
        .send(
            context_id,
            dicom_ul::pdu::PDataValueType::Command,
            &command,
            true,
        )
        .await?;
    session
        .send(
            context_id,
            dicom_ul::pdu::PDataValueType::Data,
            &dataset,
            true,
        )
        .await
}

/// The requester's answer to a report we sent on its association.
fn on_report_response(peer: &mut Peer, command: &Command) {
    let Some(done) = peer.pending_reports.remove(&command.message_id) else {
        tracing::warn!(
            message_id = command.message_id,
            "N-EVENT-REPORT-RSP for no report we sent; ignored"
        );
        return;
    };
    let status = Status(command.status.unwrap_or(0xFFFF));
    let result = match status.category() {
        super::status::Category::Success | super::status::Category::Warning => Ok(()),
        _ => Err(format!(
            "the requester answered the report with status {status}"
        )),
    };
    let _ = done.send(result);
}

async fn on_command(
    session: &mut ServerSession,
    peer: &mut Peer,
    context_id: u8,
    command: Command,
) -> Result<(), Exit> {
    let Some(context) = peer.contexts.get(&context_id).cloned() else {
        return Err(Exit::Abort(format!(
            "unknown presentation context {context_id}"
        )));
    };
    let idle = peer.ctx.config.idle_timeout();
    if let Some(service) = service_of(command.command_field)
        && let Err(refusal) = peer.ctx.access.decide_service(&peer.calling_aet, service)
    {
        super::access::report(
            &super::access::RefusalEvent {
                refusal: &refusal,
                calling_aet: &peer.calling_aet,
                called_aet: &peer.ctx.config.dicom.aet,
                peer: peer.addr,
                over_tls: peer.over_tls,
            },
            &peer.ctx.audit,
        );
        if command.has_dataset {
            skip_dataset(session, idle).await?;
        }
        let response = Response::for_request(&command, Status::NOT_AUTHORIZED)
            .with_comment(format!("{refusal}"));
        return session.respond(context_id, &response).await;
    }
    match command.command_field {
        command_field::C_ECHO_RQ if !command.has_dataset => {
            tracing::debug!(message_id = command.message_id, "C-ECHO");
            session.respond(context_id, &c_echo::handle(&command)).await
        }
        command_field::C_STORE_RQ if command.has_dataset => {
            c_store::handle(session, peer, context_id, &context, command).await
        }
        command_field::N_ACTION_RQ => {
            stgcmt::n_action::handle(session, peer, context_id, &context, command).await
        }
        command_field::N_EVENT_REPORT_RSP => {
            if command.has_dataset {
                skip_dataset(session, idle).await?;
            }
            on_report_response(peer, &command);
            Ok(())
        }
        field @ (command_field::C_FIND_RQ | command_field::C_MOVE_RQ | command_field::C_GET_RQ)
            if command.has_dataset =>
        {
            let Some(model) = query_model(field, &context.abstract_syntax) else {
                // A request that does not fit its context's SOP class: read its data set, refuse.
                skip_dataset(session, idle).await?;
                return session.respond(context_id, &unsupported(&command)).await;
            };
            let identifier = session
                .read_dataset(idle, c_find::MAX_IDENTIFIER_SIZE)
                .await?;
            let message_id = command.message_id;
            let rq = QueryRequest {
                context_id,
                context,
                command,
                model,
                identifier,
                // Registered before the work starts, so an early C-CANCEL is not lost.
                cancel: session.watch(message_id),
            };
            let result = match field {
                command_field::C_FIND_RQ => c_find::handle(session, peer, rq).await,
                command_field::C_MOVE_RQ => c_move::handle(session, peer, rq).await,
                _ => c_get::handle(session, peer, rq).await,
            };
            session.unwatch(message_id);
            result
        }
        _ if command.has_dataset => {
            skip_dataset(session, idle).await?;
            session.respond(context_id, &unsupported(&command)).await
        }
        _ => session.respond(context_id, &unsupported(&command)).await,
    }
}

/// The service a request asks for, for the per-AE permissions (responses and C-CANCEL: none).
fn service_of(command_field: u16) -> Option<Service> {
    match command_field {
        command_field::C_ECHO_RQ => Some(Service::Echo),
        command_field::C_STORE_RQ => Some(Service::Store),
        command_field::C_FIND_RQ => Some(Service::Find),
        command_field::C_MOVE_RQ => Some(Service::Move),
        command_field::C_GET_RQ => Some(Service::Get),
        command_field::N_ACTION_RQ => Some(Service::Commitment),
        _ => None,
    }
}

/// The information model of a C-FIND/C-MOVE/C-GET request, if it fits the SOP class of its
/// presentation context.
fn query_model(command_field: u16, abstract_syntax: &str) -> Option<Model> {
    match command_field {
        command_field::C_FIND_RQ => c_find::model_of(abstract_syntax),
        command_field::C_MOVE_RQ => retrieve::move_model_of(abstract_syntax),
        command_field::C_GET_RQ => retrieve::get_model_of(abstract_syntax),
        _ => None,
    }
}

/// Read and drop the data set of a request that is refused.
async fn skip_dataset(session: &mut ServerSession, idle: std::time::Duration) -> Result<(), Exit> {
    loop {
        match session.next_event(Some(idle)).await? {
            Event::Data { last: true, .. } => return Ok(()),
            Event::Data { .. } => {}
            _ => return Err(Exit::Abort("data set expected".into())),
        }
    }
}

pub(crate) fn unsupported(command: &Command) -> Response {
    tracing::warn!(
        command_field = format!("0x{:04X}", command.command_field),
        "unsupported DIMSE operation"
    );
    Response::for_request(command, Status::UNRECOGNIZED_OPERATION).with_comment(format!(
        "operation 0x{:04X} is not supported",
        command.command_field
    ))
}
