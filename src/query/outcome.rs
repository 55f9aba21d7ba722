//! What a query yields: the matching entities with their response identifiers, and whether the
//! search ran to its end. Plain data, so the network and web layers can consume matches without
//! knowing how they were found.

use dicom_object::InMemDicomObject;

use super::Level;

/// One matching entity with its response identifier.
#[derive(Debug, Clone)]
pub struct Match {
    pub level: Level,
    /// Unique key of the matched entity (patient key, study/series/SOP instance UID).
    pub key: String,
    pub identifier: InMemDicomObject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindOutcome {
    /// Every candidate was examined.
    Complete,
    /// The caller stopped the search (cancel, limit, closed connection).
    Stopped,
}
