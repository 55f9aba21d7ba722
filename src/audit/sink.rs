//! Where audit messages go: one bounded queue and one worker per destination (collector or
//! local file). Emitting is `try_send`: a full queue drops the message and counts it, so a
//! collector that is down or slow never holds up a DICOM or web request. The workers
//! reconnect with back-off, and every connect and write has a timeout.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use super::AuditError;
use super::syslog::{octet_counted, truncate_utf8};
use super::tls::TlsClient;
use crate::config::audit::{AuditTransport, CollectorConfig};

/// First wait before reconnecting to a collector; doubled per failure up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Per destination counts, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub name: String,
    /// Messages written (TCP/TLS: handed to the connection; UDP: sent; file: written).
    pub sent: AtomicU64,
    /// Messages lost: the queue was full, or (UDP, file) the write failed.
    pub dropped: AtomicU64,
    /// Failed connection attempts and writes (each is retried after a back-off).
    pub failures: AtomicU64,
}

impl SinkCounters {
    fn named(name: &str) -> Arc<SinkCounters> {
        Arc::new(SinkCounters {
            name: name.to_string(),
            ..Default::default()
        })
    }
}

/// The sending side of one destination's queue.
#[derive(Debug, Clone)]
pub struct Sink {
    pub counters: Arc<SinkCounters>,
    tx: mpsc::Sender<Arc<str>>,
}

impl Sink {
    /// Queue `message`, or drop and count it when the queue is full. Never waits.
    pub fn offer(&self, message: Arc<str>) {
        if self.tx.try_send(message).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Timeouts and limits every worker uses.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    pub queue_size: usize,
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    pub reconnect_max: Duration,
    pub udp_max_bytes: usize,
}

/// Resolves once the worker has written what it was given and stopped.
pub type Done = oneshot::Receiver<()>;

/// Start the worker of one collector.
pub fn spawn_collector(
    collector: &CollectorConfig,
    tls: Option<TlsClient>,
    settings: WorkerSettings,
) -> (Sink, Done) {
    let (tx, rx) = mpsc::channel(settings.queue_size);
    let counters = SinkCounters::named(&collector.name);
    let (done_tx, done) = oneshot::channel();
    let target = Target {
        name: collector.name.clone(),
        host: collector.host.clone(),
        port: collector.port,
        tls,
    };
    let worker_counters = counters.clone();
    match collector.transport {
        AuditTransport::Tcp | AuditTransport::Tls => {
            tokio::spawn(async move {
                run_stream(rx, &worker_counters, target, settings).await;
                let _ = done_tx.send(());
            });
        }
        AuditTransport::Udp => {
            tokio::spawn(async move {
                run_udp(rx, &worker_counters, target, settings).await;
                let _ = done_tx.send(());
            });
        }
    }
    (Sink { counters, tx }, done)
}

/// Open (create, append) the local file now — a path that cannot be written is an error at
/// start — and write it from a thread of its own (file writes and fsync block).
pub fn spawn_file(
    path: &Path,
    fsync: bool,
    settings: WorkerSettings,
) -> Result<(Sink, Done), AuditError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| AuditError::File {
            path: path.to_owned(),
            source,
        })?;
    let (tx, rx) = mpsc::channel(settings.queue_size);
    let counters = SinkCounters::named("file");
    let (done_tx, done) = oneshot::channel();
    let worker_counters = counters.clone();
    let display = path.display().to_string();
    std::thread::Builder::new()
        .name("audit-file".into())
        .spawn(move || {
            run_file(rx, file, fsync, &worker_counters, &display);
            let _ = done_tx.send(());
        })
        .map_err(|source| AuditError::File {
            path: path.to_owned(),
            source,
        })?;
    Ok((Sink { counters, tx }, done))
}

/// Append each message as one line; fsync when the queue is drained (a batch), so a burst
/// costs one fsync and a crash loses at most the last batch.
fn run_file(
    mut rx: mpsc::Receiver<Arc<str>>,
    file: std::fs::File,
    fsync: bool,
    counters: &SinkCounters,
    path: &str,
) {
    let mut out = std::io::BufWriter::new(file);
    let mut failing = false;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let n = batch.len() as u64;
        let written = (|| {
            for m in &batch {
                out.write_all(m.as_bytes())?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            if fsync {
                out.get_ref().sync_data()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        match written {
            Ok(()) => {
                counters.sent.fetch_add(n, Ordering::Relaxed);
                failing = false;
            }
            Err(e) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                counters.dropped.fetch_add(n, Ordering::Relaxed);
                if !failing {
                    tracing::error!(file = %path, error = %e, "cannot write the audit file; messages are dropped until it works again");
                    failing = true;
                }
            }
        }
    }
}

/// Where a collector is.
struct Target {
    name: String,
    host: String,
    port: u16,
    tls: Option<TlsClient>,
}

enum Connection {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Tcp(s) => s,
            Connection::Tls(s) => s.get_ref().0,
        }
    }

    /// A collector never sends us anything but a close (FIN, TLS close_notify or alert):
    /// readable means gone. Checked before each write, because a write to a connection the
    /// peer has closed still succeeds once and the message would be lost silently.
    fn closed_by_peer(&self) -> bool {
        let mut buf = [0u8; 64];
        !matches!(self.tcp().try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Connection::Tcp(s) => s.write_all(bytes).await,
            Connection::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn close(self) {
        match self {
            Connection::Tcp(mut s) => {
                let _ = s.shutdown().await;
            }
            Connection::Tls(mut s) => {
                let _ = s.shutdown().await;
            }
        }
    }
}

impl Target {
    async fn connect(&self) -> std::io::Result<Connection> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Connection::Tcp(tcp)),
            Some(tls) => {
                let stream = tls.connector.connect(tls.server_name.clone(), tcp).await?;
                Ok(Connection::Tls(Box::new(stream)))
            }
        }
    }
}

/// TCP or TLS: keep one connection, write each message octet-counted; on failure keep the
/// message, wait (doubling back-off) and reconnect.
async fn run_stream(
    mut rx: mpsc::Receiver<Arc<str>>,
    counters: &SinkCounters,
    target: Target,
    settings: WorkerSettings,
) {
    let mut connection: Option<Connection> = None;
    let mut pending: Option<Arc<str>> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut down = false;
    loop {
        let message = match pending.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => break,
            },
        };
        if connection.as_ref().is_some_and(Connection::closed_by_peer) {
            connection = None;
        }
        let mut failure = None;
        if connection.is_none() {
            match tokio::time::timeout(settings.connect_timeout, target.connect()).await {
                Ok(Ok(c)) => {
                    if down {
                        tracing::info!(collector = %target.name, "audit collector reachable again");
                        down = false;
                    }
                    connection = Some(c);
                }
                Ok(Err(e)) => failure = Some(format!("connect: {e}")),
                Err(_) => failure = Some("connect: timed out".into()),
            }
        }
        if let Some(c) = connection.as_mut() {
            let frame = octet_counted(&message);
            match tokio::time::timeout(settings.write_timeout, c.write_all(&frame)).await {
                Ok(Ok(())) => {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    backoff = FIRST_BACKOFF;
                    continue;
                }
                Ok(Err(e)) => failure = Some(format!("write: {e}")),
                Err(_) => failure = Some("write: timed out".into()),
            }
            connection = None;
        }
        counters.failures.fetch_add(1, Ordering::Relaxed);
        if !down {
            tracing::warn!(
                collector = %target.name,
                host = %target.host,
                port = target.port,
                error = failure.as_deref().unwrap_or("unknown"),
                "audit collector unreachable; retrying with back-off (messages queue, then drop)"
            );
            down = true;
        }
        pending = Some(message);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(settings.reconnect_max);
    }
    if let Some(c) = connection {
        let _ = tokio::time::timeout(settings.write_timeout, c.close()).await;
    }
}

/// UDP: one datagram per message, cut to the configured size; a failed send is a lost
/// message (datagrams are never retried).
async fn run_udp(
    mut rx: mpsc::Receiver<Arc<str>>,
    counters: &SinkCounters,
    target: Target,
    settings: WorkerSettings,
) {
    let mut socket: Option<UdpSocket> = None;
    while let Some(message) = rx.recv().await {
        if socket.is_none() {
            let opened = tokio::time::timeout(settings.connect_timeout, async {
                let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
                    .await?
                    .next()
                    .ok_or_else(|| std::io::Error::other("host name has no address"))?;
                let local: std::net::SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(local).await?;
                s.connect(addr).await?;
                Ok::<UdpSocket, std::io::Error>(s)
            })
            .await;
            match opened {
                Ok(Ok(s)) => socket = Some(s),
                _ => {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(s) = socket.as_ref() else { continue };
        let datagram = truncate_utf8(&message, settings.udp_max_bytes);
        match tokio::time::timeout(settings.write_timeout, s.send(datagram.as_bytes())).await {
            Ok(Ok(_)) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                socket = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        // A collector nobody listens on: the worker holds one message and backs off, the queue
        // (size 2) fills, the rest is dropped at once.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let collector = CollectorConfig {
            name: "down".into(),
            transport: AuditTransport::Tcp,
            host: "127.0.0.1".into(),
            port,
            ca_file: Default::default(),
            server_name: String::new(),
            cert_file: Default::default(),
            key_file: Default::default(),
        };
        let settings = WorkerSettings {
            queue_size: 2,
            connect_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            udp_max_bytes: 1000,
        };
        let (sink, _done) = spawn_collector(&collector, None, settings);
        let started = std::time::Instant::now();
        for i in 0..100 {
            sink.offer(Arc::from(format!("m{i}").as_str()));
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        let dropped = sink.counters.dropped.load(Ordering::Relaxed);
        // At most queue + the one the worker took are kept.
        assert!((97..=98).contains(&dropped), "dropped {dropped}");
        // The worker tries, fails and counts it.
        for _ in 0..100 {
            if sink.counters.failures.load(Ordering::Relaxed) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(sink.counters.failures.load(Ordering::Relaxed) >= 1);
        assert_eq!(sink.counters.sent.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn messages_arrive_octet_counted_in_order() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let collector = CollectorConfig {
            name: "up".into(),
            transport: AuditTransport::Tcp,
            host: "127.0.0.1".into(),
            port,
            ca_file: Default::default(),
            server_name: String::new(),
            cert_file: Default::default(),
            key_file: Default::default(),
        };
        let settings = WorkerSettings {
            queue_size: 10,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            reconnect_max: Duration::from_secs(5),
            udp_max_bytes: 1000,
        };
        let (sink, done) = spawn_collector(&collector, None, settings);
        sink.offer(Arc::from("first é"));
        sink.offer(Arc::from("second"));
        drop(sink);
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, "8 first é6 second".as_bytes());
        done.await.unwrap();
    }
}
