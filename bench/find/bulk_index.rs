//! C-FIND benchmark bulk loader: indexes the instances of a catalog (bench/find/catalog.py)
//! through the same index code the network ingest uses (`InstanceEntry::from_header` +
//! `Index::apply` + `Index::flush_blocking`), without object files and without the network.
//!
//! Usage: cargo run --release --example bulk_index -- CATALOG_DIR DATA_DIR
//!        [--batch 1000] [--window 10000] [--flush-every 1] [--rates FILE]
//!
//! Each instance gets a realistic header (~1.3 KB in Explicit VR LE, no pixel data): patient,
//! study, series and image attributes, a RequestAttributesSequence item, text in the patient's
//! character set (ISO_IR 100, ISO_IR 192 or GB18030); catalog and header code are in
//! bench_catalog.rs (shared with `gen_part10`). Instances are applied series by series in
//! batches of `--batch`; the index is flushed (made durable, like a group commit) after every
//! `--flush-every` batches. Rates are reported per window of `--window` instances: wall rate
//! (header build + entry + apply + flush) and index rate (apply + flush only). Output: one
//! `key: value` per line on stdout; per-window rates as TSV in `--rates`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use mifas::index::{Index, InstanceEntry, ObjectFacts};
use sha2::{Digest, Sha256};

#[path = "bench_catalog.rs"]
mod bench_catalog;
use bench_catalog::{Catalog, PER_SERIES, dims, header, instance_uid, parse_args};

fn main() {
    let (positional, opts) = parse_args();
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

    let cat = Catalog::load(&catalog);
    let (patients, series) = (&cat.patients, &cat.series);
    let study_by_uid = cat.study_by_uid();
    let total = cat.instance_count();

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

    for se in series {
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
            let entry = InstanceEntry::from_header(&h, facts, &Default::default()).expect("entry");
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
