//! C-MOVE SCP (PS3.4 C.4.2): the sub-operations run in their own task on an association to the
//! Move Destination, reporting each outcome back to the association that asked, which turns them
//! into pending responses and watches for C-CANCEL meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
    pub calling_aet: String,
    pub max_pdu: u32,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub originator_aet: String,
    pub originator_message_id: u16,
    pub priority: u16,
    /// Shared limit on outgoing associations (all moves together).
    pub outgoing: Arc<Semaphore>,
    pub cancel: CancellationToken,
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
        p = job.outgoing.clone().acquire_owned() => p,
        _ = job.cancel.cancelled() => return,
    };
    let Ok(_permit) = permit else {
        return; // the semaphore is never closed
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
            &job.calling_aet,
            job.max_pdu,
            contexts,
            job.connect_timeout,
        ) => r,
        _ = job.cancel.cancelled() => return,
    };
    let (mut assoc, accepted) = match connected {
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
            cancellable: None,
        };
        let mut unused_cancel = false;
        let Some(result) = sub_operations
            .step(&mut assoc, info, &mut unused_cancel)
            .await
        else {
            break;
        };
        match result {
            Ok((index, outcome)) => {
                if let StoreOutcome::Failed(reason) = &outcome {
                    tracing::warn!(sop_instance_uid = %item.sop_instance_uid, %reason, "sub-operation failed");
                }
                if tx.send(MoveEvent::Stored { index, outcome }).await.is_err() {
                    // The requesting association is gone: stop here.
                    let _ = assoc.abort().await;
                    return;
                }
            }
            Err(link) => {
                tracing::warn!(sop_instance_uid = %item.sop_instance_uid, reason = %link, "association to the move destination lost");
                let _ = tx.send(MoveEvent::LinkLost(link.0)).await;
                let _ = assoc.abort().await;
                return;
            }
        }
    }
    if tokio::time::timeout(job.response_timeout, assoc.release())
        .await
        .is_err()
    {
        tracing::warn!("the move destination did not answer our A-RELEASE-RQ");
    }
}
