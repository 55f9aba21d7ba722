//! `[dicom.tls]`, `[http.tls]`, `[dicom.unknown_ae]` and the permission keys of `[[remote_ae]]`
//! (issue 13): which transport a listener uses, and which DICOM services an AE may ask for.
//! Only the shapes and their validation live here; the PEM files are read by `crate::tls` at
//! start-up, and the decisions are made in `dimse::access`.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, RemoteAe};

/// `[dicom.tls]`: the DICOM TLS listener (PS3.15 B.9 BCP195 profile) and the certificate we
/// present on outgoing TLS associations.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DicomTlsConfig {
    /// Open the TLS listener.
    pub enabled: bool,
    /// Address of the TLS listener; default: `dicom.bind`.
    pub bind: Option<IpAddr>,
    /// Port of the TLS listener (2762 is the port IANA registered for DICOM over TLS).
    pub port: u16,
    /// Our certificate chain (PEM), leaf first.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA bundle (PEM). Client certificates are verified against it (mutual TLS), and so are
    /// the remote AEs we connect to with `tls = true`. Without it clients are not asked for a
    /// certificate.
    pub ca: Option<PathBuf>,
    /// Refuse the TLS handshake of a client without a certificate signed by `ca`.
    pub require_client_cert: bool,
    /// Certificate revocation lists (PEM): client certificates and remote AEs' certificates
    /// they list are refused. Re-read when a file changes.
    pub crl: Vec<PathBuf>,
    /// Keep the plain (non-TLS) listener on `dicom.port` open beside the TLS one.
    pub plain_listener: bool,
}

impl Default for DicomTlsConfig {
    fn default() -> Self {
        DicomTlsConfig {
            enabled: false,
            bind: None,
            port: 2762,
            cert: None,
            key: None,
            ca: None,
            require_client_cert: false,
            crl: Vec::new(),
            plain_listener: true,
        }
    }
}

/// `[http.tls]`: HTTPS on the HTTP port (the portal, DICOMweb, /metrics).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpTlsConfig {
    /// Serve HTTPS instead of HTTP on `http.port`.
    pub enabled: bool,
    /// Certificate chain (PEM), leaf first.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
}

/// A DICOM service an AE may be allowed to use (`services = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// C-ECHO (Verification).
    Echo,
    /// C-STORE to us.
    Store,
    /// C-FIND.
    Find,
    /// C-MOVE.
    Move,
    /// C-GET.
    Get,
    /// Storage Commitment N-ACTION.
    Commitment,
}

impl Service {
    pub const ALL: [Service; 6] = [
        Service::Echo,
        Service::Store,
        Service::Find,
        Service::Move,
        Service::Get,
        Service::Commitment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Store => "store",
            Service::Find => "find",
            Service::Move => "move",
            Service::Get => "get",
            Service::Commitment => "commitment",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub(super) fn all_services() -> Vec<Service> {
    Service::ALL.to_vec()
}

/// `[dicom.unknown_ae]`: what a calling AE that no `[[remote_ae]]` entry names may do.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnknownAeConfig {
    /// Services it may use; `[]` refuses unknown AEs at association time (A-ASSOCIATE-RJ).
    pub services: Vec<Service>,
    /// Addresses it may connect from; `[]` = any.
    pub hosts: Vec<IpAddr>,
}

impl Default for UnknownAeConfig {
    fn default() -> Self {
        UnknownAeConfig {
            services: all_services(),
            hosts: Vec::new(),
        }
    }
}

fn invalid(key: String, message: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        message: message.into(),
    })
}

impl DicomTlsConfig {
    pub(super) fn validate(
        &self,
        remote_ae: &[RemoteAe],
        plain_port: u16,
    ) -> Result<(), ConfigError> {
        if self.enabled {
            if self.cert.is_none() {
                return invalid(
                    "dicom.tls.cert".into(),
                    "required when dicom.tls.enabled = true",
                );
            }
            if self.key.is_none() {
                return invalid(
                    "dicom.tls.key".into(),
                    "required when dicom.tls.enabled = true",
                );
            }
            if self.port == 0 && plain_port == 0 {
                // Both ephemeral is fine (tests); equal non-zero ports cannot both be bound.
            } else if self.plain_listener && self.port == plain_port {
                return invalid(
                    "dicom.tls.port".into(),
                    "must differ from dicom.port while dicom.tls.plain_listener = true",
                );
            }
        }
        if self.require_client_cert && self.ca.is_none() {
            return invalid(
                "dicom.tls.require_client_cert".into(),
                "needs dicom.tls.ca (the CA bundle client certificates are verified against)",
            );
        }
        if !self.crl.is_empty() && self.ca.is_none() {
            return invalid(
                "dicom.tls.crl".into(),
                "needs dicom.tls.ca (revocation lists apply to certificates verified against it)",
            );
        }
        if self.cert.is_some() != self.key.is_some() {
            return invalid(
                "dicom.tls.key".into(),
                "dicom.tls.cert and dicom.tls.key go together",
            );
        }
        for (i, remote) in remote_ae.iter().enumerate() {
            if remote.tls && self.ca.is_none() {
                return invalid(
                    format!("remote_ae[{i}].tls"),
                    "needs dicom.tls.ca to verify the remote AE's certificate",
                );
            }
            if remote
                .tls_subject
                .as_deref()
                .is_some_and(|s| s.trim().is_empty())
            {
                return invalid(format!("remote_ae[{i}].tls_subject"), "must not be empty");
            }
            if remote.tls_subject.is_some() && !(self.enabled && self.ca.is_some()) {
                return invalid(
                    format!("remote_ae[{i}].tls_subject"),
                    "needs dicom.tls.enabled = true and dicom.tls.ca (client certificates)",
                );
            }
        }
        Ok(())
    }
}

impl HttpTlsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.cert.is_none() {
            return invalid(
                "http.tls.cert".into(),
                "required when http.tls.enabled = true",
            );
        }
        if self.enabled && self.key.is_none() {
            return invalid(
                "http.tls.key".into(),
                "required when http.tls.enabled = true",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn validate(text: &str) -> Result<Config, String> {
        let config = Config::parse(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn defaults_change_nothing() {
        let config = validate("").unwrap();
        assert!(!config.dicom.tls.enabled);
        assert_eq!(config.dicom.tls.port, 2762);
        assert!(config.dicom.tls.plain_listener);
        assert!(!config.http.tls.enabled);
        assert_eq!(config.dicom.unknown_ae.services.len(), 6);
        assert!(config.dicom.unknown_ae.hosts.is_empty());
    }

    #[test]
    fn tls_needs_cert_and_key() {
        let err = validate("[dicom.tls]\nenabled = true\n").unwrap_err();
        assert!(err.contains("dicom.tls.cert"), "{err}");
        let err = validate("[dicom.tls]\nenabled = true\ncert = \"c.pem\"\n").unwrap_err();
        assert!(err.contains("dicom.tls.key"), "{err}");
        let err = validate("[http.tls]\nenabled = true\nkey = \"k.pem\"\n").unwrap_err();
        assert!(err.contains("http.tls.cert"), "{err}");
        let err =
            validate("[dicom.tls]\nenabled = true\ncert = \"c\"\nkey = \"k\"\nport = 11112\n")
                .unwrap_err();
        assert!(err.contains("dicom.tls.port"), "{err}");
        validate("[dicom.tls]\nenabled = true\ncert = \"c\"\nkey = \"k\"\nport = 11112\nplain_listener = false\n")
            .unwrap();
    }

    #[test]
    fn mutual_tls_and_subjects_need_a_ca() {
        let err = validate("[dicom.tls]\nrequire_client_cert = true\n").unwrap_err();
        assert!(err.contains("dicom.tls.require_client_cert"), "{err}");
        let remote = "[[remote_ae]]\naet = \"A\"\nhost = \"h\"\nport = 1\ntls = true\n";
        let err = validate(remote).unwrap_err();
        assert!(err.contains("remote_ae[0].tls"), "{err}");
        let subject = "[[remote_ae]]\naet = \"A\"\nhost = \"h\"\nport = 1\ntls_subject = \"a\"\n";
        let err = validate(subject).unwrap_err();
        assert!(err.contains("remote_ae[0].tls_subject"), "{err}");
        let err = validate("[dicom.tls]\ncrl = [\"r.pem\"]\n").unwrap_err();
        assert!(err.contains("dicom.tls.crl"), "{err}");
    }

    #[test]
    fn services_are_named() {
        let config = validate(
            "[dicom.unknown_ae]\nservices = [\"echo\"]\nhosts = [\"10.0.0.1\"]\n[[remote_ae]]\naet = \"A\"\nhost = \"h\"\nport = 1\nservices = [\"echo\", \"store\"]\nhosts = [\"127.0.0.1\"]\n",
        )
        .unwrap();
        assert_eq!(config.remote_ae[0].services.len(), 2);
        let err = validate("[dicom.unknown_ae]\nservices = [\"print\"]\n").unwrap_err();
        assert!(err.contains("dicom.unknown_ae.services"), "{err}");
    }
}
