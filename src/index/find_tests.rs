//! Query engine tests on a real sled index filled through `Index::apply`.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use crate::index::{Index, InstanceEntry, ObjectFacts};
use crate::query::identifier::{ParseOptions, parse};
use crate::query::*;

struct Inst<'a> {
    patient_id: &'a str,
    name: &'a str,
    study: &'a str,
    date: &'a str,
    accession: &'a str,
    series: &'a str,
    modality: &'a str,
    sop: &'a str,
}

fn entry(i: &Inst) -> InstanceEntry {
    let mut h = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: &str| h.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE);
    put(tags::SOP_INSTANCE_UID, VR::UI, i.sop);
    put(tags::STUDY_INSTANCE_UID, VR::UI, i.study);
    put(tags::SERIES_INSTANCE_UID, VR::UI, i.series);
    put(tags::PATIENT_ID, VR::LO, i.patient_id);
    put(tags::PATIENT_NAME, VR::PN, i.name);
    put(tags::STUDY_DATE, VR::DA, i.date);
    put(tags::STUDY_TIME, VR::TM, "101500");
    put(tags::ACCESSION_NUMBER, VR::SH, i.accession);
    put(tags::MODALITY, VR::CS, i.modality);
    put(tags::MANUFACTURER, VR::LO, "ACME");
    InstanceEntry::from_header(
        &h,
        ObjectFacts {
            sop_class_uid: uids::CT_IMAGE_STORAGE.into(),
            sop_instance_uid: i.sop.into(),
            transfer_syntax: uids::EXPLICIT_VR_LITTLE_ENDIAN.into(),
            size: 100,
            sha256: [0; 32],
            object_key: String::new(),
            source_aet: "T".into(),
            received_at: 0,
        },
        &Default::default(),
    )
    .unwrap()
}

fn index() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join("index")).unwrap();
    let rows = [
        Inst {
            patient_id: "P1",
            name: "MÜLLER^JÜRGEN",
            study: "1.1",
            date: "20240105",
            accession: "A1",
            series: "1.1.1",
            modality: "CT",
            sop: "1.1.1.1",
        },
        Inst {
            patient_id: "P1",
            name: "MÜLLER^JÜRGEN",
            study: "1.1",
            date: "20240105",
            accession: "A1",
            series: "1.1.1",
            modality: "CT",
            sop: "1.1.1.2",
        },
        Inst {
            patient_id: "P1",
            name: "MÜLLER^JÜRGEN",
            study: "1.1",
            date: "20240105",
            accession: "A1",
            series: "1.1.2",
            modality: "MR",
            sop: "1.1.2.1",
        },
        Inst {
            patient_id: "P2",
            name: "Kuo^Cheng-Ta=郭^政達",
            study: "1.2",
            date: "20240220",
            accession: "A2",
            series: "1.2.1",
            modality: "US",
            sop: "1.2.1.1",
        },
        Inst {
            patient_id: "P3",
            name: "SMITH^ANN",
            study: "1.3",
            date: "20230310",
            accession: "A3",
            series: "1.3.1",
            modality: "CT",
            sop: "1.3.1.1",
        },
    ];
    index.apply(rows.iter().map(entry).collect()).unwrap();
    (dir, index)
}

fn ident(level: &str, keys: &[(dicom_core::Tag, VR, &str)]) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    for (t, vr, v) in keys {
        let value = if v.is_empty() {
            PrimitiveValue::Empty
        } else {
            PrimitiveValue::from(*v)
        };
        o.put(DataElement::new(*t, *vr, value));
    }
    o
}

fn run(index: &Index, model: Model, id: &InMemDicomObject) -> Vec<InMemDicomObject> {
    run_names(index, model, id, false)
}

fn run_names(
    index: &Index,
    model: Model,
    id: &InMemDicomObject,
    fuzzy_names: bool,
) -> Vec<InMemDicomObject> {
    let q = parse(
        id,
        model,
        ParseOptions {
            case_insensitive_names: true,
            combined_datetime: false,
            fuzzy_names,
        },
    )
    .unwrap();
    let mut out = Vec::new();
    index
        .find(&q, |m| {
            out.push(m.identifier);
            true
        })
        .unwrap();
    out
}

fn uids_of(results: &[InMemDicomObject], tag: dicom_core::Tag) -> Vec<String> {
    let mut v: Vec<String> = results
        .iter()
        .map(|r| {
            r.get(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0')
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn study_level_keys_and_counts() {
    let (_d, index) = index();
    let r = run(
        &index,
        Model::StudyRoot,
        &ident(
            "STUDY",
            &[
                (tags::PATIENT_NAME, VR::PN, "müller*"),
                (tags::STUDY_INSTANCE_UID, VR::UI, ""),
                (tags::MODALITIES_IN_STUDY, VR::CS, ""),
                (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
                (tags::MANUFACTURER, VR::LO, ""),
            ],
        ),
    );
    assert_eq!(r.len(), 1);
    let s = &r[0];
    assert_eq!(
        s.get(tags::NUMBER_OF_STUDY_RELATED_INSTANCES)
            .unwrap()
            .to_str()
            .unwrap(),
        "3"
    );
    let mods = s
        .get(tags::MODALITIES_IN_STUDY)
        .unwrap()
        .to_multi_str()
        .unwrap()
        .to_vec();
    assert_eq!(mods, vec!["CT".to_string(), "MR".to_string()]);
    assert_eq!(s.get(tags::MANUFACTURER).unwrap().to_str().unwrap(), "ACME");
}

#[test]
fn names_match_by_group_and_with_fuzzy_matching_by_component() {
    let (_d, index) = index();
    // (key, matches without fuzzy matching, with it)
    for (q, plain, fuzzy) in [
        ("郭*", 1, 1),
        ("kuo*", 1, 1),
        ("郭政達", 1, 1),
        ("*ITH*", 1, 1),
        ("JÜRGEN", 0, 1),
        ("ann*", 0, 1),
        ("政*", 0, 1),
    ] {
        let id = ident("STUDY", &[(tags::PATIENT_NAME, VR::PN, q)]);
        assert_eq!(
            run_names(&index, Model::StudyRoot, &id, false).len(),
            plain,
            "{q}"
        );
        assert_eq!(
            run_names(&index, Model::StudyRoot, &id, true).len(),
            fuzzy,
            "{q} fuzzy"
        );
    }
}

#[test]
fn ranges_lists_and_secondary_keys() {
    let (_d, index) = index();
    let r = run(
        &index,
        Model::StudyRoot,
        &ident("STUDY", &[(tags::STUDY_DATE, VR::DA, "20240101-20240131")]),
    );
    assert_eq!(uids_of(&r, tags::STUDY_INSTANCE_UID), vec!["1.1"]);
    let r = run(
        &index,
        Model::StudyRoot,
        &ident("STUDY", &[(tags::STUDY_DATE, VR::DA, "20240101-")]),
    );
    assert_eq!(uids_of(&r, tags::STUDY_INSTANCE_UID), vec!["1.1", "1.2"]);
    let r = run(
        &index,
        Model::StudyRoot,
        &ident(
            "STUDY",
            &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.1\\1.3\\9.9")],
        ),
    );
    assert_eq!(uids_of(&r, tags::STUDY_INSTANCE_UID), vec!["1.1", "1.3"]);
    let r = run(
        &index,
        Model::StudyRoot,
        &ident("STUDY", &[(tags::ACCESSION_NUMBER, VR::SH, "A2")]),
    );
    assert_eq!(uids_of(&r, tags::STUDY_INSTANCE_UID), vec!["1.2"]);
    let r = run(
        &index,
        Model::StudyRoot,
        &ident("STUDY", &[(tags::MODALITIES_IN_STUDY, VR::CS, "CT")]),
    );
    assert_eq!(uids_of(&r, tags::STUDY_INSTANCE_UID), vec!["1.1", "1.3"]);
    let r = run(
        &index,
        Model::StudyRoot,
        &ident(
            "SERIES",
            &[
                (tags::STUDY_INSTANCE_UID, VR::UI, "1.1"),
                (tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""),
            ],
        ),
    );
    assert_eq!(
        uids_of(&r, tags::SERIES_INSTANCE_UID),
        vec!["1.1.1", "1.1.2"]
    );
    let r = run(
        &index,
        Model::StudyRoot,
        &ident(
            "IMAGE",
            &[
                (tags::STUDY_INSTANCE_UID, VR::UI, "1.1"),
                (tags::SERIES_INSTANCE_UID, VR::UI, "1.1.1"),
            ],
        ),
    );
    assert_eq!(
        uids_of(&r, tags::SOP_INSTANCE_UID),
        vec!["1.1.1.1", "1.1.1.2"]
    );
    let r = run(
        &index,
        Model::PatientRoot,
        &ident(
            "PATIENT",
            &[
                (tags::PATIENT_ID, VR::LO, "P1"),
                (tags::NUMBER_OF_PATIENT_RELATED_SERIES, VR::IS, ""),
            ],
        ),
    );
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].get(tags::NUMBER_OF_PATIENT_RELATED_SERIES)
            .unwrap()
            .to_str()
            .unwrap(),
        "2"
    );
}

#[test]
fn malformed_identifiers_are_refused() {
    let opts = ParseOptions {
        case_insensitive_names: true,
        combined_datetime: false,
        fuzzy_names: false,
    };
    let mut no_level = InMemDicomObject::new_empty();
    no_level.put(DataElement::new(
        tags::PATIENT_ID,
        VR::LO,
        PrimitiveValue::from("x"),
    ));
    assert_eq!(
        parse(&no_level, Model::StudyRoot, opts).unwrap_err(),
        QueryError::MissingLevel
    );
    assert!(matches!(
        parse(&ident("FOO", &[]), Model::StudyRoot, opts),
        Err(QueryError::UnknownLevel(_))
    ));
    assert!(matches!(
        parse(&ident("PATIENT", &[]), Model::StudyRoot, opts),
        Err(QueryError::LevelNotInModel(_))
    ));
    assert!(matches!(
        parse(
            &ident("STUDY", &[(tags::SERIES_DESCRIPTION, VR::LO, "")]),
            Model::StudyRoot,
            opts
        ),
        Err(QueryError::KeyOfAnotherLevel { .. })
    ));
    assert!(matches!(
        parse(
            &ident("STUDY", &[(tags::STUDY_DATE, VR::DA, "2024x101")]),
            Model::StudyRoot,
            opts
        ),
        Err(QueryError::BadValue { .. })
    ));
    assert!(matches!(
        parse(
            &ident("SERIES", &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.1\\1.2")]),
            Model::StudyRoot,
            opts
        ),
        Err(QueryError::UpperKeyNotUnique { .. })
    ));
    assert!(matches!(
        parse(
            &ident("STUDY", &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.*")]),
            Model::StudyRoot,
            opts
        ),
        Err(QueryError::BadValue { .. })
    ));
    let q = parse(
        &ident("STUDY", &[(tags::MANUFACTURER, VR::LO, "ACME")]),
        Model::StudyRoot,
        opts,
    )
    .unwrap();
    assert!(q.unsupported_matching_keys);
}
