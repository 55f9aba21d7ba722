//! The certificate checks of DICOM TLS that depend on `dicom.tls.ca` and `dicom.tls.crl`: the
//! verifier of client certificates (mutual TLS) and the client configuration of outgoing TLS
//! associations, which verifies the remote AE's certificate.
//!
//! Certificate revocation lists are re-read when one of their files changes: a CA publishes a
//! new CRL every few days, and revoking a stolen modality certificate must not wait for a
//! restart. The check is a `stat` per file at each new TLS connection; a file that cannot be
//! read or parsed then is logged and the previous lists stay in force (never none at all).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore};

use super::{VERSIONS, bad_file, provider};
use crate::config::ConfigError;

/// The verifiers in force, rebuilt whole when the revocation lists change.
#[derive(Debug)]
pub(super) struct Verifiers {
    /// Verifies client certificates: mandatory, optional, or none (no CA configured).
    pub client_verifier: Arc<dyn ClientCertVerifier>,
    /// For associations we open to `tls = true` remote AEs (`None` without a CA).
    pub client: Option<Arc<ClientConfig>>,
}

/// What the verifiers are built from, besides the revocation lists.
#[derive(Debug)]
pub(super) struct Inputs {
    pub roots: Option<Arc<RootCertStore>>,
    pub require_client_cert: bool,
    /// Our chain and key, presented on outgoing TLS associations.
    pub ours: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// A CRL file's identity for change detection: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The verifiers in force and what the CRL files looked like.
#[derive(Debug)]
struct State {
    /// The files the verifiers were built from.
    loaded: Vec<Stamp>,
    verifiers: Arc<Verifiers>,
    /// Files that could not be read: not tried again (nor logged again) until they change.
    failed: Option<Vec<Stamp>>,
}

/// The verifiers and the CRL files they were built from.
#[derive(Debug)]
pub(super) struct Revocation {
    inputs: Inputs,
    crl_files: Vec<PathBuf>,
    state: Mutex<State>,
}

impl Revocation {
    /// Build the verifiers; any unusable file is a configuration error naming its key.
    pub fn load(inputs: Inputs, crl_files: &[PathBuf]) -> Result<Revocation, ConfigError> {
        let stamps = crl_files.iter().map(|p| stamp(p)).collect();
        let crls = read_crls(crl_files)?;
        let verifiers = Arc::new(build(&inputs, crls)?);
        if !crl_files.is_empty() {
            tracing::info!(files = ?crl_files, "certificate revocation lists loaded");
        }
        Ok(Revocation {
            inputs,
            crl_files: crl_files.to_vec(),
            state: Mutex::new(State {
                loaded: stamps,
                verifiers,
                failed: None,
            }),
        })
    }

    /// The verifiers in force, after re-reading the CRL files if one of them changed.
    pub fn current(&self) -> Arc<Verifiers> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.crl_files.is_empty() {
            return state.verifiers.clone();
        }
        let stamps: Vec<Stamp> = self.crl_files.iter().map(|p| stamp(p)).collect();
        if stamps == state.loaded || state.failed.as_ref() == Some(&stamps) {
            return state.verifiers.clone();
        }
        match read_crls(&self.crl_files).and_then(|crls| build(&self.inputs, crls)) {
            Ok(verifiers) => {
                tracing::info!(files = ?self.crl_files, "certificate revocation lists re-read");
                *state = State {
                    loaded: stamps,
                    verifiers: Arc::new(verifiers),
                    failed: None,
                };
            }
            // Tried again once the files change again (a CA tool may be halfway through
            // writing one).
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "certificate revocation lists changed but cannot be read; the previous ones stay in force"
                );
                state.failed = Some(stamps);
            }
        }
        state.verifiers.clone()
    }
}

fn read_crls(files: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, ConfigError> {
    let mut crls = Vec::new();
    for path in files {
        let data = std::fs::read(path).map_err(|e| bad_file("dicom.tls.crl", path, e))?;
        let found = rustls_pemfile::crls(&mut &data[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_file("dicom.tls.crl", path, format!("not a PEM CRL file ({e})")))?;
        if found.is_empty() {
            return Err(bad_file(
                "dicom.tls.crl",
                path,
                "no X509 CRL block in the file",
            ));
        }
        crls.extend(found);
    }
    Ok(crls)
}

/// Revocation is checked for the end-entity certificate, against the lists given. A certificate
/// whose CA has no list here is accepted as without `crl` (a CA bundle often holds vendors'
/// CAs whose lists the hospital does not fetch); a list past its next-update time still counts.
fn build(
    inputs: &Inputs,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Verifiers, ConfigError> {
    let Some(roots) = &inputs.roots else {
        return Ok(Verifiers {
            client_verifier: WebPkiClientVerifier::no_client_auth(),
            client: None,
        });
    };
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .with_crls(crls.clone())
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status();
    if !inputs.require_client_cert {
        builder = builder.allow_unauthenticated();
    }
    let unusable = |e: &dyn std::fmt::Display| ConfigError::Invalid {
        key: if crls.is_empty() {
            "dicom.tls.ca".into()
        } else {
            "dicom.tls.crl".into()
        },
        message: format!("cannot verify certificates with it: {e}"),
    };
    let client_verifier = builder.build().map_err(|e| unusable(&e))?;
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
        .with_crls(crls.clone())
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| unusable(&e))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| ConfigError::Invalid {
            key: "dicom.tls".into(),
            message: e.to_string(),
        })?
        .with_webpki_verifier(server_verifier);
    let client = match &inputs.ours {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| ConfigError::Invalid {
                key: "dicom.tls.key".into(),
                message: e.to_string(),
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Verifiers {
        client_verifier,
        client: Some(Arc::new(client)),
    })
}
