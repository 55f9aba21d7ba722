//! (skeleton: filled by issue 12)

use axum::Router;

use crate::web::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
}
