//! The web portal's pages: exam-type catalog, study search, study, patient record, file
//! status, previews, download and upload. SKELETON: pages follow.

use axum::Router;

use super::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
}
