//! Read of one large object from HDFS sites behind the emulated WAN links (issue 9: co-allocated
//! read of a 1 GB object; bench/sites/run_coalloc.sh drives it).
//!
//! ```text
//! coalloc_read put  --config CFG --object OBJ --size-mb 1024 --work DIR
//! coalloc_read read --config CFG --object OBJ --mode single --site site-a [--range-mb 4] [--in-flight 4]
//! ```
//!
//! `put` writes a SIZE-MiB file of a deterministic pattern into DIR, stores it on every site of
//! CFG (a MIFAS TOML made by `bench/sites/sites.py config`) with `PackSite::put_group`, and
//! writes OBJ (`size`, `sha256`, one `site NAME LOCATOR` line per site). Run it over unshaped
//! links, then shape them.
//!
//! `read` (a new process: the writer's process would serve the unfinished last block of a pack
//! from memory) reads the object once and checks its SHA-256; prints `key: value` lines: mode,
//! sites, bytes, seconds, mb_per_s (10^6 B), sha256_ok, vmhwm_kb (peak RSS of this process).
//!   single  from one site, ranges of --range-mb with --in-flight of them outstanding, in order
//!           (the best a reader bound to one site does: the link, not the round trips, limits)
//!   coalloc `mifas::storage::CoAllocator::read_object` over every site holding a copy, with
//!           `[storage.coalloc]` and `[storage.health]` of CFG (the archive's own read path).
//!           Read twice in one process: "cold" starts with no throughput measured, "warm"
//!           with what the first read measured (an archive that has been serving reads); both
//!           are printed (`cold_seconds`, `cold_mb_per_s`; `seconds` and `mb_per_s` are the warm
//!           read). vmhwm_kb covers both.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use mifas::config::{Config, Overrides};
use mifas::storage::{CoAllocator, Locator, ObjectKey, PutSource, Site, SiteHealth, open_site};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A UID under pydicom's test root, like the benchmark corpora.
const OBJECT_UID: &str = "1.2.826.0.1.3680043.8.498.9000000001";

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Put {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        object: PathBuf,
        #[arg(long, default_value_t = 1024)]
        size_mb: u64,
        #[arg(long)]
        work: PathBuf,
    },
    Read {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        object: PathBuf,
        #[arg(long, default_value = "single")]
        mode: String,
        /// For --mode single: the site to read from
        #[arg(long)]
        site: Option<String>,
        #[arg(long, default_value_t = 4)]
        range_mb: u64,
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
    },
}

struct Object {
    size: u64,
    sha256: String,
    /// (site name, locator)
    copies: Vec<(String, Locator)>,
}

impl Object {
    fn load(path: &Path) -> Result<Object, Error> {
        let text = std::fs::read_to_string(path)?;
        let (mut size, mut sha256, mut copies) = (None, None, Vec::new());
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("size"), Some(v), None) => size = Some(v.parse()?),
                (Some("sha256"), Some(v), None) => sha256 = Some(v.to_string()),
                (Some("site"), Some(n), Some(l)) => {
                    copies.push((n.to_string(), Locator(l.to_string())))
                }
                _ => return Err(format!("{}: bad line {line:?}", path.display()).into()),
            }
        }
        Ok(Object {
            size: size.ok_or("object file: no size")?,
            sha256: sha256.ok_or("object file: no sha256")?,
            copies,
        })
    }
}

async fn open_sites(config: &Path) -> Result<Vec<Arc<dyn Site>>, Error> {
    let config = Config::load(Some(config), &Overrides::default())?;
    let mut sites = Vec::new();
    for s in &config.storage.sites {
        sites.push(open_site(s).await?);
    }
    if sites.is_empty() {
        return Err("the configuration names no [[storage.sites]]".into());
    }
    Ok(sites)
}

/// A pattern that no layer can compress or deduplicate cheaply: a counter through a xorshift.
fn fill(buf: &mut [u8], mut state: u64) -> u64 {
    for chunk in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    state
}

async fn put(config: &Path, object: &Path, size_mb: u64, work: &Path) -> Result<(), Error> {
    let sites = open_sites(config).await?;
    tokio::fs::create_dir_all(work).await?;
    let path = work.join("coalloc-object.bin");
    let size = size_mb << 20;
    let mut file = tokio::fs::File::create(&path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..size_mb {
        state = fill(&mut buf, state);
        hasher.update(&buf);
        file.write_all(&buf).await?;
    }
    file.sync_all().await?;
    drop(file);
    let sha256: [u8; 32] = hasher.finalize().into();
    let source = PutSource {
        key: ObjectKey::for_instance(OBJECT_UID),
        path: path.clone(),
        size,
        sha256,
        hold: None,
    };
    let mut out = format!("size {size}\nsha256 {}\n", hex::encode(sha256));
    for site in &sites {
        let t0 = Instant::now();
        let locators = site.put_group(std::slice::from_ref(&source)).await?;
        let locator = locators.first().ok_or("put_group returned no locator")?;
        eprintln!(
            "put on {}: {:.1} s",
            site.name(),
            t0.elapsed().as_secs_f64()
        );
        out.push_str(&format!("site {} {}\n", site.name(), locator));
    }
    std::fs::write(object, out)?;
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Reads [0, size) from one site, `in_flight` ranges outstanding, hashing in order.
async fn read_single(
    site: Arc<dyn Site>,
    locator: Locator,
    size: u64,
    range: u64,
    in_flight: usize,
) -> Result<[u8; 32], Error> {
    let mut hasher = Sha256::new();
    let mut pending: VecDeque<tokio::task::JoinHandle<mifas::storage::Result<bytes::Bytes>>> =
        VecDeque::new();
    let mut next = 0u64;
    let mut done = 0u64;
    while done < size {
        while next < size && pending.len() < in_flight.max(1) {
            let (site, locator) = (site.clone(), locator.clone());
            let len = range.min(size - next);
            let off = next;
            pending.push_back(tokio::spawn(async move {
                site.read_at(&locator, off, len).await
            }));
            next += len;
        }
        let handle = pending.pop_front().ok_or("no range outstanding")?;
        let bytes = handle.await??;
        if bytes.is_empty() {
            return Err(format!("{}: empty read at {done}", site.name()).into());
        }
        hasher.update(&bytes);
        done += bytes.len() as u64;
    }
    Ok(hasher.finalize().into())
}

/// One co-allocated read of the whole object, hashed as it streams out (the stream checks the
/// SHA-256 itself too: it ends with an error, not `None`, on a mismatch).
async fn read_coalloc(
    alloc: &CoAllocator,
    sources: Vec<(Arc<dyn Site>, Locator)>,
    size: u64,
    sha256: [u8; 32],
) -> Result<[u8; 32], Error> {
    let mut stream = alloc.read_object(sources, size, sha256);
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next_chunk().await {
        hasher.update(&chunk?);
    }
    Ok(hasher.finalize().into())
}

fn vmhwm_kb() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

async fn read(
    config: &Path,
    object: &Path,
    mode: &str,
    site_name: Option<String>,
    range_mb: u64,
    in_flight: usize,
) -> Result<bool, Error> {
    let object = Object::load(object)?;
    let sites = open_sites(config).await?;
    let range = range_mb.max(1) << 20;
    let t0 = Instant::now();
    // coalloc: the warm read's start (the cold one is reported on its own)
    let mut t_warm: Option<Instant> = None;
    let (digest, used) = match mode {
        "single" => {
            let name = site_name.ok_or("--mode single needs --site")?;
            let site = sites
                .iter()
                .find(|s| s.name() == name)
                .ok_or(format!("no site {name} in the configuration"))?;
            let locator = object
                .copies
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, l)| l.clone())
                .ok_or(format!("the object has no copy on {name}"))?;
            (
                read_single(site.clone(), locator, object.size, range, in_flight).await?,
                name,
            )
        }
        "coalloc" => {
            let cfg = Config::load(Some(config), &Overrides::default())?;
            let health = Arc::new(SiteHealth::new(cfg.storage.health.clone()));
            let mut sources = Vec::new();
            for (name, locator) in &object.copies {
                let site = sites.iter().find(|s| s.name() == name).ok_or(format!(
                    "the object's copy on {name}: no such site in the configuration"
                ))?;
                health.register(name);
                sources.push((site.clone(), locator.clone()));
            }
            let names: Vec<&str> = object.copies.iter().map(|(n, _)| n.as_str()).collect();
            let alloc = CoAllocator::new(health, &cfg.storage.coalloc);
            let sha256: [u8; 32] = hex::decode(&object.sha256)?
                .try_into()
                .map_err(|_| "object file: sha256 is not 32 bytes")?;
            let cold = read_coalloc(&alloc, sources.clone(), object.size, sha256).await?;
            let cold_secs = t0.elapsed().as_secs_f64();
            println!("cold_seconds: {cold_secs:.3}");
            println!("cold_mb_per_s: {:.2}", object.size as f64 / 1e6 / cold_secs);
            println!("cold_sha256_ok: {}", hex::encode(cold) == object.sha256);
            t_warm = Some(Instant::now());
            (
                read_coalloc(&alloc, sources, object.size, sha256).await?,
                names.join(","),
            )
        }
        other => return Err(format!("unknown --mode {other} (single, coalloc)").into()),
    };
    let secs = t_warm.unwrap_or(t0).elapsed().as_secs_f64();
    let ok = hex::encode(digest) == object.sha256;
    println!("mode: {mode}");
    println!("sites: {used}");
    println!("bytes: {}", object.size);
    println!("seconds: {secs:.3}");
    println!("mb_per_s: {:.2}", object.size as f64 / 1e6 / secs);
    println!("sha256_ok: {ok}");
    println!("vmhwm_kb: {}", vmhwm_kb());
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.cmd {
        Cmd::Put {
            config,
            object,
            size_mb,
            work,
        } => put(&config, &object, size_mb, &work).await.map(|()| true),
        Cmd::Read {
            config,
            object,
            mode,
            site,
            range_mb,
            in_flight,
        } => read(&config, &object, &mode, site, range_mb, in_flight).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("coalloc_read: SHA-256 of the bytes read differs from the object's");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("coalloc_read: {e}");
            ExitCode::FAILURE
        }
    }
}
