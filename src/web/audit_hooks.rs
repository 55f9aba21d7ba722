//! The web side of the audit trail: what portal and DICOMweb handlers report, each with one
//! call. The index look-ups a message needs run in a task of their own, only when the audit
//! trail is on (for views, only when the view would be reported): a response never waits for
//! them.

use axum::http::Uri;

use super::WebState;
use crate::archive::RetrieveItem;
use crate::audit::{Actor, Outcome, Study};

/// The Study Root C-FIND SOP class: the information model QIDO-RS searches (PS3.18 10.6).
const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";

/// Instances a user stored (STOW-RS, portal upload): DICOM Instances Transferred (`Create`),
/// one message per study of the request.
pub fn stored(state: &WebState, user: &Actor, sop_instance_uids: Vec<String>) {
    if !state.audit.is_enabled() || sop_instance_uids.is_empty() {
        return;
    }
    let Ok(archive) = state.archive() else { return };
    let (archive, audit, user) = (archive.clone(), state.audit.clone(), user.clone());
    tokio::spawn(async move {
        let studies = archive.audit_studies_of_instances(sop_instance_uids).await;
        audit.instances_stored(&user, &studies, Outcome::Success);
    });
}

/// Instances sent to a user (WADO-RS retrieve, portal downloads): DICOM Instances
/// Transferred (`Read`), the user being destination and requestor.
pub fn sent(state: &WebState, user: &Actor, sop_instance_uids: Vec<String>) {
    if !state.audit.is_enabled() {
        return;
    }
    let Ok(archive) = state.archive() else { return };
    let (archive, audit, user) = (archive.clone(), state.audit.clone(), user.clone());
    tokio::spawn(async move {
        let studies = archive.audit_studies_of_instances(sop_instance_uids).await;
        audit.instances_sent(&user, None, &studies, Outcome::Success);
    });
}

/// The SOP Instance UIDs of retrieve items.
pub fn uids(items: &[RetrieveItem]) -> Vec<String> {
    items.iter().map(|i| i.sop_instance_uid.clone()).collect()
}

/// A study (or one of its series or instances) a user viewed: previews, rendered images,
/// metadata, frames. DICOM Instances Accessed, once per user, study and minute.
pub fn viewed(
    state: &WebState,
    user: &Actor,
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
) {
    if !state.audit.access_is_due(user, study) {
        return;
    }
    let Ok(archive) = state.archive() else { return };
    let (archive, audit, user) = (archive.clone(), state.audit.clone(), user.clone());
    let (study, series, instance) = (
        study.to_string(),
        series.map(str::to_string),
        instance.map(str::to_string),
    );
    tokio::spawn(async move {
        let studies: Vec<Study> = match (series, instance) {
            (_, Some(uid)) => archive.audit_studies_of_instances(vec![uid]).await,
            (Some(series), None) => archive.audit_series(&series).await,
            (None, None) => archive.audit_study(&study).await.into_iter().collect(),
        };
        audit.instances_accessed(&user, &studies);
    });
}

/// An instance viewed by its UID alone (portal previews): its study is looked up.
pub fn viewed_instance(state: &WebState, user: &Actor, sop_instance_uid: &str) {
    if !state.audit.is_enabled() {
        return;
    }
    let Ok(archive) = state.archive() else { return };
    let (archive, audit, user) = (archive.clone(), state.audit.clone(), user.clone());
    let uid = sop_instance_uid.to_string();
    tokio::spawn(async move {
        let studies = archive.audit_studies_of_instances(vec![uid]).await;
        audit.instances_accessed(&user, &studies);
    });
}

/// A QIDO-RS search: Query, the request path and query string as the query.
pub fn searched(state: &WebState, user: &Actor, uri: &Uri) {
    let query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    state.audit.query(
        user,
        STUDY_ROOT_FIND,
        query.as_bytes(),
        ("QueryEncoding", "UTF-8"),
        Outcome::Success,
    );
}
