//! Catalog and instance headers shared by the bench examples `bulk_index` (index only) and
//! `gen_part10` (Part-10 files for `mifas import`). Each example includes this file with
//! `#[path = "bench_catalog.rs"] mod bench_catalog;`.
//!
//! The catalog is the one bench/find/catalog.py writes: patients.tsv, studies.tsv, series.tsv
//! (UTF-8, tab-separated, one header line); each series has `PER_SERIES` instances whose UIDs are
//! derived from the series UID (`instance_uid`, the same function as catalog.py).

// Each example uses a different subset.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use sha2::{Digest, Sha256};

/// Instances per series (catalog.py `INSTANCES`).
pub const PER_SERIES: u32 = 10;

pub struct Patient {
    pub id: String,
    pub name: String,
    pub charset: String,
    pub birth: String,
    pub sex: String,
}

pub struct Study {
    pub uid: String,
    pub patient: usize,
    pub date: String,
    pub time: String,
    pub accession: String,
    pub description: String,
    pub referring: String,
    pub study_id: String,
}

pub struct Series {
    pub uid: String,
    pub study_uid: String,
    pub modality: String,
    pub number: String,
    pub description: String,
    pub body_part: String,
    pub sop_class: String,
}

/// Command-line arguments: the positional ones, and `--key value` options.
pub fn parse_args() -> (Vec<String>, HashMap<String, String>) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut positional = Vec::new();
    let mut opts: HashMap<String, String> = HashMap::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if let Some(k) = a.strip_prefix("--") {
            opts.insert(k.to_string(), it.next().expect("option value"));
        } else {
            positional.push(a);
        }
    }
    (positional, opts)
}

pub fn read_tsv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Same as catalog.py `uid_from`: "2.25." + first 128 bits of sha256(text) as an integer.
pub fn uid_from(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

pub fn instance_uid(series_uid: &str, n: u32) -> String {
    uid_from(&format!("{series_uid}/{n}"))
}

pub fn s(tag: Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

pub fn age(birth: &str, date: &str) -> String {
    let y = |d: &str| d[..4].parse::<i32>().unwrap_or(1970);
    let md = |d: &str| d[4..].parse::<i32>().unwrap_or(101);
    let mut a = y(date) - y(birth);
    if md(date) < md(birth) {
        a -= 1;
    }
    format!("{:03}Y", a.max(0))
}

pub fn dims(modality: &str) -> (u16, u16) {
    match modality {
        "CT" | "PT" => (512, 512),
        "MR" => (256, 256),
        "CR" | "DX" => (2048, 2500),
        "MG" => (3328, 2560),
        "US" => (600, 800),
        "XA" => (1024, 1024),
        _ => (128, 128),
    }
}

/// The instance header (~1.3 KB in Explicit VR LE, no pixel data): patient, study, series and
/// image attributes, a RequestAttributesSequence item, text in the patient's character set;
/// Rows/Columns are the modality's usual matrix (`dims`).
pub fn header(p: &Patient, st: &Study, se: &Series, n: u32, sop_uid: &str) -> InMemDicomObject {
    let (rows, cols) = dims(&se.modality);
    let mut o = InMemDicomObject::new_empty();
    if !p.charset.is_empty() {
        o.put(s(tags::SPECIFIC_CHARACTER_SET, VR::CS, &p.charset));
    }
    o.put(DataElement::new(
        tags::IMAGE_TYPE,
        VR::CS,
        dicom_value!(Strs, ["ORIGINAL", "PRIMARY", "AXIAL"]),
    ));
    o.put(s(tags::INSTANCE_CREATION_DATE, VR::DA, &st.date));
    o.put(s(tags::INSTANCE_CREATION_TIME, VR::TM, &st.time));
    o.put(s(tags::SOP_CLASS_UID, VR::UI, &se.sop_class));
    o.put(s(tags::SOP_INSTANCE_UID, VR::UI, sop_uid));
    for t in [
        tags::STUDY_DATE,
        tags::SERIES_DATE,
        tags::ACQUISITION_DATE,
        tags::CONTENT_DATE,
    ] {
        o.put(s(t, VR::DA, &st.date));
    }
    for t in [
        tags::STUDY_TIME,
        tags::SERIES_TIME,
        tags::ACQUISITION_TIME,
        tags::CONTENT_TIME,
    ] {
        o.put(s(t, VR::TM, &st.time));
    }
    o.put(s(tags::ACCESSION_NUMBER, VR::SH, &st.accession));
    o.put(s(tags::MODALITY, VR::CS, &se.modality));
    o.put(s(tags::MANUFACTURER, VR::LO, "MIFAS Bench Imaging"));
    o.put(s(
        tags::INSTITUTION_NAME,
        VR::LO,
        "Hopital Universitaire de Bench",
    ));
    o.put(s(
        tags::INSTITUTION_ADDRESS,
        VR::ST,
        "1 Rue de la Radiologie, 4000 Liege",
    ));
    o.put(s(tags::REFERRING_PHYSICIAN_NAME, VR::PN, &st.referring));
    o.put(s(tags::STATION_NAME, VR::SH, &format!("{}01", se.modality)));
    o.put(s(tags::STUDY_DESCRIPTION, VR::LO, &st.description));
    o.put(s(tags::SERIES_DESCRIPTION, VR::LO, &se.description));
    o.put(s(tags::INSTITUTIONAL_DEPARTMENT_NAME, VR::LO, "Radiology"));
    o.put(s(tags::OPERATORS_NAME, VR::PN, "TECH^ALEX"));
    o.put(s(tags::MANUFACTURER_MODEL_NAME, VR::LO, "Benchmark 3000"));
    o.put(s(tags::PATIENT_NAME, VR::PN, &p.name));
    o.put(s(tags::PATIENT_ID, VR::LO, &p.id));
    o.put(s(tags::ISSUER_OF_PATIENT_ID, VR::LO, "BENCH-HOSP"));
    o.put(s(tags::PATIENT_BIRTH_DATE, VR::DA, &p.birth));
    o.put(s(tags::PATIENT_SEX, VR::CS, &p.sex));
    o.put(s(tags::PATIENT_AGE, VR::AS, &age(&p.birth, &st.date)));
    o.put(s(tags::PATIENT_SIZE, VR::DS, "1.72"));
    o.put(s(tags::PATIENT_WEIGHT, VR::DS, "74"));
    o.put(s(tags::BODY_PART_EXAMINED, VR::CS, &se.body_part));
    o.put(s(tags::SLICE_THICKNESS, VR::DS, "1.0"));
    o.put(s(tags::KVP, VR::DS, "120"));
    o.put(s(tags::DEVICE_SERIAL_NUMBER, VR::LO, "SN-0042"));
    o.put(s(tags::SOFTWARE_VERSIONS, VR::LO, "VB20A"));
    o.put(s(tags::PROTOCOL_NAME, VR::LO, &st.description));
    o.put(s(tags::PATIENT_POSITION, VR::CS, "HFS"));
    o.put(s(tags::STUDY_INSTANCE_UID, VR::UI, &st.uid));
    o.put(s(tags::SERIES_INSTANCE_UID, VR::UI, &se.uid));
    o.put(s(tags::STUDY_ID, VR::SH, &st.study_id));
    o.put(s(tags::SERIES_NUMBER, VR::IS, &se.number));
    o.put(s(tags::ACQUISITION_NUMBER, VR::IS, "1"));
    o.put(s(tags::INSTANCE_NUMBER, VR::IS, &n.to_string()));
    let z = format!("{:.1}", -100.0 + 2.5 * n as f64);
    o.put(DataElement::new(
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        PrimitiveValue::Strs(vec!["-250.0".to_string(), "-250.0".to_string(), z.clone()].into()),
    ));
    o.put(DataElement::new(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        dicom_value!(Strs, ["1", "0", "0", "0", "1", "0"]),
    ));
    o.put(s(
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &uid_from(&format!("{}/for", st.uid)),
    ));
    o.put(s(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""));
    o.put(s(tags::SLICE_LOCATION, VR::DS, &z));
    o.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        dicom_value!(U16, [1]),
    ));
    o.put(s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"));
    o.put(DataElement::new(
        tags::ROWS,
        VR::US,
        dicom_value!(U16, [rows]),
    ));
    o.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        dicom_value!(U16, [cols]),
    ));
    o.put(DataElement::new(
        tags::PIXEL_SPACING,
        VR::DS,
        dicom_value!(Strs, ["0.7", "0.7"]),
    ));
    o.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        dicom_value!(U16, [16]),
    ));
    o.put(DataElement::new(
        tags::BITS_STORED,
        VR::US,
        dicom_value!(U16, [12]),
    ));
    o.put(DataElement::new(
        tags::HIGH_BIT,
        VR::US,
        dicom_value!(U16, [11]),
    ));
    o.put(DataElement::new(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        dicom_value!(U16, [0]),
    ));
    o.put(s(tags::WINDOW_CENTER, VR::DS, "40"));
    o.put(s(tags::WINDOW_WIDTH, VR::DS, "400"));
    o.put(s(tags::RESCALE_INTERCEPT, VR::DS, "-1024"));
    o.put(s(tags::RESCALE_SLOPE, VR::DS, "1"));
    let item = InMemDicomObject::from_element_iter([
        s(
            tags::REQUESTED_PROCEDURE_ID,
            VR::SH,
            &format!("RP{}", st.accession),
        ),
        s(
            tags::SCHEDULED_PROCEDURE_STEP_ID,
            VR::SH,
            &format!("SPS{}", st.accession),
        ),
        s(
            tags::REQUESTED_PROCEDURE_DESCRIPTION,
            VR::LO,
            &st.description,
        ),
    ]);
    o.put(DataElement::new(
        tags::REQUEST_ATTRIBUTES_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
    o
}

/// The three tables of a catalog, in file order (instances are taken series by series).
pub struct Catalog {
    pub patients: Vec<Patient>,
    pub studies: Vec<Study>,
    pub series: Vec<Series>,
}

impl Catalog {
    pub fn load(catalog: &Path) -> Catalog {
        let patients: Vec<Patient> = read_tsv(&catalog.join("patients.tsv"))
            .into_iter()
            .map(|r| Patient {
                id: r[1].clone(),
                name: r[2].clone(),
                charset: r[3].clone(),
                birth: r[4].clone(),
                sex: r[5].clone(),
            })
            .collect();
        let studies: Vec<Study> = read_tsv(&catalog.join("studies.tsv"))
            .into_iter()
            .map(|r| Study {
                uid: r[0].clone(),
                patient: r[1].parse().unwrap(),
                date: r[2].clone(),
                time: r[3].clone(),
                accession: r[4].clone(),
                description: r[5].clone(),
                referring: r[6].clone(),
                study_id: r[7].clone(),
            })
            .collect();
        let series: Vec<Series> = read_tsv(&catalog.join("series.tsv"))
            .into_iter()
            .map(|r| Series {
                uid: r[0].clone(),
                study_uid: r[1].clone(),
                modality: r[2].clone(),
                number: r[3].clone(),
                description: r[4].clone(),
                body_part: r[5].clone(),
                sop_class: r[6].clone(),
            })
            .collect();
        Catalog {
            patients,
            studies,
            series,
        }
    }

    pub fn study_by_uid(&self) -> HashMap<&str, &Study> {
        self.studies.iter().map(|s| (s.uid.as_str(), s)).collect()
    }

    /// Instances in catalog order: `series.len() * PER_SERIES`.
    pub fn instance_count(&self) -> usize {
        self.series.len() * PER_SERIES as usize
    }
}
