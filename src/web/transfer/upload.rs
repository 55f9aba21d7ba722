//! `GET /upload` (the form) and `POST /upload`: several .dcm files or zips in one multipart
//! request. Each file is written to a temporary file in the spool directory as it arrives
//! (never held in memory) and then goes through `Archive::import_file`, the ingest pipeline
//! and checks of C-STORE (Part-10 meta, storage SOP class, UIDs, structure, duplicates). The
//! answer is a page with one row per file.

use std::path::{Path, PathBuf};

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::archive::{Archive, IngestError, IngestOutcome};
use crate::web::WebState;
use crate::web::auth::{CurrentUser, Role};
use crate::web::error::HttpError;

/// What a zip may expand to, as a multiple of `http.upload_max_mb` (a small zip of huge
/// entries must not fill the spool).
const ZIP_EXPANSION: u64 = 4;

#[derive(Debug, Clone)]
pub struct Row {
    pub file: String,
    /// stored, duplicate or refused.
    pub outcome: &'static str,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "upload.html", config = "src/web/askama.toml")]
struct UploadPage<'a> {
    user: &'a str,
    csrf: &'a str,
    max_mb: u64,
    results: &'a [Row],
    stored: usize,
    duplicates: usize,
    refused: usize,
}

fn page(state: &WebState, user: &CurrentUser, rows: &[Row]) -> Result<Response, HttpError> {
    let count = |o: &str| rows.iter().filter(|r| r.outcome == o).count();
    let html = UploadPage {
        user: &user.name,
        csrf: &user.csrf,
        max_mb: state.http.upload_max_mb,
        results: rows,
        stored: count("stored"),
        duplicates: count("duplicate"),
        refused: count("refused"),
    }
    .render()
    .map_err(|e| HttpError::Internal(format!("upload page: {e}")))?;
    let mut response = Html(html).into_response();
    // The page carries the session's CSRF token: no cache may keep it.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

pub async fn form(State(state): State<WebState>, user: CurrentUser) -> Result<Response, HttpError> {
    user.require(Role::Uploader)?;
    page(&state, &user, &[])
}

/// A file in the spool directory, removed when dropped (and by the start-up cleanup of the
/// spool if the process dies first).
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    async fn create(dir: &Path) -> Result<(TempFile, tokio::fs::File), HttpError> {
        let name: [u8; 16] = rand::random();
        let path = dir.join(format!("upload-{}.part", hex::encode(name)));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| HttpError::Unavailable(format!("cannot spool the upload: {e}")))?;
        Ok((TempFile { path }, file))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn too_large(limit_mb: u64) -> HttpError {
    HttpError::PayloadTooLarge(format!("the upload is larger than {limit_mb} MiB"))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> HttpError {
    HttpError::BadRequest(format!("malformed upload: {}", e.body_text()))
}

pub async fn submit(
    State(state): State<WebState>,
    user: CurrentUser,
    client: crate::web::auth::login::ClientInfo,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<Response, HttpError> {
    user.require(Role::Uploader)?;
    let limit_mb = state.http.upload_max_mb;
    let limit = limit_mb.saturating_mul(1 << 20);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit_mb));
    }
    // The token comes as a header (scripts) or as the first form field (the page's form puts
    // it before the file input): no file is read before it is checked.
    let mut csrf_checked = match headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        Some(token) => {
            user.check_csrf(token)?;
            true
        }
        None => false,
    };
    let archive = state.archive()?.clone();
    let accept_unknown = state.accept_unknown_storage;
    let mut received = 0u64;
    let mut zip_budget = limit.saturating_mul(ZIP_EXPANSION);
    let mut rows = Vec::new();
    // What the user stored, for the audit trail.
    let mut sender = Sender { stored: Vec::new() };
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if !csrf_checked {
            if field.name() != Some("csrf") {
                return Err(HttpError::Forbidden(
                    "missing CSRF token (the csrf field must come before the files)".into(),
                ));
            }
            let token = field.text().await.map_err(multipart_error)?;
            user.check_csrf(&token)?;
            csrf_checked = true;
            continue;
        }
        let Some(file_name) = field.file_name().map(display_name) else {
            continue;
        };
        let (temp, mut file) = TempFile::create(archive.spool_dir()).await?;
        let mut head: Vec<u8> = Vec::with_capacity(4);
        let mut size = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            received += chunk.len() as u64;
            if received > limit {
                return Err(too_large(limit_mb));
            }
            if head.len() < 4 {
                head.extend(chunk.iter().take(4 - head.len()));
            }
            size += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| HttpError::Unavailable(format!("cannot spool the upload: {e}")))?;
        }
        file.flush()
            .await
            .map_err(|e| HttpError::Unavailable(format!("cannot spool the upload: {e}")))?;
        drop(file);
        if file_name.is_empty() && size == 0 {
            // The file input left empty.
            continue;
        }
        if head == b"PK\x03\x04" || file_name.to_ascii_lowercase().ends_with(".zip") {
            import_zip(
                &archive,
                &temp.path,
                &file_name,
                accept_unknown,
                &mut zip_budget,
                &mut rows,
                &mut sender,
            )
            .await;
        } else {
            let row = import_one(&archive, &temp.path, file_name, accept_unknown, &mut sender);
            rows.push(row.await);
        }
    }
    if !csrf_checked {
        return Err(HttpError::Forbidden("missing or wrong CSRF token".into()));
    }
    tracing::info!(user = %user.name, files = rows.len(), "portal upload");
    let actor = crate::audit::Actor::user(&user.name, client.addr);
    crate::web::audit_hooks::stored(&state, &actor, sender.stored);
    page(&state, &user, &rows)
}

/// The client's name of a file, without any directory part, for the result rows only (it
/// never names a file here).
fn display_name(name: &str) -> String {
    name.rsplit(['/', '\\'])
        .next()
        .unwrap_or(name)
        .chars()
        .take(200)
        .collect()
}

/// The instances an upload stored so far (the audit trail reports them with the user).
struct Sender {
    stored: Vec<String>,
}

async fn import_one(
    archive: &Archive,
    path: &Path,
    file: String,
    accept_unknown: bool,
    sender: &mut Sender,
) -> Row {
    let imported = archive.import_file_with_uid(path, accept_unknown).await;
    let (outcome, detail) = match imported {
        Ok((IngestOutcome::Stored, uid)) => {
            sender.stored.push(uid);
            ("stored", String::new())
        }
        Ok((IngestOutcome::Replaced, uid)) => {
            sender.stored.push(uid);
            ("stored", "replaced the stored copy".to_string())
        }
        Ok((IngestOutcome::DuplicateIgnored, _)) => ("duplicate", "already stored".to_string()),
        Err(IngestError::Duplicate(uid)) => ("duplicate", format!("{uid} is already stored")),
        Err(e) => ("refused", e.to_string()),
    };
    Row {
        file,
        outcome,
        detail,
    }
}

fn refused(file: String, detail: String) -> Row {
    Row {
        file,
        outcome: "refused",
        detail,
    }
}

// The seek reader of async_zip 0.0.19 is marked deprecated in favour of its new `read1`
// module, which that release introduces untested by us; the old reader is the one proven on
// real archives (zip64, data descriptors). Revisit when `read1` settles.
#[allow(deprecated)]
type ZipReader = async_zip::base::read::seek::ZipFileReader<
    tokio_util::compat::Compat<tokio::io::BufReader<tokio::fs::File>>,
>;

/// Each file entry of the zip (read through its central directory), extracted to its own
/// temporary file (CRC-checked) and imported. Entries beyond what `budget` still allows are
/// refused.
async fn import_zip(
    archive: &Archive,
    path: &Path,
    zip_name: &str,
    accept_unknown: bool,
    budget: &mut u64,
    rows: &mut Vec<Row>,
    sender: &mut Sender,
) {
    let opened = match tokio::fs::File::open(path).await {
        Ok(file) => ZipReader::with_tokio(tokio::io::BufReader::new(file))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut reader = match opened {
        Ok(reader) => reader,
        Err(e) => {
            rows.push(refused(
                zip_name.to_string(),
                format!("not a readable zip: {e}"),
            ));
            return;
        }
    };
    let entries: Vec<(usize, String)> = reader
        .file()
        .entries()
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.dir().unwrap_or(false))
        .map(|(i, e)| {
            (
                i,
                String::from_utf8_lossy(e.filename().as_bytes()).into_owned(),
            )
        })
        // The resource forks macOS adds are not files anyone chose to upload.
        .filter(|(_, name)| !name.starts_with("__MACOSX/"))
        .collect();
    for (index, name) in entries {
        let label = format!("{zip_name}/{name}");
        match extract(&mut reader, index, archive.spool_dir(), budget).await {
            Ok(temp) => {
                let row = import_one(archive, &temp.path, label, accept_unknown, sender).await;
                rows.push(row);
            }
            Err(reason) => rows.push(refused(label, reason)),
        }
    }
}

async fn extract(
    reader: &mut ZipReader,
    index: usize,
    dir: &Path,
    budget: &mut u64,
) -> Result<TempFile, String> {
    let entry = reader
        .reader_with_entry(index)
        .await
        .map_err(|e| format!("cannot read the entry: {e}"))?;
    let expected_crc = entry.entry().crc32();
    if entry.entry().uncompressed_size() > *budget {
        return Err("the zip expands beyond the upload limit".into());
    }
    let (temp, mut file) = TempFile::create(dir).await.map_err(|e| e.to_string())?;
    let mut entry = entry.compat();
    // Declared sizes can lie: the copy itself stops at the budget.
    let copied = tokio::io::copy(&mut (&mut entry).take(*budget + 1), &mut file)
        .await
        .map_err(|e| format!("cannot extract the entry: {e}"))?;
    if copied > *budget {
        return Err("the zip expands beyond the upload limit".into());
    }
    *budget -= copied;
    file.flush()
        .await
        .map_err(|e| format!("cannot extract the entry: {e}"))?;
    if entry.get_mut().compute_hash() != expected_crc {
        return Err("the entry's CRC-32 does not match: the zip is damaged".into());
    }
    Ok(temp)
}
