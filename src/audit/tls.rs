//! RFC 5425 client side: a rustls (ring) configuration that verifies the collector against the
//! configured CA file and, when configured, presents our certificate (IHE ATNA secure nodes
//! authenticate each other).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::AuditError;
use crate::config::audit::CollectorConfig;

/// What a TLS collector connection needs: the client configuration and the name to verify.
#[derive(Clone)]
pub struct TlsClient {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish()
    }
}

fn tls_error(collector: &CollectorConfig, message: String) -> AuditError {
    AuditError::Tls {
        collector: collector.name.clone(),
        message,
    }
}

fn read_certs(
    collector: &CollectorConfig,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, AuditError> {
    let pem = std::fs::read(path)
        .map_err(|e| tls_error(collector, format!("cannot read {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(collector, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(
            collector,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// Load the CA (and our certificate and key, if any) once, at start: a bad file is one clear
/// error before anything is served.
pub fn client(collector: &CollectorConfig) -> Result<TlsClient, AuditError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(collector, &collector.ca_file)? {
        roots
            .add(cert)
            .map_err(|e| tls_error(collector, format!("CA certificate refused: {e}")))?;
    }
    // rustls 0.23.48 marks ring's provider deprecated because it lacks post-quantum key
    // exchange; ring is the project's only allowed provider (no aws-lc-rs, no OpenSSL), and
    // its classic suites are what RFC 5425 collectors speak.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(collector, e.to_string()))?
        .with_root_certificates(roots);
    let config = if collector.cert_file.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let chain = read_certs(collector, &collector.cert_file)?;
        let pem = std::fs::read(&collector.key_file).map_err(|e| {
            tls_error(
                collector,
                format!("cannot read {}: {e}", collector.key_file.display()),
            )
        })?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| tls_error(collector, format!("{}: {e}", collector.key_file.display())))?
            .ok_or_else(|| {
                tls_error(
                    collector,
                    format!("{} holds no private key", collector.key_file.display()),
                )
            })?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error(collector, format!("client certificate: {e}")))?
    };
    let name = if collector.server_name.is_empty() {
        collector.host.clone()
    } else {
        collector.server_name.clone()
    };
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| tls_error(collector, format!("server name {name:?}: {e}")))?;
    Ok(TlsClient {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })
}
