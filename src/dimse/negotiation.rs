//! Extended negotiation for the Query/Retrieve FIND SOP classes (PS3.4 C.5.1): relational
//! queries are declined, combined date-time matching and fuzzy semantic matching of person
//! names are accepted when asked, timezone adjustment is declined. Relational retrieval (C.5.2/C.5.3) is
//! declined by not answering. SCP/SCU role selection (PS3.7 D.3.3.4): a C-GET requestor may
//! take the SCP role for storage SOP classes, so it can receive the sub-operations.

use dicom_dictionary_std::uids;
use dicom_ul::association::server::Negotiation;
use dicom_ul::pdu::RequestorRoles;

use super::c_find::FIND_SOP_CLASSES;

#[derive(Debug, Clone, Copy, Default)]
pub struct QrNegotiation;

/// Byte positions (0-based) of the SOP Class Extended Negotiation info for FIND (Table C.5-2).
const RELATIONAL: usize = 0;
const COMBINED_DATETIME: usize = 1;
const FUZZY_NAMES: usize = 2;

impl Negotiation for QrNegotiation {
    fn extended_negotiation(&self, sop_class_uid: &str, input: &[u8]) -> Option<Vec<u8>> {
        if !FIND_SOP_CLASSES.contains(&sop_class_uid.trim_end_matches('\0')) {
            return None;
        }
        // Answer only the fields we know (at most the four of Table C.5-2), never more than asked.
        let mut out = input[..input.len().min(4)].to_vec();
        for (i, b) in out.iter_mut().enumerate() {
            *b = match i {
                COMBINED_DATETIME | FUZZY_NAMES => u8::from(*b == 1),
                RELATIONAL => 0,
                _ => 0,
            };
        }
        Some(out)
    }

    fn negotiate_roles(
        &self,
        sop_class_uid: &str,
        scu_role: bool,
        scp_role: bool,
    ) -> Option<RequestorRoles> {
        let uid = sop_class_uid.trim_end_matches('\0');
        // Query/retrieve and verification are services we provide, never receive.
        let ours = uid == uids::VERIFICATION || uid.starts_with("1.2.840.10008.5.1.4.1.2.");
        (!ours).then_some(RequestorRoles {
            scu: scu_role,
            scp: scp_role,
        })
    }
}

/// Whether the negotiated info (our answer) enables combined date-time matching.
pub fn combined_datetime_accepted(info: Option<&[u8]>) -> bool {
    info.and_then(|i| i.get(COMBINED_DATETIME))
        .is_some_and(|b| *b == 1)
}

/// Whether the negotiated info (our answer) enables fuzzy semantic matching of person names.
pub fn fuzzy_names_accepted(info: Option<&[u8]>) -> bool {
    info.and_then(|i| i.get(FUZZY_NAMES))
        .is_some_and(|b| *b == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declines_relational_accepts_combined_datetime_and_fuzzy_names() {
        let n = QrNegotiation;
        let study_find = FIND_SOP_CLASSES[1];
        assert_eq!(
            n.extended_negotiation(study_find, &[1, 1, 1, 1, 1]),
            Some(vec![0, 1, 1, 0])
        );
        assert_eq!(
            n.extended_negotiation(study_find, &[0, 0, 1]),
            Some(vec![0, 0, 1])
        );
        assert!(fuzzy_names_accepted(Some(&[0, 0, 1])));
        assert!(!fuzzy_names_accepted(Some(&[0, 1, 0])));
        assert!(!fuzzy_names_accepted(Some(&[0, 1])));
        assert!(!fuzzy_names_accepted(None));
        assert_eq!(n.extended_negotiation(study_find, &[1]), Some(vec![0]));
        assert_eq!(
            n.extended_negotiation("1.2.840.10008.5.1.4.1.1.2", &[1]),
            None
        );
        assert!(combined_datetime_accepted(Some(&[0, 1])));
        let ct = "1.2.840.10008.5.1.4.1.1.2";
        assert_eq!(
            n.negotiate_roles(ct, false, true),
            Some(RequestorRoles {
                scu: false,
                scp: true
            })
        );
        assert_eq!(n.negotiate_roles(study_find, false, true), None);
        assert!(!combined_datetime_accepted(Some(&[0])));
    }
}
