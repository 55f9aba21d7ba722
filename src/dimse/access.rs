//! Who may open an association and use which service: every refusal decision of the DICOM
//! listener is made here, as a [`Refusal`] value, and reported through [`report`] (the one place
//! the audit trail hooks).
//!
//! The model (conformance statement §7.2):
//! - the called AE title must be ours (`dicom.check_called_aet`);
//! - the deprecated `[[dicom.allowed_calling]]` list, when not empty, must name the calling AE
//!   (and its host) — kept so existing configurations keep their meaning;
//! - a calling AE named by a `[[remote_ae]]` entry gets that entry's `services`, `hosts` and
//!   `tls_subject`; any other AE gets `[dicom.unknown_ae]` (by default: every service, any host);
//! - a calling AE refused outright (unknown with no services, wrong host, missing or wrong
//!   client certificate) gets A-ASSOCIATE-RJ "calling AE title not recognized"; a service it may
//!   not use gets the DIMSE status 0x0124 "Refused: Not authorized" (PS3.7 C.5.x).
//!
//! [`AePolicy`] is the dicom-ul `AccessControl` built per connection (it needs the peer's
//! address and, over TLS, the client certificate the handshake verified).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};

use crate::config::{AllowedCaller, Config, Service};
use crate::tls::PeerCertSlot;

/// Why an association or a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The called AE title is not ours.
    CalledAeNotRecognized,
    /// `dicom.allowed_calling` is set and does not list the calling AE from this host.
    NotInAllowList,
    /// No `[[remote_ae]]` names the calling AE and `dicom.unknown_ae.services` is empty.
    UnknownAe,
    /// The calling AE's entry (or `dicom.unknown_ae`) does not list the peer's address.
    HostNotAllowed,
    /// The entry has a `tls_subject` but the peer presented no verified client certificate.
    ClientCertificateMissing,
    /// The client certificate's names do not include the entry's `tls_subject`.
    CertificateSubjectMismatch { presented: Vec<String> },
    /// The AE may not use this service (answered with status 0x0124).
    ServiceNotAllowed(Service),
    /// The TLS handshake on the TLS port failed (before any A-ASSOCIATE-RQ): no or an untrusted
    /// client certificate, a plain DICOM client, or nothing in common with the BCP195 profile.
    TlsHandshakeFailed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::CalledAeNotRecognized => f.write_str("called AE title not recognized"),
            Refusal::NotInAllowList => f.write_str("calling AE not in dicom.allowed_calling"),
            Refusal::UnknownAe => {
                f.write_str("unknown calling AE (dicom.unknown_ae allows nothing)")
            }
            Refusal::HostNotAllowed => f.write_str("calling AE not allowed from this address"),
            Refusal::ClientCertificateMissing => {
                f.write_str("calling AE requires a TLS client certificate and presented none")
            }
            Refusal::CertificateSubjectMismatch { presented } => write!(
                f,
                "client certificate does not match the calling AE's tls_subject (presented {presented:?})"
            ),
            Refusal::ServiceNotAllowed(service) => {
                write!(f, "service {service} not allowed for the calling AE")
            }
            Refusal::TlsHandshakeFailed(why) => {
                write!(f, "TLS handshake failed, connection closed: {why}")
            }
        }
    }
}

impl Refusal {
    /// The A-ASSOCIATE-RJ reason (PS3.8 9.3.4) peers see.
    pub fn rj_reason(&self) -> AssociationRJServiceUserReason {
        match self {
            Refusal::CalledAeNotRecognized => {
                AssociationRJServiceUserReason::CalledAETitleNotRecognized
            }
            _ => AssociationRJServiceUserReason::CallingAETitleNotRecognized,
        }
    }
}

/// One refusal, as logged (and audited).
#[derive(Debug)]
pub struct RefusalEvent<'a> {
    pub refusal: &'a Refusal,
    pub calling_aet: &'a str,
    pub called_aet: &'a str,
    pub peer: SocketAddr,
    pub over_tls: bool,
}

/// Every refusal passes here: the log line, and the hook for the audit trail (PS3.15 A.5.3.x
/// Security Alert / association refused).
/// Every refusal, logged and sent to the audit trail as a Security Alert (PS3.15 A.5.3.11).
pub fn report(event: &RefusalEvent<'_>, audit: &crate::audit::Audit) {
    let service = match event.refusal {
        Refusal::ServiceNotAllowed(s) => s.name(),
        _ => "association",
    };
    tracing::warn!(
        calling_aet = %event.calling_aet.trim(),
        called_aet = %event.called_aet.trim(),
        peer = %event.peer,
        tls = event.over_tls,
        service,
        reason = %event.refusal,
        "refused"
    );
    let caller = crate::audit::Actor::node(event.calling_aet, event.peer.ip().to_canonical());
    audit.association_refused(
        &caller,
        &format!(
            "{service} refused: {} (calling AE '{}', called AE '{}'{})",
            event.refusal,
            event.calling_aet.trim(),
            event.called_aet.trim(),
            if event.over_tls { ", over TLS" } else { "" }
        ),
    );
}

/// What one calling AE may do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Permissions {
    services: Vec<Service>,
    hosts: Vec<IpAddr>,
    tls_subject: Option<String>,
}

/// The access rules of the configuration, built once.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    check_called_aet: bool,
    allowed_calling: Vec<AllowedCaller>,
    known: Vec<(String, Permissions)>,
    unknown: Permissions,
}

impl AccessPolicy {
    pub fn new(config: &Config) -> AccessPolicy {
        AccessPolicy {
            check_called_aet: config.dicom.check_called_aet,
            allowed_calling: config.dicom.allowed_calling.clone(),
            known: config
                .remote_ae
                .iter()
                .map(|r| {
                    (
                        r.aet.trim().to_string(),
                        Permissions {
                            services: r.services.clone(),
                            hosts: r.hosts.clone(),
                            tls_subject: r.tls_subject.as_ref().map(|s| s.trim().to_string()),
                        },
                    )
                })
                .collect(),
            unknown: Permissions {
                services: config.dicom.unknown_ae.services.clone(),
                hosts: config.dicom.unknown_ae.hosts.clone(),
                tls_subject: None,
            },
        }
    }

    fn permissions(&self, calling_aet: &str) -> (bool, &Permissions) {
        let calling = calling_aet.trim();
        match self.known.iter().find(|(aet, _)| aet == calling) {
            Some((_, p)) => (true, p),
            None => (false, &self.unknown),
        }
    }

    /// Whether an A-ASSOCIATE-RQ is accepted. `client_cert_names`: the names of the verified
    /// client certificate (`None`: plain TCP, or TLS without a client certificate).
    pub fn decide_association(
        &self,
        this_aet: &str,
        calling_aet: &str,
        called_aet: &str,
        peer_ip: IpAddr,
        client_cert_names: Option<&[String]>,
    ) -> Result<(), Refusal> {
        if self.check_called_aet && called_aet.trim() != this_aet.trim() {
            return Err(Refusal::CalledAeNotRecognized);
        }
        let calling = calling_aet.trim();
        if !self.allowed_calling.is_empty()
            && !self.allowed_calling.iter().any(|a| {
                a.aet.trim() == calling && (a.hosts.is_empty() || a.hosts.contains(&peer_ip))
            })
        {
            return Err(Refusal::NotInAllowList);
        }
        let (known, permissions) = self.permissions(calling);
        if !known && permissions.services.is_empty() {
            return Err(Refusal::UnknownAe);
        }
        if !permissions.hosts.is_empty() && !permissions.hosts.contains(&peer_ip) {
            return Err(Refusal::HostNotAllowed);
        }
        if let Some(subject) = &permissions.tls_subject {
            let Some(names) = client_cert_names else {
                return Err(Refusal::ClientCertificateMissing);
            };
            if !names.iter().any(|n| n == subject) {
                return Err(Refusal::CertificateSubjectMismatch {
                    presented: names.to_vec(),
                });
            }
        }
        Ok(())
    }

    /// Whether the calling AE of an accepted association may use `service`.
    pub fn decide_service(&self, calling_aet: &str, service: Service) -> Result<(), Refusal> {
        let (_, permissions) = self.permissions(calling_aet);
        if permissions.services.contains(&service) {
            Ok(())
        } else {
            Err(Refusal::ServiceNotAllowed(service))
        }
    }
}

/// The dicom-ul access check of one connection.
#[derive(Debug, Clone)]
pub struct AePolicy {
    pub policy: Arc<AccessPolicy>,
    pub peer: SocketAddr,
    /// Over TLS: the client certificate the handshake verified (empty if none was presented).
    pub client_cert: Option<PeerCertSlot>,
    /// Where refusals are reported.
    pub audit: crate::audit::Audit,
}

impl AccessControl for AePolicy {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let names = self
            .client_cert
            .as_ref()
            .and_then(|slot| slot.get())
            .map(crate::tls::certificate_names);
        // IPv4 peers on an IPv6 socket arrive as ::ffff:a.b.c.d; compare them as IPv4.
        let peer_ip = self.peer.ip().to_canonical();
        self.policy
            .decide_association(
                this_ae_title,
                calling_ae_title,
                called_ae_title,
                peer_ip,
                names.as_deref(),
            )
            .map_err(|refusal| {
                report(
                    &RefusalEvent {
                        refusal: &refusal,
                        calling_aet: calling_ae_title,
                        called_aet: called_ae_title,
                        peer: self.peer,
                        over_tls: self.client_cert.is_some(),
                    },
                    &self.audit,
                );
                refusal.rj_reason()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));

    fn policy(toml: &str) -> AccessPolicy {
        AccessPolicy::new(&Config::parse(toml).unwrap())
    }

    fn decide(
        p: &AccessPolicy,
        calling: &str,
        ip: IpAddr,
        names: Option<&[String]>,
    ) -> Result<(), Refusal> {
        p.decide_association("MIFAS", calling, "MIFAS", ip, names)
    }

    #[test]
    fn no_config_allows_everyone_everything() {
        let p = policy("");
        assert_eq!(decide(&p, "ANY", OTHER, None), Ok(()));
        for s in Service::ALL {
            assert_eq!(p.decide_service("ANY", s), Ok(()));
        }
    }

    #[test]
    fn called_ae_must_match() {
        let p = policy("");
        assert!(
            p.decide_association("MIFAS", "ANY", "MIFAS   ", LOCAL, None)
                .is_ok()
        );
        assert_eq!(
            p.decide_association("MIFAS", "ANY", "OTHER", LOCAL, None),
            Err(Refusal::CalledAeNotRecognized)
        );
        assert_eq!(
            Refusal::CalledAeNotRecognized.rj_reason(),
            AssociationRJServiceUserReason::CalledAETitleNotRecognized
        );
        let p = policy("[dicom]\ncheck_called_aet = false\n");
        assert!(
            p.decide_association("MIFAS", "ANY", "OTHER", LOCAL, None)
                .is_ok()
        );
    }

    #[test]
    fn allow_list_checks_aet_and_host() {
        let p = policy(
            "[[dicom.allowed_calling]]\naet = \"CT1\"\nhosts = [\"127.0.0.1\"]\n[[dicom.allowed_calling]]\naet = \"MR1\"\nhosts = [\"10.0.0.8\"]\n[[dicom.allowed_calling]]\naet = \"WS\"\n",
        );
        assert_eq!(decide(&p, "CT1", LOCAL, None), Ok(()));
        assert_eq!(decide(&p, "WS", OTHER, None), Ok(()));
        assert_eq!(decide(&p, "MR1", LOCAL, None), Err(Refusal::NotInAllowList));
        assert_eq!(
            decide(&p, "NOBODY", LOCAL, None),
            Err(Refusal::NotInAllowList)
        );
    }

    const PERMS: &str = r#"
[dicom.unknown_ae]
services = ["echo"]
hosts = ["127.0.0.1"]
[[remote_ae]]
aet = "MODALITY"
host = "127.0.0.1"
port = 104
services = ["echo", "store"]
hosts = ["127.0.0.1"]
[[remote_ae]]
aet = "VIEWER"
host = "127.0.0.1"
port = 104
"#;

    /// The decision table: (calling AE, address) → association; (calling AE, service) → status.
    #[test]
    fn permission_table() {
        let p = policy(PERMS);
        let cases: &[(&str, IpAddr, Result<(), Refusal>)] = &[
            ("MODALITY", LOCAL, Ok(())),
            ("MODALITY", OTHER, Err(Refusal::HostNotAllowed)),
            ("VIEWER", OTHER, Ok(())),
            ("STRANGER", LOCAL, Ok(())),
            ("STRANGER", OTHER, Err(Refusal::HostNotAllowed)),
        ];
        for (aet, ip, expected) in cases {
            assert_eq!(&decide(&p, aet, *ip, None), expected, "{aet} from {ip}");
        }
        let services: &[(&str, Service, bool)] = &[
            ("MODALITY", Service::Echo, true),
            ("MODALITY", Service::Store, true),
            ("MODALITY", Service::Find, false),
            ("MODALITY", Service::Move, false),
            ("MODALITY", Service::Get, false),
            ("MODALITY", Service::Commitment, false),
            ("VIEWER", Service::Move, true),
            ("VIEWER", Service::Commitment, true),
            ("STRANGER", Service::Echo, true),
            ("STRANGER", Service::Store, false),
        ];
        for (aet, service, allowed) in services {
            assert_eq!(
                p.decide_service(aet, *service).is_ok(),
                *allowed,
                "{aet} {service}"
            );
        }
        assert_eq!(
            p.decide_service("MODALITY", Service::Find),
            Err(Refusal::ServiceNotAllowed(Service::Find))
        );
    }

    #[test]
    fn unknown_aes_refused_when_they_may_do_nothing() {
        let p = policy("[dicom.unknown_ae]\nservices = []\n");
        assert_eq!(decide(&p, "STRANGER", LOCAL, None), Err(Refusal::UnknownAe));
        assert_eq!(
            Refusal::UnknownAe.rj_reason(),
            AssociationRJServiceUserReason::CallingAETitleNotRecognized
        );
    }

    #[test]
    fn tls_subject_must_match_a_certificate_name() {
        let mut config = Config::parse(PERMS).unwrap();
        config.remote_ae[1].tls_subject = Some("viewer.example".into());
        let p = AccessPolicy::new(&config);
        assert_eq!(
            decide(&p, "VIEWER", LOCAL, None),
            Err(Refusal::ClientCertificateMissing)
        );
        let good = ["VIEWER-CN".to_string(), "viewer.example".to_string()];
        assert_eq!(decide(&p, "VIEWER", LOCAL, Some(&good)), Ok(()));
        let bad = ["modality.example".to_string()];
        assert!(matches!(
            decide(&p, "VIEWER", LOCAL, Some(&bad)),
            Err(Refusal::CertificateSubjectMismatch { .. })
        ));
        // Entries without tls_subject do not look at certificates.
        assert_eq!(decide(&p, "MODALITY", LOCAL, Some(&bad)), Ok(()));
    }
}
