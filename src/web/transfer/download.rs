//! `GET /instances/{uid}/file` and `GET /studies/{uid}/download.zip`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::check_uid;
use super::zip_stream;
use crate::audit::Actor;
use crate::query::{Condition, Level, Model, Query, QueryKey};
use crate::web::auth::login::ClientInfo;
use crate::web::auth::{CurrentUser, Role};
use crate::web::error::HttpError;
use crate::web::{WebState, audit_hooks};

fn attachment(response: &mut Response, content_type: &'static str, filename: &str) {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The file name is a validated UID (digits and dots): nothing to quote or escape.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
}

/// The stored Part-10 file, streamed from the sites as it is read (co-allocated, checked
/// against its SHA-256: a copy that turns out corrupt aborts the response).
pub async fn instance_file(
    State(state): State<WebState>,
    user: CurrentUser,
    client: ClientInfo,
    Path(uid): Path<String>,
) -> Result<Response, HttpError> {
    user.require(Role::Viewer)?;
    check_uid(&uid)?;
    let object = state
        .archive()?
        .open_object(&uid)
        .await?
        .ok_or_else(|| HttpError::NotFound(format!("instance {uid}")))?;
    let size = object.size();
    audit_hooks::sent(
        &state,
        &Actor::user(&user.name, client.addr),
        vec![uid.clone()],
    );
    let mut response = Body::from_stream(object).into_response();
    attachment(&mut response, "application/dicom", &format!("{uid}.dcm"));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}

/// A study-level query for one Study Instance UID (what a C-MOVE of the study selects).
pub(super) fn study_query(study_uid: &str) -> Query {
    Query {
        model: Model::StudyRoot,
        level: Level::Study,
        keys: vec![QueryKey {
            tag: dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
            vr: dicom_core::VR::UI,
            condition: Condition::Single(study_uid.to_string()),
            items: None,
        }],
        case_insensitive_names: true,
        fuzzy_names: false,
        combined_datetime: false,
        unsupported_matching_keys: false,
    }
}

/// Every instance of the study as `<SOPInstanceUID>.dcm` entries of a zip (stored, not
/// deflated: DICOM pixel data rarely shrinks and the CPU is better spent elsewhere), written
/// while the objects are read.
pub async fn study_zip(
    State(state): State<WebState>,
    user: CurrentUser,
    client: ClientInfo,
    Path(uid): Path<String>,
) -> Result<Response, HttpError> {
    user.require(Role::Viewer)?;
    check_uid(&uid)?;
    let archive = state.archive()?.clone();
    let items = archive.instances_to_retrieve(study_query(&uid)).await?;
    if items.is_empty() {
        return Err(HttpError::NotFound(format!("study {uid}")));
    }
    let uids: Vec<String> = items.into_iter().map(|i| i.sop_instance_uid).collect();
    audit_hooks::sent(&state, &Actor::user(&user.name, client.addr), uids.clone());
    let mut response = Body::from_stream(zip_stream::study(archive, uids)).into_response();
    attachment(&mut response, "application/zip", &format!("{uid}.zip"));
    Ok(response)
}
