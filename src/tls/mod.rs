//! TLS for DICOM and HTTP (issue 13) on rustls with the ring provider: certificates and keys
//! read from the PEM files the configuration names (once, at start-up), the BCP195 profile
//! (PS3.15 B.9: TLS 1.2 and 1.3 only, ECDHE with AES-GCM or ChaCha20-Poly1305), server
//! configurations for the DICOM and HTTPS listeners, the client configuration of outgoing
//! associations, and the client certificate's names for the per-AE subject check. Revocation
//! lists (`dicom.tls.crl`) and the verifiers built on them are in [`revocation`].

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::cipher_suite as suites;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::config::{Config, ConfigError};

mod revocation;
use revocation::Revocation;

/// A PEM file that cannot be used; the message names the config key and the file.
fn bad_file(key: &str, path: &Path, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: format!("{}: {why}", path.display()),
    }
}

/// The cipher suites of the BCP195 TLS profile (PS3.15 B.9, RFC 9325 4.2) that ring offers:
/// TLS 1.3's AEAD suites and TLS 1.2's ECDHE suites with AES-GCM or ChaCha20-Poly1305. rustls
/// has no DHE, CBC, RC4 or 3DES suites at all, so nothing weaker can be negotiated.
const BCP195_SUITES: [rustls::SupportedCipherSuite; 9] = [
    suites::TLS13_AES_256_GCM_SHA384,
    suites::TLS13_AES_128_GCM_SHA256,
    suites::TLS13_CHACHA20_POLY1305_SHA256,
    suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// TLS 1.2 and 1.3 only (BCP195 forbids SSL and TLS 1.0/1.1; rustls has neither anyway).
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

// `default_provider` is deprecated only for lacking post-quantum key exchange, which ring
// does not have and BCP195 does not ask for (aws-lc-rs is not an option here).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: BCP195_SUITES.to_vec(),
        ..rustls::crypto::ring::default_provider()
    })
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let data = std::fs::read(path).map_err(|e| bad_file(key, path, e))?;
    let certs = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_file(key, path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(bad_file(key, path, "no CERTIFICATE block in the file"));
    }
    Ok(certs)
}

fn read_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let data = std::fs::read(path).map_err(|e| bad_file(key, path, e))?;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(|e| bad_file(key, path, format!("not a PEM key file ({e})")))?
        .ok_or_else(|| bad_file(key, path, "no PRIVATE KEY block in the file"))
}

fn read_roots(key: &str, path: &Path) -> Result<Arc<RootCertStore>, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(key, path)? {
        roots
            .add(cert)
            .map_err(|e| bad_file(key, path, format!("unusable CA certificate ({e})")))?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain with its key, checked to belong together.
fn certified_key(
    prefix: &str,
    cert: &Path,
    key: &Path,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
        Arc<CertifiedKey>,
    ),
    ConfigError,
> {
    let cert_key = format!("{prefix}.cert");
    let key_key = format!("{prefix}.key");
    let chain = read_certs(&cert_key, cert)?;
    let private = read_key(&key_key, key)?;
    let signing = provider()
        .key_provider
        .load_private_key(private.clone_key())
        .map_err(|e| bad_file(&key_key, key, format!("unusable private key ({e})")))?;
    let certified = CertifiedKey::new(chain.clone(), signing);
    if let Err(e) = certified.keys_match() {
        return Err(bad_file(
            &key_key,
            key,
            format!(
                "does not belong to the certificate in {} ({e})",
                cert.display()
            ),
        ));
    }
    Ok((chain, private, Arc::new(certified)))
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// What the DICOM TLS listener and our outgoing TLS associations use, built once (the
/// certificate checks are rebuilt when a revocation list changes, see [`revocation`]).
#[derive(Debug, Clone)]
pub struct DicomTls {
    /// The BCP195 ring provider, built once (every TLS connection gets its own configuration).
    provider: Arc<CryptoProvider>,
    /// Our certificate (the TLS listener's; presented to TLS move destinations).
    server_cert: Option<Arc<CertifiedKey>>,
    /// The client-certificate verifier and the outgoing client configuration.
    revocation: Arc<Revocation>,
}

/// The verified client certificate of one TLS connection, filled during its handshake.
pub type PeerCertSlot = Arc<OnceLock<CertificateDer<'static>>>;

impl DicomTls {
    /// Read every PEM file of `[dicom.tls]`; `None` when no DICOM TLS is configured.
    pub fn load(config: &Config) -> Result<Option<DicomTls>, ConfigError> {
        let tls = &config.dicom.tls;
        let outgoing = config.remote_ae.iter().any(|r| r.tls);
        if !tls.enabled && !outgoing {
            return Ok(None);
        }
        let mut ours = None;
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            ours = Some(certified_key("dicom.tls", cert, key)?);
        }
        let roots = match &tls.ca {
            Some(ca) => Some(read_roots("dicom.tls.ca", ca)?),
            None => None,
        };
        let inputs = revocation::Inputs {
            roots,
            require_client_cert: tls.require_client_cert,
            ours: ours
                .as_ref()
                .map(|(chain, key, _)| (chain.clone(), key.clone_key())),
        };
        Ok(Some(DicomTls {
            provider: provider(),
            server_cert: ours.map(|(_, _, certified)| certified),
            revocation: Arc::new(Revocation::load(inputs, &tls.crl)?),
        }))
    }

    /// A server configuration for one connection: its verifier records the client certificate
    /// in `slot`, so the association's access check (which runs after the handshake, on the
    /// A-ASSOCIATE-RQ) can compare it with the calling AE's entry. Session resumption is off:
    /// a resumed session would skip the certificate and leave the slot empty.
    pub fn server_config(
        &self,
        slot: PeerCertSlot,
    ) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let cert = self
            .server_cert
            .clone()
            .ok_or_else(|| rustls::Error::General("no server certificate configured".into()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(VERSIONS)?
            .with_client_cert_verifier(Arc::new(RecordingVerifier {
                inner: self.revocation.current().client_verifier.clone(),
                slot,
            }))
            .with_cert_resolver(Arc::new(FixedCert(cert)));
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// The client configuration for `tls = true` remote AEs (`None` without `dicom.tls.ca`).
    pub fn client_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.revocation.current().client.clone()
    }
}

/// The HTTPS listener's server configuration (`[http.tls]`), `None` when HTTPS is off.
pub fn http_server_config(
    config: &Config,
) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    let tls = &config.http.tls;
    let (true, Some(cert), Some(key)) = (tls.enabled, &tls.cert, &tls.key) else {
        return Ok(None);
    };
    let (_, _, certified) = certified_key("http.tls", cert, key)?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| ConfigError::Invalid {
            key: "http.tls".into(),
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(certified)));
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// Delegates every decision to the WebPKI verifier and keeps the certificate it accepted.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    slot: PeerCertSlot,
}

impl ClientCertVerifier for RecordingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let _ = self.slot.set(end_entity.clone().into_owned());
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The names a certificate answers to for `tls_subject`: its subject common names, then its
/// DNS subject alternative names.
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok(parsed) = webpki::EndEntityCert::try_from(cert) else {
        return Vec::new();
    };
    let mut names = common_names(parsed.subject());
    names.extend(parsed.valid_dns_names().map(str::to_string));
    names
}

/// OID 2.5.4.3 (id-at-commonName), DER-encoded.
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// The commonName values of a DER Name without its outer SEQUENCE (RFC 5280 4.1.2.4: a
/// SEQUENCE OF SET OF SEQUENCE { type OID, value }). Anything malformed yields no name.
fn common_names(mut name: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while let Some((0x31, set, rest)) = der_element(name) {
        name = rest;
        let mut atvs = set;
        while let Some((0x30, atv, rest)) = der_element(atvs) {
            atvs = rest;
            if let Some((0x06, oid, value)) = der_element(atv)
                && oid == OID_COMMON_NAME
                && let Some((tag, text, _)) = der_element(value)
            {
                // UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1 bytes).
                if matches!(tag, 0x0C | 0x13 | 0x16 | 0x14) {
                    names.push(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
    }
    names
}

/// One DER element: (tag, contents, rest). Single-byte tags, definite lengths only.
fn der_element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// TLS version and cipher suite of a connection, for the logs.
pub fn describe(conn: &rustls::CommonState) -> (String, String) {
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    (version, suite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_from_der_name() {
        // SEQUENCE OF: SET { SEQUENCE { 2.5.4.6 C, PrintableString "TW" } },
        //              SET { SEQUENCE { 2.5.4.3 CN, UTF8String "CT1" } }
        let name = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'T', b'W', 0x31,
            0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x03, b'C', b'T', b'1',
        ];
        assert_eq!(common_names(&name), vec!["CT1".to_string()]);
        // Truncated: no panic, no name.
        assert!(common_names(&name[..20]).len() <= 1);
        assert!(common_names(&[0x31, 0x85]).is_empty());
    }

    #[test]
    fn missing_file_names_key_and_path() {
        let err = read_certs("dicom.tls.cert", Path::new("/nonexistent/c.pem")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("dicom.tls.cert") && text.contains("/nonexistent/c.pem"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn profile_is_tls12_and_13_aead_only() {
        for suite in BCP195_SUITES {
            let name = format!("{:?}", suite.suite());
            assert!(name.contains("GCM") || name.contains("CHACHA20"), "{name}");
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
        }
    }
}
