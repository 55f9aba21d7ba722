//! One association: P-DATA assembly into DIMSE messages, dispatch to the services, responses.
//! Commands may span several PDVs and PDUs; data sets are streamed to their service as they
//! arrive, never buffered whole. Every exit path releases or aborts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::Pdu;
use dicom_ul::association::Association as _;
use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::c_store::StoreSink;
use super::message::{Command, MAX_COMMAND_SIZE, Response, command_field};
use super::retrieve::Progress;
use super::status::Status;
use super::store_scu::{StoreContext, StoreOutcome, StoreRequestInfo};
use super::{DimseContext, c_echo, c_find, c_move, c_store, negotiation, retrieve, store_scu};
use crate::archive::RetrieveItem;
use crate::query::identifier::{self as query_identifier, ParseOptions};
use crate::query::{Match, Model, Query, QueryError};
use dicom_dictionary_std::tags;

/// An accepted presentation context.
#[derive(Debug, Clone)]
struct Context {
    abstract_syntax: String,
    transfer_syntax: String,
    /// Combined date-time matching accepted by extended negotiation (C-FIND contexts).
    combined_datetime: bool,
    /// Fuzzy semantic matching of person names accepted by extended negotiation (C-FIND).
    fuzzy_names: bool,
    /// The requestor took the SCP role for this SOP class (it receives C-GET sub-operations).
    requestor_is_scp: bool,
}

/// What the association expects next.
enum State {
    /// Command PDVs of a new message.
    Command {
        context_id: Option<u8>,
        buf: Vec<u8>,
    },
    /// The data set of a C-STORE.
    StoreData {
        context_id: u8,
        command: Command,
        sink: StoreSink,
    },
    /// The identifier of a C-FIND, C-MOVE or C-GET.
    IdentifierData {
        context_id: u8,
        command: Command,
        buf: Vec<u8>,
    },
    /// The data set of a request we do not support; dropped, then refused.
    DiscardData { context_id: u8, command: Command },
}

impl State {
    /// The presentation context a data set is expected on, if one is.
    fn data_context(&self) -> Option<u8> {
        match self {
            State::Command { .. } => None,
            State::StoreData { context_id, .. }
            | State::IdentifierData { context_id, .. }
            | State::DiscardData { context_id, .. } => Some(*context_id),
        }
    }

    /// Waiting for the first command fragment of a new message.
    fn idle() -> State {
        State::Command {
            context_id: None,
            buf: Vec::new(),
        }
    }
}

/// Why the association must end now.
enum Exit {
    /// A protocol violation or network error: abort.
    Abort(String),
    /// The peer aborted or closed: nothing more to send.
    Closed,
}

struct Association {
    assoc: AsyncServerAssociation<TcpStream>,
    ctx: DimseContext,
    contexts: HashMap<u8, Context>,
    state: State,
    calling_aet: String,
    /// Message ID of our last C-STORE-RQ (C-GET sub-operations).
    sub_message_id: u16,
}

pub(crate) async fn run(
    assoc: AsyncServerAssociation<TcpStream>,
    ctx: DimseContext,
    peer: SocketAddr,
) {
    let calling_aet = assoc.peer_ae_title().trim().to_string();
    let span = tracing::info_span!(
        "association",
        calling_aet = %calling_aet,
        called_aet = %assoc.called_ae_title().trim(),
        peer = %peer
    );
    async move {
        let contexts: HashMap<u8, Context> = assoc
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| {
                (
                    pc.id,
                    Context {
                        abstract_syntax: pc.abstract_syntax.trim_end_matches('\0').to_string(),
                        transfer_syntax: pc.transfer_syntax.trim_end_matches('\0').to_string(),
                        combined_datetime: negotiation::combined_datetime_accepted(
                            assoc.extended_negotiation_for(
                                pc.abstract_syntax.trim_end_matches('\0'),
                            ),
                        ),
                        fuzzy_names: negotiation::fuzzy_names_accepted(
                            assoc.extended_negotiation_for(
                                pc.abstract_syntax.trim_end_matches('\0'),
                            ),
                        ),
                        requestor_is_scp: assoc
                            .requestor_roles_for(pc.abstract_syntax.trim_end_matches('\0'))
                            .scp,
                    },
                )
            })
            .collect();
        if contexts.is_empty() {
            tracing::warn!("no acceptable presentation context; aborting");
            let _ = assoc.abort().await;
            return;
        }
        tracing::info!(
            contexts = contexts.len(),
            peer_max_pdu = assoc.requestor_max_pdu_length(),
            "association accepted"
        );
        let association = Association {
            assoc,
            ctx,
            contexts,
            state: State::idle(),
            calling_aet,
            sub_message_id: 0,
        };
        association.serve().await;
    }
    .instrument(span)
    .await
}

impl Association {
    async fn serve(mut self) {
        let idle = self.ctx.config.idle_timeout();
        loop {
            // Shutdown does not interrupt an association: the listener stops accepting and waits
            // (bounded) for the peer to finish and release.
            let received = tokio::time::timeout(idle, self.assoc.receive()).await;
            let pdu = match received {
                Err(_) => {
                    tracing::warn!(
                        idle_secs = idle.as_secs(),
                        "association idle too long; aborting"
                    );
                    let _ = self.assoc.abort().await;
                    return;
                }
                Ok(Err(e)) => {
                    // Includes the peer closing the socket and PDUs over our maximum length.
                    tracing::warn!(error = %e, "association ended by a network or protocol error");
                    let _ = self.assoc.abort().await;
                    return;
                }
                Ok(Ok(pdu)) => pdu,
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        match self.on_pdv(pdv).await {
                            Ok(()) => {}
                            Err(Exit::Abort(reason)) => {
                                tracing::warn!(%reason, "protocol violation; aborting");
                                let _ = self.assoc.abort().await;
                                return;
                            }
                            Err(Exit::Closed) => return,
                        }
                    }
                }
                Pdu::ReleaseRQ => {
                    if !matches!(&self.state, State::Command { buf, .. } if buf.is_empty()) {
                        tracing::warn!(
                            "release requested in the middle of a message; the partial message is dropped"
                        );
                    }
                    let _ = self.assoc.send(&Pdu::ReleaseRP).await;
                    tracing::info!("association released");
                    return;
                }
                Pdu::AbortRQ { source } => {
                    tracing::info!(?source, "association aborted by the peer");
                    return;
                }
                other => {
                    tracing::warn!(pdu = %other.short_description(), "unexpected PDU; aborting");
                    let _ = self.assoc.abort().await;
                    return;
                }
            }
        }
    }

    /// The current state, leaving the association idle.
    fn take_state(&mut self) -> State {
        std::mem::replace(&mut self.state, State::idle())
    }

    async fn on_pdv(&mut self, pdv: PDataValue) -> Result<(), Exit> {
        let context_id = pdv.presentation_context_id;
        if !self.contexts.contains_key(&context_id) {
            return Err(Exit::Abort(format!(
                "PDV on presentation context {context_id}, which was not accepted"
            )));
        }
        if pdv.value_type == PDataValueType::Data
            && self
                .state
                .data_context()
                .is_some_and(|cid| cid != context_id)
        {
            return Err(Exit::Abort(
                "data set fragment on another presentation context".into(),
            ));
        }
        match (&mut self.state, pdv.value_type) {
            (
                State::Command {
                    context_id: cid,
                    buf,
                },
                PDataValueType::Command,
            ) => {
                if cid.is_some_and(|c| c != context_id) {
                    return Err(Exit::Abort(
                        "command fragments on different presentation contexts".into(),
                    ));
                }
                *cid = Some(context_id);
                if buf.len() + pdv.data.len() > MAX_COMMAND_SIZE {
                    return Err(Exit::Abort(format!(
                        "command set larger than {MAX_COMMAND_SIZE} bytes"
                    )));
                }
                buf.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    let bytes = std::mem::take(buf);
                    self.state = State::idle();
                    let command =
                        Command::decode(&bytes).map_err(|e| Exit::Abort(e.to_string()))?;
                    self.on_command(context_id, command).await?;
                }
                Ok(())
            }
            (State::StoreData { sink, .. }, PDataValueType::Data) => {
                sink.write(&pdv.data).await;
                if pdv.is_last {
                    let state = self.take_state();
                    if let State::StoreData {
                        context_id,
                        command,
                        sink,
                    } = state
                    {
                        let response = c_store::finish(&self.ctx.archive, &command, sink).await;
                        self.respond(context_id, &response).await?;
                    }
                }
                Ok(())
            }
            (State::DiscardData { .. }, PDataValueType::Data) => {
                if pdv.is_last {
                    let state = self.take_state();
                    if let State::DiscardData {
                        context_id,
                        command,
                    } = state
                    {
                        let response = unsupported(&command);
                        self.respond(context_id, &response).await?;
                    }
                }
                Ok(())
            }
            (State::IdentifierData { buf, .. }, PDataValueType::Data) => {
                if buf.len() + pdv.data.len() > c_find::MAX_IDENTIFIER_SIZE {
                    return Err(Exit::Abort(format!(
                        "identifier larger than {} bytes",
                        c_find::MAX_IDENTIFIER_SIZE
                    )));
                }
                buf.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    let state = self.take_state();
                    if let State::IdentifierData {
                        context_id,
                        command,
                        buf,
                    } = state
                    {
                        match command.command_field {
                            command_field::C_MOVE_RQ | command_field::C_GET_RQ => {
                                self.run_retrieve(context_id, command, buf).await?
                            }
                            _ => self.run_find(context_id, command, buf).await?,
                        }
                    }
                }
                Ok(())
            }
            (State::Command { .. }, PDataValueType::Data) => {
                Err(Exit::Abort("data set fragment without a command".into()))
            }
            (_, PDataValueType::Command) => Err(Exit::Abort(
                "command fragment while a data set was expected".into(),
            )),
        }
    }

    async fn on_command(&mut self, context_id: u8, command: Command) -> Result<(), Exit> {
        let Some(context) = self.contexts.get(&context_id).cloned() else {
            return Err(Exit::Abort(format!(
                "unknown presentation context {context_id}"
            )));
        };
        match command.command_field {
            command_field::C_ECHO_RQ if !command.has_dataset => {
                tracing::debug!(message_id = command.message_id, "C-ECHO");
                let response = c_echo::handle(&command);
                self.respond(context_id, &response).await
            }
            command_field::C_STORE_RQ if command.has_dataset => {
                let sink = c_store::begin(
                    &self.ctx.archive,
                    &command,
                    &context.abstract_syntax,
                    &context.transfer_syntax,
                    &self.calling_aet,
                )
                .await;
                self.state = State::StoreData {
                    context_id,
                    command,
                    sink,
                };
                Ok(())
            }
            command_field::C_FIND_RQ | command_field::C_MOVE_RQ | command_field::C_GET_RQ
                if command.has_dataset
                    && takes_identifier(command.command_field, &context.abstract_syntax) =>
            {
                self.state = State::IdentifierData {
                    context_id,
                    command,
                    buf: Vec::new(),
                };
                Ok(())
            }
            command_field::C_CANCEL_RQ => {
                // Nothing is in progress that could be cancelled.
                Ok(())
            }
            _ if command.has_dataset => {
                self.state = State::DiscardData {
                    context_id,
                    command,
                };
                Ok(())
            }
            _ => {
                let response = unsupported(&command);
                self.respond(context_id, &response).await
            }
        }
    }

    /// Send a response command set, cut to the peer's maximum PDU size.
    async fn respond(&mut self, context_id: u8, response: &Response) -> Result<(), Exit> {
        let bytes = response.encode().map_err(|e| Exit::Abort(e.to_string()))?;
        self.send_pdvs(context_id, PDataValueType::Command, &bytes)
            .await
    }

    /// Send a command set or data set as P-DATA, cut to the peer's maximum PDU size.
    async fn send_pdvs(
        &mut self,
        context_id: u8,
        value_type: PDataValueType,
        bytes: &[u8],
    ) -> Result<(), Exit> {
        // A peer that stops reading (full TCP window) would otherwise hold this task forever:
        // it gets as long as a silent peer does.
        let idle = self.ctx.config.idle_timeout();
        let send = super::pdata::send_pdvs(&mut self.assoc, context_id, value_type, bytes, true);
        match tokio::time::timeout(idle, send).await {
            Err(_) => Err(Exit::Abort(format!(
                "the peer took no data for {} s",
                idle.as_secs()
            ))),
            Ok(Err(e)) => Err(Exit::Abort(format!("cannot send: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Run a C-FIND: stream matches as pending responses while watching for C-CANCEL.
    async fn run_find(
        &mut self,
        context_id: u8,
        command: Command,
        identifier_bytes: Vec<u8>,
    ) -> Result<(), Exit> {
        let Some(context) = self.contexts.get(&context_id).cloned() else {
            return Err(Exit::Abort("unknown presentation context".into()));
        };
        let span = tracing::info_span!("c_find", message_id = command.message_id);
        let _enter = span.enter();
        let fail = |status: Status, comment: String| {
            tracing::warn!(%status, reason = %comment, "C-FIND refused");
            Response::for_request(&command, status).with_comment(comment)
        };
        let Some(model) = c_find::model_of(&context.abstract_syntax) else {
            return self.respond(context_id, &unsupported(&command)).await;
        };
        if command.affected_sop_class_uid != context.abstract_syntax {
            let r = fail(
                Status::SOP_CLASS_NOT_SUPPORTED,
                "SOP class differs from the presentation context".into(),
            );
            return self.respond(context_id, &r).await;
        }
        let identifier =
            match c_find::decode_identifier(&identifier_bytes, &context.transfer_syntax) {
                Ok(i) => i,
                Err(msg) => {
                    let r = fail(c_find::UNABLE_TO_PROCESS, msg);
                    return self.respond(context_id, &r).await;
                }
            };
        let options = ParseOptions {
            case_insensitive_names: self.ctx.config.query.case_insensitive_names,
            combined_datetime: context.combined_datetime,
            fuzzy_names: context.fuzzy_names,
        };
        let query = match query_identifier::parse(&identifier, model, options) {
            Ok(q) => q,
            Err(e) => {
                let r = fail(c_find::status_for(&e), e.to_string());
                return self.respond(context_id, &r).await;
            }
        };
        tracing::info!(
            level = query.level.as_str(),
            keys = query.keys.len(),
            "C-FIND"
        );
        let query_charset = identifier
            .get(tags::SPECIFIC_CHARACTER_SET)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.into_owned())
            .unwrap_or_default();
        let pending = if query.unsupported_matching_keys {
            c_find::PENDING_UNSUPPORTED_KEYS
        } else {
            c_find::PENDING
        };
        let max_results = self.ctx.config.query.max_results;
        let aet = self.ctx.config.dicom.aet.clone();
        let mut matches = self.ctx.archive.find(query);
        let mut sent = 0usize;
        let mut cancel_buf: Vec<u8> = Vec::new();
        let started = std::time::Instant::now();
        enum Event {
            Next(Option<Result<Match, QueryError>>),
            Peer(Result<Pdu, dicom_ul::association::Error>),
        }
        let final_response = loop {
            let event = tokio::select! {
                next = matches.recv() => Event::Next(next),
                // No idle timeout here: the peer is rightly silent while it waits for results.
                pdu = self.assoc.receive() => Event::Peer(pdu),
            };
            match event {
                Event::Next(None) => break Response::for_request(&command, Status::SUCCESS),
                Event::Next(Some(Err(e))) => break fail(c_find::status_for(&e), e.to_string()),
                Event::Next(Some(Ok(m))) => {
                    if max_results > 0 && sent >= max_results {
                        break fail(
                            c_find::TOO_MANY_MATCHES,
                            format!("more than {max_results} matches; narrow the query"),
                        );
                    }
                    let mut ident = m.identifier;
                    c_find::fill_service_keys(&mut ident, &identifier, &aet);
                    let bytes = match c_find::encode_identifier(
                        ident,
                        &context.transfer_syntax,
                        &query_charset,
                    ) {
                        Ok(b) => b,
                        Err(msg) => break fail(c_find::UNABLE_TO_PROCESS, msg),
                    };
                    self.respond(
                        context_id,
                        &Response::for_request(&command, pending).with_dataset(),
                    )
                    .await?;
                    self.send_pdvs(context_id, PDataValueType::Data, &bytes)
                        .await?;
                    sent += 1;
                }
                Event::Peer(pdu) => {
                    if cancel_requested(pdu, &mut cancel_buf, command.message_id, "C-FIND")? {
                        tracing::info!(sent, "C-FIND cancelled by the peer");
                        break Response::for_request(&command, c_find::CANCELLED);
                    }
                }
            }
        };
        drop(matches);
        tracing::info!(matches = sent, elapsed_ms = started.elapsed().as_millis() as u64, status = %final_response.status, "C-FIND done");
        self.respond(context_id, &final_response).await
    }

    /// What C-MOVE and C-GET check first: SOP class, identifier (through the shared query
    /// engine), then the instances it selects. `Err` is the response that ends the request.
    async fn retrieve_items(
        &mut self,
        context: &Context,
        command: &Command,
        model: Model,
        identifier_bytes: &[u8],
    ) -> Result<(Vec<RetrieveItem>, Query), Response> {
        let fail = |status: Status, comment: String| {
            tracing::warn!(%status, reason = %comment, "retrieve refused");
            Response::for_request(command, status).with_comment(comment)
        };
        if command.affected_sop_class_uid != context.abstract_syntax {
            return Err(fail(
                Status::SOP_CLASS_NOT_SUPPORTED,
                "SOP class differs from the presentation context".into(),
            ));
        }
        let identifier = c_find::decode_identifier(identifier_bytes, &context.transfer_syntax)
            .map_err(|msg| fail(retrieve::UNABLE_TO_PROCESS, msg))?;
        let options = ParseOptions {
            case_insensitive_names: self.ctx.config.query.case_insensitive_names,
            combined_datetime: false,
            fuzzy_names: false,
        };
        let query = retrieve::parse_identifier(&identifier, model, options)
            .map_err(|(status, msg)| fail(status, msg))?;
        let items = self
            .ctx
            .archive
            .instances_to_retrieve(query.clone())
            .await
            .map_err(|e| fail(retrieve::CANNOT_COUNT_MATCHES, e.to_string()))?;
        Ok((items, query))
    }

    /// The last response of a C-MOVE/C-GET: counts, and the Failed SOP Instance UID List.
    async fn respond_retrieve_final(
        &mut self,
        context_id: u8,
        command: &Command,
        progress: &Progress,
        cancelled: bool,
        reason: Option<String>,
    ) -> Result<(), Exit> {
        let (status, counts) = if cancelled && progress.remaining() > 0 {
            (retrieve::CANCELLED, progress.pending_counts())
        } else {
            (progress.final_status(), progress.final_counts())
        };
        tracing::info!(
            %status,
            completed = progress.completed,
            failed = progress.failed,
            warning = progress.warning,
            remaining = progress.remaining(),
            "retrieve done"
        );
        let mut response = Response::for_request(command, status).with_counts(counts);
        if status == retrieve::CANNOT_PERFORM_SUB_OPERATIONS
            && let Some(reason) = reason.or_else(|| progress.first_failure.clone())
        {
            response = response.with_comment(reason);
        }
        let transfer_syntax = self
            .contexts
            .get(&context_id)
            .map(|c| c.transfer_syntax.clone())
            .unwrap_or_default();
        let identifier = progress
            .failed_list()
            .map(|obj| c_find::encode_identifier(obj, &transfer_syntax, ""))
            .transpose()
            .unwrap_or_else(|msg| {
                tracing::warn!(reason = %msg, "cannot encode the Failed SOP Instance UID List");
                None
            });
        match identifier {
            Some(bytes) => {
                self.respond(context_id, &response.with_dataset()).await?;
                self.send_pdvs(context_id, PDataValueType::Data, &bytes)
                    .await
            }
            None => self.respond(context_id, &response).await,
        }
    }

    /// C-MOVE or C-GET: the checks they share, then the sub-operations of each.
    async fn run_retrieve(
        &mut self,
        context_id: u8,
        command: Command,
        identifier_bytes: Vec<u8>,
    ) -> Result<(), Exit> {
        let Some(context) = self.contexts.get(&context_id).cloned() else {
            return Err(Exit::Abort("unknown presentation context".into()));
        };
        let is_move = command.command_field == command_field::C_MOVE_RQ;
        let model = if is_move {
            retrieve::move_model_of(&context.abstract_syntax)
        } else {
            retrieve::get_model_of(&context.abstract_syntax)
        };
        let Some(model) = model else {
            return self.respond(context_id, &unsupported(&command)).await;
        };
        let span = if is_move {
            tracing::info_span!("c_move", message_id = command.message_id, destination = %command.move_destination)
        } else {
            tracing::info_span!("c_get", message_id = command.message_id)
        };
        async {
            match self
                .retrieve_items(&context, &command, model, &identifier_bytes)
                .await
            {
                Err(response) => self.respond(context_id, &response).await,
                Ok((items, query)) if is_move => {
                    self.move_items(context_id, command, items, query).await
                }
                Ok((items, query)) => self.get_items(context_id, command, items, query).await,
            }
        }
        .instrument(span)
        .await
    }

    /// C-MOVE: sub-operations on an association to the Move Destination, run by a task of their
    /// own; here, pending responses and C-CANCEL.
    async fn move_items(
        &mut self,
        context_id: u8,
        command: Command,
        items: Vec<RetrieveItem>,
        query: Query,
    ) -> Result<(), Exit> {
        let destination = match self.ctx.config.remote_ae(&command.move_destination) {
            Some(remote) if remote.move_destination => remote.clone(),
            known => {
                let comment = if known.is_some() {
                    format!("{} may not be a move destination", command.move_destination)
                } else {
                    format!("unknown move destination {:?}", command.move_destination)
                };
                tracing::warn!(reason = %comment, "C-MOVE refused");
                let response = Response::for_request(&command, retrieve::MOVE_DESTINATION_UNKNOWN)
                    .with_comment(comment);
                return self.respond(context_id, &response).await;
            }
        };
        tracing::info!(
            level = query.level.as_str(),
            instances = items.len(),
            host = %destination.host,
            port = destination.port,
            "C-MOVE"
        );
        let mut progress = Progress::new(items.len());
        if items.is_empty() {
            return self
                .respond_retrieve_final(context_id, &command, &progress, false, None)
                .await;
        }
        let items = Arc::new(items);
        let cancel = CancellationToken::new();
        let config = &self.ctx.config;
        let mut events = c_move::spawn(c_move::MoveJob {
            archive: self.ctx.archive.clone(),
            items: items.clone(),
            destination,
            calling_aet: config.dicom.aet.clone(),
            max_pdu: config.dicom.max_pdu,
            connect_timeout: Duration::from_secs(config.retrieve.connect_timeout_secs),
            response_timeout: Duration::from_secs(config.retrieve.response_timeout_secs),
            originator_aet: self.calling_aet.clone(),
            originator_message_id: command.message_id,
            priority: command.priority,
            outgoing: self.ctx.outgoing.clone(),
            cancel: cancel.clone(),
        });
        // Dropping the receiver (any early return) stops the task after its current store.
        let _stop_on_exit = cancel.clone().drop_guard();
        let mut next = 0usize;
        let mut cancelled = false;
        let mut cancel_buf = Vec::new();
        let mut link_error = None;
        enum Event {
            Task(Option<c_move::MoveEvent>),
            Peer(Result<Pdu, dicom_ul::association::Error>),
        }
        loop {
            let event = tokio::select! {
                e = events.recv() => Event::Task(e),
                pdu = self.assoc.receive() => Event::Peer(pdu),
            };
            match event {
                Event::Task(None) => break,
                Event::Task(Some(c_move::MoveEvent::Stored { index, outcome })) => {
                    if let Some(item) = items.get(index) {
                        progress.record(&item.sop_instance_uid, &outcome);
                    }
                    next = index + 1;
                    if progress.remaining() > 0 && !cancelled {
                        let pending = Response::for_request(&command, retrieve::PENDING)
                            .with_counts(progress.pending_counts());
                        self.respond(context_id, &pending).await?;
                    }
                }
                Event::Task(Some(c_move::MoveEvent::LinkLost(reason))) => {
                    for item in items.iter().skip(next) {
                        progress.record(
                            &item.sop_instance_uid,
                            &StoreOutcome::Failed(reason.clone()),
                        );
                    }
                    next = items.len();
                    link_error = Some(reason);
                }
                Event::Peer(pdu) => {
                    if cancel_requested(pdu, &mut cancel_buf, command.message_id, "C-MOVE")? {
                        tracing::info!(done = progress.done(), "C-MOVE cancelled by the peer");
                        cancelled = true;
                        cancel.cancel();
                    }
                }
            }
        }
        self.respond_retrieve_final(context_id, &command, &progress, cancelled, link_error)
            .await
    }

    /// C-GET: sub-operations on this same association, to the requestor in its SCP role.
    async fn get_items(
        &mut self,
        context_id: u8,
        command: Command,
        items: Vec<RetrieveItem>,
        query: Query,
    ) -> Result<(), Exit> {
        let mut store_contexts: Vec<StoreContext> = self
            .contexts
            .iter()
            .filter(|(_, c)| c.requestor_is_scp)
            .map(|(id, c)| StoreContext {
                id: *id,
                abstract_syntax: c.abstract_syntax.clone(),
                transfer_syntax: c.transfer_syntax.clone(),
            })
            .collect();
        store_contexts.sort_by_key(|c| c.id);
        tracing::info!(
            level = query.level.as_str(),
            instances = items.len(),
            storage_contexts = store_contexts.len(),
            "C-GET"
        );
        let response_timeout = Duration::from_secs(self.ctx.config.retrieve.response_timeout_secs);
        let archive = self.ctx.archive.clone();
        let mut progress = Progress::new(items.len());
        let mut cancelled = false;
        let mut sub_operations = store_scu::SubOperations::new(&archive, &store_contexts, &items);
        while !cancelled {
            let Some(item) = sub_operations.peek() else {
                break;
            };
            self.sub_message_id = self.sub_message_id.wrapping_add(1).max(1);
            let info = StoreRequestInfo {
                message_id: self.sub_message_id,
                priority: command.priority,
                move_originator: None,
                response_timeout,
                cancellable: Some(command.message_id),
            };
            let Some(result) = sub_operations
                .step(&mut self.assoc, info, &mut cancelled)
                .await
            else {
                break;
            };
            let (_, outcome) =
                result.map_err(|link| Exit::Abort(format!("C-GET sub-operation: {link}")))?;
            if let StoreOutcome::Failed(reason) = &outcome {
                tracing::warn!(sop_instance_uid = %item.sop_instance_uid, %reason, "sub-operation failed");
            }
            progress.record(&item.sop_instance_uid, &outcome);
            if progress.remaining() > 0 && !cancelled {
                let pending = Response::for_request(&command, retrieve::PENDING)
                    .with_counts(progress.pending_counts());
                self.respond(context_id, &pending).await?;
            }
        }
        if cancelled {
            tracing::info!(done = progress.done(), "C-GET cancelled by the peer");
        }
        self.respond_retrieve_final(context_id, &command, &progress, cancelled, None)
            .await
    }
}

/// A PDU that arrived while a C-FIND/C-MOVE runs: only C-CANCEL may come (PS3.7 9.3.2.3).
/// Returns whether it cancelled the operation `message_id`.
fn cancel_requested(
    pdu: Result<Pdu, dicom_ul::association::Error>,
    cancel_buf: &mut Vec<u8>,
    message_id: u16,
    operation: &str,
) -> Result<bool, Exit> {
    let data = match pdu {
        Err(e) => {
            return Err(Exit::Abort(format!(
                "network error during {operation}: {e}"
            )));
        }
        Ok(Pdu::AbortRQ { .. }) => {
            tracing::info!("association aborted by the peer during {operation}");
            return Err(Exit::Closed);
        }
        Ok(Pdu::PData { data }) => data,
        Ok(other) => {
            return Err(Exit::Abort(format!(
                "unexpected {} during {operation}",
                other.short_description()
            )));
        }
    };
    let mut cancelled = false;
    for pdv in data {
        if pdv.value_type != PDataValueType::Command
            || cancel_buf.len() + pdv.data.len() > MAX_COMMAND_SIZE
        {
            return Err(Exit::Abort(format!(
                "only C-CANCEL may arrive during {operation}"
            )));
        }
        cancel_buf.extend_from_slice(&pdv.data);
        if pdv.is_last {
            let cmd = Command::decode(&std::mem::take(cancel_buf))
                .map_err(|e| Exit::Abort(e.to_string()))?;
            if cmd.command_field != command_field::C_CANCEL_RQ {
                return Err(Exit::Abort(format!(
                    "only C-CANCEL may arrive during {operation}"
                )));
            }
            cancelled |= cmd.message_id == message_id;
        }
    }
    Ok(cancelled)
}

/// Whether a C-FIND/C-MOVE/C-GET request fits the SOP class of its presentation context.
fn takes_identifier(command_field: u16, abstract_syntax: &str) -> bool {
    match command_field {
        command_field::C_FIND_RQ => c_find::model_of(abstract_syntax).is_some(),
        command_field::C_MOVE_RQ => retrieve::move_model_of(abstract_syntax).is_some(),
        command_field::C_GET_RQ => retrieve::get_model_of(abstract_syntax).is_some(),
        _ => false,
    }
}

fn unsupported(command: &Command) -> Response {
    tracing::warn!(
        command_field = format!("0x{:04X}", command.command_field),
        "unsupported DIMSE operation"
    );
    Response::for_request(command, Status::UNRECOGNIZED_OPERATION).with_comment(format!(
        "operation 0x{:04X} is not supported",
        command.command_field
    ))
}
