//! Storage Commitment Push Model SCP (PS3.4 Annex J): the N-ACTION-RQ that asks
//! ([`n_action`]), the report that answers later ([`report`]: on the requester's association
//! while it is open, else on a new one with SCP/SCU role selection), and the worker that sends
//! reports when the archive has decided them ([`reporter`]). What "committed" means is the
//! archive's business (`archive::commitment`).

pub(crate) mod n_action;
pub(crate) mod report;
mod report_scu;
pub(crate) mod reporter;

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use crate::index::CommitmentRecord;

/// The Storage Commitment Push Model SOP Class and its well-known instance.
pub const SOP_CLASS: &str = dicom_dictionary_std::uids::STORAGE_COMMITMENT_PUSH_MODEL;
pub const SOP_INSTANCE: &str = dicom_dictionary_std::uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE;

/// A report to send on an association that is still open; `done` says whether the requester
/// answered it with success.
pub(crate) struct ReportJob {
    pub(crate) record: CommitmentRecord,
    pub(crate) done: oneshot::Sender<Result<(), String>>,
}

/// Reports waiting on an association: at most a few (each waits for its delivery anyway).
const ROUTE_QUEUE: usize = 4;

/// Which open association asked for which transaction, so its report can go back on it
/// (PS3.4 J.3.3: the SCP may send it on the same association while the SCU keeps it open).
#[derive(Debug, Default)]
pub(crate) struct ReportRoutes {
    inner: Mutex<Routes>,
}

#[derive(Debug, Default)]
struct Routes {
    next_id: u64,
    associations: HashMap<u64, mpsc::Sender<ReportJob>>,
    transactions: HashMap<String, u64>,
}

impl ReportRoutes {
    /// An association that may carry reports: its id and where its jobs arrive.
    pub(crate) fn register(&self) -> (u64, mpsc::Receiver<ReportJob>) {
        let (tx, rx) = mpsc::channel(ROUTE_QUEUE);
        let mut routes = self.lock();
        routes.next_id += 1;
        let id = routes.next_id;
        routes.associations.insert(id, tx);
        (id, rx)
    }

    /// The association ended: its transactions' reports go on new associations.
    pub(crate) fn unregister(&self, id: u64) {
        let mut routes = self.lock();
        routes.associations.remove(&id);
        routes.transactions.retain(|_, a| *a != id);
    }

    pub(crate) fn remember(&self, transaction_uid: &str, id: u64) {
        self.lock()
            .transactions
            .insert(transaction_uid.to_string(), id);
    }

    /// The open association that asked for `transaction_uid`, if any.
    pub(crate) fn route(&self, transaction_uid: &str) -> Option<mpsc::Sender<ReportJob>> {
        let routes = self.lock();
        let id = routes.transactions.get(transaction_uid)?;
        routes.associations.get(id).cloned()
    }

    pub(crate) fn forget(&self, transaction_uid: &str) {
        self.lock().transactions.remove(transaction_uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // The map stays consistent whatever a panicking holder did: every update is one insert
        // or remove.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
