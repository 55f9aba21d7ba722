//! The worker that sends reports: whenever the archive has decided transactions (woken by new
//! requests and finished copies, and polled each second while any is open), each report goes on
//! its requester's association if that is still open, else on a new one; a report that cannot
//! be delivered waits for its retry (the archive keeps the backoff and the expiry).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::super::DimseContext;
use super::{ReportJob, report_scu};
use crate::index::CommitmentRecord;

/// Reports being delivered at once.
const MAX_DELIVERIES: usize = 4;
/// Poll interval while transactions are open (decisions also depend on time: the deadline).
const POLL_OPEN: Duration = Duration::from_secs(1);
const POLL_IDLE: Duration = Duration::from_secs(30);

pub async fn run(ctx: DimseContext, cancel: CancellationToken) {
    let archive = ctx.archive.clone();
    let wake = archive.commitment_wake();
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_DELIVERIES));
    loop {
        match archive.due_commitments().await {
            Ok(due) => {
                for record in due {
                    let fresh = lock(&in_flight).insert(record.transaction_uid.clone());
                    if !fresh {
                        continue;
                    }
                    let (ctx, in_flight, slots) = (ctx.clone(), in_flight.clone(), slots.clone());
                    tokio::spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        let tx = record.transaction_uid.clone();
                        deliver(&ctx, record).await;
                        lock(&in_flight).remove(&tx);
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot evaluate storage commitments"),
        }
        let poll = if archive.open_commitments_len() > 0 {
            POLL_OPEN
        } else {
            POLL_IDLE
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

fn lock(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock().unwrap_or_else(|p| p.into_inner())
}

async fn deliver(ctx: &DimseContext, record: CommitmentRecord) {
    let tx = record.transaction_uid.clone();
    let attempt = record.attempts + 1;
    let (result, via) = match on_open_association(ctx, &record).await {
        Some(Ok(())) => (Ok(()), "the requester's association"),
        same => {
            if let Some(Err(e)) = same {
                tracing::info!(transaction_uid = %tx, error = %e, "report not delivered on the requester's association; opening a new one");
            }
            (report_scu::deliver(ctx, &record).await, "a new association")
        }
    };
    match result {
        Ok(()) => {
            ctx.reports.forget(&tx);
            tracing::info!(transaction_uid = %tx, requester = %record.requester_aet, attempt, via, "storage commitment report delivered");
            if let Err(e) = ctx.archive.commitment_delivered(&tx).await {
                tracing::error!(transaction_uid = %tx, error = %e, "cannot forget a delivered commitment; it may be reported twice");
            }
        }
        Err(e) => match ctx.archive.commitment_undelivered(&tx, &e).await {
            Ok(Some(wait)) => tracing::warn!(
                transaction_uid = %tx,
                requester = %record.requester_aet,
                attempt,
                error = %e,
                retry_in_secs = wait.as_secs(),
                "storage commitment report not delivered"
            ),
            Ok(None) => {}
            Err(ie) => {
                tracing::error!(transaction_uid = %tx, error = %ie, "cannot record a failed report delivery")
            }
        },
    }
}

/// `None` when the requester's association is gone; else whether it took the report.
async fn on_open_association(
    ctx: &DimseContext,
    record: &CommitmentRecord,
) -> Option<Result<(), String>> {
    let route = ctx.reports.route(&record.transaction_uid)?;
    let timeout = Duration::from_secs(ctx.config.commitment.timeout_secs);
    let (done, answer) = oneshot::channel();
    let job = ReportJob {
        record: record.clone(),
        done,
    };
    if tokio::time::timeout(timeout, route.send(job))
        .await
        .is_err()
    {
        return Some(Err("the association did not take the report in time".into()));
    }
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(result)) => Some(result),
        // The association ended with the report unanswered.
        Ok(Err(_)) => Some(Err("the association ended before answering".into())),
        Err(_) => Some(Err(format!(
            "no N-EVENT-REPORT-RSP within {} s",
            timeout.as_secs()
        ))),
    }
}
