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
use super::association::Negotiated;
use super::c_find::FIND_SOP_CLASSES;
use super::negotiation::QrNegotiation;
use super::retrieve::{GET_SOP_CLASSES, MOVE_SOP_CLASSES};
use super::session::Link;
use super::waiting::{MAX_WAITING, Waiting};
use super::{DimseContext, association};
use crate::dictionary::storage_sop_classes;

/// Connections being turned away at the limit are themselves bounded, so a flood cannot grow
/// tasks without end; beyond this they are simply closed.
const MAX_REJECTING: usize = 16;

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// DICOM upper layer straight on TCP (`dicom.port`).
    Plain,
    /// The TLS handshake first (`[dicom.tls]`, PS3.15 B.9), then the upper layer inside it.
    Tls,
}

/// What the accept loops of all listeners share: one association limit over plain and TLS
/// connections alike, and one task tracker for the shutdown.
#[derive(Clone)]
struct Shared {
    ctx: DimseContext,
    tracker: TaskTracker,
    limit: Arc<Semaphore>,
    rejecting: Arc<Semaphore>,
    /// Connections that have not sent their first byte (they hold no association slot).
    waiting: Arc<Waiting>,
}

/// Accept associations on every listener until `shutdown`, then wait (bounded) for running
/// ones to end.
pub async fn serve(
    listeners: Vec<(TcpListener, Transport)>,
    ctx: DimseContext,
    shutdown: CancellationToken,
) {
    let shared = Shared {
        tracker: TaskTracker::new(),
        limit: Arc::new(Semaphore::new(ctx.config.dicom.max_associations)),
        rejecting: Arc::new(Semaphore::new(MAX_REJECTING)),
        waiting: Arc::new(Waiting::new(MAX_WAITING)),
        ctx,
    };
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(listener, transport)| {
            tokio::spawn(accept_loop(
                listener,
                transport,
                shared.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    for accept in loops {
        let _ = accept.await;
    }
    let Shared { ctx, tracker, .. } = shared;
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

async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    shared: Shared,
    shutdown: CancellationToken,
) {
    let Shared {
        ctx,
        tracker,
        limit,
        rejecting,
        waiting,
    } = shared;
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
        let (ctx, limit, rejecting, waiting, shutdown) = (
            ctx.clone(),
            limit.clone(),
            rejecting.clone(),
            waiting.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            if first_byte(&socket, peer, &ctx, &waiting, &shutdown).await {
                take_slot(socket, peer, transport, ctx, limit, rejecting).await;
            }
        });
    }
}

/// Wait (at most ARTIM, and only while among the [`MAX_WAITING`] newest silent connections)
/// for the connection's first byte: true when it has one.
async fn first_byte(
    socket: &TcpStream,
    peer: SocketAddr,
    ctx: &DimseContext,
    waiting: &Waiting,
    shutdown: &CancellationToken,
) -> bool {
    let ticket = waiting.enter();
    let mut byte = [0u8; 1];
    let artim = ctx.config.artim_timeout();
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = ticket.evicted.cancelled() => {
            tracing::warn!(%peer, max_waiting = MAX_WAITING, "too many connections that sent nothing; closed the one waiting longest");
            false
        }
        peeked = tokio::time::timeout(artim, socket.peek(&mut byte)) => match peeked {
            Ok(Ok(n)) if n > 0 => true,
            Ok(Ok(_)) => false, // closed by the peer before sending anything
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection lost before its first byte");
                false
            }
            Err(_) => {
                tracing::warn!(%peer, "nothing received within the ARTIM timeout; connection closed");
                false
            }
        },
    }
}

/// The association limit applies to connections that speak: run the association, or turn it
/// away (A-ASSOCIATE-RJ transient on a plain connection).
async fn take_slot(
    socket: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    ctx: DimseContext,
    limit: Arc<Semaphore>,
    rejecting: Arc<Semaphore>,
) {
    match limit.try_acquire_owned() {
        Ok(permit) => {
            handle(socket, peer, transport, ctx).await;
            drop(permit);
        }
        // A TLS client would need the handshake before it could read the rejection; at the
        // limit it is not worth that work: close.
        Err(_) if transport == Transport::Tls => {
            tracing::warn!(%peer, "association limit reached; TLS connection closed")
        }
        Err(_) => match rejecting.try_acquire_owned() {
            Ok(permit) => {
                let artim = ctx.config.artim_timeout();
                let max_pdu = ctx.config.dicom.max_pdu;
                reject_busy(socket, peer, artim, max_pdu).await;
                drop(permit);
            }
            Err(_) => {
                tracing::warn!(%peer, "association limit reached and too many rejections pending; connection closed")
            }
        },
    }
}

/// The negotiation options of one connection (its access check knows the peer).
fn options(
    ctx: &DimseContext,
    policy: AePolicy,
) -> ServerAssociationOptions<'static, AePolicy, QrNegotiation> {
    let config = &ctx.config;
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(policy)
        .ae_title(config.dicom.aet.clone())
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
    options
}

/// Negotiate (after the TLS handshake on a TLS listener), all within the ARTIM timeout, then
/// run the association.
async fn handle(socket: TcpStream, peer: SocketAddr, transport: Transport, ctx: DimseContext) {
    let artim = ctx.config.artim_timeout();
    // A second handle on the socket, to wait for the peer to close after a rejection.
    let (socket, after_reject) = match duplicate(socket) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot use the connection");
            return;
        }
    };
    let mut policy = AePolicy {
        policy: ctx.access.clone(),
        peer,
        client_cert: None,
        audit: ctx.audit.clone(),
    };
    let established = match transport {
        Transport::Plain => {
            let options = options(&ctx, policy);
            tokio::time::timeout(artim, options.establish_async(socket))
                .await
                .map(|r| r.map(|a| (Negotiated::of(&a), Link::Server(a))))
        }
        Transport::Tls => {
            let slot = crate::tls::PeerCertSlot::default();
            let server_config = match ctx.tls.as_ref().map(|t| t.server_config(slot.clone())) {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    tracing::error!(%peer, error = %e, "TLS listener without a usable configuration");
                    return;
                }
                None => {
                    tracing::error!(%peer, "TLS listener without [dicom.tls] certificates");
                    return;
                }
            };
            policy.client_cert = Some(slot);
            let options = options(&ctx, policy).tls_config(server_config);
            tokio::time::timeout(artim, options.establish_tls_async(socket))
                .await
                .map(|r| r.map(|a| (Negotiated::of(&a), Link::ServerTls(a))))
        }
    };
    let (negotiated, link) = match established {
        Err(_) => {
            tracing::warn!(%peer, ?transport, "no A-ASSOCIATE-RQ within the ARTIM timeout; connection closed");
            return;
        }
        Ok(Err(e)) => {
            match &e {
                // A refusal like the access check's (no certificate, an untrusted one, no TLS at
                // all, a protocol version or suite outside the profile): reported the same way.
                dicom_ul::association::Error::TlsHandshake { source, .. } => super::access::report(
                    &super::access::RefusalEvent {
                        refusal: &super::access::Refusal::TlsHandshakeFailed(source.to_string()),
                        calling_aet: "",
                        called_aet: "",
                        peer,
                        over_tls: true,
                    },
                    &ctx.audit,
                ),
                _ => tracing::warn!(%peer, ?transport, error = %e, "association not established"),
            }
            linger(after_reject, artim.min(LINGER_MAX)).await;
            return;
        }
        Ok(Ok(established)) => established,
    };
    // The association's own handle closes the connection when it ends.
    drop(after_reject);
    association::run(link, negotiated, ctx, peer).await;
}

/// Longest we wait for a rejected peer to close its end.
const LINGER_MAX: Duration = Duration::from_secs(5);

/// The socket twice (one file descriptor each): dicom-ul consumes one and closes it as soon as
/// it has written an A-ASSOCIATE-RJ, the other keeps the connection open until the peer closes.
fn duplicate(socket: TcpStream) -> std::io::Result<(TcpStream, TcpStream)> {
    let std = socket.into_std()?;
    let copy = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, TcpStream::from_std(copy)?))
}

/// After an A-ASSOCIATE-RJ (or a failed handshake) the requestor closes the connection (PS3.8
/// 9.2, state Sta13): wait for that, bounded, instead of closing first. Closing at once races
/// the rejection: some peers (pynetdicom) then see a dropped connection instead of the RJ.
async fn linger(mut socket: TcpStream, limit: Duration) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(limit, async {
        while let Ok(n) = socket.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
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
                let _ = tokio::time::timeout(artim, socket.write_all(&out)).await;
            }
            tracing::warn!(%peer, calling_aet = %rq.calling_ae_title.trim(), "association limit reached; rejected (transient)");
            // As after any rejection: let the peer close first, or it may see a dropped
            // connection instead of the A-ASSOCIATE-RJ (pynetdicom did, now and then).
            linger(socket, artim.min(LINGER_MAX)).await;
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
