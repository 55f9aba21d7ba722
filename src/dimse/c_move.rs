//! C-MOVE SCP (PS3.4 C.4.2): the sub-operations run in their own task on an association to the
//! Move Destination, reporting each outcome back to the association that asked, which turns them
//! into pending responses; a C-CANCEL (seen by the session) stops the task after its current
//! store.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::association::{Peer, QueryRequest, ServerSession};
use super::message::Response;
use super::retrieve::{self, Progress};
use super::session::Exit;
use super::store_scu::{self, StoreOutcome, StoreRequestInfo};
use crate::archive::{Archive, RetrieveItem};
use crate::config::RemoteAe;

/// What the sub-operation task reports.
#[derive(Debug)]
pub enum MoveEvent {
    /// Sub-operation `index` (into the item list) ended.
    Stored { index: usize, outcome: StoreOutcome },
    /// The destination association is gone (or never came): items not reported yet failed.
    LinkLost(String),
}

/// Everything the sub-operation task needs.
pub struct MoveJob {
    pub archive: Archive,
    pub items: Arc<Vec<RetrieveItem>>,
    pub destination: RemoteAe,
    /// Certificates for a `tls = true` destination.
    pub tls: Option<crate::tls::DicomTls>,
    pub calling_aet: String,
    pub max_pdu: u32,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Longest wait for a free outgoing association.
    pub queue_timeout: Duration,
    pub write_timeout: Duration,
    pub max_sequence_depth: usize,
    pub originator_aet: String,
    pub originator_message_id: u16,
    pub priority: u16,
    /// Shared limit on outgoing associations (all moves together).
    pub outgoing: Arc<Semaphore>,
    pub cancel: CancellationToken,
}

/// One C-MOVE, on the requesting association: checks, then pending responses as the
/// sub-operation task reports, then the final response.
pub(crate) async fn handle(
    session: &mut ServerSession,
    peer: &Peer,
    rq: QueryRequest,
) -> Result<(), Exit> {
    let span = tracing::info_span!("c_move", message_id = rq.command.message_id, destination = %rq.command.move_destination);
    async {
        let Some((items, query)) = retrieve::selected(session, peer, &rq).await? else {
            return Ok(());
        };
        let QueryRequest {
            context_id,
            context,
            command,
            cancel,
            ..
        } = &rq;
        let context_id = *context_id;
        let config = &peer.ctx.config;
        let destination = match config.remote_ae(&command.move_destination) {
            Some(remote) if remote.move_destination => remote.clone(),
            known => {
                let comment = if known.is_some() {
                    format!("{} may not be a move destination", command.move_destination)
                } else {
                    format!("unknown move destination {:?}", command.move_destination)
                };
                tracing::warn!(reason = %comment, "C-MOVE refused");
                let response = Response::for_request(command, retrieve::MOVE_DESTINATION_UNKNOWN)
                    .with_comment(comment);
                return session.respond(context_id, &response).await;
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
            return retrieve::respond_final(
                session,
                (context_id, context),
                command,
                &progress,
                false,
                None,
            )
            .await;
        }
        let items = Arc::new(items);
        let stop = CancellationToken::new();
        let mut events = spawn(MoveJob {
            archive: peer.ctx.archive.clone(),
            items: items.clone(),
            destination,
            tls: peer.ctx.tls.clone(),
            calling_aet: config.dicom.aet.clone(),
            max_pdu: config.dicom.max_pdu,
            connect_timeout: Duration::from_secs(config.retrieve.connect_timeout_secs),
            response_timeout: Duration::from_secs(config.retrieve.response_timeout_secs),
            queue_timeout: Duration::from_secs(config.retrieve.queue_timeout_secs),
            write_timeout: config.write_timeout(),
            max_sequence_depth: config.dicom.max_sequence_depth,
            originator_aet: peer.calling_aet.clone(),
            originator_message_id: command.message_id,
            priority: command.priority,
            outgoing: peer.ctx.outgoing.clone(),
            cancel: stop.clone(),
        });
        // Any early return (a broken requesting association) stops the task after its
        // current store.
        let _stop_on_exit = stop.clone().drop_guard();
        let mut next = 0usize;
        let mut cancelled = false;
        let mut link_error = None;
        loop {
            let event = if cancelled {
                // Cancelled: the task stops after its current store; collect what it reports.
                events.recv().await
            } else {
                match session.until(cancel, events.recv()).await? {
                    Some(event) => event,
                    None => {
                        tracing::info!(done = progress.done(), "C-MOVE cancelled by the peer");
                        cancelled = true;
                        stop.cancel();
                        continue;
                    }
                }
            };
            match event {
                None => break,
                Some(MoveEvent::Stored { index, outcome }) => {
                    if let Some(item) = items.get(index) {
                        progress.record(&item.sop_instance_uid, &outcome);
                    }
                    next = index + 1;
                    if progress.remaining() > 0 && !cancelled {
                        let pending = Response::for_request(command, retrieve::PENDING)
                            .with_counts(progress.pending_counts());
                        session.respond(context_id, &pending).await?;
                    }
                }
                Some(MoveEvent::LinkLost(reason)) => {
                    for item in items.iter().skip(next) {
                        progress.record(
                            &item.sop_instance_uid,
                            &StoreOutcome::Failed(reason.clone()),
                        );
                    }
                    next = items.len();
                    link_error = Some(reason);
                }
            }
        }
        peer.audit.moved(&peer.ctx, command, &progress);
        retrieve::respond_final(
            session,
            (context_id, context),
            command,
            &progress,
            cancelled,
            link_error,
        )
        .await
    }
    .instrument(span)
    .await
}

/// Start the sub-operations; the channel closes when the task ends.
pub fn spawn(job: MoveJob) -> mpsc::Receiver<MoveEvent> {
    let (tx, rx) = mpsc::channel(64);
    let span = tracing::info_span!("move_sub_operations", destination = %job.destination.aet);
    tokio::spawn(run(job, tx).instrument(span));
    rx
}

async fn run(job: MoveJob, tx: mpsc::Sender<MoveEvent>) {
    let permit = tokio::select! {
        p = tokio::time::timeout(job.queue_timeout, job.outgoing.clone().acquire_owned()) => p,
        _ = job.cancel.cancelled() => return,
    };
    let _permit = match permit {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return, // the semaphore is never closed
        Err(_) => {
            let reason = format!(
                "no outgoing association free within {} s (retrieve.max_outgoing_associations)",
                job.queue_timeout.as_secs()
            );
            tracing::warn!(%reason, "C-MOVE not started");
            let _ = tx.send(MoveEvent::LinkLost(reason)).await;
            return;
        }
    };
    let (contexts, dropped) = store_scu::proposed_contexts(&job.items);
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "more than 128 presentation contexts needed; some compressed syntaxes are not proposed"
        );
    }
    let connected = tokio::select! {
        r = store_scu::connect(
            &job.destination,
            job.tls.as_ref(),
            &job.calling_aet,
            job.max_pdu,
            contexts,
            job.connect_timeout,
            (job.max_sequence_depth, job.write_timeout),
        ) => r,
        _ = job.cancel.cancelled() => return,
    };
    let (mut session, accepted) = match connected {
        Ok(c) => c,
        Err(reason) => {
            tracing::warn!(host = %job.destination.host, port = job.destination.port, %reason, "cannot reach the move destination");
            let _ = tx.send(MoveEvent::LinkLost(reason)).await;
            return;
        }
    };
    tracing::info!(
        accepted_contexts = accepted.len(),
        instances = job.items.len(),
        "association to the move destination established"
    );
    let mut sub_operations = store_scu::SubOperations::new(&job.archive, &accepted, &job.items);
    let mut message_id: u16 = 0;
    while !job.cancel.is_cancelled() {
        let Some(item) = sub_operations.peek() else {
            break;
        };
        message_id = message_id.wrapping_add(1).max(1);
        let info = StoreRequestInfo {
            message_id,
            priority: job.priority,
            move_originator: Some((&job.originator_aet, job.originator_message_id)),
            response_timeout: job.response_timeout,
        };
        let Some(result) = sub_operations.step(&mut session, info).await else {
            break;
        };
        match result {
            Ok((index, outcome)) => {
                if let StoreOutcome::Failed(reason) = &outcome {
                    tracing::warn!(sop_instance_uid = %item.sop_instance_uid, %reason, "sub-operation failed");
                }
                if tx.send(MoveEvent::Stored { index, outcome }).await.is_err() {
                    // The requesting association is gone: stop here.
                    session.abort().await;
                    return;
                }
            }
            Err(exit) => {
                let reason = match &exit {
                    Exit::Abort(r) | Exit::Broken(r) => r.clone(),
                    Exit::Closed => "the move destination aborted".to_string(),
                };
                tracing::warn!(sop_instance_uid = %item.sop_instance_uid, %reason, "association to the move destination lost");
                let _ = tx.send(MoveEvent::LinkLost(reason)).await;
                session.end(exit).await;
                return;
            }
        }
    }
    session.release(job.response_timeout).await;
}
