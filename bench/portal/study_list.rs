//! Portal benchmark: the study list (`/studies?…`, everything its handler does but the session
//! check: parameters → query engine → page of 25 newest first + exam-type catalog → HTML) over
//! an index of a bench/find catalog (100,000 studies for 50,000 patients), in-process.
//!
//! Usage: cargo run --release --example portal_study_list -- CATALOG_DIR DATA_DIR [--repeats 50]
//!
//! When DATA_DIR has no index yet it is built first with the bench/find loader's header code
//! (`bench_catalog.rs`, as `bulk_index` does): one instance of each study's first series — the
//! study list reads study and patient records and the name/date indexes, which do not depend on
//! how many instances a study has. No object files. Output: `key: value` lines; times in ms.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use mifas::archive::Archive;
use mifas::config::{Config, HttpConfig};
use mifas::index::{Index, InstanceEntry, ObjectFacts};
use mifas::web::WebState;
use mifas::web::auth::{CurrentUser, Role};

#[path = "../find/bench_catalog.rs"]
mod bench_catalog;
use bench_catalog::{Catalog, header, instance_uid, parse_args};

fn build_index(catalog: &Catalog, data: &std::path::Path) {
    std::fs::create_dir_all(data).expect("data dir");
    let index = Index::open(&data.join("index")).expect("open index");
    let study_by_uid = catalog.study_by_uid();
    let mut seen = std::collections::HashSet::new();
    let mut pending = Vec::new();
    let started = Instant::now();
    for se in &catalog.series {
        if !seen.insert(se.study_uid.as_str()) {
            continue; // the first series of each study only
        }
        let st = study_by_uid[se.study_uid.as_str()];
        let p = &catalog.patients[st.patient];
        let sop = instance_uid(&se.uid, 1);
        let facts = ObjectFacts {
            sop_class_uid: se.sop_class.clone(),
            sop_instance_uid: sop.clone(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            size: 100_000,
            sha256: [0; 32],
            object_key: format!("00/{sop}.dcm"),
            source_aet: "BULK".into(),
            received_at: 0,
        };
        pending.push(
            InstanceEntry::from_header(&header(p, st, se, 1, &sop), facts, &Default::default())
                .expect("entry"),
        );
        if pending.len() >= 1000 {
            index.apply(std::mem::take(&mut pending)).expect("apply");
        }
    }
    index.apply(pending).expect("apply");
    index.flush_blocking().expect("flush");
    let t = index.totals().expect("totals");
    println!("indexed_studies: {}", t.studies);
    println!("indexed_patients: {}", t.patients);
    println!("index_seconds: {:.1}", started.elapsed().as_secs_f64());
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let (positional, opts) = parse_args();
    if positional.len() != 2 {
        eprintln!("usage: portal_study_list CATALOG_DIR DATA_DIR [--repeats 50]");
        std::process::exit(2);
    }
    let repeats: usize = opts
        .get("repeats")
        .map_or(50, |v| v.parse().expect("repeats"));
    let data = PathBuf::from(&positional[1]);
    if !data.join("index").exists() {
        build_index(&Catalog::load(&PathBuf::from(&positional[0])), &data);
    }
    let mut config = Config::default();
    config.storage.data_dir = data.clone();
    let (archive, _) = Archive::open(&config).await.expect("open archive");
    let t = archive.totals().expect("totals");
    println!("studies: {}", t.studies);
    let state = WebState::new().with_archive(archive.clone(), &HttpConfig::default());
    let user = CurrentUser {
        name: "bench".into(),
        role: Role::Viewer,
        csrf: "x".into(),
    };
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("name_prefix_SMITH", &[("patient_name", "SMITH*")]),
        ("name_prefix_NGUY", &[("patient_name", "NGUY*")]),
        ("name_prefix_王", &[("patient_name", "王*")]),
        (
            "date_one_month",
            &[("date_from", "2024-01-01"), ("date_to", "2024-01-31")],
        ),
        (
            "date_one_month_page_4",
            &[
                ("date_from", "2024-01-01"),
                ("date_to", "2024-01-31"),
                ("page", "4"),
            ],
        ),
        ("all_first_page", &[]),
        ("modality_MG", &[("modality", "MG")]),
    ];
    let mut first = true;
    for (name, pairs) in cases {
        let params: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // one warm-up; the first also counts the exam-type catalog (cached afterwards)
        let t0 = Instant::now();
        let html = mifas::web::portal::study_list_html(&state, &user, &params)
            .await
            .expect("page");
        if first {
            println!(
                "first_page_with_catalog_count_ms: {:.1}",
                t0.elapsed().as_secs_f64() * 1000.0
            );
            first = false;
        }
        let rows = html.matches("<tr class=\"study\"").count();
        let mut times = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let t0 = Instant::now();
            let html = mifas::web::portal::study_list_html(&state, &user, &params)
                .await
                .expect("page");
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            assert!(html.len() > 1000);
        }
        times.sort_by(f64::total_cmp);
        let total = html
            .split("<span id=\"total\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or("?")
            .to_string();
        println!(
            "{name}: rows {rows} total {total} p50_ms {:.2} p90_ms {:.2} max_ms {:.2}",
            percentile(&times, 0.5),
            percentile(&times, 0.9),
            times[times.len() - 1]
        );
    }
    archive.close().await.expect("close");
}
