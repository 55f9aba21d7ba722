//! CORS for DICOMweb (`dicomweb.cors_allow_origins`; off by default): lets a viewer served from
//! another origin call `/dicom-web`. Only the listed origins get CORS headers; with the list
//! empty no response carries any, and browsers keep cross-origin pages out (same origin only).
//!
//! Credentials: no `Access-Control-Allow-Credentials` is sent, so cookies never cross origins
//! (the session cookie is SameSite=Strict anyway); a cross-origin viewer authenticates with
//! HTTP Basic, which its script sets explicitly (`Authorization` is an allowed header).

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::DicomWebConfig;
use crate::web::WebState;

/// Methods DICOMweb answers (STOW-RS is POST).
const ALLOW_METHODS: &str = "GET, HEAD, POST, OPTIONS";
/// Request headers a cross-origin script may send.
const ALLOW_HEADERS: &str = "Accept, Authorization, Content-Type, Cache-Control, X-Requested-With";
/// Response headers a cross-origin script may read (beyond the CORS-safelisted ones).
const EXPOSE_HEADERS: &str =
    "Content-Type, Content-Length, Content-Location, Location, Warning, WWW-Authenticate";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE: &str = "600";

/// Which origins may call.
#[derive(Debug, Clone)]
struct Policy {
    any: bool,
    origins: Vec<String>,
}

impl Policy {
    fn new(origins: &[String]) -> Policy {
        Policy {
            any: origins.iter().any(|o| o == "*"),
            // Origins compare as serialized by browsers: scheme://host[:port], no trailing slash.
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// The Access-Control-Allow-Origin value for a request from `origin`, if allowed.
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins.contains(&text).then(|| origin.clone())
    }

    fn decorate(&self, allowed: HeaderValue, headers: &mut HeaderMap, preflight: bool) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        if !self.any {
            // The answer depends on the Origin: caches must keep one per origin.
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE),
            );
        } else {
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    }

    async fn handle(&self, request: Request, next: Next) -> Response {
        let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
            return next.run(request).await;
        };
        let allowed = self.allow(&origin);
        let preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return match allowed {
                Some(allowed) => {
                    let mut response = StatusCode::NO_CONTENT.into_response();
                    self.decorate(allowed, response.headers_mut(), true);
                    response
                }
                None => (
                    StatusCode::FORBIDDEN,
                    "this origin may not call DICOMweb (dicomweb.cors_allow_origins)\n",
                )
                    .into_response(),
            };
        }
        let mut response = next.run(request).await;
        if let Some(allowed) = allowed {
            self.decorate(allowed, response.headers_mut(), false);
        }
        response
    }
}

/// The DICOMweb router with CORS headers when origins are configured.
pub fn layer(router: Router<WebState>, config: &DicomWebConfig) -> Router<WebState> {
    if config.cors_allow_origins.is_empty() {
        return router;
    }
    let policy = Arc::new(Policy::new(&config.cors_allow_origins));
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let policy = policy.clone();
            async move { policy.handle(request, next).await }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn call(origins: &[&str], request: Request<Body>) -> Response {
        let config = DicomWebConfig {
            cors_allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..DicomWebConfig::default()
        };
        let router: Router<WebState> = Router::new().route("/studies", get(|| async { "[]" }));
        layer(router, &config)
            .with_state(WebState::new())
            .oneshot(request)
            .await
            .expect("infallible")
    }

    fn preflight(origin: &str) -> Request<Body> {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/studies")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .expect("request")
    }

    fn get_from(origin: &str) -> Request<Body> {
        Request::get("/studies")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .expect("request")
    }

    fn cors_headers(response: &Response) -> Vec<String> {
        response
            .headers()
            .keys()
            .map(|k| k.as_str().to_string())
            .filter(|k| k.starts_with("access-control-"))
            .collect()
    }

    #[tokio::test]
    async fn off_by_default() {
        let response = call(&[], preflight("https://viewer.example")).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(cors_headers(&response).is_empty());
        let response = call(&[], get_from("https://viewer.example")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(cors_headers(&response).is_empty());
    }

    #[tokio::test]
    async fn listed_origins_only() {
        let origins = ["https://viewer.example/", "http://localhost:3000"];
        let response = call(&origins, preflight("https://viewer.example")).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://viewer.example"
        );
        assert!(
            h[header::ACCESS_CONTROL_ALLOW_METHODS]
                .to_str()
                .unwrap_or("")
                .contains("POST")
        );
        assert!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap_or("")
                .contains("Authorization")
        );
        assert_eq!(h[header::VARY], "Origin");

        let response = call(&origins, get_from("http://localhost:3000")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let h = response.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:3000"
        );
        assert!(
            h[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap_or("")
                .contains("Warning")
        );

        let response = call(&origins, preflight("https://evil.example")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(cors_headers(&response).is_empty());
        let response = call(&origins, get_from("https://evil.example")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(cors_headers(&response).is_empty());
        // Same-origin requests (no Origin header) are untouched.
        let response = call(
            &origins,
            Request::get("/studies").body(Body::empty()).expect("r"),
        )
        .await;
        assert!(cors_headers(&response).is_empty());
    }

    #[tokio::test]
    async fn any_origin() {
        let response = call(&["*"], get_from("https://anything.example")).await;
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(response.headers().get(header::VARY).is_none());
    }
}
