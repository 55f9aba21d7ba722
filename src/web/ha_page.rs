//! `/admin/ha`: the HA monitor's page — hosts, namenode VMs and their roles, the last probe
//! results, the event timeline — the modern form of the thesis' VM manager page (Fig. 3-16);
//! and `POST /admin/ha/switchover` (a planned switchover). In `mifas serve` it needs the admin
//! role; under `mifas ha-monitor` (no archive, no users; bound to localhost by default) it is
//! read-only and open.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::auth::{CurrentUser, Role};
use super::portal::display::instant;
use super::portal::{Chrome, render};
use super::{HttpError, WebState};
use crate::ha::failover::Event;
use crate::ha::status::{HaStatus, kind_name};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/admin/ha", get(page))
        .route("/admin/ha/switchover", post(switchover))
}

pub struct EventRow {
    pub seq: u64,
    pub at: String,
    pub site: String,
    pub vm: String,
    pub kind: &'static str,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "ha.html", config = "src/web/askama.toml")]
pub struct HaPage {
    pub chrome: Chrome,
    pub configured: bool,
    /// A logged-in admin (the switchover form needs the session's CSRF token).
    pub can_switch: bool,
    pub status: HaStatus,
    pub events: Vec<EventRow>,
    pub message: String,
}

/// Milliseconds since the epoch, for the page.
pub fn at(ms: Option<u64>) -> String {
    match ms {
        None | Some(0) => "never".into(),
        Some(ms) => {
            let s = instant(ms / 1000);
            format!("{}.{:03} UTC", s.trim_end_matches(" UTC"), ms % 1000)
        }
    }
}

fn row(e: &Event) -> EventRow {
    EventRow {
        seq: e.seq,
        at: at(Some(e.at_ms)),
        site: e.site.clone().unwrap_or_default(),
        vm: e.vm.clone().unwrap_or_default(),
        kind: kind_name(&e.kind),
        reason: e.reason.clone(),
    }
}

/// The admin of a portal request, or nobody on the standalone monitor's listener.
async fn viewer(parts: &mut Parts, state: &WebState) -> Result<Option<CurrentUser>, HttpError> {
    if state.archive().is_err() {
        return Ok(None);
    }
    use axum::extract::FromRequestParts;
    let user = CurrentUser::from_request_parts(parts, state).await?;
    user.require(Role::Admin)?;
    Ok(Some(user))
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    msg: String,
}

async fn page(
    State(state): State<WebState>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
    request: axum::extract::Request,
) -> Result<Html<String>, HttpError> {
    let (mut parts, _) = request.into_parts();
    let user = viewer(&mut parts, &state).await?;
    let chrome = match &user {
        Some(u) => Chrome::new(u, "HA monitor"),
        None => Chrome {
            title: "HA monitor".into(),
            user: "monitor".into(),
            role: "local",
            admin: false,
            uploader: false,
            csrf: String::new(),
        },
    };
    let status = state.ha.as_ref().map(|h| h.status()).unwrap_or_default();
    let events = status.events.iter().rev().map(row).collect();
    render(&HaPage {
        chrome,
        configured: state.ha.is_some(),
        can_switch: user.is_some() && state.ha.is_some(),
        status,
        events,
        message: q.msg.chars().take(500).collect(),
    })
}

#[derive(Deserialize)]
pub struct SwitchoverForm {
    site: String,
    #[serde(default)]
    csrf: String,
}

async fn switchover(
    State(state): State<WebState>,
    user: CurrentUser,
    Form(form): Form<SwitchoverForm>,
) -> Result<Response, HttpError> {
    user.require(Role::Admin)?;
    user.check_csrf(&form.csrf)?;
    let Some(ha) = &state.ha else {
        return Err(HttpError::NotFound(
            "no HA monitor runs in this process".into(),
        ));
    };
    let message = match ha.switchover(&form.site).await {
        Ok(m) => format!("switchover of {} started: {m}", form.site),
        Err(m) => format!("switchover of {} refused: {m}", form.site),
    };
    tracing::info!(user = %user.name, site = %form.site, "{message}");
    let target = format!(
        "/admin/ha?msg={}",
        super::portal::display::url_component(&message)
    );
    Ok(Redirect::to(&target).into_response())
}
