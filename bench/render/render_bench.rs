//! Thumbnail render latency through `Renderer::render` (issue 10 benchmark), in-process: the
//! file is already in memory, so the figures are parse + decode + window + shrink + encode +
//! the blocking-pool hop, without HTTP, login or storage reads.
//!
//! `render_bench [--iterations N] [--size PX] LABEL=FILE...` prints one TSV line per file and
//! mode: `label mode n p50_us p99_us mean_us bytes frames placeholder`. `uncached` renders a
//! new cache key each time (a new UID), `cached` repeats one key after it was drawn once.

use std::time::Instant;

use bytes::Bytes;
use mifas::render::{RenderParams, Renderer};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut iterations, mut size, mut files) = (200usize, 128u32, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => iterations = args.next().ok_or("--iterations N")?.parse()?,
            "--size" => size = args.next().ok_or("--size PX")?.parse()?,
            other => {
                let (label, path) = other.split_once('=').ok_or("LABEL=FILE expected")?;
                files.push((label.to_string(), Bytes::from(std::fs::read(path)?)));
            }
        }
    }
    // One render at a time: latency, not throughput; a cache big enough for every entry.
    let renderer = Renderer::new(1, 1 << 30);
    let params = RenderParams {
        max_size: Some(size),
        ..RenderParams::thumbnail()
    };
    println!("label\tmode\tn\tp50_us\tp99_us\tmean_us\tbytes\tframes\tplaceholder");
    for (label, file) in &files {
        for mode in ["uncached", "cached"] {
            let mut times = Vec::with_capacity(iterations);
            let mut last = None;
            for i in 0..=iterations {
                let uid = if mode == "uncached" {
                    format!("{label}.{i}")
                } else {
                    format!("{label}.cached")
                };
                let file = file.clone();
                let started = Instant::now();
                let out = renderer
                    .render(&uid, &params, move || async move { Ok(file) })
                    .await;
                // The first cached-mode call fills the cache; the first uncached one warms up.
                if i > 0 {
                    times.push(started.elapsed().as_secs_f64() * 1e6);
                }
                last = Some(out);
            }
            times.sort_by(f64::total_cmp);
            let mean = times.iter().sum::<f64>() / times.len() as f64;
            let out = last.ok_or("no render")?;
            println!(
                "{label}\t{mode}\t{}\t{:.1}\t{:.1}\t{:.1}\t{}\t{}\t{}",
                times.len(),
                percentile(&times, 50.0),
                percentile(&times, 99.0),
                mean,
                out.bytes.len(),
                out.frames,
                out.placeholder
            );
        }
    }
    Ok(())
}
