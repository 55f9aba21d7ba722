//! File transfer: one stored DICOM file, a whole study as a zip (both streamed, never held
//! whole), and the upload of .dcm files or zips through the same ingest as C-STORE.

mod download;
#[cfg(test)]
mod tests;
mod upload;
mod zip_stream;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

use super::WebState;
use super::error::HttpError;

/// A UID taken from a URL segment: anything else (`..`, a name, a path) is a 400 before it
/// reaches the archive.
fn check_uid(uid: &str) -> Result<(), HttpError> {
    crate::uid::validate(uid).map_err(|e| HttpError::BadRequest(format!("not a UID: {e}")))
}

/// `/instances/{uid}/file`, `/studies/{uid}/download.zip`, `/upload`.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/instances/{uid}/file", get(download::instance_file))
        .route("/studies/{uid}/download.zip", get(download::study_zip))
        .route(
            "/upload",
            get(upload::form)
                .post(upload::submit)
                // The upload enforces `http.upload_max_mb` itself while it streams.
                .layer(DefaultBodyLimit::disable()),
        )
}
