//! What C-MOVE and C-GET share (PS3.4 C.4.2, C.4.3): their SOP classes, the identifier check,
//! sub-operation bookkeeping and the final status.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::association::{Context, Peer, QueryRequest, ServerSession};
use super::message::{Command, Response, SubOperationCounts};
use super::session::Exit;
use super::status::Status;
use super::store_scu::StoreOutcome;
use crate::archive::RetrieveItem;
use crate::query::identifier::{self as query_identifier, ParseOptions};
use crate::query::{Condition, Level, Model, Query};

/// C-MOVE/C-GET statuses (PS3.4 C.4.2.1.5, C.4.3.1.4).
pub const PENDING: Status = Status(0xFF00);
pub const CANCELLED: Status = Status(0xFE00);
/// Sub-operations complete, one or more failures or warnings.
pub const COMPLETED_WITH_FAILURES: Status = Status(0xB000);
/// Refused: out of resources, unable to calculate the number of matches.
pub const CANNOT_COUNT_MATCHES: Status = Status(0xA701);
/// Refused: out of resources, unable to perform sub-operations.
pub const CANNOT_PERFORM_SUB_OPERATIONS: Status = Status(0xA702);
/// Refused: Move Destination unknown.
pub const MOVE_DESTINATION_UNKNOWN: Status = Status(0xA801);
/// Identifier does not match SOP Class.
pub const IDENTIFIER_MISMATCH: Status = Status(0xA900);
/// Unable to process.
pub const UNABLE_TO_PROCESS: Status = Status(0xC000);

pub const MOVE_SOP_CLASSES: [&str; 2] = [
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
];

pub const GET_SOP_CLASSES: [&str; 2] = [
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
];

pub fn move_model_of(sop_class: &str) -> Option<Model> {
    match sop_class {
        uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE => Some(Model::PatientRoot),
        uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE => Some(Model::StudyRoot),
        _ => None,
    }
}

pub fn get_model_of(sop_class: &str) -> Option<Model> {
    match sop_class {
        uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET => Some(Model::PatientRoot),
        uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET => Some(Model::StudyRoot),
        _ => None,
    }
}

/// The unique key of a level (PS3.4 C.6.1.1 / C.6.2.1).
fn unique_key(level: Level) -> (Tag, &'static str) {
    match level {
        Level::Patient => (tags::PATIENT_ID, "PatientID"),
        Level::Study => (tags::STUDY_INSTANCE_UID, "StudyInstanceUID"),
        Level::Series => (tags::SERIES_INSTANCE_UID, "SeriesInstanceUID"),
        Level::Image => (tags::SOP_INSTANCE_UID, "SOPInstanceUID"),
    }
}

/// The identifier of a C-MOVE/C-GET as a query of the shared engine. Besides the C-FIND rules,
/// the unique key of the retrieve level must be given (C.4.2.2.1): a retrieve never means
/// "everything".
pub fn parse_identifier(
    identifier: &InMemDicomObject,
    model: Model,
    options: ParseOptions,
) -> Result<Query, (Status, String)> {
    let query = query_identifier::parse(identifier, model, options)
        .map_err(|e| (super::c_find::status_for(&e), e.to_string()))?;
    let (tag, keyword) = unique_key(query.level);
    let level = query.level.as_str();
    match query.condition(tag) {
        None => Err((
            IDENTIFIER_MISMATCH,
            format!("{keyword} is required for a {level} level retrieve"),
        )),
        Some(Condition::Single(_) | Condition::UidList(_)) => Ok(query),
        Some(Condition::AnyOf(values))
            if values.iter().all(|v| matches!(v, Condition::Single(_))) =>
        {
            Ok(query)
        }
        Some(_) => Err((
            IDENTIFIER_MISMATCH,
            format!("{keyword} must be exact values in a retrieve (no wildcard or range)"),
        )),
    }
}

/// The instances a C-MOVE/C-GET selects, or `None` once the refusal has been answered.
pub(crate) async fn selected(
    session: &mut ServerSession,
    peer: &Peer,
    rq: &QueryRequest,
) -> Result<Option<(Vec<RetrieveItem>, Query)>, Exit> {
    match items_to_retrieve(peer, &rq.context, &rq.command, rq.model, &rq.identifier).await {
        Ok(found) => Ok(Some(found)),
        Err(response) => session
            .respond(rq.context_id, &response)
            .await
            .map(|()| None),
    }
}

/// What C-MOVE and C-GET check first: SOP class, identifier (through the shared query engine),
/// then the instances it selects. `Err` is the response that ends the request.
async fn items_to_retrieve(
    peer: &Peer,
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
    let config = &peer.ctx.config;
    let identifier = super::c_find::checked_identifier(
        identifier_bytes,
        &context.transfer_syntax,
        config.dicom.max_sequence_depth,
    )
    .map_err(|msg| fail(UNABLE_TO_PROCESS, msg))?;
    let options = ParseOptions {
        case_insensitive_names: config.query.case_insensitive_names,
        combined_datetime: false,
        fuzzy_names: false,
    };
    let query =
        parse_identifier(&identifier, model, options).map_err(|(status, msg)| fail(status, msg))?;
    let items = peer
        .ctx
        .archive
        .instances_to_retrieve(query.clone())
        .await
        .map_err(|e| fail(CANNOT_COUNT_MATCHES, e.to_string()))?;
    Ok((items, query))
}

/// The last response of a C-MOVE/C-GET: counts, and the Failed SOP Instance UID List.
pub(crate) async fn respond_final(
    session: &mut ServerSession,
    context: (u8, &Context),
    command: &Command,
    progress: &Progress,
    cancelled: bool,
    reason: Option<String>,
) -> Result<(), Exit> {
    let (context_id, context) = context;
    let (status, counts) = if cancelled && progress.remaining() > 0 {
        (CANCELLED, progress.pending_counts())
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
    if status == CANNOT_PERFORM_SUB_OPERATIONS
        && let Some(reason) = reason.or_else(|| progress.first_failure.clone())
    {
        response = response.with_comment(reason);
    }
    let identifier = progress
        .failed_list()
        .map(|obj| super::c_find::encode_identifier(obj, &context.transfer_syntax, ""))
        .transpose()
        .unwrap_or_else(|msg| {
            tracing::warn!(reason = %msg, "cannot encode the Failed SOP Instance UID List");
            None
        });
    match identifier {
        Some(bytes) => session.respond_with(context_id, response, &bytes).await,
        None => session.respond(context_id, &response).await,
    }
}

/// Sub-operation bookkeeping of one C-MOVE/C-GET.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub total: usize,
    pub completed: usize,
    pub failed: usize,
    pub warning: usize,
    pub failed_uids: Vec<String>,
    /// Instances the destination took (completed or with a warning), for the audit trail.
    pub sent_uids: Vec<String>,
    /// Why the first failed sub-operation failed (the ErrorComment of 0xA702).
    pub first_failure: Option<String>,
}

fn clamp(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            total,
            ..Progress::default()
        }
    }

    pub fn done(&self) -> usize {
        self.completed + self.failed + self.warning
    }

    pub fn remaining(&self) -> usize {
        self.total.saturating_sub(self.done())
    }

    pub fn record(&mut self, sop_instance_uid: &str, outcome: &StoreOutcome) {
        match outcome {
            StoreOutcome::Completed => {
                self.completed += 1;
                self.sent_uids.push(sop_instance_uid.to_string());
            }
            StoreOutcome::Warning(_) => {
                self.warning += 1;
                self.sent_uids.push(sop_instance_uid.to_string());
            }
            StoreOutcome::Failed(reason) => {
                self.failed += 1;
                self.failed_uids.push(sop_instance_uid.to_string());
                if self.first_failure.is_none() {
                    self.first_failure = Some(reason.clone());
                }
            }
        }
    }

    /// Counts for a pending (or cancel) response, with Remaining.
    pub fn pending_counts(&self) -> SubOperationCounts {
        SubOperationCounts {
            remaining: Some(clamp(self.remaining())),
            completed: clamp(self.completed),
            failed: clamp(self.failed),
            warning: clamp(self.warning),
        }
    }

    /// Counts for a final response (no Remaining).
    pub fn final_counts(&self) -> SubOperationCounts {
        SubOperationCounts {
            remaining: None,
            ..self.pending_counts()
        }
    }

    /// The final status once every sub-operation ran (or could not run).
    pub fn final_status(&self) -> Status {
        if self.failed == 0 && self.warning == 0 {
            Status::SUCCESS
        } else if self.completed == 0 && self.warning == 0 {
            CANNOT_PERFORM_SUB_OPERATIONS
        } else {
            COMPLETED_WITH_FAILURES
        }
    }

    /// The response identifier: the Failed SOP Instance UID List, when there is one.
    pub fn failed_list(&self) -> Option<InMemDicomObject> {
        if self.failed_uids.is_empty() {
            return None;
        }
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::FAILED_SOP_INSTANCE_UID_LIST,
            VR::UI,
            PrimitiveValue::Strs(self.failed_uids.iter().cloned().collect()),
        ));
        Some(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identifier(level: &str, keys: &[(Tag, VR, &str)]) -> InMemDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(level),
        ));
        for (tag, vr, value) in keys {
            obj.put(DataElement::new(*tag, *vr, PrimitiveValue::from(*value)));
        }
        obj
    }

    fn parse(obj: &InMemDicomObject, model: Model) -> Result<Query, (Status, String)> {
        let options = ParseOptions {
            case_insensitive_names: true,
            combined_datetime: false,
            fuzzy_names: false,
        };
        parse_identifier(obj, model, options)
    }

    #[test]
    fn the_unique_key_of_the_level_must_be_exact() {
        let study = |v| identifier("STUDY", &[(tags::STUDY_INSTANCE_UID, VR::UI, v)]);
        assert!(parse(&study("1.2.3"), Model::StudyRoot).is_ok());
        assert!(parse(&study("1.2.3\\1.2.4"), Model::StudyRoot).is_ok());
        let missing = parse(&study(""), Model::StudyRoot).unwrap_err();
        assert_eq!(missing.0, IDENTIFIER_MISMATCH);
        assert!(missing.1.contains("StudyInstanceUID"), "{}", missing.1);
        assert_eq!(
            parse(&study("*"), Model::StudyRoot).unwrap_err().0,
            IDENTIFIER_MISMATCH
        );
        let patient = |v| identifier("PATIENT", &[(tags::PATIENT_ID, VR::LO, v)]);
        assert!(parse(&patient("PID1"), Model::PatientRoot).is_ok());
        assert!(parse(&patient("PID1\\PID2"), Model::PatientRoot).is_ok());
        assert_eq!(
            parse(&patient("PID*"), Model::PatientRoot).unwrap_err().0,
            IDENTIFIER_MISMATCH
        );
        let no_level = InMemDicomObject::new_empty();
        assert!(parse(&no_level, Model::StudyRoot).is_err());
    }

    #[test]
    fn final_status_follows_the_counts() {
        let mut p = Progress::new(3);
        assert_eq!(p.remaining(), 3);
        p.record("1", &StoreOutcome::Completed);
        p.record("2", &StoreOutcome::Completed);
        p.record("3", &StoreOutcome::Completed);
        assert_eq!(p.final_status(), Status::SUCCESS);
        assert!(p.failed_list().is_none());

        let mut p = Progress::new(2);
        p.record("1", &StoreOutcome::Completed);
        p.record("2", &StoreOutcome::Failed("x".into()));
        assert_eq!(p.final_status(), COMPLETED_WITH_FAILURES);
        assert_eq!(p.failed_uids, vec!["2".to_string()]);
        assert_eq!(p.pending_counts().remaining, Some(0));

        let mut p = Progress::new(2);
        p.record("1", &StoreOutcome::Failed("x".into()));
        p.record("2", &StoreOutcome::Failed("x".into()));
        assert_eq!(p.final_status(), CANNOT_PERFORM_SUB_OPERATIONS);

        let mut p = Progress::new(1);
        p.record("1", &StoreOutcome::Warning(Status(0xB007)));
        assert_eq!(p.final_status(), COMPLETED_WITH_FAILURES);
        assert_eq!(Progress::new(0).final_status(), Status::SUCCESS);
    }
}
