//! `chute bench`: the standard workloads W1–W6 (or a custom run) against a running server,
//! measured exactly as the peer harness in `../shared/peerbench` measures other brokers, so
//! the figures compare. See `docs/BENCHMARKS.md`.
//!
//! - `workload`: the presets and custom runs; `queues`: the run's queues, set up and removed;
//! - `payload`, `pace`: what a message carries and when a paced producer sends it;
//! - `run`: one run's producers and consumers, and the check that every message arrived on
//!   its own queue; `placement`: which thread drives which connections;
//! - `measure`: the figures, their JSON and the median over repetitions;
//! - `metrics`: the broker's own figures from its admin endpoint;
//! - `disk`: the disk's sequential write rate, for W6;
//! - `host`: load and CPU steal of this machine; `progress`, `report`: what a person sees.

mod disk;
mod host;
mod measure;
mod metrics;
mod pace;
mod payload;
mod placement;
mod progress;
mod queues;
mod report;
mod run;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chute_client::{ConnectOptions, Connection};
use clap::Args;
use futures::executor::block_on;

use disk::DiskProbe;
use measure::Figures;
use metrics::{BrokerFigures, BrokerSample};
use queues::RunQueues;

use crate::admin_http::{AdminEndpoint, ADMIN_URL_DEFAULT};
use crate::connect::ServerArgs;
use workload::{Named, Overrides, Preset};

/// Pause between repetitions, to let the broker settle (as the harness does).
const SETTLE_BETWEEN_REPS: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct BenchArgs {
    /// A standard workload: W1 (durable 1×1, 200,000), W2 (W1 in memory), W3 (durable 1×1,
    /// 20,000 at 2,000 msg/s), W4 (durable 4×4, 200,000), W5 (durable, 64 queues with one
    /// producer and one consumer each, 200,000 in all), W6 (durable 1×1, 20,000 of 64 KiB).
    /// The flags below change its parts; without it they change W1.
    #[arg(long, value_name = "W1|W2|W3|W4|W5|W6")]
    pub workload: Option<Preset>,
    /// Queues; the producers and consumers are split evenly over them, each using its own
    /// queue only.
    #[arg(long)]
    pub queues: Option<u32>,
    /// Producers, each on its own connection.
    #[arg(long)]
    pub producers: Option<u32>,
    /// Consumers, each on its own connection.
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Messages in total, over all producers.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Payload size in bytes (at least 16) [default: 256].
    #[arg(long)]
    pub size: Option<u32>,
    /// Publish at this many messages per second in total (the W3 way) instead of as fast as
    /// confirms allow.
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// A durable queue: confirms wait for fsync.
    #[arg(long, conflicts_with = "in_memory")]
    pub durable: bool,
    /// An in-memory queue.
    #[arg(long)]
    pub in_memory: bool,
    /// Use this queue (created if missing, and then deleted at the end; an existing one must
    /// be empty and is kept). Default: a fresh queue per run, deleted at the end.
    #[arg(long)]
    pub queue: Option<String>,
    /// Run this many times; report each run and the median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub reps: u32,
    /// Also print each run as one JSON object on a line of its own; the last line is the
    /// result (the median, with --reps).
    #[arg(long)]
    pub json: bool,
    /// The server's admin endpoint, for the broker's CPU, fsync and memory figures; `off` to
    /// skip them.
    #[arg(long, env = "CHUTE_ADMIN_URL", default_value = ADMIN_URL_DEFAULT)]
    pub admin_url: String,
    /// Fail a run that has not seen every message by then (the harness's default).
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    /// Before each run, measure the disk's sequential write rate with a file in this
    /// directory (give the broker's data directory), and report the run's MB/s as a fraction of
    /// it. W6 asks for it.
    #[arg(long, value_name = "DIR")]
    pub disk_dir: Option<PathBuf>,
    /// MiB the disk probe writes before its fdatasync [default: as much as the run's payloads,
    /// 1,250 for W6].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub disk_probe_mib: Option<u32>,
}

impl BenchArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            queues: self.queues,
            producers: self.producers,
            consumers: self.consumers,
            messages: self.messages,
            size_bytes: self.size,
            rate_per_s: self.rate,
            durable: match (self.durable, self.in_memory) {
                (true, _) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
            },
        }
    }
}

pub fn run(server: &ServerArgs, args: BenchArgs) -> Result<(), String> {
    let target = Target { url: server.url.clone(), options: server.options()? };
    let target = &target;
    let named = workload::resolve(args.workload, &args.overrides())?;
    let admin = Broker::new(AdminEndpoint::parse(&args.admin_url)?);
    let probe_mib = args.disk_probe_mib.unwrap_or_else(|| payload_mib(&named.workload));
    let disk = args.disk_dir.as_deref().map(|dir| DiskProbe::new(dir, probe_mib));
    let disk = disk.transpose()?;
    if disk.is_none() && named.base == Preset::W6 {
        eprintln!(
            "chute bench: W6's MB/s is read against the disk's sequential write rate; give \
             --disk-dir (the broker's data directory) to measure it in the same run"
        );
    }
    let mut runs = Vec::new();
    for rep in 1..=args.reps {
        if rep > 1 {
            std::thread::sleep(SETTLE_BETWEEN_REPS);
        }
        let disk_mb_per_s = disk.as_ref().map(DiskProbe::measure).transpose()?;
        let mut figures = run_rep(target, &named, &args, rep, &admin)?;
        if let Some(disk_mb_per_s) = disk_mb_per_s {
            figures.set_disk_write_mb_per_s(disk_mb_per_s);
        }
        let title = if args.reps == 1 {
            named.name.clone()
        } else {
            format!("{} run {rep}/{}", named.name, args.reps)
        };
        print!("{}", report::summary(&title, &figures));
        if args.json {
            println!("{}", figures.to_json(Some(rep), args.reps));
        }
        runs.push(figures);
    }
    if args.reps > 1 {
        let median = measure::median(&runs);
        let title = format!("{} median of {} runs", named.name, args.reps);
        print!("{}", report::summary(&title, &median));
        if args.json {
            println!("{}", median.to_json(None, args.reps));
        }
    }
    Ok(())
}

/// The server to measure, and how every connection of the bench logs in.
pub struct Target {
    pub url: String,
    pub options: ConnectOptions,
}

/// One repetition: declare the queues, run, read the broker's figures around the run, delete
/// the queues this run created.
fn run_rep(
    target: &Target,
    named: &Named,
    args: &BenchArgs,
    rep: u32,
    broker: &Broker,
) -> Result<Figures, String> {
    let workload = &named.workload;
    let queue = args.queue.clone().unwrap_or_else(|| fresh_queue_name(rep));
    // As in the harness, the broker's figures cover setup and run, not the teardown.
    let before = broker.sample();
    let load1 = host::load1();
    let cpu_before = host::CpuTimes::now();

    let admin = block_on(Connection::connect_with(&target.url, target.options.clone()))
        .map_err(|e| e.to_string())?;
    let declared =
        RunQueues::declare(&admin, queues::names(&queue, workload.queues), workload.durable);
    let queues = match declared {
        Ok(queues) => queues,
        Err(error) => {
            block_on(admin.close());
            return Err(error);
        }
    };

    let label = format!("{} run {rep}", named.name);
    let mut progress = progress::Progress::new(label, workload.messages);
    let timeout = Duration::from_secs(args.timeout_s);
    let result = run::run(target, &queues.names, workload, timeout, &mut progress);

    let after = broker.sample();
    let steal = cpu_before.zip(host::CpuTimes::now()).and_then(|(a, b)| a.steal_pct_until(b));
    queues.delete_created(&admin);
    block_on(admin.close());

    let measured = result.map_err(|e| format!("{} run {rep} failed: {e}", named.name))?;
    let broker_figures = match (before, after) {
        (Some(before), Some(after)) => BrokerFigures::between(&before, &after, workload.messages),
        _ => BrokerFigures::default(),
    };
    if let Some(published) = broker_figures.published.filter(|n| *n != workload.messages) {
        eprintln!(
            "chute bench: the broker accepted {published} messages during a run of {}: other \
             traffic shares its CPU and fsync figures",
            workload.messages
        );
    }
    let mut figures = Figures::new(named, &queue, &measured, broker_figures);
    figures.load1 = load1;
    figures.cpu_steal_pct = steal;
    Ok(figures)
}

/// The run's payload bytes in MiB, rounded up: what the disk probe writes unless told. A short
/// write lands in whatever cache sits in front of the disk and reads fast (on the project's VM,
/// `dd ... conv=fdatasync` of 256 MiB gave 1.1 GB/s, of 1.25 GiB 0.4 GB/s), so the probe
/// writes as much as the run does, and both meet the disk alike.
fn payload_mib(workload: &workload::Workload) -> u32 {
    let bytes = workload.messages.saturating_mul(u64::from(workload.size_bytes));
    u32::try_from(bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX).max(1)
}

/// A queue name no other run uses: this process and the time, so that a leftover (from an
/// interrupted run) is recognisable and never reused.
fn fresh_queue_name(rep: u32) -> String {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("chute-bench-{}-{unix_ms}-{rep}", std::process::id())
}

/// The broker's admin endpoint, if there is one; says once on stderr when it cannot be read.
struct Broker {
    endpoint: Option<AdminEndpoint>,
    warned: std::cell::Cell<bool>,
}

impl Broker {
    fn new(endpoint: Option<AdminEndpoint>) -> Broker {
        Broker { endpoint, warned: std::cell::Cell::new(false) }
    }

    fn sample(&self) -> Option<BrokerSample> {
        let endpoint = self.endpoint.as_ref()?;
        match metrics::sample(endpoint) {
            Ok(sample) => Some(sample),
            Err(error) => {
                if !self.warned.replace(true) {
                    eprintln!(
                        "chute bench: cannot read broker metrics from {} ({error}); the broker \
                         figures are null (--admin-url sets the endpoint)",
                        endpoint.url(metrics::METRICS_PATH)
                    );
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn resolve(args: &str) -> Result<Named, String> {
        let args = std::iter::once("bench").chain(args.split_whitespace());
        let bench = Bench::try_parse_from(args).map_err(|e| e.to_string())?;
        workload::resolve(bench.args.workload, &bench.args.overrides())
    }

    #[test]
    fn flags_shape_the_workload() {
        assert_eq!(resolve("").unwrap().name, "W1");
        assert_eq!(resolve("--workload w2").unwrap().workload, Preset::W2.workload());
        let w = resolve("--workload W4 --producers 2 --messages 10 --size 64 --in-memory").unwrap();
        assert_eq!((w.name.as_str(), w.workload.producers, w.workload.consumers), ("custom", 2, 4));
        assert_eq!(
            (w.workload.messages, w.workload.size_bytes, w.workload.durable),
            (10, 64, false)
        );
        assert_eq!(resolve("--workload W2 --durable").unwrap().workload, Preset::W1.workload());
        assert_eq!(resolve("--rate 500").unwrap().workload.rate_per_s, Some(500.0));
        assert!(resolve("--durable --in-memory").is_err());
        assert!(resolve("--workload W9").is_err());
        let w5 = resolve("--workload W5 --messages 640").unwrap();
        assert_eq!((w5.name.as_str(), w5.base, w5.workload.queues), ("custom", Preset::W5, 64));
        assert_eq!(resolve("--workload W5 --queues 8").unwrap().workload.queues, 8);
        assert!(resolve("--workload W5 --queues 6").is_err(), "64 producers over 6 queues");
        assert!(resolve("--disk-probe-mib 0").is_err());
        assert!(resolve("--reps 0").is_err());
    }

    /// W6's 20,000 × 64 KiB are 1,250 MiB; a run of less than a MiB still writes one.
    #[test]
    fn the_disk_probe_writes_as_much_as_the_run() {
        assert_eq!(payload_mib(&Preset::W6.workload()), 1250);
        assert_eq!(payload_mib(&resolve("--messages 10").unwrap().workload), 1);
    }

    #[test]
    fn fresh_queue_names_differ_per_rep() {
        assert_ne!(fresh_queue_name(1), fresh_queue_name(2));
        assert!(fresh_queue_name(1).starts_with("chute-bench-"));
    }
}
