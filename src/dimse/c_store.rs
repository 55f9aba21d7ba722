//! C-STORE SCP (PS3.4 Annex B). The data set streams into an archive spool as it arrives; the
//! response is sent only when the archive has made the object durable and indexed.

use crate::archive::{Archive, CharsetNotice, IngestError, IngestOutcome, IngestRequest, Spool};

use super::association::{Context, Peer, ServerSession};
use super::message::{Command, Response};
use super::session::{Event, Exit};
use super::status::{Status, for_ingest_error};

/// One C-STORE: its data set streamed into a spool as it arrives, then the response.
pub(crate) async fn handle(
    session: &mut ServerSession,
    peer: &Peer,
    context_id: u8,
    context: &Context,
    command: Command,
) -> Result<(), Exit> {
    let archive = &peer.ctx.archive;
    let idle = peer.ctx.config.idle_timeout();
    let mut sink = begin(
        archive,
        &command,
        &context.abstract_syntax,
        &context.transfer_syntax,
        &peer.calling_aet,
        &peer.charset_notice,
    )
    .await;
    loop {
        match session.next_event(Some(idle)).await? {
            Event::Data { data, last, .. } => {
                sink.write(&data).await;
                if last {
                    break;
                }
            }
            // A-RELEASE-RQ before the data set ended: the partial object is dropped with
            // its spool file, and the association loop answers the release.
            other => {
                session.requeue(other);
                return Ok(());
            }
        }
    }
    let response = finish(archive, &command, sink).await;
    peer.audit.stored(archive, &command, &response);
    session.respond(context_id, &response).await
}

/// Where the data set of a C-STORE goes while it arrives.
#[derive(Debug)]
pub enum StoreSink {
    Spool(Box<Spool>),
    /// The request was refused before any data arrived; data is read and dropped, then this
    /// status is answered.
    Refused(Status, String),
}

/// Called when the command is complete, before its data set.
pub async fn begin(
    archive: &Archive,
    command: &Command,
    context_abstract_syntax: &str,
    transfer_syntax: &str,
    calling_aet: &str,
    charset_notice: &CharsetNotice,
) -> StoreSink {
    if command.affected_sop_class_uid != context_abstract_syntax {
        return StoreSink::Refused(
            Status::SOP_CLASS_NOT_SUPPORTED,
            format!(
                "SOP class {} differs from the presentation context's {}",
                command.affected_sop_class_uid, context_abstract_syntax
            ),
        );
    }
    let request = IngestRequest {
        sop_class_uid: command.affected_sop_class_uid.clone(),
        sop_instance_uid: command.affected_sop_instance_uid.clone(),
        transfer_syntax: transfer_syntax.to_string(),
        source_aet: calling_aet.to_string(),
        charset_notice: charset_notice.clone(),
    };
    match archive.begin(request).await {
        Ok(spool) => StoreSink::Spool(Box::new(spool)),
        Err(err) => StoreSink::Refused(for_ingest_error(&err), err.to_string()),
    }
}

impl StoreSink {
    pub async fn write(&mut self, data: &[u8]) {
        if let StoreSink::Spool(spool) = self {
            spool.write(data).await;
        }
    }
}

/// The data set is complete: store it and build the response.
pub async fn finish(archive: &Archive, command: &Command, sink: StoreSink) -> Response {
    let uid = command.affected_sop_instance_uid.as_str();
    match sink {
        StoreSink::Refused(status, comment) => {
            tracing::warn!(sop_instance_uid = %uid, %status, reason = %comment, "C-STORE refused");
            Response::for_request(command, status).with_comment(comment)
        }
        StoreSink::Spool(spool) => match archive.commit(*spool).await {
            Ok(outcome) => {
                match outcome {
                    IngestOutcome::Stored => tracing::debug!(sop_instance_uid = %uid, "stored"),
                    IngestOutcome::Replaced => {
                        tracing::info!(sop_instance_uid = %uid, "stored, replacing the earlier copy")
                    }
                    IngestOutcome::DuplicateIgnored => {}
                }
                Response::for_request(command, Status::SUCCESS)
            }
            Err(err) => failure(command, &err),
        },
    }
}

fn failure(command: &Command, err: &IngestError) -> Response {
    let status = for_ingest_error(err);
    let uid = command.affected_sop_instance_uid.as_str();
    if status == Status::PROCESSING_FAILURE || status == Status::OUT_OF_RESOURCES {
        tracing::error!(sop_instance_uid = %uid, %status, error = %err, "C-STORE failed");
    } else {
        tracing::warn!(sop_instance_uid = %uid, %status, error = %err, "C-STORE refused");
    }
    Response::for_request(command, status).with_comment(err.to_string())
}
