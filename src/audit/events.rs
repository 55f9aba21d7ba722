//! The audit events MIFAS reports, each built as PS3.15 A.5.3 says: which EventID and
//! EventTypeCode, which active participants (with UserIsRequestor and RoleIDCode) and which
//! participant objects.

use std::collections::BTreeMap;

use super::message::{Action, AuditMessage, Code, Outcome, Participant, ParticipantObject};

/// A participant as the network layer knows it: a DICOM node or a portal / DICOMweb user,
/// and the address it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// UserID: the AE title of a node, the login name of a user.
    pub id: String,
    /// The AE title, for AlternativeUserID `AETITLES=`.
    pub aet: Option<String>,
    /// IP address or host name of the participant; `None` when unknown.
    pub host: Option<String>,
}

impl Actor {
    /// A DICOM application entity at `host`.
    pub fn node(aet: &str, host: impl ToString) -> Actor {
        Actor {
            id: aet.trim().to_string(),
            aet: Some(aet.trim().to_string()),
            host: Some(host.to_string()),
        }
    }

    /// A portal or DICOMweb user, from `host`.
    pub fn user(name: &str, host: impl ToString) -> Actor {
        Actor {
            id: name.to_string(),
            aet: None,
            host: Some(host.to_string()),
        }
    }

    fn participant(&self, is_requestor: bool, roles: Vec<Code>) -> Participant {
        Participant {
            user_id: self.id.clone(),
            alternative_user_id: self.aet.as_ref().map(|a| format!("AETITLES={a}")),
            user_name: None,
            is_requestor,
            network_access_point: self.host.as_ref().map(|h| {
                // Type 2 = IP address, 1 = machine name (A.5.2.1).
                let kind = if h.parse::<std::net::IpAddr>().is_ok() {
                    2
                } else {
                    1
                };
                (h.clone(), kind)
            }),
            roles,
        }
    }
}

/// The instances of one study an event touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Study {
    pub study_uid: String,
    pub patient_id: String,
    pub patient_name: String,
    /// SOP Class UID → instances.
    pub sop_classes: BTreeMap<String, u64>,
}

impl Study {
    /// Count one instance of `sop_class` in.
    pub fn add(&mut self, sop_class: &str, n: u64) {
        *self.sop_classes.entry(sop_class.to_string()).or_default() += n;
    }

    pub fn instances(&self) -> u64 {
        self.sop_classes.values().sum()
    }
}

fn source_role() -> Code {
    Code::dcm("110153", "Source Role ID")
}
fn destination_role() -> Code {
    Code::dcm("110152", "Destination Role ID")
}

/// The study object (type 2 system object, role 3 report, ID type 110180) and its patient
/// (type 1 person, role 1 patient, ID type RFC-3881 "2" Patient Number) — A.5.3.5.
fn study_objects(msg: &mut AuditMessage, studies: &[Study]) {
    let mut patients: BTreeMap<&str, &str> = BTreeMap::new();
    for s in studies {
        let mut o = ParticipantObject::new(
            &s.study_uid,
            2,
            3,
            Code::dcm("110180", "Study Instance UID"),
        );
        o.sop_classes = s.sop_classes.clone();
        msg.objects.push(o);
        patients.entry(&s.patient_id).or_insert(&s.patient_name);
    }
    for (id, name) in patients {
        let mut o = ParticipantObject::new(
            id,
            1,
            1,
            Code {
                code: "2".into(),
                system: "RFC-3881",
                text: "Patient Number",
            },
        );
        o.name = (!name.is_empty()).then(|| name.to_string());
        msg.objects.push(o);
    }
}

/// Application Activity (A.5.3.1): 110100 with 110120 start / 110121 stop. The application
/// is the archive itself; the launcher is the operating-system user that runs it.
pub fn application_activity(app: &Actor, launcher: &str, started: bool) -> AuditMessage {
    let mut msg = AuditMessage::new(
        Code::dcm("110100", "Application Activity"),
        Action::Execute,
        Outcome::Success,
    );
    msg.event_types.push(if started {
        Code::dcm("110120", "Application Start")
    } else {
        Code::dcm("110121", "Application Stop")
    });
    msg.participants
        .push(app.participant(false, vec![Code::dcm("110150", "Application")]));
    msg.participants.push(Participant {
        user_id: launcher.to_string(),
        alternative_user_id: None,
        user_name: None,
        is_requestor: true,
        network_access_point: None,
        roles: vec![Code::dcm("110151", "Application Launcher")],
    });
    msg
}

/// Security Alert (A.5.3.11) for an association refused: 110113 with 110126 Node
/// Authentication; the reporter is the archive, the performer the calling node; the alert
/// subject is the calling node, with the reason.
pub fn association_refused(archive: &Actor, caller: &Actor, reason: &str) -> AuditMessage {
    let mut msg = AuditMessage::new(
        Code::dcm("110113", "Security Alert"),
        Action::Execute,
        Outcome::MinorFailure,
    );
    msg.event_types
        .push(Code::dcm("110126", "Node Authentication"));
    msg.outcome_description = Some(reason.to_string());
    msg.participants.push(caller.participant(true, Vec::new()));
    msg.participants
        .push(archive.participant(false, Vec::new()));
    let node = caller.host.as_deref().unwrap_or(&caller.id);
    let mut subject = ParticipantObject::new(node, 2, 13, Code::dcm("110182", "Node ID"));
    subject
        .details
        .push(("Alert Description", reason.as_bytes().to_vec()));
    subject
        .details
        .push(("CallingAETitle", caller.id.as_bytes().to_vec()));
    msg.objects.push(subject);
    msg
}

/// DICOM Instances Transferred (A.5.3.5), 110104: `Create` for instances received (`source`
/// sent them to `destination`, the archive), `Read` for instances sent out. `requestor` is the
/// participant that asked (the C-MOVE's calling AE when it is not the destination).
pub fn instances_transferred(
    action: Action,
    source: &Actor,
    destination: &Actor,
    requestor: Option<&Actor>,
    source_requested: bool,
    studies: &[Study],
    outcome: Outcome,
) -> AuditMessage {
    let mut msg = AuditMessage::new(
        Code::dcm("110104", "DICOM Instances Transferred"),
        action,
        outcome,
    );
    let requested_by_other = requestor.is_some();
    msg.participants
        .push(source.participant(!requested_by_other && source_requested, vec![source_role()]));
    msg.participants.push(destination.participant(
        !requested_by_other && !source_requested,
        vec![destination_role()],
    ));
    if let Some(r) = requestor {
        msg.participants.push(r.participant(true, Vec::new()));
    }
    study_objects(&mut msg, studies);
    msg
}

/// Query (A.5.3.12), 110112: the requestor (source role) asked the archive (destination role);
/// the query object carries the SOP Class UID, the query itself and how it is encoded.
pub fn query(
    requestor: &Actor,
    archive: &Actor,
    sop_class: &str,
    query: &[u8],
    detail: (&'static str, &str),
    outcome: Outcome,
) -> AuditMessage {
    let mut msg = AuditMessage::new(Code::dcm("110112", "Query"), Action::Execute, outcome);
    msg.participants
        .push(requestor.participant(true, vec![source_role()]));
    msg.participants
        .push(archive.participant(false, vec![destination_role()]));
    let mut o = ParticipantObject::new(sop_class, 2, 24, Code::dcm("110181", "SOP Class UID"));
    o.query = Some(query.to_vec());
    o.details.push((detail.0, detail.1.as_bytes().to_vec()));
    msg.objects.push(o);
    msg
}

/// User Authentication (A.5.3.13), 110114 with 110122 Login: outcome 0 when it succeeded, 4
/// when it failed; the user is the requestor, the archive the authenticating node.
pub fn user_authentication(user: &Actor, archive: &Actor, success: bool) -> AuditMessage {
    let outcome = if success {
        Outcome::Success
    } else {
        Outcome::MinorFailure
    };
    let mut msg = AuditMessage::new(
        Code::dcm("110114", "User Authentication"),
        Action::Execute,
        outcome,
    );
    msg.event_types.push(Code::dcm("110122", "Login"));
    msg.participants.push(user.participant(true, Vec::new()));
    msg.participants
        .push(archive.participant(false, Vec::new()));
    msg
}

/// DICOM Instances Accessed (A.5.3.4), 110103 `Read`: a user viewed instances without a
/// transfer of the objects (previews, rendered images, metadata).
pub fn instances_accessed(user: &Actor, archive: &Actor, studies: &[Study]) -> AuditMessage {
    let mut msg = AuditMessage::new(
        Code::dcm("110103", "DICOM Instances Accessed"),
        Action::Read,
        Outcome::Success,
    );
    msg.participants.push(user.participant(true, Vec::new()));
    msg.participants
        .push(archive.participant(false, Vec::new()));
    study_objects(&mut msg, studies);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::message::AuditSource;

    fn source() -> AuditSource {
        AuditSource {
            source_id: "SRC".into(),
            enterprise_site_id: String::new(),
        }
    }

    fn study() -> Study {
        let mut s = Study {
            study_uid: "1.2.3".into(),
            patient_id: "PID<1>".into(),
            patient_name: "Doe^J".into(),
            ..Default::default()
        };
        s.add("1.2.840.10008.5.1.4.1.1.2", 3);
        s
    }

    /// The A.5.1 sequence: EventIdentification, ActiveParticipant+, AuditSourceIdentification,
    /// ParticipantObjectIdentification*; and the required attributes are there.
    fn assert_schema_order(xml: &str) {
        let at = |needle: &str| xml.find(needle).unwrap_or(usize::MAX);
        let ev = at("<EventIdentification ");
        let ap = at("<ActiveParticipant ");
        let src = at("<AuditSourceIdentification ");
        assert!(ev < ap && ap < src && src != usize::MAX, "{xml}");
        assert!(
            !xml[..ap].contains("<ParticipantObjectIdentification"),
            "{xml}"
        );
        if let Some(po) = xml.find("<ParticipantObjectIdentification") {
            assert!(
                po > src && !xml[po..].contains("<ActiveParticipant"),
                "{xml}"
            );
        }
        for required in [
            "EventDateTime=\"",
            "EventOutcomeIndicator=\"",
            "EventActionCode=\"",
            "UserIsRequestor=\"",
            "AuditSourceID=\"SRC\"",
        ] {
            assert!(xml.contains(required), "{required} missing: {xml}");
        }
        assert!(
            xml.ends_with("</AuditMessage>") && !xml.contains('\n'),
            "{xml}"
        );
    }

    #[test]
    fn stored_instances_name_source_destination_study_and_patient() {
        let ct = Actor::node("CT1", "10.0.0.7");
        let archive = Actor::node("MIFAS", "pacs");
        let msg = instances_transferred(
            Action::Create,
            &ct,
            &archive,
            None,
            true,
            &[study()],
            Outcome::Success,
        );
        let xml = msg.to_xml(&source());
        assert_schema_order(&xml);
        assert!(xml.contains(r#"EventActionCode="C""#));
        assert!(xml.contains(r#"<EventID csd-code="110104" codeSystemName="DCM" originalText="DICOM Instances Transferred"/>"#));
        assert!(xml.contains(r#"UserID="CT1" AlternativeUserID="AETITLES=CT1" UserIsRequestor="true" NetworkAccessPointID="10.0.0.7" NetworkAccessPointTypeCode="2"><RoleIDCode csd-code="110153""#), "{xml}");
        assert!(xml.contains(r#"UserID="MIFAS" AlternativeUserID="AETITLES=MIFAS" UserIsRequestor="false" NetworkAccessPointID="pacs" NetworkAccessPointTypeCode="1"><RoleIDCode csd-code="110152""#), "{xml}");
        assert!(
            xml.contains(r#"<SOPClass UID="1.2.840.10008.5.1.4.1.1.2" NumberOfInstances="3"/>"#)
        );
        assert!(xml.contains(r#"ParticipantObjectID="PID&lt;1&gt;" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1"><ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881""#), "{xml}");
        assert!(xml.contains("<ParticipantObjectName>Doe^J</ParticipantObjectName>"));
    }

    #[test]
    fn a_move_names_its_requestor_apart_from_the_destination() {
        let archive = Actor::node("MIFAS", "pacs");
        let dest = Actor::node("WS1", "10.0.0.9");
        let asker = Actor::node("RIS", "10.0.0.2");
        let msg = instances_transferred(
            Action::Read,
            &archive,
            &dest,
            Some(&asker),
            false,
            &[study()],
            Outcome::MinorFailure,
        );
        let req: Vec<_> = msg.participants.iter().filter(|p| p.is_requestor).collect();
        assert_eq!(req.len(), 1);
        assert_eq!(req[0].user_id, "RIS");
        let xml = msg.to_xml(&source());
        assert_schema_order(&xml);
        assert!(
            xml.contains(r#"EventActionCode="R""#) && xml.contains(r#"EventOutcomeIndicator="4""#)
        );
    }

    #[test]
    fn every_event_has_its_codes() {
        let archive = Actor::node("MIFAS", "pacs");
        let user = Actor::user("ann", "192.0.2.1");
        let cases = [
            (
                application_activity(&archive, "root", true),
                "110100",
                Some("110120"),
            ),
            (
                application_activity(&archive, "root", false),
                "110100",
                Some("110121"),
            ),
            (
                association_refused(&archive, &Actor::node("X", "192.0.2.5"), "no"),
                "110113",
                Some("110126"),
            ),
            (
                query(
                    &user,
                    &archive,
                    "1.2.840.10008.5.1.4.1.2.2.1",
                    b"q",
                    ("QueryEncoding", "UTF-8"),
                    Outcome::Success,
                ),
                "110112",
                None,
            ),
            (
                user_authentication(&user, &archive, false),
                "110114",
                Some("110122"),
            ),
            (
                instances_accessed(&user, &archive, &[study()]),
                "110103",
                None,
            ),
        ];
        for (msg, id, kind) in cases {
            assert_eq!(msg.event_id.code, id);
            assert_eq!(msg.event_types.first().map(|c| c.code.as_str()), kind);
            assert_schema_order(&msg.to_xml(&source()));
        }
        let failed = user_authentication(&user, &archive, false);
        assert_eq!(failed.outcome, Outcome::MinorFailure);
        let q = query(
            &user,
            &archive,
            "1.2",
            b"PatientID=<x>",
            ("QueryEncoding", "UTF-8"),
            Outcome::Success,
        )
        .to_xml(&source());
        // base64 of the query, never the raw text
        assert!(
            q.contains("<ParticipantObjectQuery>UGF0aWVudElEPTx4Pg==</ParticipantObjectQuery>"),
            "{q}"
        );
        assert!(q.contains(r#"ParticipantObjectTypeCodeRole="24""#));
    }
}
