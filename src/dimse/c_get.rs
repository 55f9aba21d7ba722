//! C-GET SCP (PS3.4 C.4.3): the sub-operations go on the requesting association itself, to the
//! requestor in the SCP role it took by role selection; a C-CANCEL (seen by the session while we
//! wait for each C-STORE-RSP) stops them after the current one.

use std::time::Duration;

use tracing::Instrument;

use super::association::{Peer, QueryRequest, ServerSession};
use super::message::Response;
use super::retrieve::{self, Progress};
use super::session::Exit;
use super::store_scu::{self, StoreContext, StoreOutcome, StoreRequestInfo};

pub(crate) async fn handle(
    session: &mut ServerSession,
    peer: &mut Peer,
    rq: QueryRequest,
) -> Result<(), Exit> {
    let span = tracing::info_span!("c_get", message_id = rq.command.message_id);
    serve(session, peer, &rq).instrument(span).await
}

/// The C-GET itself, inside its span (a span entered across `.await` would tag other tasks).
async fn serve(
    session: &mut ServerSession,
    peer: &mut Peer,
    rq: &QueryRequest,
) -> Result<(), Exit> {
    let Some((items, query)) = retrieve::selected(session, peer, rq).await? else {
        return Ok(());
    };
    let QueryRequest {
        context_id,
        context,
        command,
        cancel,
        ..
    } = rq;
    let context_id = *context_id;
    let mut store_contexts: Vec<StoreContext> = peer
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
    let response_timeout = Duration::from_secs(peer.ctx.config.retrieve.response_timeout_secs);
    let archive = peer.ctx.archive.clone();
    let mut progress = Progress::new(items.len());
    let mut sub_operations = store_scu::SubOperations::new(&archive, &store_contexts, &items);
    while !cancel.is_cancelled() {
        let Some(item) = sub_operations.peek() else {
            break;
        };
        peer.sub_message_id = peer.sub_message_id.wrapping_add(1).max(1);
        let info = StoreRequestInfo {
            message_id: peer.sub_message_id,
            priority: command.priority,
            move_originator: None,
            response_timeout,
        };
        let Some(result) = sub_operations.step(session, info).await else {
            break;
        };
        let (_, outcome) = result?;
        if let StoreOutcome::Failed(reason) = &outcome {
            tracing::warn!(sop_instance_uid = %item.sop_instance_uid, %reason, "sub-operation failed");
        }
        progress.record(&item.sop_instance_uid, &outcome);
        if progress.remaining() > 0 && !cancel.is_cancelled() {
            let pending = Response::for_request(command, retrieve::PENDING)
                .with_counts(progress.pending_counts());
            session.respond(context_id, &pending).await?;
        }
    }
    let cancelled = cancel.is_cancelled();
    peer.audit.got(&archive, &progress);
    if cancelled {
        tracing::info!(done = progress.done(), "C-GET cancelled by the peer");
    }
    retrieve::respond_final(
        session,
        (context_id, context),
        command,
        &progress,
        cancelled,
        None,
    )
    .await
}
