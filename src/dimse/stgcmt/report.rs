//! The N-EVENT-REPORT of a decided transaction (PS3.4 J.3.3.1): event type 1 when every
//! instance is committed, 2 when some failed; the data set lists them in the Referenced SOP
//! Sequence and the Failed SOP Sequence (with each Failure Reason).

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::index::{CommitmentRecord, ItemOutcome};

pub const EVENT_ALL_COMMITTED: u16 = 1;
pub const EVENT_FAILURES_EXIST: u16 = 2;

fn ui(tag: dicom_core::Tag, value: &str) -> DataElement<InMemDicomObject> {
    let mut v = value.to_string();
    if v.len() % 2 == 1 {
        v.push('\0');
    }
    DataElement::new(tag, VR::UI, PrimitiveValue::from(v))
}

/// The event type and the data set, in transfer syntax `ts_uid`. `retrieve_aet` is named as
/// where the committed instances can be retrieved from.
pub fn encode(
    record: &CommitmentRecord,
    ts_uid: &str,
    retrieve_aet: &str,
) -> Result<(u16, Vec<u8>), String> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    let mut committed = Vec::new();
    let mut failed = Vec::new();
    for item in &record.items {
        let mut elements = vec![
            ui(tags::REFERENCED_SOP_CLASS_UID, &item.sop_class_uid),
            ui(tags::REFERENCED_SOP_INSTANCE_UID, &item.sop_instance_uid),
        ];
        match item.outcome {
            ItemOutcome::Committed => committed.push(InMemDicomObject::from_element_iter(elements)),
            ItemOutcome::Failed(reason) => {
                elements.push(DataElement::new(
                    tags::FAILURE_REASON,
                    VR::US,
                    PrimitiveValue::from(reason),
                ));
                failed.push(InMemDicomObject::from_element_iter(elements));
            }
            // Only decided transactions are reported; one still waiting is a failure by now.
            ItemOutcome::Waiting => {
                elements.push(DataElement::new(
                    tags::FAILURE_REASON,
                    VR::US,
                    PrimitiveValue::from(crate::archive::failure_reason::PROCESSING_FAILURE),
                ));
                failed.push(InMemDicomObject::from_element_iter(elements));
            }
        }
    }
    let event_type = if failed.is_empty() {
        EVENT_ALL_COMMITTED
    } else {
        EVENT_FAILURES_EXIST
    };
    let mut obj = InMemDicomObject::new_empty();
    obj.put(ui(tags::TRANSACTION_UID, &record.transaction_uid));
    if !committed.is_empty() {
        let mut aet = retrieve_aet.to_string();
        if aet.len() % 2 == 1 {
            aet.push(' ');
        }
        obj.put(DataElement::new(
            tags::RETRIEVE_AE_TITLE,
            VR::AE,
            PrimitiveValue::from(aet),
        ));
        obj.put(DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(committed),
        ));
    }
    if !failed.is_empty() {
        obj.put(DataElement::new(
            tags::FAILED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(failed),
        ));
    }
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| format!("cannot encode the commitment report: {e}"))?;
    Ok((event_type, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::CommitmentItem;
    use dicom_dictionary_std::uids;

    fn record(outcomes: &[ItemOutcome]) -> CommitmentRecord {
        CommitmentRecord {
            transaction_uid: "1.2.3.4".into(),
            requester_aet: "MOD".into(),
            received_at_ms: 0,
            deadline_ms: 0,
            items: outcomes
                .iter()
                .enumerate()
                .map(|(i, o)| CommitmentItem {
                    sop_class_uid: uids::CT_IMAGE_STORAGE.into(),
                    sop_instance_uid: format!("1.2.3.4.{i}"),
                    outcome: *o,
                })
                .collect(),
            decided: true,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: String::new(),
        }
    }

    fn decode(bytes: &[u8]) -> InMemDicomObject {
        InMemDicomObject::read_dataset_with_ts(
            bytes,
            TransferSyntaxRegistry
                .get(uids::IMPLICIT_VR_LITTLE_ENDIAN)
                .expect("ts"),
        )
        .expect("decodes")
    }

    #[test]
    fn all_committed_is_event_1_without_failed_sequence() {
        let (event, bytes) = encode(
            &record(&[ItemOutcome::Committed, ItemOutcome::Committed]),
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            "MIFAS",
        )
        .expect("encodes");
        assert_eq!(event, EVENT_ALL_COMMITTED);
        let obj = decode(&bytes);
        let refs = obj
            .get(tags::REFERENCED_SOP_SEQUENCE)
            .and_then(|e| e.items())
            .expect("referenced");
        assert_eq!(refs.len(), 2);
        assert!(obj.get(tags::FAILED_SOP_SEQUENCE).is_none());
        assert_eq!(
            obj.get(tags::TRANSACTION_UID)
                .and_then(|e| e.to_str().ok())
                .as_deref(),
            Some("1.2.3.4")
        );
    }

    #[test]
    fn failures_are_event_2_with_reasons() {
        let (event, bytes) = encode(
            &record(&[
                ItemOutcome::Committed,
                ItemOutcome::Failed(0x0112),
                ItemOutcome::Waiting,
            ]),
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            "MIFAS",
        )
        .expect("encodes");
        assert_eq!(event, EVENT_FAILURES_EXIST);
        let obj = decode(&bytes);
        let failed = obj
            .get(tags::FAILED_SOP_SEQUENCE)
            .and_then(|e| e.items())
            .expect("failed");
        let reasons: Vec<u16> = failed
            .iter()
            .map(|i| {
                i.get(tags::FAILURE_REASON)
                    .and_then(|e| e.to_int::<u16>().ok())
                    .unwrap_or(0)
            })
            .collect();
        assert_eq!(reasons, vec![0x0112, 0x0110]);
        assert_eq!(
            obj.get(tags::REFERENCED_SOP_SEQUENCE)
                .and_then(|e| e.items())
                .map(|i| i.len()),
            Some(1)
        );
    }
}
