//! UID validation (PS3.5 9.1). UIDs become file names and index keys, so this is a security
//! check as much as a conformance one: only digits and dots, at most 64 characters.

/// Why a UID is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    #[error("empty UID")]
    Empty,
    #[error("UID longer than 64 characters ({0})")]
    TooLong(usize),
    #[error("UID has a character other than digits and dots")]
    BadCharacter,
    #[error("UID has an empty component")]
    EmptyComponent,
}

/// Strip the padding DICOM allows at the end of a UI value (a trailing NUL).
pub fn trim(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

/// Check a UID as received (after trimming padding). Components with a leading zero
/// ("1.02.3"), which PS3.5 forbids but some old modalities emit, are accepted: they are
/// harmless as keys and paths, and refusing them would lose real studies.
pub fn validate(uid: &str) -> Result<(), UidError> {
    if uid.is_empty() {
        return Err(UidError::Empty);
    }
    if uid.len() > 64 {
        return Err(UidError::TooLong(uid.len()));
    }
    if !uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(UidError::BadCharacter);
    }
    if uid.split('.').any(str::is_empty) {
        return Err(UidError::EmptyComponent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_uids() {
        assert_eq!(validate("1.2.840.10008.5.1.4.1.1.2"), Ok(()));
        assert_eq!(validate("0"), Ok(()));
        assert_eq!(
            validate(
                &"1."
                    .repeat(31)
                    .chars()
                    .chain("9".chars())
                    .collect::<String>()
            ),
            Ok(())
        );
    }

    #[test]
    fn rejects_hostile_uids() {
        assert_eq!(validate("../../x"), Err(UidError::BadCharacter));
        assert_eq!(validate("1.2/3"), Err(UidError::BadCharacter));
        assert_eq!(validate(""), Err(UidError::Empty));
        assert_eq!(validate("1..2"), Err(UidError::EmptyComponent));
        assert_eq!(validate(".1"), Err(UidError::EmptyComponent));
        assert_eq!(validate("1.2."), Err(UidError::EmptyComponent));
        let long = format!("1.{}", "2".repeat(63));
        assert_eq!(long.len(), 65);
        assert_eq!(validate(&long), Err(UidError::TooLong(65)));
    }

    #[test]
    fn trims_padding() {
        assert_eq!(trim("1.2.3\0"), "1.2.3");
        assert_eq!(trim("1.2.3 "), "1.2.3");
    }
}
