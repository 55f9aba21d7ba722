//! Frames and bulk data values of one stored instance, for WADO-RS (`/frames/{list}`,
//! `/bulkdata/{tag}`): the stored Part-10 file is read whole through the co-allocator (as the
//! renderer does) and parsed on the blocking pool.
//!
//! Native pixel data is cut into frames of Rows × Columns × Samples per Pixel × Bits Allocated
//! bits (PS3.5 §8.1.1). Encapsulated pixel data (PS3.5 §A.4) is split by one fragment per frame
//! when the counts agree, else by the Basic (or Extended) Offset Table; a single frame takes all
//! fragments. When the client takes only uncompressed frames, a compressed frame is decoded
//! with dicom-pixeldata.

use bytes::Bytes;
use dicom_core::Tag;
use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::Archive;
use super::retrieve::RetrieveError;

/// Bytes of a fragment's item header (tag + length, PS3.5 §A.4): the offset tables count them.
const ITEM_HEADER: u64 = 8;

/// The form of the frames a client takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameForm {
    /// Uncompressed, little endian (compressed frames are decoded).
    Native,
    /// As stored: the compressed bit stream of each frame, or native bytes when stored native.
    AsStored,
}

/// Frames taken from an instance.
#[derive(Debug, Clone)]
pub struct FrameSet {
    /// One entry per requested frame, in the order asked.
    pub frames: Vec<Bytes>,
    /// Whether the frames are compressed bit streams (else native samples).
    pub encapsulated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("instance {0} is not in the archive")]
    NotFound(String),
    #[error("instance {0} has no pixel data")]
    NoPixelData(String),
    #[error("frame {frame} is out of range: instance {uid} has {frames} frame(s), numbered from 1")]
    OutOfRange {
        uid: String,
        frame: u32,
        frames: u32,
    },
    #[error("instance {uid} has no element {tag}")]
    NoElement { uid: String, tag: Tag },
    #[error("element {tag} of {uid} is a sequence, not a bulk data value")]
    NotBulk { uid: String, tag: Tag },
    #[error("cannot split the pixel data of {uid} into frames: {reason}")]
    Split { uid: String, reason: String },
    #[error("cannot decode frame {frame} of {uid}: {reason}")]
    Decode {
        uid: String,
        frame: u32,
        reason: String,
    },
    #[error("stored object {0} is not a readable DICOM file: {1}")]
    NotDicom(String, String),
    #[error(transparent)]
    Retrieve(#[from] RetrieveError),
}

impl Archive {
    /// Frames `numbers` (1-based) of instance `uid`, in `form`.
    pub async fn frames(
        &self,
        uid: &str,
        numbers: Vec<u32>,
        form: FrameForm,
    ) -> Result<FrameSet, FrameError> {
        let file = self.stored_file(uid).await?;
        let uid = uid.to_string();
        tokio::task::spawn_blocking(move || {
            let obj = parse(&file, &uid)?;
            extract_frames(&obj, &uid, &numbers, form)
        })
        .await
        .map_err(|e| RetrieveError::Task(e.to_string()))?
    }

    /// The number of frames of instance `uid`'s pixel data.
    pub async fn frame_count(&self, uid: &str) -> Result<u32, FrameError> {
        let file = self.stored_file(uid).await?;
        let uid = uid.to_string();
        tokio::task::spawn_blocking(move || {
            let obj = parse(&file, &uid)?;
            if obj.get(tags::PIXEL_DATA).is_none() {
                return Err(FrameError::NoPixelData(uid));
            }
            Ok(number_of_frames(&obj))
        })
        .await
        .map_err(|e| RetrieveError::Task(e.to_string()))?
    }

    /// The value of top-level element `tag` of instance `uid`, as bytes (numbers little
    /// endian). Pixel Data goes through [`Archive::frames`] when it is encapsulated.
    pub async fn bulk_value(&self, uid: &str, tag: Tag) -> Result<Bytes, FrameError> {
        let file = self.stored_file(uid).await?;
        let uid = uid.to_string();
        tokio::task::spawn_blocking(move || {
            let obj = parse(&file, &uid)?;
            let element = obj.get(tag).ok_or_else(|| FrameError::NoElement {
                uid: uid.clone(),
                tag,
            })?;
            match element.value() {
                Value::Primitive(v) => Ok(Bytes::copy_from_slice(&v.to_bytes())),
                Value::PixelSequence(_) => Err(FrameError::Split {
                    uid: uid.clone(),
                    reason: "encapsulated pixel data is sent as frames".into(),
                }),
                Value::Sequence(_) => Err(FrameError::NotBulk { uid, tag }),
            }
        })
        .await
        .map_err(|e| RetrieveError::Task(e.to_string()))?
    }

    /// The whole stored Part-10 file of `uid`.
    async fn stored_file(&self, uid: &str) -> Result<Bytes, FrameError> {
        self.read_object(uid)
            .await?
            .ok_or_else(|| FrameError::NotFound(uid.to_string()))
    }
}

/// Parse a whole Part-10 file (pixel data included).
fn parse(file: &[u8], uid: &str) -> Result<DefaultDicomObject, FrameError> {
    let body = file
        .get(128..)
        .ok_or_else(|| FrameError::NotDicom(uid.to_string(), "file too short".into()))?;
    OpenFileOptions::new()
        .from_reader(body)
        .map_err(|e| FrameError::NotDicom(uid.to_string(), e.to_string()))
}

fn int_attr(obj: &DefaultDicomObject, tag: Tag) -> Option<u64> {
    obj.get(tag)?
        .to_str()
        .ok()?
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .parse()
        .ok()
}

/// Number of Frames (0028,0008), 1 when absent.
fn number_of_frames(obj: &DefaultDicomObject) -> u32 {
    obj.get(tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.to_int::<i64>().ok())
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// The frames `numbers` (1-based) of a parsed object.
pub(crate) fn extract_frames(
    obj: &DefaultDicomObject,
    uid: &str,
    numbers: &[u32],
    form: FrameForm,
) -> Result<FrameSet, FrameError> {
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| FrameError::NoPixelData(uid.to_string()))?;
    let count = number_of_frames(obj);
    for &frame in numbers {
        if frame == 0 || frame > count {
            return Err(FrameError::OutOfRange {
                uid: uid.to_string(),
                frame,
                frames: count,
            });
        }
    }
    match pixel_data.value() {
        Value::Primitive(value) => {
            let bytes = value.to_bytes();
            let size = native_frame_size(obj, uid)?;
            let frames = numbers
                .iter()
                .map(|&n| {
                    let start = (u64::from(n) - 1) * size;
                    let end = start + size;
                    usize::try_from(start)
                        .ok()
                        .zip(usize::try_from(end).ok())
                        .and_then(|(s, e)| bytes.get(s..e))
                        .map(Bytes::copy_from_slice)
                        .ok_or_else(|| FrameError::Split {
                            uid: uid.to_string(),
                            reason: format!(
                                "pixel data has {} bytes, frame {n} ends at byte {end}",
                                bytes.len()
                            ),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(FrameSet {
                frames,
                encapsulated: false,
            })
        }
        Value::PixelSequence(seq) if form == FrameForm::AsStored => {
            let all = split_fragments(obj, uid, seq.fragments(), seq.offset_table(), count)?;
            let frames = numbers
                .iter()
                .map(|&n| all[(n - 1) as usize].clone())
                .collect();
            Ok(FrameSet {
                frames,
                encapsulated: true,
            })
        }
        Value::PixelSequence(_) => {
            let frames = numbers
                .iter()
                .map(|&n| {
                    obj.decode_pixel_data_frame(n - 1)
                        .map(|d| Bytes::from(d.into_data()))
                        .map_err(|e| FrameError::Decode {
                            uid: uid.to_string(),
                            frame: n,
                            reason: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(FrameSet {
                frames,
                encapsulated: false,
            })
        }
        Value::Sequence(_) => Err(FrameError::NoPixelData(uid.to_string())),
    }
}

/// Bytes per native frame (PS3.5 §8.1.1; bit-packed 1-bit frames rounded up to a byte).
fn native_frame_size(obj: &DefaultDicomObject, uid: &str) -> Result<u64, FrameError> {
    let missing = |what: &str| FrameError::Split {
        uid: uid.to_string(),
        reason: format!("{what} missing or invalid"),
    };
    let rows = int_attr(obj, tags::ROWS).ok_or_else(|| missing("Rows"))?;
    let columns = int_attr(obj, tags::COLUMNS).ok_or_else(|| missing("Columns"))?;
    let samples = int_attr(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits = int_attr(obj, tags::BITS_ALLOCATED).ok_or_else(|| missing("Bits Allocated"))?;
    let size = (rows * columns * samples * bits).div_ceil(8);
    if size == 0 {
        return Err(missing("a non-empty image size"));
    }
    Ok(size)
}

/// The compressed bit stream of every frame.
fn split_fragments(
    obj: &DefaultDicomObject,
    uid: &str,
    fragments: &[Vec<u8>],
    offset_table: &[u32],
    count: u32,
) -> Result<Vec<Bytes>, FrameError> {
    let count = count as usize;
    if fragments.len() == count {
        return Ok(fragments
            .iter()
            .map(|f| Bytes::copy_from_slice(f))
            .collect());
    }
    if count == 1 {
        return Ok(vec![Bytes::from(fragments.concat())]);
    }
    let offsets: Vec<u64> = if !offset_table.is_empty() {
        offset_table.iter().map(|&o| u64::from(o)).collect()
    } else {
        extended_offsets(obj)
    };
    if offsets.len() != count {
        return Err(FrameError::Split {
            uid: uid.to_string(),
            reason: format!(
                "{count} frames in {} fragments and no usable offset table",
                fragments.len()
            ),
        });
    }
    // Where each fragment's item starts, counted as the offset tables do.
    let mut starts = Vec::with_capacity(fragments.len());
    let mut position = 0u64;
    for f in fragments {
        starts.push(position);
        position += ITEM_HEADER + f.len() as u64;
    }
    let mut frames = Vec::with_capacity(count);
    for (i, &start) in offsets.iter().enumerate() {
        let end = offsets.get(i + 1).copied().unwrap_or(u64::MAX);
        let mut frame = Vec::new();
        let mut found = false;
        for (f, &s) in fragments.iter().zip(&starts) {
            if s >= start && s < end {
                frame.extend_from_slice(f);
                found = true;
            }
        }
        if !found {
            return Err(FrameError::Split {
                uid: uid.to_string(),
                reason: format!("offset {start} of frame {} starts no fragment", i + 1),
            });
        }
        frames.push(Bytes::from(frame));
    }
    Ok(frames)
}

/// The Extended Offset Table (7FE0,0001), 64-bit little endian offsets; empty when absent.
fn extended_offsets(obj: &DefaultDicomObject) -> Vec<u64> {
    let Some(element) = obj.get(tags::EXTENDED_OFFSET_TABLE) else {
        return Vec::new();
    };
    match element.value() {
        Value::Primitive(v) => match v {
            dicom_core::PrimitiveValue::U64(values) => values.to_vec(),
            other => other
                .to_bytes()
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        },
        _ => Vec::new(),
    }
}

/// Whether pixel data in transfer syntax `ts` is encapsulated (unknown syntaxes count as
/// encapsulated: they cannot be cut as native frames).
pub fn is_encapsulated(ts: &str) -> bool {
    TransferSyntaxRegistry
        .get(ts)
        .is_none_or(|t| t.is_encapsulated_pixel_data())
}

/// Whether the archive can decode pixel data stored in `ts` (to send it uncompressed).
pub fn can_decode(ts: &str) -> bool {
    TransferSyntaxRegistry
        .get(ts)
        .is_some_and(|t| t.can_decode_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::PixelFragmentSequence;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    fn object(frames: u32, pixel: Value<InMemDicomObject>) -> DefaultDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(2u16),
        ));
        obj.put(DataElement::new(
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(2u16),
        ));
        obj.put(DataElement::new(
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(8u16),
        ));
        obj.put(DataElement::new(
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            PrimitiveValue::from(1u16),
        ));
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from(frames.to_string()),
        ));
        obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, pixel));
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.3")
            .media_storage_sop_instance_uid("1.2.3.4")
            .transfer_syntax("1.2.840.10008.1.2.4.50")
            .build()
            .expect("meta");
        obj.with_exact_meta(meta)
    }

    #[test]
    fn native_frames_are_cut_by_size() {
        let obj = object(3, Value::Primitive(PrimitiveValue::U8((0u8..12).collect())));
        let set = extract_frames(&obj, "1.2", &[3, 1], FrameForm::Native).expect("frames");
        assert_eq!(
            set.frames,
            vec![
                Bytes::from(vec![8, 9, 10, 11]),
                Bytes::from(vec![0, 1, 2, 3])
            ]
        );
        let err = extract_frames(&obj, "1.2", &[4], FrameForm::Native).expect_err("past the end");
        assert!(err.to_string().contains("has 3 frame(s)"), "{err}");
        assert!(extract_frames(&obj, "1.2", &[0], FrameForm::Native).is_err());
    }

    #[test]
    fn encapsulated_frames_by_offset_table() {
        // Frame 1 in two fragments (3 + 2 bytes), frame 2 in one (4 bytes).
        let seq = PixelFragmentSequence::new(
            vec![0u32, 8 + 3 + 8 + 2],
            vec![vec![1u8, 2, 3], vec![4, 5], vec![6, 7, 8, 9]],
        );
        let obj = object(2, Value::PixelSequence(seq));
        let set = extract_frames(&obj, "1.2", &[2, 1], FrameForm::AsStored).expect("frames");
        assert!(set.encapsulated);
        assert_eq!(
            set.frames,
            vec![
                Bytes::from(vec![6, 7, 8, 9]),
                Bytes::from(vec![1, 2, 3, 4, 5])
            ]
        );
    }

    #[test]
    fn encapsulated_frames_one_fragment_each() {
        let seq = PixelFragmentSequence::new(Vec::<u32>::new(), vec![vec![1u8, 2], vec![3, 4]]);
        let obj = object(2, Value::PixelSequence(seq));
        let set = extract_frames(&obj, "1.2", &[2], FrameForm::AsStored).expect("frames");
        assert_eq!(set.frames, vec![Bytes::from(vec![3, 4])]);
        let seq = PixelFragmentSequence::new(Vec::<u32>::new(), vec![vec![1u8], vec![2], vec![3]]);
        let obj = object(2, Value::PixelSequence(seq));
        let err = extract_frames(&obj, "1.2", &[1], FrameForm::AsStored).expect_err("ambiguous");
        assert!(err.to_string().contains("no usable offset table"), "{err}");
    }
}
