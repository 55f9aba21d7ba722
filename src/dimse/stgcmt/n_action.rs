//! N-ACTION-RQ "Request Storage Commitment" (action type 1): checked, stored durably by the
//! archive, answered at once; the outcome follows later as an N-EVENT-REPORT.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::super::association::{Context, Peer, ServerSession};
use super::super::message::{Command, Response};
use super::super::session::Exit;
use super::super::status::Status;
use super::{SOP_CLASS, SOP_INSTANCE};
use crate::archive::CommitmentRequest;

/// N-ACTION-RSP failure statuses (PS3.7 C.4, PS3.4 J.3.2.1.1.1) beyond Success and
/// Processing failure.
pub const NO_SUCH_SOP_INSTANCE: Status = Status(0x0112);
pub const INVALID_ARGUMENT_VALUE: Status = Status(0x0115);
pub const NO_SUCH_SOP_CLASS: Status = Status(0x0118);
pub const MISSING_ATTRIBUTE: Status = Status(0x0120);
pub const NO_SUCH_ACTION_TYPE: Status = Status(0x0123);
pub const RESOURCE_LIMITATION: Status = Status(0x0213);

/// Action Type ID of "Request Storage Commitment".
const REQUEST_COMMITMENT: u16 = 1;
/// A request data set larger than this is refused (≈ 100,000 references).
pub(crate) const MAX_REQUEST_SIZE: usize = 16 << 20;
/// References in one request at most.
const MAX_ITEMS: usize = 100_000;

/// Why a request is refused, with the N-ACTION status that says so.
struct Refusal(Status, String);

pub(crate) async fn handle(
    session: &mut ServerSession,
    peer: &mut Peer,
    context_id: u8,
    context: &Context,
    command: Command,
) -> Result<(), Exit> {
    let idle = peer.ctx.config.idle_timeout();
    let dataset = if command.has_dataset {
        Some(read_bounded(session, idle).await?)
    } else {
        None
    };
    let request = match check(
        &command,
        context,
        dataset,
        &peer.calling_aet,
        peer.ctx.config.dicom.max_sequence_depth,
    ) {
        Ok(request) => request,
        Err(Refusal(status, why)) => {
            tracing::warn!(%status, reason = %why, "storage commitment request refused");
            return session
                .respond(context_id, &response(&command, status).with_comment(why))
                .await;
        }
    };
    let transaction_uid = request.transaction_uid.clone();
    let items = request.items.len();
    if let Err(e) = peer.ctx.archive.request_commitment(request).await {
        tracing::error!(error = %e, %transaction_uid, "cannot keep the storage commitment request");
        return session
            .respond(
                context_id,
                &response(&command, Status::PROCESSING_FAILURE)
                    .with_comment(format!("request not stored: {e}")),
            )
            .await;
    }
    if let Some((id, _)) = &peer.report_route {
        peer.ctx.reports.remember(&transaction_uid, *id);
    }
    tracing::info!(%transaction_uid, instances = items, "storage commitment accepted");
    let mut rsp = response(&command, Status::SUCCESS);
    rsp.action_type_id = Some(REQUEST_COMMITMENT);
    session.respond(context_id, &rsp).await
}

/// N-ACTION-RSP: Affected SOP Class/Instance are the request's Requested ones.
fn response(command: &Command, status: Status) -> Response {
    let mut rsp = Response::for_request(command, status);
    rsp.affected_sop_class_uid = SOP_CLASS.to_string();
    rsp.affected_sop_instance_uid = Some(SOP_INSTANCE.to_string());
    rsp
}

/// The request data set, refusing (by aborting) one larger than [`MAX_REQUEST_SIZE`].
async fn read_bounded(
    session: &mut ServerSession,
    idle: std::time::Duration,
) -> Result<Vec<u8>, Exit> {
    session
        .read_dataset(idle, MAX_REQUEST_SIZE)
        .await
        .map_err(|e| match e {
            Exit::Abort(why) => Exit::Abort(format!("storage commitment request: {why}")),
            other => other,
        })
}

fn check(
    command: &Command,
    context: &Context,
    dataset: Option<Vec<u8>>,
    calling_aet: &str,
    max_depth: usize,
) -> Result<CommitmentRequest, Refusal> {
    if context.abstract_syntax != SOP_CLASS || command.requested_sop_class_uid != SOP_CLASS {
        return Err(Refusal(
            NO_SUCH_SOP_CLASS,
            format!(
                "N-ACTION is supported for Storage Commitment Push Model only, not {:?}",
                command.requested_sop_class_uid
            ),
        ));
    }
    if command.requested_sop_instance_uid != SOP_INSTANCE {
        return Err(Refusal(
            NO_SUCH_SOP_INSTANCE,
            format!("Requested SOP Instance UID must be {SOP_INSTANCE}"),
        ));
    }
    match command.action_type_id {
        Some(REQUEST_COMMITMENT) => {}
        Some(other) => {
            return Err(Refusal(
                NO_SUCH_ACTION_TYPE,
                format!("action type {other} (only 1, Request Storage Commitment)"),
            ));
        }
        None => {
            return Err(Refusal(
                MISSING_ATTRIBUTE,
                "Action Type ID (0000,1008) missing".into(),
            ));
        }
    }
    let Some(bytes) = dataset else {
        return Err(Refusal(
            MISSING_ATTRIBUTE,
            "no data set (Transaction UID, Referenced SOP Sequence)".into(),
        ));
    };
    let invalid = |why: String| Refusal(INVALID_ARGUMENT_VALUE, why);
    crate::archive::check_dataset_bytes(&bytes, &context.transfer_syntax, max_depth)
        .map_err(|e| invalid(format!("data set cannot be decoded: {e}")))?;
    let obj = super::super::c_find::decode_identifier(&bytes, &context.transfer_syntax)
        .map_err(invalid)?;
    let text = |obj: &InMemDicomObject, tag| {
        obj.get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string())
            .unwrap_or_default()
    };
    let transaction_uid = text(&obj, tags::TRANSACTION_UID);
    if transaction_uid.is_empty() {
        return Err(Refusal(
            MISSING_ATTRIBUTE,
            "Transaction UID (0008,1195) missing".into(),
        ));
    }
    if crate::uid::validate(&transaction_uid).is_err() {
        return Err(invalid(format!(
            "Transaction UID {transaction_uid:?} is not a UID"
        )));
    }
    let Some(refs) = obj
        .get(tags::REFERENCED_SOP_SEQUENCE)
        .and_then(|e| e.items())
    else {
        return Err(Refusal(
            MISSING_ATTRIBUTE,
            "Referenced SOP Sequence (0008,1199) missing".into(),
        ));
    };
    if refs.is_empty() {
        return Err(invalid("Referenced SOP Sequence is empty".into()));
    }
    if refs.len() > MAX_ITEMS {
        return Err(Refusal(
            RESOURCE_LIMITATION,
            format!("{} references; at most {MAX_ITEMS} per request", refs.len()),
        ));
    }
    let mut items = Vec::with_capacity(refs.len());
    for (i, item) in refs.iter().enumerate() {
        let class = text(item, tags::REFERENCED_SOP_CLASS_UID);
        let instance = text(item, tags::REFERENCED_SOP_INSTANCE_UID);
        if crate::uid::validate(&class).is_err() || crate::uid::validate(&instance).is_err() {
            return Err(invalid(format!(
                "item {} of Referenced SOP Sequence: missing or invalid UIDs",
                i + 1
            )));
        }
        items.push((class, instance));
    }
    Ok(CommitmentRequest {
        transaction_uid,
        requester_aet: calling_aet.to_string(),
        items,
    })
}
