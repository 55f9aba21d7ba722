//! One association: P-DATA assembly into DIMSE messages, dispatch to the services, responses.
//! Commands may span several PDVs and PDUs; data sets are streamed to their service as they
//! arrive, never buffered whole. Every exit path releases or aborts.

use std::collections::HashMap;
use std::net::SocketAddr;

use dicom_ul::Pdu;
use dicom_ul::association::Association as _;
use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::c_store::StoreSink;
use super::message::{Command, MAX_COMMAND_SIZE, Response, command_field};
use super::status::Status;
use super::{DimseContext, c_echo, c_store};

/// An accepted presentation context.
#[derive(Debug, Clone)]
struct Context {
    abstract_syntax: String,
    transfer_syntax: String,
}

/// What the association expects next.
enum State {
    /// Command PDVs of a new message.
    Command {
        context_id: Option<u8>,
        buf: Vec<u8>,
    },
    /// The data set of a C-STORE.
    StoreData {
        context_id: u8,
        command: Command,
        sink: StoreSink,
    },
    /// The data set of a request we do not support; dropped, then refused.
    DiscardData { context_id: u8, command: Command },
}

/// Why the association must end now.
enum Exit {
    /// A protocol violation or network error: abort.
    Abort(String),
}

struct Association {
    assoc: AsyncServerAssociation<TcpStream>,
    ctx: DimseContext,
    contexts: HashMap<u8, Context>,
    state: State,
    calling_aet: String,
}

pub(crate) async fn run(
    assoc: AsyncServerAssociation<TcpStream>,
    ctx: DimseContext,
    peer: SocketAddr,
) {
    let calling_aet = assoc.peer_ae_title().trim().to_string();
    let span = tracing::info_span!(
        "association",
        calling_aet = %calling_aet,
        called_aet = %assoc.called_ae_title().trim(),
        peer = %peer
    );
    async move {
        let contexts: HashMap<u8, Context> = assoc
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| {
                (
                    pc.id,
                    Context {
                        abstract_syntax: pc.abstract_syntax.trim_end_matches('\0').to_string(),
                        transfer_syntax: pc.transfer_syntax.trim_end_matches('\0').to_string(),
                    },
                )
            })
            .collect();
        if contexts.is_empty() {
            tracing::warn!("no acceptable presentation context; aborting");
            let _ = assoc.abort().await;
            return;
        }
        tracing::info!(
            contexts = contexts.len(),
            peer_max_pdu = assoc.requestor_max_pdu_length(),
            "association accepted"
        );
        let association = Association {
            assoc,
            ctx,
            contexts,
            state: State::Command {
                context_id: None,
                buf: Vec::new(),
            },
            calling_aet,
        };
        association.serve().await;
    }
    .instrument(span)
    .await
}

impl Association {
    async fn serve(mut self) {
        let idle = self.ctx.config.idle_timeout();
        loop {
            // Shutdown does not interrupt an association: the listener stops accepting and waits
            // (bounded) for the peer to finish and release.
            let received = tokio::time::timeout(idle, self.assoc.receive()).await;
            let pdu = match received {
                Err(_) => {
                    tracing::warn!(
                        idle_secs = idle.as_secs(),
                        "association idle too long; aborting"
                    );
                    let _ = self.assoc.abort().await;
                    return;
                }
                Ok(Err(e)) => {
                    // Includes the peer closing the socket and PDUs over our maximum length.
                    tracing::warn!(error = %e, "association ended by a network or protocol error");
                    let _ = self.assoc.abort().await;
                    return;
                }
                Ok(Ok(pdu)) => pdu,
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if let Err(Exit::Abort(reason)) = self.on_pdv(pdv).await {
                            tracing::warn!(%reason, "protocol violation; aborting");
                            let _ = self.assoc.abort().await;
                            return;
                        }
                    }
                }
                Pdu::ReleaseRQ => {
                    if !matches!(&self.state, State::Command { buf, .. } if buf.is_empty()) {
                        tracing::warn!(
                            "release requested in the middle of a message; the partial message is dropped"
                        );
                    }
                    let _ = self.assoc.send(&Pdu::ReleaseRP).await;
                    tracing::info!("association released");
                    return;
                }
                Pdu::AbortRQ { source } => {
                    tracing::info!(?source, "association aborted by the peer");
                    return;
                }
                other => {
                    tracing::warn!(pdu = %other.short_description(), "unexpected PDU; aborting");
                    let _ = self.assoc.abort().await;
                    return;
                }
            }
        }
    }

    async fn on_pdv(&mut self, pdv: PDataValue) -> Result<(), Exit> {
        let context_id = pdv.presentation_context_id;
        if !self.contexts.contains_key(&context_id) {
            return Err(Exit::Abort(format!(
                "PDV on presentation context {context_id}, which was not accepted"
            )));
        }
        match (&mut self.state, pdv.value_type) {
            (
                State::Command {
                    context_id: cid,
                    buf,
                },
                PDataValueType::Command,
            ) => {
                if cid.is_some_and(|c| c != context_id) {
                    return Err(Exit::Abort(
                        "command fragments on different presentation contexts".into(),
                    ));
                }
                *cid = Some(context_id);
                if buf.len() + pdv.data.len() > MAX_COMMAND_SIZE {
                    return Err(Exit::Abort(format!(
                        "command set larger than {MAX_COMMAND_SIZE} bytes"
                    )));
                }
                buf.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    let bytes = std::mem::take(buf);
                    self.state = State::Command {
                        context_id: None,
                        buf: Vec::new(),
                    };
                    let command =
                        Command::decode(&bytes).map_err(|e| Exit::Abort(e.to_string()))?;
                    self.on_command(context_id, command).await?;
                }
                Ok(())
            }
            (
                State::StoreData {
                    context_id: cid,
                    sink,
                    ..
                },
                PDataValueType::Data,
            ) => {
                if *cid != context_id {
                    return Err(Exit::Abort(
                        "data set fragment on another presentation context".into(),
                    ));
                }
                sink.write(&pdv.data).await;
                if pdv.is_last {
                    let state = std::mem::replace(
                        &mut self.state,
                        State::Command {
                            context_id: None,
                            buf: Vec::new(),
                        },
                    );
                    if let State::StoreData {
                        context_id,
                        command,
                        sink,
                    } = state
                    {
                        let response = c_store::finish(&self.ctx.archive, &command, sink).await;
                        self.respond(context_id, &response).await?;
                    }
                }
                Ok(())
            }
            (
                State::DiscardData {
                    context_id: cid, ..
                },
                PDataValueType::Data,
            ) => {
                if *cid != context_id {
                    return Err(Exit::Abort(
                        "data set fragment on another presentation context".into(),
                    ));
                }
                if pdv.is_last {
                    let state = std::mem::replace(
                        &mut self.state,
                        State::Command {
                            context_id: None,
                            buf: Vec::new(),
                        },
                    );
                    if let State::DiscardData {
                        context_id,
                        command,
                    } = state
                    {
                        let response = unsupported(&command);
                        self.respond(context_id, &response).await?;
                    }
                }
                Ok(())
            }
            (State::Command { .. }, PDataValueType::Data) => {
                Err(Exit::Abort("data set fragment without a command".into()))
            }
            (_, PDataValueType::Command) => Err(Exit::Abort(
                "command fragment while a data set was expected".into(),
            )),
        }
    }

    async fn on_command(&mut self, context_id: u8, command: Command) -> Result<(), Exit> {
        let Some(context) = self.contexts.get(&context_id).cloned() else {
            return Err(Exit::Abort(format!(
                "unknown presentation context {context_id}"
            )));
        };
        match command.command_field {
            command_field::C_ECHO_RQ if !command.has_dataset => {
                tracing::debug!(message_id = command.message_id, "C-ECHO");
                let response = c_echo::handle(&command);
                self.respond(context_id, &response).await
            }
            command_field::C_STORE_RQ if command.has_dataset => {
                let sink = c_store::begin(
                    &self.ctx.archive,
                    &command,
                    &context.abstract_syntax,
                    &context.transfer_syntax,
                    &self.calling_aet,
                )
                .await;
                self.state = State::StoreData {
                    context_id,
                    command,
                    sink,
                };
                Ok(())
            }
            command_field::C_CANCEL_RQ => {
                // Nothing is in progress that could be cancelled.
                Ok(())
            }
            _ if command.has_dataset => {
                self.state = State::DiscardData {
                    context_id,
                    command,
                };
                Ok(())
            }
            _ => {
                let response = unsupported(&command);
                self.respond(context_id, &response).await
            }
        }
    }

    /// Send a response command set, cut to the peer's maximum PDU size.
    async fn respond(&mut self, context_id: u8, response: &Response) -> Result<(), Exit> {
        let bytes = response.encode().map_err(|e| Exit::Abort(e.to_string()))?;
        // PDU header (6) + PDV item header (6); fragments stay even-length (PS3.8 E.2).
        let max = ((self.assoc.requestor_max_pdu_length() as usize).saturating_sub(12) & !1).max(2);
        let chunks: Vec<&[u8]> = bytes.chunks(max).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let pdu = Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context_id,
                    value_type: PDataValueType::Command,
                    is_last: i == last,
                    data: chunk.to_vec(),
                }],
            };
            self.assoc
                .send(&pdu)
                .await
                .map_err(|e| Exit::Abort(format!("cannot send the response: {e}")))?;
        }
        Ok(())
    }
}

fn unsupported(command: &Command) -> Response {
    tracing::warn!(
        command_field = format!("0x{:04X}", command.command_field),
        "unsupported DIMSE operation"
    );
    Response::for_request(command, Status::UNRECOGNIZED_OPERATION).with_comment(format!(
        "operation 0x{:04X} is not supported",
        command.command_field
    ))
}
