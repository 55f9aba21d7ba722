//! The query model shared by C-FIND, C-MOVE/C-GET and (later) the web: a typed query (level,
//! model, keys with their conditions), the identifier parser, the query key table and the DICOM
//! matching rules. No storage here: the index executes a [`Query`] (see `index::find`) and
//! yields [`Match`]es.

pub mod charset;
pub mod identifier;
pub mod keys;
pub mod matching;
mod outcome;
pub mod un;

pub use matching::{Condition, NameRules, ValueKind};
pub use outcome::{FindOutcome, Match};

use dicom_core::{Tag, VR};

/// Query/Retrieve level (0008,0052).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    pub fn parse(value: &str) -> Option<Level> {
        match value.trim() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" => Some(Level::Image),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

/// Query/Retrieve information model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    PatientRoot,
    StudyRoot,
}

impl Model {
    /// The level a key of the table belongs to in this model (Study Root folds the patient
    /// level into the study level).
    pub fn level_of(self, table_level: Level) -> Level {
        match (self, table_level) {
            (Model::StudyRoot, Level::Patient) => Level::Study,
            (_, l) => l,
        }
    }

    pub fn top(self) -> Level {
        match self {
            Model::PatientRoot => Level::Patient,
            Model::StudyRoot => Level::Study,
        }
    }
}

/// One key of a query: matching (unless universal) and return.
#[derive(Debug, Clone)]
pub struct QueryKey {
    pub tag: Tag,
    pub vr: VR,
    pub condition: Condition,
    /// For a sequence key: the keys of its single item (sequence matching, C.2.2.2.6).
    pub items: Option<Vec<QueryKey>>,
}

impl QueryKey {
    pub fn kind(&self) -> ValueKind {
        ValueKind::from_vr(self.vr)
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    pub model: Model,
    pub level: Level,
    pub keys: Vec<QueryKey>,
    /// PN matching ignores case (the default; configurable).
    pub case_insensitive_names: bool,
    /// Fuzzy semantic matching of person names was negotiated (C-FIND extended negotiation,
    /// PS3.4 C.5.1.1 byte 3): PN keys also match single name components.
    pub fuzzy_names: bool,
    /// Combined date-time range matching was negotiated (C.2.2.2.5.1).
    pub combined_datetime: bool,
    /// The identifier asked to match on keys we only return (answer with pending 0xFF01).
    pub unsupported_matching_keys: bool,
}

impl Query {
    /// How this query compares person names.
    pub fn name_rules(&self) -> NameRules {
        NameRules {
            case_insensitive: self.case_insensitive_names,
            fuzzy: self.fuzzy_names,
        }
    }

    pub fn key(&self, tag: Tag) -> Option<&QueryKey> {
        self.keys.iter().find(|k| k.tag == tag)
    }

    /// The condition on `tag`, or `None` when absent or universal.
    pub fn condition(&self, tag: Tag) -> Option<&Condition> {
        self.key(tag)
            .map(|k| &k.condition)
            .filter(|c| !c.is_universal())
    }
}

/// Why a query cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("QueryRetrieveLevel (0008,0052) is missing")]
    MissingLevel,
    #[error("unknown QueryRetrieveLevel {0:?}")]
    UnknownLevel(String),
    #[error("level {0} does not exist in the Study Root model")]
    LevelNotInModel(&'static str),
    #[error("{keyword} is a key of the {key_level} level, not allowed in a {level} query")]
    KeyOfAnotherLevel {
        keyword: &'static str,
        key_level: &'static str,
        level: &'static str,
    },
    #[error(
        "{keyword} must be a single value in a hierarchical {level} query (relational queries are not supported)"
    )]
    UpperKeyNotUnique {
        keyword: &'static str,
        level: &'static str,
    },
    #[error("{keyword} has VR {got}, expected {expected}")]
    WrongVr {
        keyword: &'static str,
        got: String,
        expected: String,
    },
    #[error("bad value for {keyword}: {message}")]
    BadValue { keyword: String, message: String },
    #[error("index read failed: {0}")]
    Index(String),
}
