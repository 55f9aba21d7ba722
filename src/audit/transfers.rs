//! Instances received over one association (or one web request), counted per study and
//! reported as one DICOM Instances Transferred message when the association ends — IHE ATNA
//! allows one message per study per association rather than one per instance.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::events::{Actor, Study};
use super::{Audit, Outcome};

/// Studies counted before they are reported early, so a never-ending association cannot grow
/// the tally without bound.
const MAX_STUDIES: usize = 1000;

/// The tally of one association or request; reports on [`Received::flush`] or drop.
#[derive(Debug)]
pub struct Received {
    audit: Audit,
    source: Actor,
    studies: Mutex<BTreeMap<String, Study>>,
}

impl Received {
    pub fn new(audit: &Audit, source: Actor) -> Received {
        Received {
            audit: audit.clone(),
            source,
            studies: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether recording is worth its look-ups (the audit trail is on).
    pub fn is_enabled(&self) -> bool {
        self.audit.is_enabled()
    }

    /// Who sent the instances.
    pub fn source(&self) -> &Actor {
        &self.source
    }

    /// Count `study`'s instances in.
    pub fn record(&self, study: Study) {
        let full = {
            let Ok(mut studies) = self.studies.lock() else {
                return;
            };
            let entry = studies
                .entry(study.study_uid.clone())
                .or_insert_with(|| Study {
                    sop_classes: BTreeMap::new(),
                    ..study.clone()
                });
            for (class, n) in study.sop_classes {
                entry.add(&class, n);
            }
            studies.len() >= MAX_STUDIES
        };
        if full {
            self.flush();
        }
    }

    /// Report what was counted so far.
    pub fn flush(&self) {
        let studies: Vec<Study> = match self.studies.lock() {
            Ok(mut s) => std::mem::take(&mut *s).into_values().collect(),
            Err(_) => return,
        };
        self.audit
            .instances_stored(&self.source, &studies, Outcome::Success);
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn studies_add_up_per_uid_and_class() {
        let r = Received::new(&Audit::disabled(), Actor::node("CT1", "10.0.0.1"));
        let mut a = Study {
            study_uid: "1.2".into(),
            patient_id: "P".into(),
            ..Default::default()
        };
        a.add("1.2.840.10008.5.1.4.1.1.2", 1);
        r.record(a.clone());
        r.record(a);
        let mut b = Study {
            study_uid: "1.3".into(),
            ..Default::default()
        };
        b.add("1.2.840.10008.5.1.4.1.1.4", 1);
        r.record(b);
        let studies = r.studies.lock().unwrap();
        assert_eq!(studies.len(), 2);
        assert_eq!(studies["1.2"].instances(), 2);
        assert_eq!(studies["1.2"].patient_id, "P");
    }
}
