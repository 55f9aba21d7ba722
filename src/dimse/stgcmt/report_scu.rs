//! A report on a new association (PS3.4 J.3.3: the requester released the one it asked on).
//! We open it to the requester's `[[remote_ae]]` entry and, being the SCP of the SOP class that
//! now invokes N-EVENT-REPORT, propose SCP/SCU role selection with the SCP role for us.

use std::time::Duration;

use dicom_dictionary_std::uids;
use dicom_ul::pdu::{PDataValueType, PresentationContextResultReason};

use super::super::DimseContext;
use super::super::assembler::Assembler;
use super::super::message::{EventReportRequest, command_field};
use super::super::session::{Event, Session};
use super::super::status::{Category, Status};
use super::super::store_scu;
use super::{SOP_CLASS, SOP_INSTANCE, report};
use crate::index::CommitmentRecord;

pub(crate) async fn deliver(ctx: &DimseContext, record: &CommitmentRecord) -> Result<(), String> {
    let config = &ctx.config;
    let remote = config
        .remote_ae
        .iter()
        .find(|r| r.aet.trim() == record.requester_aet.trim())
        .ok_or_else(|| {
            format!(
                "no [[remote_ae]] entry for {:?}: the report cannot go on a new association",
                record.requester_aet
            )
        })?;
    let timeout = Duration::from_secs(config.commitment.timeout_secs);
    let options = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title(config.dicom.aet.clone())
        .called_ae_title(remote.aet.trim().to_string())
        .max_pdu_length(config.dicom.max_pdu)
        .connection_timeout(timeout)
        .with_presentation_context(
            SOP_CLASS,
            vec![
                uids::EXPLICIT_VR_LITTLE_ENDIAN,
                uids::IMPLICIT_VR_LITTLE_ENDIAN,
            ],
        )
        .with_role_selection(SOP_CLASS, false, true);
    let (link, negotiated) =
        store_scu::establish(options, remote, ctx.tls.as_ref(), timeout).await?;
    let mut session = Session::new(
        link,
        Assembler::new(std::iter::empty(), config.dicom.max_sequence_depth),
        config.write_timeout(),
    );
    let Some((context_id, ts)) = negotiated
        .iter()
        .find(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && pc.abstract_syntax.trim_end_matches('\0') == SOP_CLASS
        })
        .map(|pc| (pc.id, pc.transfer_syntax.trim_end_matches('\0').to_string()))
    else {
        session.abort().await;
        return Err(format!(
            "{} accepted no Storage Commitment presentation context",
            remote.aet
        ));
    };
    session.set_assembler(Assembler::new(
        [context_id],
        config.dicom.max_sequence_depth,
    ));
    let result = send_and_confirm(
        &mut session,
        context_id,
        &ts,
        record,
        &config.dicom.aet,
        timeout,
    )
    .await;
    match &result {
        Ok(()) => session.release(timeout).await,
        Err(_) => session.abort().await,
    }
    result
}

async fn send_and_confirm(
    session: &mut Session,
    context_id: u8,
    ts: &str,
    record: &CommitmentRecord,
    our_aet: &str,
    timeout: Duration,
) -> Result<(), String> {
    let (event_type, dataset) = report::encode(record, ts, our_aet)?;
    let message_id = 1;
    let command = EventReportRequest {
        message_id,
        sop_class_uid: SOP_CLASS,
        sop_instance_uid: SOP_INSTANCE,
        event_type_id: event_type,
    }
    .encode()
    .map_err(|e| e.to_string())?;
    let describe = |e| format!("{e:?}");
    session
        .send(context_id, PDataValueType::Command, &command, true)
        .await
        .map_err(describe)?;
    session
        .send(context_id, PDataValueType::Data, &dataset, true)
        .await
        .map_err(describe)?;
    loop {
        match session.next_event(Some(timeout)).await.map_err(describe)? {
            Event::Command { command, .. }
                if command.command_field == command_field::N_EVENT_REPORT_RSP
                    && command.message_id == message_id =>
            {
                let status = Status(command.status.unwrap_or(0xFFFF));
                return match status.category() {
                    Category::Success | Category::Warning => Ok(()),
                    _ => Err(format!(
                        "the requester answered the report with status {status}"
                    )),
                };
            }
            Event::Data { .. } => {}
            other => {
                return Err(format!(
                    "unexpected {other:?} instead of N-EVENT-REPORT-RSP"
                ));
            }
        }
    }
}
