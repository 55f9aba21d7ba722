//! C-FIND benchmark bulk loader: indexes the instances of a catalog (bench/find/catalog.py)
//! through the same index code the network ingest uses (`InstanceEntry::from_header` +
//! `Index::apply` + `Index::flush_blocking`), without object files and without the network.
//!
//! Usage: cargo run --release --example bulk_index -- CATALOG_DIR DATA_DIR
//!        [--batch 1000] [--window 10000] [--flush-every 1] [--rates FILE]
//!
//! Each instance gets a realistic header (~1.3 KB in Explicit VR LE, no pixel data): patient,
//! study, series and image attributes, a RequestAttributesSequence item, text in the patient's
//! character set (ISO_IR 100, ISO_IR 192 or GB18030). Instances are applied series by series in
//! batches of `--batch`; the index is flushed (made durable, like a group commit) after every
//! `--flush-every` batches. Rates are reported per window of `--window` instances: wall rate
//! (header build + entry + apply + flush) and index rate (apply + flush only). Output: one
//! `key: value` per line on stdout; per-window rates as TSV in `--rates`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use mifas::index::{Index, InstanceEntry, ObjectFacts};
use sha2::{Digest, Sha256};

struct Patient {
    id: String,
    name: String,
    charset: String,
    birth: String,
    sex: String,
}

struct Study {
    uid: String,
    patient: usize,
    date: String,
    time: String,
    accession: String,
    description: String,
    referring: String,
    study_id: String,
}

struct Series {
    uid: String,
    study_uid: String,
    modality: String,
    number: String,
    description: String,
    body_part: String,
    sop_class: String,
}

fn read_tsv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Same as catalog.py `uid_from`: "2.25." + first 128 bits of sha256(text) as an integer.
fn uid_from(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

fn instance_uid(series_uid: &str, n: u32) -> String {
    uid_from(&format!("{series_uid}/{n}"))
}

fn s(tag: Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn age(birth: &str, date: &str) -> String {
    let y = |d: &str| d[..4].parse::<i32>().unwrap_or(1970);
    let md = |d: &str| d[4..].parse::<i32>().unwrap_or(101);
    let mut a = y(date) - y(birth);
    if md(date) < md(birth) {
        a -= 1;
    }
    format!("{:03}Y", a.max(0))
}

fn dims(modality: &str) -> (u16, u16) {
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

fn header(p: &Patient, st: &Study, se: &Series, n: u32, sop_uid: &str) -> InMemDicomObject {
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

fn main() {
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
    if positional.len() != 2 {
        eprintln!(
            "usage: bulk_index CATALOG_DIR DATA_DIR [--batch 1000] [--window 10000] [--flush-every 1] [--rates FILE]"
        );
        std::process::exit(2);
    }
    let num = |k: &str, d: usize| opts.get(k).map(|v| v.parse().expect(k)).unwrap_or(d);
    let batch = num("batch", 1000);
    let window = num("window", 10000);
    let flush_every = num("flush-every", 1).max(1);
    let catalog = PathBuf::from(&positional[0]);
    let data = PathBuf::from(&positional[1]);

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
    let study_by_uid: HashMap<&str, &Study> = studies.iter().map(|s| (s.uid.as_str(), s)).collect();
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
    const PER_SERIES: u32 = 10;
    let total = series.len() * PER_SERIES as usize;

    std::fs::create_dir_all(&data).expect("data dir");
    let index = Index::open(&data.join("index")).expect("open index");
    let received_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let mut rates_out = opts.get("rates").map(|p| {
        let mut f = std::fs::File::create(p).expect("rates file");
        writeln!(
            f,
            "window_end\tseconds\twall_rate\tindex_seconds\tindex_rate"
        )
        .unwrap();
        f
    });
    let mut windows: Vec<(usize, f64, f64)> = Vec::new(); // (end, wall s, index s)
    let mut pending: Vec<InstanceEntry> = Vec::with_capacity(batch);
    let mut done = 0usize;
    let mut batches = 0usize;
    let mut header_bytes = 0u64;
    let start = Instant::now();
    let mut win_start = Instant::now();
    let mut win_index_s = 0.0f64;

    let apply = |pending: &mut Vec<InstanceEntry>, batches: &mut usize, force_flush: bool| -> f64 {
        let t = Instant::now();
        let entries = std::mem::take(pending);
        index.apply(entries).expect("apply");
        *batches += 1;
        if force_flush || (*batches).is_multiple_of(flush_every) {
            index.flush_blocking().expect("flush");
        }
        t.elapsed().as_secs_f64()
    };

    for se in &series {
        let st = study_by_uid[se.study_uid.as_str()];
        let p = &patients[st.patient];
        for n in 1..=PER_SERIES {
            let sop = instance_uid(&se.uid, n);
            let h = header(p, st, se, n, &sop);
            let mut fake = Sha256::new();
            fake.update(sop.as_bytes());
            let sha: [u8; 32] = fake.finalize().into();
            let (rows, cols) = dims(&se.modality);
            let facts = ObjectFacts {
                sop_class_uid: se.sop_class.clone(),
                sop_instance_uid: sop.clone(),
                transfer_syntax: "1.2.840.10008.1.2.1".into(),
                size: 1500 + rows as u64 * cols as u64 * 2,
                sha256: sha,
                object_key: format!("{}/{}.dcm", hex::encode(&sha[..1]), sop),
                source_aet: "BULK".into(),
                received_at,
            };
            let entry = InstanceEntry::from_header(&h, facts).expect("entry");
            header_bytes += entry.header.len() as u64;
            pending.push(entry);
            done += 1;
            if pending.len() >= batch {
                win_index_s += apply(&mut pending, &mut batches, false);
            }
            if done.is_multiple_of(window) || done == total {
                if !pending.is_empty() {
                    win_index_s += apply(&mut pending, &mut batches, true);
                }
                let wall = win_start.elapsed().as_secs_f64();
                let n_win = if done.is_multiple_of(window) {
                    window
                } else {
                    done % window
                };
                windows.push((done, wall, win_index_s));
                if let Some(f) = rates_out.as_mut() {
                    writeln!(
                        f,
                        "{done}\t{wall:.4}\t{:.1}\t{win_index_s:.4}\t{:.1}",
                        n_win as f64 / wall,
                        n_win as f64 / win_index_s
                    )
                    .unwrap();
                    f.flush().unwrap();
                }
                if done.is_multiple_of(window * 10) || done == total {
                    eprintln!(
                        "[bulk_index] {done}/{total} instances, last window {:.0}/s (index {:.0}/s), elapsed {:.1}s",
                        n_win as f64 / wall,
                        n_win as f64 / win_index_s,
                        start.elapsed().as_secs_f64()
                    );
                }
                win_start = Instant::now();
                win_index_s = 0.0;
            }
        }
    }
    index.flush_blocking().expect("flush");
    let elapsed = start.elapsed().as_secs_f64();
    let first = windows.first().copied().unwrap();
    let last = windows.last().copied().unwrap();
    let first_n = first.0 as f64;
    let last_n = (last.0
        - windows
            .get(windows.len().wrapping_sub(2))
            .map(|w| w.0)
            .unwrap_or(0)) as f64;
    let totals = index.totals().expect("totals");
    println!("instances: {done}");
    println!("patients_indexed: {}", totals.patients);
    println!("studies_indexed: {}", totals.studies);
    println!("series_indexed: {}", totals.series);
    println!("instances_indexed: {}", totals.instances);
    println!("seconds: {elapsed:.2}");
    println!("overall_rate: {:.1}", done as f64 / elapsed);
    println!("first_window_rate: {:.1}", first_n / first.1);
    println!("first_window_index_rate: {:.1}", first_n / first.2);
    println!("last_window_rate: {:.1}", last_n / last.1);
    println!("last_window_index_rate: {:.1}", last_n / last.2);
    println!(
        "mean_header_bytes: {:.0}",
        header_bytes as f64 / done as f64
    );
    println!("sled_size_on_disk: {}", index.size_on_disk().expect("size"));
    println!("batch: {batch}");
    println!("flush_every: {flush_every}");
}
