//! The DICOM network layer on dicom-ul: listener, association loop, DIMSE message codec and one
//! file per service. It talks to the archive only (never to the index or storage).

pub mod access;
mod assembler;
mod association;
mod audit_hooks;
mod c_echo;
mod c_find;
mod c_get;
mod c_move;
mod c_store;
mod listener;
pub mod message;
mod negotiation;
mod pdata;
mod retrieve;
mod session;
pub mod status;
pub(crate) mod stgcmt;
mod store_scu;
mod waiting;

pub(crate) use c_find::checked_identifier;
pub use listener::{Transport, serve};
pub use stgcmt::reporter::run as run_commitment_reporter;

use std::sync::Arc;

use crate::archive::Archive;
use crate::config::Config;
use crate::tls::DicomTls;

/// What every association shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DimseContext {
    pub archive: Archive,
    pub config: Arc<Config>,
    /// Who may associate and use which service (`access.rs`).
    access: Arc<access::AccessPolicy>,
    /// Certificates and TLS configurations, when `[dicom.tls]` or a `tls = true` remote AE
    /// needs them (read once at start-up).
    tls: Option<DicomTls>,
    /// Outgoing associations for C-MOVE sub-operations (retrieve.max_outgoing_associations).
    outgoing: Arc<tokio::sync::Semaphore>,
    /// Open associations that may carry Storage Commitment reports.
    pub(crate) reports: Arc<stgcmt::ReportRoutes>,
    /// The audit trail (IHE ATNA); disabled unless `[audit]` is on.
    pub audit: crate::audit::Audit,
}

impl DimseContext {
    pub fn new(archive: Archive, config: Arc<Config>, tls: Option<DicomTls>) -> DimseContext {
        let access = Arc::new(access::AccessPolicy::new(&config));
        let outgoing = Arc::new(tokio::sync::Semaphore::new(
            config.retrieve.max_outgoing_associations,
        ));
        DimseContext {
            archive,
            config,
            access,
            tls,
            outgoing,
            reports: Arc::default(),
            audit: crate::audit::Audit::disabled(),
        }
    }

    /// Report to this audit trail.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> DimseContext {
        self.audit = audit;
        self
    }
}
