//! The audit message of DICOM PS3.15 A.5.1 (the schema shared with IHE ATNA / RFC 3881), as
//! data, and its XML. Which fields each event fills is in [`super::events`].

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine;

use super::time::rfc3339_utc;
use super::xml::XmlWriter;

/// A coded value (A.5.1 `CodedValueType`): `csd-code`, `codeSystemName` and `originalText` are
/// required by the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub code: String,
    pub system: &'static str,
    pub text: &'static str,
}

impl Code {
    /// A code of the DICOM "DCM" coding scheme (PS3.16).
    pub fn dcm(code: &str, text: &'static str) -> Code {
        Code {
            code: code.to_string(),
            system: "DCM",
            text,
        }
    }
}

/// EventOutcomeIndicator (A.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success = 0,
    MinorFailure = 4,
    SeriousFailure = 8,
    MajorFailure = 12,
}

/// EventActionCode (A.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}

/// A person or process taking part (ActiveParticipant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub user_id: String,
    /// For a DICOM node `AETITLES=<aet>` (A.5.2.1).
    pub alternative_user_id: Option<String>,
    pub user_name: Option<String>,
    pub is_requestor: bool,
    /// NetworkAccessPointID and its type: 1 = machine name, 2 = IP address.
    pub network_access_point: Option<(String, u8)>,
    pub roles: Vec<Code>,
}

/// Something the event was about (ParticipantObjectIdentification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantObject {
    pub id: String,
    /// ParticipantObjectTypeCode: 1 person, 2 system object.
    pub type_code: u8,
    /// ParticipantObjectTypeCodeRole: 1 patient, 3 report (a study), 13 security resource,
    /// 24 query.
    pub role: u8,
    pub id_type: Code,
    pub name: Option<String>,
    /// ParticipantObjectQuery, written base64.
    pub query: Option<Vec<u8>>,
    /// ParticipantObjectDetail type/value pairs (values written base64).
    pub details: Vec<(&'static str, Vec<u8>)>,
    /// SOP Class UID → number of instances (a study's SOPClass elements).
    pub sop_classes: BTreeMap<String, u64>,
}

impl ParticipantObject {
    pub fn new(id: &str, type_code: u8, role: u8, id_type: Code) -> ParticipantObject {
        ParticipantObject {
            id: id.to_string(),
            type_code,
            role,
            id_type,
            name: None,
            query: None,
            details: Vec::new(),
            sop_classes: BTreeMap::new(),
        }
    }
}

/// Who reports (AuditSourceIdentification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSource {
    pub source_id: String,
    pub enterprise_site_id: String,
}

/// One audit message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditMessage {
    pub event_id: Code,
    pub event_types: Vec<Code>,
    pub action: Action,
    pub outcome: Outcome,
    pub outcome_description: Option<String>,
    pub time: SystemTime,
    pub participants: Vec<Participant>,
    pub objects: Vec<ParticipantObject>,
}

impl AuditMessage {
    pub fn new(event_id: Code, action: Action, outcome: Outcome) -> AuditMessage {
        AuditMessage {
            event_id,
            event_types: Vec::new(),
            action,
            outcome,
            outcome_description: None,
            time: SystemTime::now(),
            participants: Vec::new(),
            objects: Vec::new(),
        }
    }

    /// The XML of A.5.1, on one line; element order as the schema's sequence.
    pub fn to_xml(&self, source: &AuditSource) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut w = XmlWriter::new();
        w.start("AuditMessage");
        w.start("EventIdentification")
            .attr("EventActionCode", self.action.as_str())
            .attr("EventDateTime", &rfc3339_utc(self.time))
            .attr("EventOutcomeIndicator", &(self.outcome as u8).to_string());
        code(&mut w, "EventID", &self.event_id);
        for t in &self.event_types {
            code(&mut w, "EventTypeCode", t);
        }
        if let Some(d) = &self.outcome_description {
            w.start("EventOutcomeDescription").text(d).end();
        }
        w.end();
        for p in &self.participants {
            w.start("ActiveParticipant")
                .attr("UserID", &p.user_id)
                .attr_opt("AlternativeUserID", p.alternative_user_id.as_deref())
                .attr_opt("UserName", p.user_name.as_deref())
                .attr(
                    "UserIsRequestor",
                    if p.is_requestor { "true" } else { "false" },
                );
            if let Some((id, kind)) = &p.network_access_point {
                w.attr("NetworkAccessPointID", id)
                    .attr("NetworkAccessPointTypeCode", &kind.to_string());
            }
            for role in &p.roles {
                code(&mut w, "RoleIDCode", role);
            }
            w.end();
        }
        w.start("AuditSourceIdentification")
            .attr_opt(
                "AuditEnterpriseSiteID",
                Some(source.enterprise_site_id.as_str()),
            )
            .attr("AuditSourceID", &source.source_id);
        // 4: application server process (A.5.2.4 / RFC 3881 5.4.3).
        code(
            &mut w,
            "AuditSourceTypeCode",
            &Code {
                code: "4".into(),
                system: "DCM",
                text: "Application Server Process",
            },
        );
        w.end();
        for o in &self.objects {
            w.start("ParticipantObjectIdentification")
                .attr("ParticipantObjectID", &o.id)
                .attr("ParticipantObjectTypeCode", &o.type_code.to_string())
                .attr("ParticipantObjectTypeCodeRole", &o.role.to_string());
            code(&mut w, "ParticipantObjectIDTypeCode", &o.id_type);
            if let Some(name) = &o.name {
                w.start("ParticipantObjectName").text(name).end();
            } else if let Some(query) = &o.query {
                w.start("ParticipantObjectQuery")
                    .text(&b64.encode(query))
                    .end();
            }
            for (kind, value) in &o.details {
                w.start("ParticipantObjectDetail")
                    .attr("type", kind)
                    .attr("value", &b64.encode(value))
                    .end();
            }
            for (uid, n) in &o.sop_classes {
                w.start("SOPClass")
                    .attr("UID", uid)
                    .attr("NumberOfInstances", &n.to_string())
                    .end();
            }
            w.end();
        }
        w.finish()
    }
}

fn code(w: &mut XmlWriter, element: &'static str, c: &Code) {
    w.start(element)
        .attr("csd-code", &c.code)
        .attr("codeSystemName", c.system)
        .attr("originalText", c.text)
        .end();
}
