//! P-DATA values → whole DIMSE messages (PS3.8 §9.3.5, PS3.7 §6.3.1): the one place where command
//! fragments are gathered and decoded, and where the order of command and data fragments is
//! enforced. Pure: no I/O, so unit tests drive every split and every violation. Data sets are not
//! gathered here — their fragments pass through in order, so a C-STORE streams to its spool.

use std::collections::HashSet;

use dicom_ul::pdu::{PDataValue, PDataValueType};

use super::message::{Command, MAX_COMMAND_SIZE};

/// What a P-DATA value completes.
#[derive(Debug)]
pub(crate) enum Assembled {
    /// A whole command set; a data set follows when `command.has_dataset`.
    Command { context_id: u8, command: Command },
    /// A fragment of the data set announced by the last command, on its context.
    Data { data: Vec<u8>, last: bool },
}

/// A protocol violation: the association must be aborted (PS3.8 §9.1.5 / PS3.7 §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation(pub String);

#[derive(Debug)]
enum Expect {
    /// Command fragments of a new message, on the context of its first fragment.
    Command {
        context_id: Option<u8>,
        buf: Vec<u8>,
    },
    /// Data-set fragments on this context, until the last one.
    Data { context_id: u8 },
}

#[derive(Debug)]
pub(crate) struct Assembler {
    accepted: HashSet<u8>,
    max_sequence_depth: usize,
    expect: Expect,
}

impl Assembler {
    /// `accepted`: the presentation context IDs of the association.
    pub(crate) fn new(accepted: impl IntoIterator<Item = u8>, max_sequence_depth: usize) -> Self {
        Assembler {
            accepted: accepted.into_iter().collect(),
            max_sequence_depth,
            expect: Expect::Command {
                context_id: None,
                buf: Vec::new(),
            },
        }
    }

    /// Between messages (nothing partly received).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(
            &self.expect,
            Expect::Command {
                context_id: None,
                ..
            }
        )
    }

    pub(crate) fn push(&mut self, pdv: PDataValue) -> Result<Option<Assembled>, Violation> {
        let context_id = pdv.presentation_context_id;
        if !self.accepted.contains(&context_id) {
            return Err(Violation(format!(
                "PDV on presentation context {context_id}, which was not accepted"
            )));
        }
        match (&mut self.expect, pdv.value_type) {
            (
                Expect::Command {
                    context_id: cid,
                    buf,
                },
                PDataValueType::Command,
            ) => {
                if cid.is_some_and(|c| c != context_id) {
                    return Err(Violation(
                        "command fragments on different presentation contexts".into(),
                    ));
                }
                *cid = Some(context_id);
                if buf.len() + pdv.data.len() > MAX_COMMAND_SIZE {
                    return Err(Violation(format!(
                        "command set larger than {MAX_COMMAND_SIZE} bytes"
                    )));
                }
                buf.extend_from_slice(&pdv.data);
                if !pdv.is_last {
                    return Ok(None);
                }
                let bytes = std::mem::take(buf);
                let command = Command::decode(&bytes, self.max_sequence_depth)
                    .map_err(|e| Violation(e.to_string()))?;
                self.expect = if command.has_dataset {
                    Expect::Data { context_id }
                } else {
                    Expect::Command {
                        context_id: None,
                        buf: Vec::new(),
                    }
                };
                Ok(Some(Assembled::Command {
                    context_id,
                    command,
                }))
            }
            (Expect::Data { context_id: cid }, PDataValueType::Data) => {
                if *cid != context_id {
                    return Err(Violation(
                        "data set fragment on another presentation context".into(),
                    ));
                }
                if pdv.is_last {
                    self.expect = Expect::Command {
                        context_id: None,
                        buf: Vec::new(),
                    };
                }
                Ok(Some(Assembled::Data {
                    data: pdv.data,
                    last: pdv.is_last,
                }))
            }
            (Expect::Command { .. }, PDataValueType::Data) => {
                Err(Violation("data set fragment without a command".into()))
            }
            (Expect::Data { .. }, PDataValueType::Command) => Err(Violation(
                "command fragment while a data set was expected".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimse::message::{Response, command_field};
    use crate::dimse::status::Status;

    fn pdv(context_id: u8, command: bool, last: bool, data: &[u8]) -> PDataValue {
        PDataValue {
            presentation_context_id: context_id,
            value_type: if command {
                PDataValueType::Command
            } else {
                PDataValueType::Data
            },
            is_last: last,
            data: data.to_vec(),
        }
    }

    /// A C-ECHO-RSP is a well-formed command set without data set; good enough as input.
    fn command_bytes(has_dataset: bool) -> Vec<u8> {
        let rq = Command {
            command_field: command_field::C_ECHO_RQ,
            message_id: 7,
            affected_sop_class_uid: "1.2.840.10008.1.1".into(),
            affected_sop_instance_uid: String::new(),
            has_dataset,
            move_originator_aet: String::new(),
            move_destination: String::new(),
            status: None,
            priority: 0,
            requested_sop_class_uid: String::new(),
            requested_sop_instance_uid: String::new(),
            action_type_id: None,
        };
        let mut rsp = Response::for_request(&rq, Status::SUCCESS);
        if has_dataset {
            rsp = rsp.with_dataset();
        }
        rsp.encode().unwrap()
    }

    #[test]
    fn commands_in_any_split_then_data_passes_through() {
        let bytes = command_bytes(true);
        for chunk in 1..=bytes.len() {
            let mut a = Assembler::new([1, 3], 64);
            let pieces: Vec<_> = bytes.chunks(chunk).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let out = a.push(pdv(3, true, i + 1 == pieces.len(), piece)).unwrap();
                assert_eq!(out.is_some(), i + 1 == pieces.len());
                if let Some(Assembled::Command {
                    context_id,
                    command,
                }) = out
                {
                    assert_eq!((context_id, command.message_id), (3, 7));
                }
            }
            assert!(!a.is_idle());
            assert!(matches!(
                a.push(pdv(3, false, false, b"ab")).unwrap(),
                Some(Assembled::Data { last: false, .. })
            ));
            assert!(matches!(
                a.push(pdv(3, false, true, b"cd")).unwrap(),
                Some(Assembled::Data { last: true, .. })
            ));
            assert!(a.is_idle());
        }
    }

    #[test]
    fn violations() {
        let no_data = command_bytes(false);
        let with_data = command_bytes(true);
        let cases: Vec<(Vec<PDataValue>, &str)> = vec![
            (vec![pdv(5, true, true, &no_data)], "not accepted"),
            (vec![pdv(1, false, true, b"xx")], "without a command"),
            (
                vec![
                    pdv(1, true, false, &no_data[..4]),
                    pdv(3, true, true, &no_data[4..]),
                ],
                "different presentation contexts",
            ),
            (
                vec![pdv(1, true, true, &with_data), pdv(3, false, true, b"xx")],
                "another presentation context",
            ),
            (
                vec![pdv(1, true, true, &with_data), pdv(1, true, true, &no_data)],
                "while a data set was expected",
            ),
            (
                vec![pdv(1, true, true, &vec![0u8; MAX_COMMAND_SIZE + 2])],
                "larger than",
            ),
            (
                vec![pdv(1, true, true, b"\x00\x00\x00")],
                "cannot be decoded",
            ),
        ];
        for (pdvs, expected) in cases {
            let mut a = Assembler::new([1, 3], 64);
            let err = pdvs
                .into_iter()
                .map(|p| a.push(p))
                .find_map(Result::err)
                .expect("a violation");
            assert!(err.0.contains(expected), "{err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn nested_command_sets_are_refused_before_parsing() {
        // (0000,0100) US then a private-group-0 sequence nested 3,000 deep (48 KB, under the command size limit)
        let mut bytes = command_bytes(false);
        let mut bomb = Vec::new();
        for _ in 0..3_000 {
            bomb.extend_from_slice(&[0x00, 0x00, 0x01, 0x09]); // (0000,0901) undefined length
            bomb.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
            bomb.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            bomb.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        }
        bytes.extend(bomb);
        let mut a = Assembler::new([1], 64);
        let err = a.push(pdv(1, true, true, &bytes)).unwrap_err();
        assert!(err.0.contains("nested deeper"), "{err:?}");
    }
}
