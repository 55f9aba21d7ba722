//! DICOMweb (PS3.18) under `/dicom-web`: QIDO-RS ([`qido`]), WADO-RS ([`wado`], [`metadata`],
//! [`frames`], [`rendered`]), STOW-RS ([`stow`]). Same archive core, query engine and renderer
//! as the portal and DIMSE; the web layer reads and writes only through [`crate::archive::Archive`].
//!
//! Authentication: the portal's session cookie (a browser, e.g. OHIF on the same origin) or
//! HTTP Basic for programs ([`user::DicomWebUser`]); the same roles (STOW needs uploader).

pub mod cors;
pub mod frames;
pub mod json;
pub mod metadata;
pub mod multipart;
pub mod multipart_out;
pub mod qido;
pub mod rendered;
pub mod stow;
pub mod user;
pub mod wado;

use axum::Router;

use super::WebState;

/// Where viewers are pointed (their QIDO/WADO/STOW root).
pub const ROOT: &str = "/dicom-web";

/// The DICOMweb routes, relative to [`ROOT`] (the caller nests them there).
pub fn routes(state: &WebState) -> Router<WebState> {
    let router = Router::new()
        .merge(qido::routes())
        .merge(metadata::routes())
        .merge(wado::routes())
        .merge(frames::routes())
        .merge(rendered::routes())
        .merge(stow::routes());
    cors::layer(router, &state.dicomweb)
}
