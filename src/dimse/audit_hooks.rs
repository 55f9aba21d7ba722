//! The DIMSE side of the audit trail: what the listener and each service report, gathered
//! here so each of them carries a single call. The messages themselves are
//! [`crate::audit`]'s business; this file only translates associations, commands and
//! sub-operation progress into its terms.

use std::net::SocketAddr;
use std::sync::Arc;

use super::DimseContext;
use super::association::Context;
use super::message::{Command, Response};
use super::retrieve::Progress;
use super::status::Category;
use crate::archive::Archive;
use crate::audit::{Actor, Audit, Outcome, Received};

/// One association's side of the audit trail: the peer, and the instances it stored
/// (reported per study when the association and the last look-up are done).
///
/// The index look-ups an audit message needs run in tasks of their own: they never delay a
/// response or the next request.
#[derive(Debug)]
pub(crate) struct AssociationAudit {
    audit: Audit,
    received: Arc<Received>,
}

fn outcome_of(response: &Response) -> Outcome {
    match response.status.category() {
        Category::Success | Category::Pending => Outcome::Success,
        Category::Warning | Category::Cancel => Outcome::MinorFailure,
        Category::Failure => Outcome::SeriousFailure,
    }
}

impl AssociationAudit {
    pub(crate) fn new(ctx: &DimseContext, calling_aet: &str, peer: SocketAddr) -> AssociationAudit {
        let requestor = Actor::node(calling_aet, peer.ip().to_canonical());
        AssociationAudit {
            audit: ctx.audit.clone(),
            received: Arc::new(Received::new(&ctx.audit, requestor)),
        }
    }

    fn requestor(&self) -> &Actor {
        self.received.source()
    }

    /// After a C-STORE: a stored instance is counted in with its study.
    pub(crate) fn stored(&self, archive: &Archive, command: &Command, response: &Response) {
        if !self.audit.is_enabled() || outcome_of(response) == Outcome::SeriousFailure {
            return;
        }
        let uid = command.affected_sop_instance_uid.clone();
        let archive = archive.clone();
        let received = self.received.clone();
        tokio::spawn(async move {
            for study in archive.audit_studies_of_instances(vec![uid]).await {
                received.record(study);
            }
        });
    }

    /// After a C-FIND's final response: the query, its identifier as received.
    pub(crate) fn queried(
        &self,
        context: &Context,
        command: &Command,
        identifier: &[u8],
        response: &Response,
    ) {
        self.audit.query(
            self.requestor(),
            &command.affected_sop_class_uid,
            identifier,
            ("TransferSyntax", &context.transfer_syntax),
            outcome_of(response),
        );
    }

    /// After a C-MOVE's sub-operations: the instances sent to the Move Destination, at the
    /// request of the calling AE.
    pub(crate) fn moved(&self, ctx: &DimseContext, command: &Command, progress: &Progress) {
        if !self.audit.is_enabled() {
            return;
        }
        let aet = command.move_destination.trim();
        let host = ctx
            .config
            .remote_ae(aet)
            .map_or_else(String::new, |r| r.host.clone());
        let destination = Actor {
            host: (!host.is_empty()).then_some(host),
            ..Actor::node(aet, "")
        };
        self.sent(
            &ctx.archive,
            destination,
            Some(self.requestor().clone()),
            progress,
        );
    }

    /// After a C-GET's sub-operations: the instances sent back to the requestor.
    pub(crate) fn got(&self, archive: &Archive, progress: &Progress) {
        if !self.audit.is_enabled() {
            return;
        }
        self.sent(archive, self.requestor().clone(), None, progress);
    }

    fn sent(
        &self,
        archive: &Archive,
        destination: Actor,
        requestor: Option<Actor>,
        progress: &Progress,
    ) {
        let (audit, archive) = (self.audit.clone(), archive.clone());
        let uids = progress.sent_uids.clone();
        let outcome = retrieve_outcome(progress);
        tokio::spawn(async move {
            let studies = archive.audit_studies_of_instances(uids).await;
            audit.instances_sent(&destination, requestor.as_ref(), &studies, outcome);
        });
    }
}

fn retrieve_outcome(progress: &Progress) -> Outcome {
    if progress.failed == 0 && progress.remaining() == 0 {
        Outcome::Success
    } else {
        Outcome::MinorFailure
    }
}
