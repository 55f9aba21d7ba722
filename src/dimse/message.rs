//! DIMSE command sets (PS3.7 §9.3, §E): decoding requests and encoding responses. Commands are
//! always Implicit VR Little Endian; the Command Group Length is computed on encode.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

use super::status::Status;

/// Command Field values (PS3.7 E.1-1) this layer recognises.
pub mod command_field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
    pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
    pub const N_EVENT_REPORT_RSP: u16 = 0x8100;
    pub const N_ACTION_RQ: u16 = 0x0130;
    /// A response's Command Field is the request's with this bit set.
    pub const RESPONSE_BIT: u16 = 0x8000;
}

/// (0000,0800) value meaning "no data set follows".
pub const NO_DATASET: u16 = 0x0101;
/// (0000,0800) value we send when a data set follows (any value but 0x0101 means that).
pub const DATASET_PRESENT: u16 = 0x0000;

/// The largest command set we accept; real ones are a few hundred bytes.
pub const MAX_COMMAND_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("command set cannot be decoded: {0}")]
    Decode(String),
    #[error("command set lacks {0}")]
    Missing(&'static str),
    #[error("command set cannot be encoded: {0}")]
    Encode(String),
}

/// A decoded request command set.
#[derive(Debug, Clone)]
pub struct Command {
    pub command_field: u16,
    pub message_id: u16,
    pub affected_sop_class_uid: String,
    pub affected_sop_instance_uid: String,
    pub has_dataset: bool,
    pub move_originator_aet: String,
    /// (0000,0600) Move Destination of a C-MOVE-RQ.
    pub move_destination: String,
    /// (0000,0900) Status, in a response (e.g. the C-STORE-RSP of a sub-operation).
    pub status: Option<u16>,
    /// (0000,0700) Priority of a request (0 medium, 1 high, 2 low).
    pub priority: u16,
    /// (0000,0003) and (0000,1001): the object an N-ACTION (or N-GET, N-SET…) acts on.
    pub requested_sop_class_uid: String,
    pub requested_sop_instance_uid: String,
    /// (0000,1008) Action Type ID of an N-ACTION.
    pub action_type_id: Option<u16>,
}

fn string(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).trim_start().to_string())
        .unwrap_or_default()
}

impl Command {
    /// Decode a command set; its element structure is walked first (`max_sequence_depth`), so
    /// hostile nesting or lengths never reach dicom-object's recursive parser.
    pub fn decode(bytes: &[u8], max_sequence_depth: usize) -> Result<Command, MessageError> {
        crate::archive::check_dataset_bytes(
            bytes,
            IMPLICIT_VR_LITTLE_ENDIAN.uid(),
            max_sequence_depth,
        )
        .map_err(MessageError::Decode)?;
        let obj =
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .map_err(|e| MessageError::Decode(e.to_string()))?;
        let us = |tag: Tag| obj.get(tag).and_then(|e| e.to_int::<u16>().ok());
        let command_field =
            us(tags::COMMAND_FIELD).ok_or(MessageError::Missing("Command Field (0000,0100)"))?;
        // C-CANCEL carries Message ID Being Responded To instead of Message ID.
        let message_id = us(tags::MESSAGE_ID)
            .or_else(|| us(tags::MESSAGE_ID_BEING_RESPONDED_TO))
            .ok_or(MessageError::Missing("Message ID (0000,0110)"))?;
        let dataset_type = us(tags::COMMAND_DATA_SET_TYPE)
            .ok_or(MessageError::Missing("Command Data Set Type (0000,0800)"))?;
        Ok(Command {
            command_field,
            message_id,
            affected_sop_class_uid: string(&obj, tags::AFFECTED_SOP_CLASS_UID),
            affected_sop_instance_uid: string(&obj, tags::AFFECTED_SOP_INSTANCE_UID),
            has_dataset: dataset_type != NO_DATASET,
            move_originator_aet: string(&obj, tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE),
            move_destination: string(&obj, tags::MOVE_DESTINATION),
            status: us(tags::STATUS),
            priority: us(tags::PRIORITY).unwrap_or(0),
            requested_sop_class_uid: string(&obj, tags::REQUESTED_SOP_CLASS_UID),
            requested_sop_instance_uid: string(&obj, tags::REQUESTED_SOP_INSTANCE_UID),
            action_type_id: us(tags::ACTION_TYPE_ID),
        })
    }
}

/// A response command set (no data set follows: C-ECHO, C-STORE, failures).
#[derive(Debug, Clone)]
pub struct Response {
    pub command_field: u16,
    pub message_id_being_responded_to: u16,
    pub affected_sop_class_uid: String,
    pub affected_sop_instance_uid: Option<String>,
    pub status: Status,
    pub error_comment: Option<String>,
    /// A data set (identifier) follows this response (C-FIND pending).
    pub has_dataset: bool,
    /// Sub-operation counts of C-MOVE/C-GET responses.
    pub sub_operations: Option<SubOperationCounts>,
    /// (0000,1008) Action Type ID of an N-ACTION-RSP.
    pub action_type_id: Option<u16>,
}

/// (0000,1020)-(0000,1023): Number of Remaining/Completed/Failed/Warning Sub-operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubOperationCounts {
    /// `None` in a final response, where Remaining is not sent.
    pub remaining: Option<u16>,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// A C-STORE-RQ we send as a sub-operation of C-MOVE/C-GET (PS3.7 9.3.1.1).
#[derive(Debug, Clone)]
pub struct StoreRequest<'a> {
    pub message_id: u16,
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub priority: u16,
    /// Move Originator AE Title and Message ID, for C-MOVE sub-operations.
    pub move_originator: Option<(&'a str, u16)>,
}

impl StoreRequest<'_> {
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        let mut elements = vec![
            DataElement::new(
                tags::AFFECTED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(padded(self.sop_class_uid, '\0')),
            ),
            DataElement::new(
                tags::COMMAND_FIELD,
                VR::US,
                PrimitiveValue::from(command_field::C_STORE_RQ),
            ),
            DataElement::new(
                tags::MESSAGE_ID,
                VR::US,
                PrimitiveValue::from(self.message_id),
            ),
            DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(self.priority)),
            DataElement::new(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                PrimitiveValue::from(DATASET_PRESENT),
            ),
            DataElement::new(
                tags::AFFECTED_SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(padded(self.sop_instance_uid, '\0')),
            ),
        ];
        if let Some((aet, message_id)) = self.move_originator {
            elements.push(DataElement::new(
                tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
                VR::AE,
                PrimitiveValue::from(padded(aet, ' ')),
            ));
            elements.push(DataElement::new(
                tags::MOVE_ORIGINATOR_MESSAGE_ID,
                VR::US,
                PrimitiveValue::from(message_id),
            ));
        }
        encode_command(elements)
    }
}

/// An N-EVENT-REPORT-RQ we send (PS3.7 10.3.1.1), a data set follows.
#[derive(Debug, Clone)]
pub struct EventReportRequest<'a> {
    pub message_id: u16,
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub event_type_id: u16,
}

impl EventReportRequest<'_> {
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        encode_command(vec![
            DataElement::new(
                tags::AFFECTED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(padded(self.sop_class_uid, '\0')),
            ),
            DataElement::new(
                tags::COMMAND_FIELD,
                VR::US,
                PrimitiveValue::from(command_field::N_EVENT_REPORT_RQ),
            ),
            DataElement::new(
                tags::MESSAGE_ID,
                VR::US,
                PrimitiveValue::from(self.message_id),
            ),
            DataElement::new(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                PrimitiveValue::from(DATASET_PRESENT),
            ),
            DataElement::new(
                tags::AFFECTED_SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(padded(self.sop_instance_uid, '\0')),
            ),
            DataElement::new(
                tags::EVENT_TYPE_ID,
                VR::US,
                PrimitiveValue::from(self.event_type_id),
            ),
        ])
    }
}

fn encode_command(elements: Vec<DataElement<InMemDicomObject>>) -> Result<Vec<u8>, MessageError> {
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::with_capacity(256);
    obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| MessageError::Encode(e.to_string()))?;
    Ok(out)
}

/// PS3.5: UI values are padded to even length with NUL, text values with a space.
fn padded(value: &str, pad: char) -> String {
    let mut s = value.to_string();
    if s.len() % 2 == 1 {
        s.push(pad);
    }
    s
}

impl Response {
    pub fn for_request(command: &Command, status: Status) -> Response {
        Response {
            command_field: command.command_field | command_field::RESPONSE_BIT,
            message_id_being_responded_to: command.message_id,
            affected_sop_class_uid: command.affected_sop_class_uid.clone(),
            affected_sop_instance_uid: (!command.affected_sop_instance_uid.is_empty())
                .then(|| command.affected_sop_instance_uid.clone()),
            status,
            error_comment: None,
            has_dataset: false,
            sub_operations: None,
            action_type_id: None,
        }
    }

    pub fn with_counts(mut self, counts: SubOperationCounts) -> Response {
        self.sub_operations = Some(counts);
        self
    }

    /// A pending response followed by an identifier.
    pub fn with_dataset(mut self) -> Response {
        self.has_dataset = true;
        self
    }

    pub fn with_comment(mut self, comment: impl Into<String>) -> Response {
        self.error_comment = Some(comment.into());
        self
    }

    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        let mut elements = vec![];
        if !self.affected_sop_class_uid.is_empty() {
            elements.push(DataElement::new(
                tags::AFFECTED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(padded(&self.affected_sop_class_uid, '\0')),
            ));
        }
        elements.push(DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(self.command_field),
        ));
        elements.push(DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(self.message_id_being_responded_to),
        ));
        let dataset_type = if self.has_dataset {
            DATASET_PRESENT
        } else {
            NO_DATASET
        };
        elements.push(DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(dataset_type),
        ));
        elements.push(DataElement::new(
            tags::STATUS,
            VR::US,
            PrimitiveValue::from(self.status.0),
        ));
        if let Some(comment) = &self.error_comment {
            // Error Comment is LO: at most 64 characters of the default repertoire.
            let ascii: String = comment
                .chars()
                .map(|c| {
                    if c.is_ascii() && !c.is_ascii_control() && c != '\\' {
                        c
                    } else {
                        '?'
                    }
                })
                .take(64)
                .collect();
            elements.push(DataElement::new(
                tags::ERROR_COMMENT,
                VR::LO,
                PrimitiveValue::from(padded(&ascii, ' ')),
            ));
        }
        if let Some(uid) = &self.affected_sop_instance_uid {
            elements.push(DataElement::new(
                tags::AFFECTED_SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(padded(uid, '\0')),
            ));
        }
        if let Some(action) = self.action_type_id {
            elements.push(DataElement::new(
                tags::ACTION_TYPE_ID,
                VR::US,
                PrimitiveValue::from(action),
            ));
        }
        if let Some(counts) = self.sub_operations {
            let mut push = |tag, value: u16| {
                elements.push(DataElement::new(tag, VR::US, PrimitiveValue::from(value)))
            };
            if let Some(remaining) = counts.remaining {
                push(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, remaining);
            }
            push(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, counts.completed);
            push(tags::NUMBER_OF_FAILED_SUBOPERATIONS, counts.failed);
            push(tags::NUMBER_OF_WARNING_SUBOPERATIONS, counts.warning);
        }
        encode_command(elements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_bytes(field: u16, with_dataset: bool) -> Vec<u8> {
        let elements = vec![
            DataElement::new(
                tags::AFFECTED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from("1.2.840.10008.1.1\0"),
            ),
            DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(field)),
            DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(7u16)),
            DataElement::new(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                PrimitiveValue::from(if with_dataset { 0x0000u16 } else { NO_DATASET }),
            ),
        ];
        let obj = InMemDicomObject::command_from_element_iter(elements);
        let mut out = vec![];
        obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        out
    }

    #[test]
    fn decodes_echo_request() {
        let cmd = Command::decode(&request_bytes(command_field::C_ECHO_RQ, false), 64).unwrap();
        assert_eq!(cmd.command_field, command_field::C_ECHO_RQ);
        assert_eq!(cmd.message_id, 7);
        assert_eq!(cmd.affected_sop_class_uid, "1.2.840.10008.1.1");
        assert!(!cmd.has_dataset);
    }

    #[test]
    fn response_round_trips_with_group_length() {
        let cmd = Command::decode(&request_bytes(command_field::C_ECHO_RQ, false), 64).unwrap();
        let rsp = Response::for_request(&cmd, Status(0xA700)).with_comment("disk full: ünïcode\\x");
        let bytes = rsp.encode().unwrap();
        let obj =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        let group_length = obj
            .get(tags::COMMAND_GROUP_LENGTH)
            .unwrap()
            .to_int::<u32>()
            .unwrap();
        assert_eq!(group_length as usize, bytes.len() - 12);
        assert_eq!(
            obj.get(tags::COMMAND_FIELD)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            0x8030
        );
        assert_eq!(
            obj.get(tags::MESSAGE_ID_BEING_RESPONDED_TO)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            7
        );
        assert_eq!(
            obj.get(tags::STATUS).unwrap().to_int::<u16>().unwrap(),
            0xA700
        );
        let comment = obj.get(tags::ERROR_COMMENT).unwrap().to_str().unwrap();
        assert!(
            comment.is_ascii() && comment.starts_with("disk full"),
            "{comment}"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Command::decode(&[1, 2, 3], 64).is_err());
        assert!(Command::decode(&[0xff; 40], 64).is_err());
    }
}
