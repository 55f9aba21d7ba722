//! Part-10 files of a catalog (bench/find/catalog.py) for `mifas import`, e.g. the ingest-scale
//! benchmark (bench/find/run_ingest_scale.sh).
//!
//! Usage: cargo run --release --example gen_part10 -- CATALOG_DIR OUT_DIR
//!        [--limit N] [--folder-size 10000] [--jobs N]
//!
//! One file per instance, Explicit VR Little Endian with a file meta group: the header
//! `bulk_index` indexes (bench_catalog.rs `header`) with Rows/Columns 8 and 8×8 16-bit
//! MONOCHROME2 pixel data (OW, 128 bytes, values within BitsStored 12). The first `--limit`
//! instances (default: all) are taken in catalog order, series by series, and written into
//! folders of `--folder-size` instances: OUT_DIR/f000/, f001/, … (instance i goes to folder
//! i / folder-size), so importing folder k after folder k-1 grows an archive in steps of
//! folder-size. Inside a folder, one sub-folder per series (`s<series index in the catalog,
//! 6 digits>/`, split where a series crosses a folder boundary) holds `<SOPInstanceUID>.dcm`:
//! a recursive walk (`mifas import`) then meets the instances series by series, as a modality
//! sends them, instead of in the directory's hash order. Existing files are overwritten; nothing
//! is fsynced (source data). `--jobs` threads (default: available parallelism) take series in
//! turn. Output: one `key: value` per line on stdout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;

#[path = "bench_catalog.rs"]
mod bench_catalog;
use bench_catalog::{Catalog, PER_SERIES, header, instance_uid, parse_args};

const ROWS: u16 = 8;
const COLS: u16 = 8;

/// 8×8 pixels, 12 significant bits, varying with the instance number.
fn pixels(n: u32) -> Vec<u16> {
    (0..u32::from(ROWS) * u32::from(COLS))
        .map(|i| ((i * 61 + n * 97) % 4096) as u16)
        .collect()
}

fn folder_name(k: usize) -> String {
    format!("f{k:03}")
}

fn main() {
    let (positional, opts) = parse_args();
    if positional.len() != 2 {
        eprintln!(
            "usage: gen_part10 CATALOG_DIR OUT_DIR [--limit N] [--folder-size 10000] [--jobs N]"
        );
        std::process::exit(2);
    }
    let num = |k: &str, d: usize| opts.get(k).map(|v| v.parse().expect(k)).unwrap_or(d);
    let catalog = PathBuf::from(&positional[0]);
    let out = PathBuf::from(&positional[1]);
    let cat = Catalog::load(&catalog);
    let total = num("limit", usize::MAX).min(cat.instance_count());
    let folder_size = num("folder-size", 10_000).max(1);
    let default_jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let jobs = num("jobs", default_jobs).max(1);
    let folders = total.div_ceil(folder_size);
    for k in 0..folders {
        let d = out.join(folder_name(k));
        std::fs::create_dir_all(&d)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    }

    let study_by_uid = cat.study_by_uid();
    let series_needed = total.div_ceil(PER_SERIES as usize);
    let next_series = AtomicUsize::new(0);
    let written = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let mut buf: Vec<u8> = Vec::with_capacity(4096);
                loop {
                    let k = next_series.fetch_add(1, Ordering::Relaxed);
                    if k >= series_needed {
                        break;
                    }
                    let se = &cat.series[k];
                    let st = study_by_uid[se.study_uid.as_str()];
                    let p = &cat.patients[st.patient];
                    for n in 1..=PER_SERIES {
                        let i = k * PER_SERIES as usize + (n as usize - 1);
                        if i >= total {
                            break;
                        }
                        let sop = instance_uid(&se.uid, n);
                        let dir = out
                            .join(folder_name(i / folder_size))
                            .join(format!("s{k:06}"));
                        if n == 1 || i.is_multiple_of(folder_size) {
                            std::fs::create_dir_all(&dir)
                                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
                        }
                        let path = dir.join(format!("{sop}.dcm"));
                        buf.clear();
                        write_instance(&mut buf, header(p, st, se, n, &sop), n, &path);
                        std::fs::write(&path, &buf)
                            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                        bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
                        let w = written.fetch_add(1, Ordering::Relaxed) + 1;
                        if w.is_multiple_of(100_000) {
                            eprintln!(
                                "[gen_part10] {w}/{total} files, {:.1}s",
                                start.elapsed().as_secs_f64()
                            );
                        }
                    }
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let files = written.load(Ordering::Relaxed);
    let bytes = bytes.load(Ordering::Relaxed);
    println!("files: {files}");
    println!("folders: {folders}");
    println!("folder_size: {folder_size}");
    println!("bytes: {bytes}");
    println!(
        "mean_file_bytes: {:.0}",
        bytes as f64 / (files.max(1)) as f64
    );
    println!("seconds: {seconds:.2}");
    println!("files_per_second: {:.1}", files as f64 / seconds.max(1e-9));
    println!("jobs: {jobs}");
}

/// The Part-10 encoding of one instance (preamble, DICM, file meta group, data set) into `buf`.
fn write_instance(buf: &mut Vec<u8>, mut obj: dicom_object::InMemDicomObject, n: u32, path: &Path) {
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        dicom_value!(U16, [ROWS]),
    ));
    obj.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        dicom_value!(U16, [COLS]),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels(n).into()),
    ));
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .unwrap_or_else(|e| panic!("file meta for {}: {e}", path.display()));
    file.write_all(&mut *buf)
        .unwrap_or_else(|e| panic!("cannot encode {}: {e}", path.display()));
}
