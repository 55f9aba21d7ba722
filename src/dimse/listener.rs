//! The DICOM listener: accepts connections, enforces the association limit, negotiates, and
//! runs one task per association until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dicom_ul::Pdu;
use dicom_ul::ServerAssociationOptions;
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJSource,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::access::AePolicy;
use super::c_find::FIND_SOP_CLASSES;
use super::negotiation::QrNegotiation;
use super::retrieve::{GET_SOP_CLASSES, MOVE_SOP_CLASSES};
use super::{DimseContext, association};
use crate::dictionary::storage_sop_classes;

/// Connections being turned away at the limit are themselves bounded, so a flood cannot grow
/// tasks without end; beyond this they are simply closed.
const MAX_REJECTING: usize = 16;

/// Accept associations until `shutdown`, then wait (bounded) for running ones to end.
pub async fn serve(listener: TcpListener, ctx: DimseContext, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(ctx.config.dicom.max_associations));
    let rejecting = Arc::new(Semaphore::new(MAX_REJECTING));
    let mut backoff = Duration::from_millis(100);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (socket, peer) = match accepted {
            Ok(conn) => {
                backoff = Duration::from_millis(100);
                conn
            }
            Err(e) => {
                // E.g. EMFILE: wait and retry rather than spin or give up.
                tracing::error!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = socket.set_nodelay(true) {
            tracing::warn!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ctx.clone();
                tracker.spawn(async move {
                    handle(socket, peer, ctx).await;
                    drop(permit);
                });
            }
            Err(_) => match rejecting.clone().try_acquire_owned() {
                Ok(permit) => {
                    let artim = ctx.config.artim_timeout();
                    let max_pdu = ctx.config.dicom.max_pdu;
                    tracker.spawn(async move {
                        reject_busy(socket, peer, artim, max_pdu).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tracing::warn!(%peer, "association limit reached and too many rejections pending; connection closed")
                }
            },
        }
    }
    tracker.close();
    let running = tracker.len();
    if running > 0 {
        tracing::info!(running, "waiting for running associations to finish");
    }
    if tokio::time::timeout(ctx.config.shutdown_grace(), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_running = tracker.len(),
            "shutdown grace period over; abandoning associations (unacknowledged objects are discarded)"
        );
    }
}

async fn handle(socket: TcpStream, peer: SocketAddr, ctx: DimseContext) {
    let config = &ctx.config;
    let policy = AePolicy {
        check_called_aet: config.dicom.check_called_aet,
        allowed_calling: ctx.allowed_calling.clone(),
        // IPv4 peers on an IPv6 socket arrive as ::ffff:a.b.c.d; compare them as IPv4.
        peer_ip: peer.ip().to_canonical(),
    };
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(super::audit_hooks::AuditedAccess::new(
            policy, &ctx.audit, peer,
        ))
        .ae_title(config.dicom.aet.as_str())
        .max_pdu_length(config.dicom.max_pdu)
        .strict(true)
        .promiscuous(config.dicom.accept_unknown_storage)
        .with_negotiation(QrNegotiation)
        .with_abstract_syntax(dicom_dictionary_std::uids::VERIFICATION)
        .with_abstract_syntax(super::stgcmt::SOP_CLASS);
    for qr in FIND_SOP_CLASSES
        .into_iter()
        .chain(MOVE_SOP_CLASSES)
        .chain(GET_SOP_CLASSES)
    {
        options = options.with_abstract_syntax(qr);
    }
    for class in storage_sop_classes() {
        options = options.with_abstract_syntax(class.uid);
    }
    let assoc = match tokio::time::timeout(config.artim_timeout(), options.establish_async(socket))
        .await
    {
        Err(_) => {
            tracing::warn!(%peer, "no A-ASSOCIATE-RQ within the ARTIM timeout; connection closed");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "association not established");
            return;
        }
        Ok(Ok(assoc)) => assoc,
    };
    association::run(assoc, ctx, peer).await;
}

/// Above the association limit: read the request and answer A-ASSOCIATE-RJ, rejected-transient,
/// local limit exceeded (PS3.8 9.3.4), so the peer retries later.
async fn reject_busy(mut socket: TcpStream, peer: SocketAddr, artim: Duration, max_pdu: u32) {
    let read_request = async {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            if let Some(pdu) =
                dicom_ul::read_pdu(&mut std::io::Cursor::new(&buf[..]), max_pdu, true)?
            {
                return Ok::<Pdu, Box<dyn std::error::Error + Send + Sync>>(pdu);
            }
            if socket.read_buf(&mut buf).await? == 0 {
                return Err("connection closed".into());
            }
        }
    };
    match tokio::time::timeout(artim, read_request).await {
        Ok(Ok(Pdu::AssociationRQ(rq))) => {
            let rj = Pdu::AssociationRJ(AssociationRJ {
                result: AssociationRJResult::Transient,
                source: AssociationRJSource::ServiceProviderPresentation(
                    AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
                ),
            });
            let mut out = Vec::new();
            if dicom_ul::write_pdu(&mut out, &rj).is_ok() {
                // Bounded like every write: a peer that does not read cannot keep this task.
                let _ = tokio::time::timeout(artim, async {
                    socket.write_all(&out).await?;
                    socket.shutdown().await
                })
                .await;
            }
            tracing::warn!(%peer, calling_aet = %rq.calling_ae_title.trim(), "association limit reached; rejected (transient)");
        }
        Ok(Ok(other)) => {
            tracing::warn!(%peer, pdu = %other.short_description(), "unexpected PDU instead of A-ASSOCIATE-RQ")
        }
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "bad association request while at the limit")
        }
        Err(_) => tracing::warn!(%peer, "no A-ASSOCIATE-RQ within the ARTIM timeout"),
    }
}
