//! `/metrics`: Prometheus text exposition (format 0.0.4) of whatever sources the server was
//! given (the information service, and the archive's own counters once the lead wires them).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::WebState;
use crate::storage::SiteHealth;

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Something that renders metric families in the text format, each with its `# HELP` and
/// `# TYPE` lines. Rendering runs on a blocking thread, so it may read sled or walk a map.
pub trait MetricsSource: Send + Sync + 'static {
    fn render(&self) -> String;
}

impl<F> MetricsSource for F
where
    F: Fn() -> String + Send + Sync + 'static,
{
    fn render(&self) -> String {
        self()
    }
}

impl MetricsSource for SiteHealth {
    fn render(&self) -> String {
        self.render_prometheus()
    }
}

impl MetricsSource for crate::audit::Audit {
    fn render(&self) -> String {
        self.render_prometheus()
    }
}

impl<T: MetricsSource + ?Sized> MetricsSource for Arc<T> {
    fn render(&self) -> String {
        (**self).render()
    }
}

pub(super) async fn handler(State(state): State<WebState>) -> Response {
    let sources = Arc::clone(&state.metrics);
    let rendered = tokio::task::spawn_blocking(move || {
        let mut body = String::new();
        for source in sources.iter() {
            body.push_str(&source.render());
            if !body.is_empty() && !body.ends_with('\n') {
                body.push('\n');
            }
        }
        body
    })
    .await;
    match rendered {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering /metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
    }
}
