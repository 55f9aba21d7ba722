//! Drive our HAServiceProtocol client and the namenode probes against a live namenode, printing
//! `action.key: value` lines (read by tests/integration/test_ha_probe.py):
//!
//! ```text
//! cargo run --release --example ha_probe -- --rpc 127.0.0.1:9001 --http 127.0.0.1:9871 status health jmx
//! cargo run --release --example ha_probe -- --rpc 127.0.0.1:9001 standby          # then: active
//! cargo run --release --example ha_probe -- --rpc 127.0.0.1:9001 standby:zkfc     # refused without ZKFC
//! cargo run --release --example ha_probe -- --rpc 127.0.0.1:9001 bench:200 watch:100
//! ```
//!
//! Actions run in order on one client (one kept connection): `status`, `health`,
//! `standby[:user|forced|zkfc]`, `active[:…]`, `is-active`, `jmx`, `probe` (a whole
//! [`NamenodeProber`] probe), `host` (host liveness of the RPC address), `bench:N` (N status +
//! health pairs, latency percentiles), `watch:MS` (probe every MS ms, one line each, until the
//! first failed probe), `recover:MS` (the same until the first good probe). The probe actions
//! share one prober, so `watch:100 recover:100` shows its connection surviving a restart. A failed call prints its error kind and text and the next action runs;
//! the exit code is 0 unless the arguments are wrong.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mifas::ha::ipc::{HaServiceClient, IpcConfig, IpcError, RequestSource};
use mifas::ha::probe::{self, NamenodeAddrs, NamenodeProber, ProbeConfig, ProbeResult, http};

#[derive(Parser)]
struct Args {
    /// The namenode's RPC address, host:port
    #[arg(long)]
    rpc: String,
    /// The namenode's HTTP address, host:port (for is-active, jmx and probe)
    #[arg(long)]
    http: Option<String>,
    /// Connect timeout, ms
    #[arg(long, default_value_t = 300)]
    connect_timeout_ms: u64,
    /// Call timeout (getServiceStatus, monitorHealth, each HTTP GET) and whole-probe timeout, ms
    #[arg(long, default_value_t = 400)]
    timeout_ms: u64,
    /// transitionToActive / transitionToStandby timeout, ms
    #[arg(long, default_value_t = 10000)]
    transition_timeout_ms: u64,
    /// The user in the connection context (default: HADOOP_USER_NAME or the process user)
    #[arg(long)]
    user: Option<String>,
    /// What to do, in order
    #[arg(required = true)]
    actions: Vec<String>,
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn print_error(action: &str, e: &IpcError, elapsed: Duration) {
    println!("{action}.result: error");
    println!("{action}.error_kind: {}", e.kind());
    println!("{action}.unreachable: {}", e.is_unreachable());
    if let IpcError::Remote { class, .. } = e {
        println!("{action}.class: {class}");
    }
    println!("{action}.error: {}", e.to_string().replace('\n', " | "));
    println!("{action}.elapsed_ms: {}", ms(elapsed));
}

fn print_probe(action: &str, r: &ProbeResult) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!("{action}.reachable: {}", r.reachable);
    println!("{action}.state: {}", opt(r.state.map(|s| s.to_string())));
    println!("{action}.healthy: {}", r.healthy);
    println!(
        "{action}.http_active: {}",
        opt(r.http_active.map(|b| b.to_string()))
    );
    println!(
        "{action}.jmx_state: {}",
        opt(r.jmx_state.map(|s| s.to_string()))
    );
    println!("{action}.consistent: {}", r.consistent());
    println!(
        "{action}.failure: {}",
        opt(r.failure.map(|f| f.as_str().into()))
    );
    println!("{action}.latency_ms: {}", ms(r.latency));
    println!(
        "{action}.error: {}",
        opt(r.error.clone()).replace('\n', " | ")
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn run(
    action: &str,
    args: &Args,
    client: &mut HaServiceClient,
    prober: &mut NamenodeProber,
    pc: &ProbeConfig,
) -> bool {
    let (name, param) = action.split_once(':').unwrap_or((action, ""));
    let started = Instant::now();
    match name {
        "status" => match client.get_service_status().await {
            Ok(s) => {
                println!("status.state: {}", s.state);
                println!(
                    "status.ready_to_become_active: {}",
                    s.ready_to_become_active
                );
                println!(
                    "status.not_ready_reason: {}",
                    s.not_ready_reason.unwrap_or_default()
                );
                println!("status.latency_ms: {}", ms(started.elapsed()));
            }
            Err(e) => print_error("status", &e, started.elapsed()),
        },
        "health" => match client.monitor_health().await {
            Ok(()) => {
                println!("health.result: ok");
                println!("health.latency_ms: {}", ms(started.elapsed()));
            }
            Err(e) => print_error("health", &e, started.elapsed()),
        },
        "standby" | "active" => {
            let source: RequestSource = if param.is_empty() {
                RequestSource::User
            } else {
                match param.parse() {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("{e}");
                        return false;
                    }
                }
            };
            let timeout = Duration::from_millis(args.transition_timeout_ms);
            let r = if name == "active" {
                client.transition_to_active(source, timeout).await
            } else {
                client.transition_to_standby(source, timeout).await
            };
            match r {
                Ok(()) => {
                    println!("{name}.result: ok");
                    println!("{name}.latency_ms: {}", ms(started.elapsed()));
                }
                Err(e) => print_error(name, &e, started.elapsed()),
            }
        }
        "is-active" | "jmx" => {
            let Some(addr) = &args.http else {
                eprintln!("{name} needs --http");
                return false;
            };
            let timeout = pc.namenode_timeout;
            let key = name.replace('-', "_");
            let r = if name == "jmx" {
                http::jmx_status(addr, timeout).await.map(|j| {
                    let h = j.host_and_port.clone().unwrap_or_else(|| "-".into());
                    println!("jmx.host_and_port: {h}");
                    println!("jmx.describes_rpc: {}", j.describes(&args.rpc));
                    j.state.to_string()
                })
            } else {
                http::is_active(addr, timeout).await.map(|b| b.to_string())
            };
            match r {
                Ok(v) => println!("{key}.result: {v}"),
                Err(e) => {
                    println!("{key}.result: error");
                    println!("{key}.error: {e}");
                }
            }
            println!("{key}.latency_ms: {}", ms(started.elapsed()));
        }
        "host" => {
            let h = probe::probe_host(&args.rpc, pc.host_timeout).await;
            println!("host.reachable: {}", h.reachable);
            println!("host.latency_ms: {}", ms(h.latency));
            println!("host.error: {}", h.error.unwrap_or_else(|| "-".into()));
        }
        "probe" => print_probe("probe", &prober.probe().await),
        "watch" | "recover" => {
            let Ok(every) = param.parse::<u64>().map(Duration::from_millis) else {
                eprintln!("{name}:MS needs a number of milliseconds");
                return false;
            };
            // watch ends at the first failed probe, recover at the first good one
            let until_ok = name == "recover";
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let r = prober.probe().await;
                let ok = r.failure.is_none();
                println!(
                    "{name}.probe: t_ms={} ok={ok} state={} latency_ms={}",
                    t0.elapsed().as_millis(),
                    r.state.map(|s| s.as_str()).unwrap_or("-"),
                    ms(r.latency)
                );
                if ok == until_ok {
                    println!("{name}.after_ms: {}", t0.elapsed().as_millis());
                    print_probe(name, &r);
                    break;
                }
            }
        }
        "bench" => {
            let Ok(n) = param.parse::<usize>() else {
                eprintln!("bench:N needs a count");
                return false;
            };
            let (mut status, mut health) = (Vec::with_capacity(n), Vec::with_capacity(n));
            let mut errors = 0;
            for _ in 0..n {
                let t = Instant::now();
                errors += usize::from(client.get_service_status().await.is_err());
                status.push(t.elapsed());
                let t = Instant::now();
                errors += usize::from(client.monitor_health().await.is_err());
                health.push(t.elapsed());
            }
            for (key, mut v) in [("status", status), ("health", health)] {
                v.sort();
                println!("bench.{key}_p50_ms: {}", ms(percentile(&v, 0.5)));
                println!("bench.{key}_p99_ms: {}", ms(percentile(&v, 0.99)));
                println!("bench.{key}_max_ms: {}", ms(percentile(&v, 1.0)));
            }
            println!("bench.calls: {}", 2 * n);
            println!("bench.errors: {errors}");
        }
        other => {
            eprintln!("unknown action {other:?}");
            return false;
        }
    }
    true
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let pc = ProbeConfig {
        namenode_timeout: Duration::from_millis(args.timeout_ms),
        rpc: IpcConfig {
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
            call_timeout: Duration::from_millis(args.timeout_ms),
            user: args.user.clone(),
        },
        ..ProbeConfig::default()
    };
    let mut client = HaServiceClient::new(args.rpc.clone(), pc.rpc.clone());
    // one prober for every probe action: its kept connection must survive what happens between
    // them (watch, then recover after a restart)
    let addrs = NamenodeAddrs {
        name: "nn".into(),
        rpc: args.rpc.clone(),
        http: args.http.clone(),
    };
    let mut prober = NamenodeProber::new(addrs, &pc);
    for action in &args.actions {
        if !run(action, &args, &mut client, &mut prober, &pc).await {
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
