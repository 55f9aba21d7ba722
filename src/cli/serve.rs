//! `mifas serve`: open the archive, listen, run until SIGINT/SIGTERM, shut down cleanly.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{CliError, init_logging};
use crate::archive::Archive;
use crate::config::Config;
use crate::dimse::{self, DimseContext};

pub async fn run(config: Config) -> Result<ExitCode, CliError> {
    init_logging(&config);
    // Certificates and keys first: a bad file is a configuration error (exit 2) before
    // anything is opened or bound.
    let dicom_tls = crate::tls::DicomTls::load(&config)?;
    let http_tls = crate::tls::http_server_config(&config)?;
    if !config.dicom.allowed_calling.is_empty() {
        tracing::warn!(
            "dicom.allowed_calling is deprecated: list the AEs as [[remote_ae]] with hosts and services, and set [dicom.unknown_ae] services = []"
        );
    }
    // The audit trail first: a bad CA or audit file path stops the start with one clear line.
    let audit = crate::audit::Audit::start(&config.audit, &config.dicom.aet)
        .map_err(|e| CliError::Other(e.to_string()))?;
    let (archive, _report) = Archive::open(&config).await?;
    let mut listeners = Vec::new();
    // READY line: `dicom=` is the plain listener (the TLS one when there is no plain one);
    // TLS listeners are appended after `http=`, so the line keeps its shape without TLS.
    let mut ready_dicom = String::new();
    let mut ready_tls = String::new();
    if !config.dicom.tls.enabled || config.dicom.tls.plain_listener {
        let addr = std::net::SocketAddr::new(config.dicom.bind, config.dicom.port);
        let (listener, local) = bind(addr).await?;
        tracing::info!(addr = %local, aet = %config.dicom.aet, data_dir = %config.storage.data_dir.display(), "MIFAS listening");
        ready_dicom = local.to_string();
        listeners.push((listener, dimse::Transport::Plain));
    }
    if config.dicom.tls.enabled {
        let bind_ip = config.dicom.tls.bind.unwrap_or(config.dicom.bind);
        let addr = std::net::SocketAddr::new(bind_ip, config.dicom.tls.port);
        let (listener, local) = bind(addr).await?;
        tracing::info!(addr = %local, aet = %config.dicom.aet, mutual = config.dicom.tls.ca.is_some(), "MIFAS listening (DICOM TLS)");
        if ready_dicom.is_empty() {
            ready_dicom = local.to_string();
        }
        ready_tls.push_str(&format!(" dicom_tls={local}"));
        listeners.push((listener, dimse::Transport::Tls));
    }
    // Handlers installed before READY: a SIGTERM right after it must stop us cleanly, not kill us.
    let shutdown = CancellationToken::new();
    // The HTTP listener (/metrics, /healthz) and the information service's probes.
    let http_addr = std::net::SocketAddr::new(config.dicom.bind, config.http.port);
    let http = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|source| CliError::Bind {
            addr: http_addr.to_string(),
            source,
        })?;
    let http_local = http
        .local_addr()
        .map_err(|e| CliError::Other(format!("cannot read the HTTP address: {e}")))?;
    let _prober = archive
        .health()
        .spawn_prober(archive.sites(), shutdown.clone());
    // The HA monitor of the namenode VMs, when [ha] is configured: a separate module sharing
    // only the configuration, the HTTP listener (its page, /metrics) and the shutdown.
    let ha = match &config.ha {
        Some(ha) => Some(super::ha::start_monitor(
            ha,
            &config.storage.data_dir,
            shutdown.clone(),
        )?),
        None => None,
    };
    let metrics_archive = archive.clone();
    let mut web_state = crate::web::WebState::new()
        .with_archive(archive.clone(), &config.http)
        .with_upload_policy(config.dicom.accept_unknown_storage)
        .with_dicomweb(&config.dicomweb)
        .with_metrics(Arc::clone(archive.health()))
        .with_metrics(move || metrics_archive.metrics_text())
        .with_audit(audit.clone());
    if let Some((handle, _)) = &ha {
        web_state = web_state.with_ha(handle.clone());
    }
    // `mifas user ...` reaches the running server here (the index is ours while we run). Not
    // fatal: without it (e.g. a data directory path too long for a socket) only `mifas user`
    // needs the server stopped.
    let admin = crate::web::admin_socket::spawn(
        &config.storage.data_dir,
        archive.clone(),
        web_state.auth.clone(),
        shutdown.clone(),
    )
    .inspect_err(|e| tracing::warn!(error = %e, "no admin socket"))
    .ok();
    let web = tokio::spawn(crate::web::serve(
        http,
        http_tls,
        web_state,
        shutdown.clone(),
    ));
    if config.http.tls.enabled {
        ready_tls.push_str(" https");
    }
    let signals = Signals::install()?;
    tokio::spawn(signals.watch(shutdown.clone()));
    // The READY line is the readiness signal scripts and tests wait for.
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "MIFAS READY dicom={ready_dicom} aet={} data={} http={http_local}{ready_tls}",
            config.dicom.aet,
            config.storage.data_dir.display()
        );
        let _ = out.flush();
    }
    // Checking that every indexed instance still has its object takes seconds at scale: do it
    // while already serving.
    let verifier = archive.clone();
    tokio::spawn(async move {
        if let Err(e) = verifier.verify_objects().await {
            tracing::error!(error = %e, "object check failed");
        }
    });
    // Copies owed to sites (queued by ack policies short of "all", or left by an outage or a
    // crash) are made in the background, from the start: a restart resumes the queue.
    let background = CancellationToken::new();
    tokio::spawn({
        let archive = archive.clone();
        let cancel = background.clone();
        async move { archive.run_replication(cancel).await }
    });
    if config.storage.repair_interval_secs > 0 {
        tokio::spawn(periodic_repair(
            archive.clone(),
            std::time::Duration::from_secs(config.storage.repair_interval_secs),
            config.storage.repair_sha256_sample,
            background.clone(),
        ));
    }
    let audit_flush = std::time::Duration::from_secs(config.audit.shutdown_flush_secs);
    let ctx =
        DimseContext::new(archive.clone(), Arc::new(config), dicom_tls).with_audit(audit.clone());
    audit.application_activity(true);
    // Storage Commitment reports (a restart resumes the open transactions).
    tokio::spawn(dimse::run_commitment_reporter(
        ctx.clone(),
        background.clone(),
    ));
    dimse::serve(listeners, ctx, shutdown).await;
    background.cancel();
    if let Ok(Err(e)) = web.await {
        tracing::error!(error = %e, "HTTP listener failed");
    }
    if let Some(admin) = admin {
        // It removes its socket file as it stops.
        let _ = admin.await;
    }
    if let Some((_, task)) = ha {
        let _ = task.await;
    }
    archive
        .close()
        .await
        .map_err(|e| CliError::Other(format!("final index flush failed: {e}")))?;
    audit.application_activity(false);
    audit.shutdown(audit_flush).await;
    tracing::info!("MIFAS stopped");
    Ok(ExitCode::SUCCESS)
}

async fn bind(
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), CliError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Other(format!("cannot read the listening address: {e}")))?;
    Ok((listener, local))
}

/// SIGTERM and SIGINT, caught from the moment `install` returns.
pub(super) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn install() -> Result<Signals, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| {
            signal(kind)
                .map_err(|e| CliError::Other(format!("cannot install signal handlers: {e}")))
        };
        Ok(Signals {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
        })
    }

    pub(super) async fn watch(mut self, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = self.int.recv() => tracing::info!("SIGINT: stopping"),
        }
        shutdown.cancel();
    }
}

/// A repair pass every `interval` (the first one an interval after start).
async fn periodic_repair(
    archive: Archive,
    interval: std::time::Duration,
    sha256_sample: f64,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = archive.repair(sha256_sample).await {
            tracing::error!(error = %e, "repair pass failed");
            continue;
        }
        if let Err(e) = archive.compact(crate::archive::MAX_LIVE_RATIO).await {
            tracing::error!(error = %e, "compaction pass failed");
        }
    }
}
