//! Values that arrive with VR UN, read through the data dictionary (PS3.5 §6.2.2).
//!
//! Anonymisers and converters write standard attributes as UN in explicit VR data sets (a UID
//! as UN, a PatientName as UN). dicom-rs keeps them as raw bytes, which read back as a list of
//! numbers ("49\46\50…"). The bytes of a UN value are the value as its real VR would encode it
//! (little endian), so a standard attribute's value is recovered by reading them with its
//! dictionary VR. Private and unknown attributes, sequences, and VRs that depend on context
//! (US or SS, OB or OW) stay UN.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::value::PrimitiveValue;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use super::charset::decode::TextKind;

/// The VR the standard dictionary gives `tag`, when there is exactly one and it is not UN.
pub fn dictionary_vr(tag: Tag) -> Option<VR> {
    if tag.group() % 2 == 1 {
        return None; // private
    }
    match StandardDataDictionary.by_tag(tag)?.vr() {
        VirtualVr::Exact(VR::UN) => None,
        VirtualVr::Exact(vr) => Some(vr),
        _ => None,
    }
}

/// The value of a UN element of `tag` read with its dictionary VR. Text with a character set
/// (PN, SH, LO, UC, ST, LT, UT) goes through `decode_text`, which knows the data set's
/// Specific Character Set. `None` when the attribute is not a standard one with a fixed VR, or
/// when the bytes do not fit that VR (a length that is not a multiple of the value size).
pub fn reinterpret(
    tag: Tag,
    bytes: &[u8],
    decode_text: &dyn Fn(&[u8], TextKind) -> PrimitiveValue,
) -> Option<(VR, PrimitiveValue)> {
    let vr = dictionary_vr(tag)?;
    if let Some(kind) = TextKind::of(vr) {
        return Some((vr, decode_text(bytes, kind)));
    }
    let value = match vr {
        VR::AE | VR::AS | VR::CS | VR::DA | VR::DS | VR::DT | VR::IS | VR::TM | VR::UI => {
            // The default repertoire; ISO 8859-1 reads any byte, so nothing is lost.
            let text: String = bytes.iter().map(|b| char::from(*b)).collect();
            let text = text.trim_end_matches(['\0', ' ']);
            PrimitiveValue::Strs(text.split('\\').map(str::to_string).collect())
        }
        VR::UR => {
            let text: String = bytes.iter().map(|b| char::from(*b)).collect();
            PrimitiveValue::Str(text.trim_end_matches(['\0', ' ']).to_string())
        }
        VR::US => PrimitiveValue::U16(numbers(bytes, u16::from_le_bytes)?),
        VR::SS => PrimitiveValue::I16(numbers(bytes, i16::from_le_bytes)?),
        VR::UL => PrimitiveValue::U32(numbers(bytes, u32::from_le_bytes)?),
        VR::SL => PrimitiveValue::I32(numbers(bytes, i32::from_le_bytes)?),
        VR::UV => PrimitiveValue::U64(numbers(bytes, u64::from_le_bytes)?),
        VR::SV => PrimitiveValue::I64(numbers(bytes, i64::from_le_bytes)?),
        VR::FL => PrimitiveValue::F32(numbers(bytes, f32::from_le_bytes)?),
        VR::FD => PrimitiveValue::F64(numbers(bytes, f64::from_le_bytes)?),
        VR::OB => PrimitiveValue::U8(bytes.into()),
        _ => return None,
    };
    Some((vr, value))
}

/// Little-endian numbers of `N` bytes each; `None` when the length is not a multiple of `N`.
fn numbers<T, const N: usize>(
    bytes: &[u8],
    from: fn([u8; N]) -> T,
) -> Option<dicom_core::value::C<T>> {
    if !bytes.len().is_multiple_of(N) {
        return None;
    }
    bytes
        .chunks_exact(N)
        .map(|chunk| <[u8; N]>::try_from(chunk).ok().map(from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_dictionary_std::tags;

    fn latin1(bytes: &[u8], _: TextKind) -> PrimitiveValue {
        PrimitiveValue::from(bytes.iter().map(|b| char::from(*b)).collect::<String>())
    }

    #[test]
    fn standard_attributes_get_their_dictionary_vr() {
        let uid = b"1.2.826.0.1.3680043.8.498.10\0";
        let (vr, value) = reinterpret(tags::STUDY_INSTANCE_UID, uid, &latin1).expect("a UI");
        assert_eq!(vr, VR::UI);
        assert_eq!(value.to_str(), "1.2.826.0.1.3680043.8.498.10");

        let (vr, value) = reinterpret(tags::PATIENT_NAME, b"DOE^JOHN", &latin1).expect("a PN");
        assert_eq!((vr, value.to_str().as_ref()), (VR::PN, "DOE^JOHN"));

        let (vr, value) = reinterpret(tags::MODALITIES_IN_STUDY, b"CT\\MR ", &latin1).expect("CS");
        assert_eq!(vr, VR::CS);
        assert_eq!(value.multiplicity(), 2);

        let (vr, value) = reinterpret(tags::ROWS, &512u16.to_le_bytes(), &latin1).expect("a US");
        assert_eq!((vr, value.to_int::<u32>().ok()), (VR::US, Some(512)));
    }

    #[test]
    fn private_unknown_and_misfit_values_stay_un() {
        assert!(reinterpret(Tag(0x0009, 0x0010), b"ACME", &latin1).is_none());
        assert!(reinterpret(Tag(0x0008, 0x9999), b"x", &latin1).is_none());
        // A US value of three bytes does not fit.
        assert!(reinterpret(tags::ROWS, &[1, 2, 3], &latin1).is_none());
        // US or SS depending on Pixel Representation: not guessed.
        assert!(reinterpret(tags::SMALLEST_IMAGE_PIXEL_VALUE, &[0, 0], &latin1).is_none());
    }
}
