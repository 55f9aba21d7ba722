//! Run every HdfsFs check against a live HDFS site and print one line per check:
//!
//! ```text
//! cargo run --release --example hdfs_check -- hdfs://127.0.0.1:9000
//! cargo run --release --example hdfs_check -- hdfs://ns --namenodes 127.0.0.1:9001,127.0.0.1:9002
//! ```
//!
//! Exits 1 if any check fails. `--kill-datanode CMD` runs CMD (sh -c) in the middle of a write
//! to check pipeline recovery; `--failover` waits for a line on stdin (after you killed or
//! transitioned namenodes) and times how long the client takes to follow.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use mifas::storage::hdfs_checks::{self, CheckResult};
use mifas::storage::{HdfsFs, PackFs};

#[derive(Parser)]
struct Args {
    /// hdfs://host:port or hdfs://nameservice
    url: String,
    /// For a nameservice: host:port,host:port
    #[arg(long, value_delimiter = ',')]
    namenodes: Vec<String>,
    /// Scratch directory on the site (default /mifas-check/<unix time>)
    #[arg(long)]
    dir: Option<String>,
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Replication factor of the files written (0 = the cluster's default)
    #[arg(long, default_value_t = 0)]
    replication: u32,
    /// Shell command that stops one datanode (and returns when it is down)
    #[arg(long)]
    kill_datanode: Option<String>,
    /// Instead of a command: print "KILL-DATANODE" and wait for a line on stdin (a harness
    /// that owns the cluster kills the datanode, then answers)
    #[arg(long)]
    kill_datanode_stdin: bool,
    /// After the checks, wait for a line on stdin, then time the client's failover
    #[arg(long)]
    failover: bool,
    /// Skip the latency and throughput measurements
    #[arg(long)]
    no_measure: bool,
}

fn report(name: &str, r: &CheckResult, failed: &mut bool) {
    match r {
        Ok(note) => println!("ok   {name}: {note}"),
        Err(e) => {
            *failed = true;
            println!("FAIL {name}: {e}");
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut site = hdfs_checks::test_site(&args.url, &args.namenodes, args.timeout_secs);
    site.replication = args.replication;
    let fs = match HdfsFs::connect(&site) {
        Ok(fs) => fs,
        Err(e) => {
            println!("FAIL connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| format!("/mifas-check/{stamp}"));
    let mut failed = false;

    let t = Instant::now();
    let probe = fs.probe().await.map(|()| format!("{:?}", t.elapsed()));
    report("probe", &probe.map_err(|e| e.to_string()), &mut failed);

    macro_rules! check {
        ($name:literal, $e:expr) => {
            report($name, &$e, &mut failed)
        };
    }
    check!(
        "read_while_open",
        hdfs_checks::check_read_while_open(&fs, &dir).await
    );
    // the same on 1 MiB blocks, to cross block boundaries while the file is open
    let mut small = site.clone();
    small.block_size_mb = 1;
    match HdfsFs::connect(&small) {
        Ok(fs1) => check!(
            "read_while_open_across_blocks",
            hdfs_checks::check_read_while_open_across_blocks(&fs1, &dir).await
        ),
        Err(e) => report("connect (1 MiB blocks)", &Err(e.to_string()), &mut failed),
    }
    check!(
        "create_exists",
        hdfs_checks::check_create_exists(&fs, &dir).await
    );
    check!("rename", hdfs_checks::check_rename(&fs, &dir).await);
    check!("list", hdfs_checks::check_list(&fs, &dir).await);
    check!("delete", hdfs_checks::check_delete(&fs, &dir).await);
    check!(
        "read_clamped",
        hdfs_checks::check_read_clamped(&fs, &dir).await
    );
    check!("recover", hdfs_checks::check_recover(&fs, &dir).await);
    check!(
        "dead_addresses",
        hdfs_checks::check_dead_addresses(args.timeout_secs.min(3)).await
    );
    if let Some(cmd) = &args.kill_datanode {
        let kill = async {
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .status()
                .await;
            println!("     (kill-datanode command: {status:?})");
        };
        check!(
            "write_survives_datanode_loss",
            hdfs_checks::check_write_survives_datanode_loss(&fs, &dir, kill).await
        );
    }
    if args.kill_datanode_stdin {
        let kill = async {
            println!("KILL-DATANODE");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        };
        check!(
            "write_survives_datanode_loss",
            hdfs_checks::check_write_survives_datanode_loss(&fs, &dir, kill).await
        );
    }
    if !args.no_measure {
        match hdfs_checks::measure(&fs, &dir).await {
            Ok(lines) => lines.iter().for_each(|l| println!("     {l}")),
            Err(e) => report("measure", &Err(e), &mut failed),
        }
    }
    if args.failover {
        println!("WAITING for failover: change the namenodes, then press enter");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        // probe until the site answers again (up to 2 minutes): how long the client took to
        // follow, how many calls failed meanwhile, and the longest single call
        let t = Instant::now();
        let (mut failures, mut longest) = (0u32, std::time::Duration::ZERO);
        let mut last_err = String::new();
        let r = loop {
            let c = Instant::now();
            let res = fs.probe().await;
            longest = longest.max(c.elapsed());
            match res {
                Ok(()) => {
                    break Ok(format!(
                        "answered_after_ms={} failed_calls={failures} longest_call_ms={} \
                         (last error: {last_err})",
                        t.elapsed().as_millis(),
                        longest.as_millis()
                    ));
                }
                Err(e) if t.elapsed() < std::time::Duration::from_secs(120) => {
                    failures += 1;
                    last_err = e.to_string();
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => break Err(format!("still failing after 2 minutes: {e}")),
            }
        };
        report("failover_probe", &r, &mut failed);
        let t = Instant::now();
        let r = hdfs_checks::check_read_while_open(&fs, &format!("{dir}/after-failover"))
            .await
            .map(|n| format!("{n} ({:?})", t.elapsed()));
        report("failover_write_read", &r, &mut failed);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
