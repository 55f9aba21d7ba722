//! CORS for DICOMweb (`dicomweb.cors_allow_origins`; off by default).

use axum::Router;

use crate::config::DicomWebConfig;
use crate::web::WebState;

/// The DICOMweb router with CORS headers when origins are configured (skeleton: unchanged).
pub fn layer(router: Router<WebState>, _config: &DicomWebConfig) -> Router<WebState> {
    router
}
