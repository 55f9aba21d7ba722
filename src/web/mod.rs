//! The HTTP listener: the web portal ([`portal`], with [`auth`]), `/metrics` (Prometheus) and
//! `/healthz`; DICOMweb joins this router later. It reads only through what it is handed in
//! [`WebState`] (the archive's API, the renderer); it never opens the index or a site itself.

pub mod admin_socket;
pub mod audit_hooks;
pub mod auth;
pub mod dicomweb;
pub mod error;
pub mod ha_page;
pub mod https;
pub mod images;
pub mod metrics;
pub mod portal;
pub mod transfer;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::HttpError;
pub use metrics::MetricsSource;

use crate::archive::Archive;
use crate::config::{DicomWebConfig, HttpConfig};
use crate::render::Renderer;

/// What the handlers share. Cheap to clone (a few `Arc`s).
#[derive(Clone)]
pub struct WebState {
    /// Rendered one after the other into `/metrics`.
    metrics: Arc<Vec<Arc<dyn MetricsSource>>>,
    /// The archive the portal reads and writes through (`None`: only /metrics and /healthz).
    archive: Option<Archive>,
    pub(crate) auth: Arc<auth::Auth>,
    pub(crate) renderer: Arc<Renderer>,
    pub(crate) http: Arc<HttpConfig>,
    /// `dicom.accept_unknown_storage`: uploads pass the same SOP class check as C-STORE.
    pub(crate) accept_unknown_storage: bool,
    pub(crate) dicomweb: Arc<DicomWebConfig>,
    /// The HA monitor, when this process runs one (its admin page).
    pub(crate) ha: Option<crate::ha::HaHandle>,
    /// The audit trail (logins, queries, views, transfers); disabled unless `[audit]` is on.
    pub(crate) audit: crate::audit::Audit,
}

impl Default for WebState {
    fn default() -> WebState {
        let http = HttpConfig::default();
        WebState {
            metrics: Arc::default(),
            archive: None,
            auth: Arc::default(),
            renderer: Arc::new(Renderer::new(
                http.render_threads,
                http.render_cache_mb << 20,
            )),
            http: Arc::new(http),
            accept_unknown_storage: false,
            dicomweb: Arc::default(),
            ha: None,
            audit: crate::audit::Audit::disabled(),
        }
    }
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("metrics_sources", &self.metrics.len())
            .finish()
    }
}

impl WebState {
    pub fn new() -> WebState {
        WebState::default()
    }

    /// Serve the portal over `archive`, configured by `http`.
    pub fn with_archive(mut self, archive: Archive, http: &HttpConfig) -> WebState {
        self.archive = Some(archive);
        self.renderer = Arc::new(Renderer::new(
            http.render_threads,
            http.render_cache_mb << 20,
        ));
        let renderer: Arc<dyn MetricsSource> = self.renderer.clone();
        Arc::make_mut(&mut self.metrics).push(renderer);
        self.http = Arc::new(http.clone());
        self
    }

    /// Uploads accept objects of SOP classes we do not know (as `dicom.accept_unknown_storage`
    /// does for C-STORE).
    pub fn with_upload_policy(mut self, accept_unknown_storage: bool) -> WebState {
        self.accept_unknown_storage = accept_unknown_storage;
        self
    }

    /// Show the HA monitor's page (`/admin/ha`) and its metrics.
    pub fn with_ha(mut self, handle: crate::ha::HaHandle) -> WebState {
        let source: Arc<dyn MetricsSource> = Arc::new(handle.clone());
        Arc::make_mut(&mut self.metrics).push(source);
        self.ha = Some(handle);
        self
    }

    /// Serve DICOMweb as configured by `[dicomweb]`.
    pub fn with_dicomweb(mut self, config: &DicomWebConfig) -> WebState {
        self.dicomweb = Arc::new(config.clone());
        self
    }

    /// Report logins, queries, views and transfers to this audit trail (and show its counters
    /// on `/metrics`).
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> WebState {
        if audit.is_enabled() {
            Arc::make_mut(&mut self.metrics).push(Arc::new(audit.clone()));
        }
        self.audit = audit;
        self
    }

    /// The archive, or 503 when this listener serves only metrics.
    pub fn archive(&self) -> Result<&Archive, HttpError> {
        self.archive
            .as_ref()
            .ok_or_else(|| HttpError::Unavailable("no archive behind this listener".into()))
    }

    /// Add a source of metric families to `/metrics`.
    pub fn with_metrics(mut self, source: impl MetricsSource) -> WebState {
        Arc::make_mut(&mut self.metrics).push(Arc::new(source));
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("HTTP listener failed: {0}")]
    Serve(#[source] std::io::Error),
}

pub fn router(state: WebState) -> Router {
    Router::new()
        .nest(dicomweb::ROOT, dicomweb::routes(&state))
        .merge(auth::routes())
        .merge(portal::routes())
        .merge(images::routes())
        .merge(transfer::routes())
        .merge(ha_page::routes())
        .route("/metrics", get(metrics::handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::middleware::from_fn(error::login_redirect))
        .with_state(state)
}

/// Serve HTTP on `listener` until `shutdown` is cancelled; then stop accepting and let the
/// requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: WebState,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    let addr = listener.local_addr().map_err(WebError::Serve)?;
    match tls {
        None => {
            tracing::info!(%addr, "HTTP listening");
            // The peer address feeds the login rate limiter (per client address).
            let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .map_err(WebError::Serve)
        }
        Some(config) => {
            tracing::info!(%addr, "HTTPS listening");
            let app = router(state)
                .layer(axum::Extension(https::OverTls))
                .into_make_service_with_connect_info::<std::net::SocketAddr>();
            // `tap_io` only because axum provides the peer address (ConnectInfo, the login
            // rate limiter's key) for tapped listeners of any kind.
            let listener = axum::serve::ListenerExt::tap_io(
                https::TlsListener::new(listener, config).map_err(WebError::Serve)?,
                |_| {},
            );
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .map_err(WebError::Serve)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    use crate::config::HealthConfig;
    use crate::storage::SiteHealth;

    async fn get(router: Router, uri: &str) -> (StatusCode, Option<String>, String) {
        let response = router
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn state() -> WebState {
        let health = Arc::new(SiteHealth::new(HealthConfig::default()));
        health.record_written("east", 5);
        WebState::new().with_metrics(health).with_metrics(|| {
            "# HELP mifas_test_total t\n# TYPE mifas_test_total counter\nmifas_test_total 7"
                .to_string()
        })
    }

    #[tokio::test]
    async fn metrics_and_healthz() {
        let (status, content_type, body) = get(router(state()), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(metrics::CONTENT_TYPE));
        assert!(
            body.contains("mifas_site_bytes_written_total{site=\"east\"} 5\n"),
            "{body}"
        );
        assert!(body.ends_with("mifas_test_total 7\n"), "{body}");

        let (status, _, body) = get(router(state()), "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));

        let (status, _, _) = get(router(state()), "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// Over a real socket: answers, then stops when the token is cancelled.
    #[tokio::test]
    async fn serves_until_cancelled() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, None, state(), shutdown.clone()));

        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");

        shutdown.cancel();
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("server stops after cancel")
            .expect("task");
        assert!(result.is_ok(), "{result:?}");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "listener closed"
        );
    }
}
