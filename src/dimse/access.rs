//! Who may open an association: the called-AE check and the calling-AE allow-list, as a
//! dicom-ul `AccessControl` policy built per connection (it needs the peer's address).

use std::net::IpAddr;
use std::sync::Arc;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};

use crate::config::AllowedCaller;

#[derive(Debug, Clone)]
pub struct AePolicy {
    pub check_called_aet: bool,
    pub allowed_calling: Arc<Vec<AllowedCaller>>,
    pub peer_ip: IpAddr,
}

impl AccessControl for AePolicy {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if self.check_called_aet && called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if !self.allowed_calling.is_empty() {
            let calling = calling_ae_title.trim();
            let allowed = self.allowed_calling.iter().any(|a| {
                a.aet.trim() == calling && (a.hosts.is_empty() || a.hosts.contains(&self.peer_ip))
            });
            if !allowed {
                return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: Vec<AllowedCaller>) -> AePolicy {
        AePolicy {
            check_called_aet: true,
            allowed_calling: Arc::new(allowed),
            peer_ip: IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn called_ae_must_match() {
        let p = policy(vec![]);
        assert!(p.check_access("MIFAS", "ANY", "MIFAS", None).is_ok());
        assert!(p.check_access("MIFAS", "ANY", "MIFAS   ", None).is_ok());
        assert_eq!(
            p.check_access("MIFAS", "ANY", "OTHER", None),
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
    }

    #[test]
    fn allow_list_checks_aet_and_host() {
        let p = policy(vec![
            AllowedCaller {
                aet: "CT1".into(),
                hosts: vec![IpAddr::from([127, 0, 0, 1])],
            },
            AllowedCaller {
                aet: "MR1".into(),
                hosts: vec![IpAddr::from([10, 0, 0, 9])],
            },
            AllowedCaller {
                aet: "WS".into(),
                hosts: vec![],
            },
        ]);
        assert!(p.check_access("MIFAS", "CT1", "MIFAS", None).is_ok());
        assert!(p.check_access("MIFAS", "WS", "MIFAS", None).is_ok());
        assert_eq!(
            p.check_access("MIFAS", "MR1", "MIFAS", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        assert_eq!(
            p.check_access("MIFAS", "NOBODY", "MIFAS", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
    }
}
