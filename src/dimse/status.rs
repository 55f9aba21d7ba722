//! DIMSE status codes (PS3.7 Annex C) and the one place where archive errors become statuses.

use crate::archive::IngestError;

/// A DIMSE status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

/// PS3.7 C.1: what a status means to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Success,
    Pending,
    Cancel,
    Warning,
    Failure,
}

impl Status {
    pub const SUCCESS: Status = Status(0x0000);
    /// Refused: Out of Resources (C-STORE, PS3.4 B.2.3).
    pub const OUT_OF_RESOURCES: Status = Status(0xA700);
    /// Error: Data Set does not match SOP Class (C-STORE).
    pub const DATASET_MISMATCH: Status = Status(0xA900);
    /// Error: Cannot understand — the data set cannot be parsed.
    pub const CANNOT_UNDERSTAND: Status = Status(0xC000);
    /// Cannot understand: a UID is not a valid UID (MIFAS-specific code in the 0xC0xx range).
    pub const INVALID_UID: Status = Status(0xC001);
    /// Cannot understand: a required attribute is missing (MIFAS-specific code).
    pub const MISSING_ATTRIBUTE: Status = Status(0xC002);
    /// Failure: Duplicate SOP Instance (PS3.7 C.4), with duplicate_policy = reject.
    pub const DUPLICATE_SOP_INSTANCE: Status = Status(0x0111);
    /// Failure: Processing failure (PS3.7 C.4).
    pub const PROCESSING_FAILURE: Status = Status(0x0110);
    /// Refused: SOP Class not supported (PS3.7 C.4).
    pub const SOP_CLASS_NOT_SUPPORTED: Status = Status(0x0122);
    /// Refused: Not authorized (PS3.7 C.5 general status): the calling AE may not use this
    /// service (`services` of its `[[remote_ae]]` entry or of `[dicom.unknown_ae]`).
    pub const NOT_AUTHORIZED: Status = Status(0x0124);
    /// Failure: Unrecognized operation (PS3.7 C.4).
    pub const UNRECOGNIZED_OPERATION: Status = Status(0x0211);

    pub fn category(self) -> Category {
        match self.0 {
            0x0000 => Category::Success,
            0xFF00 | 0xFF01 => Category::Pending,
            0xFE00 => Category::Cancel,
            0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => Category::Warning,
            _ => Category::Failure,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04X}", self.0)
    }
}

/// The C-STORE status for an ingest failure.
pub fn for_ingest_error(err: &IngestError) -> Status {
    match err {
        err if err.is_out_of_resources() => Status::OUT_OF_RESOURCES,
        IngestError::OutOfResources(_) => Status::OUT_OF_RESOURCES,
        IngestError::DatasetMismatch(_) => Status::DATASET_MISMATCH,
        IngestError::Unreadable(_) => Status::CANNOT_UNDERSTAND,
        IngestError::InvalidUid { .. } => Status::INVALID_UID,
        IngestError::MissingAttribute(_) => Status::MISSING_ATTRIBUTE,
        IngestError::Duplicate(_) => Status::DUPLICATE_SOP_INSTANCE,
        IngestError::Storage(_)
        | IngestError::Index(_)
        | IngestError::Spool(_)
        | IngestError::ShuttingDown => Status::PROCESSING_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert_eq!(Status::SUCCESS.category(), Category::Success);
        assert_eq!(Status(0xFF00).category(), Category::Pending);
        assert_eq!(Status(0xFE00).category(), Category::Cancel);
        assert_eq!(Status(0xB000).category(), Category::Warning);
        assert_eq!(Status::OUT_OF_RESOURCES.category(), Category::Failure);
    }

    #[test]
    fn ingest_errors_map_to_their_statuses() {
        assert_eq!(
            for_ingest_error(&IngestError::OutOfResources("x".into())),
            Status(0xA700)
        );
        // ENOSPC/EDQUOT from the index flush or the spool is out of resources, not a
        // processing failure.
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(
            for_ingest_error(&IngestError::Index(crate::index::IndexError::Flush(
                sled::Error::Io(full())
            ))),
            Status(0xA700)
        );
        assert_eq!(
            for_ingest_error(&IngestError::Spool(std::io::Error::from(
                std::io::ErrorKind::QuotaExceeded
            ))),
            Status(0xA700)
        );
        assert_eq!(
            for_ingest_error(&IngestError::DatasetMismatch("x".into())),
            Status(0xA900)
        );
        assert_eq!(
            for_ingest_error(&IngestError::Unreadable("x".into())),
            Status(0xC000)
        );
        assert_eq!(
            for_ingest_error(&IngestError::Duplicate("1".into())),
            Status(0x0111)
        );
    }
}
