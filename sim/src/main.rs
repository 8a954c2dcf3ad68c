//! `chute-sim`: run the deterministic simulator for one seed or many.
//!
//! ```text
//! chute-sim --seed 42                 one run, a one-line summary
//! chute-sim --seed 42 --trace         ... and every event of it
//! chute-sim --seeds 0..1000           many runs (in parallel), stop at the first failure
//! chute-sim --seed 42 --check-determinism
//! chute-sim --list-mutants            (built with --features mutants)
//! chute-sim --mutant confirm-before-sync --seeds 0..1000
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use chute_sim::{Failure, Faults, Outcome, SimConfig, Simulation, Summary};
use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(name = "chute-sim", about = "Deterministic simulation testing for chute")]
struct Args {
    /// Run this one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run every seed in A..B (B excluded), stopping at the first failure.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Print every event of the run (with --seed).
    #[arg(long)]
    trace: bool,
    /// Run each seed twice and compare the trace hashes.
    #[arg(long)]
    check_determinism: bool,
    /// Plant a known bug in the core (needs `--features mutants`).
    #[arg(long)]
    mutant: Option<String>,
    /// Print the names of the plantable bugs, one per line.
    #[arg(long)]
    list_mutants: bool,
    #[arg(long, default_value_t = 3)]
    publishers: usize,
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Users with permissions of their own, one prober each (0: the broker has no users).
    #[arg(long, default_value_t = 3)]
    users: usize,
    /// Simulated milliseconds of publishing under faults.
    #[arg(long, default_value_t = 5_000)]
    fault_ms: u64,
    /// Simulated milliseconds allowed for everything to drain once faults stop.
    #[arg(long, default_value_t = 15_000)]
    liveness_ms: u64,
    /// Inject no faults (latency and chunking stay).
    #[arg(long)]
    no_faults: bool,
    /// The liveness-phase drainer uses one connection for every queue (trips a known bug).
    #[arg(long)]
    shared_drainer: bool,
    /// Seal the log (encryption at rest, a key drawn from the seed).
    #[arg(long)]
    encryption: bool,
    /// The broker's segment size limit.
    #[arg(long, default_value_t = 64 * 1024)]
    segment_bytes: u64,
    /// Worker threads for --seeds (default: the machine's parallelism).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print a line for every seed of --seeds.
    #[arg(long)]
    verbose: bool,
    /// Do not stop at the first failure (to measure how often an invariant fires).
    #[arg(long)]
    keep_going: bool,
}

/// Prints a line; a reader that went away (`| head`) is not an error.
macro_rules! sayln {
    ($($arg:tt)*) => {
        say(format_args!("{}\n", format_args!($($arg)*)))
    };
}

fn say(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stdout().lock().write_fmt(text);
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text.split_once("..").ok_or("expected A..B")?;
    let a: u64 = a.parse().map_err(|e| format!("{a}: {e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("{b}: {e}"))?;
    if a >= b {
        return Err(format!("empty range {text}"));
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_mutants {
        let names = chute_sim::mutant_names();
        if names.is_empty() {
            eprintln!("chute-sim: built without mutants; build with --features mutants");
            return ExitCode::FAILURE;
        }
        for name in names {
            sayln!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let base = match config(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("chute-sim: {message}");
            return ExitCode::FAILURE;
        }
    };
    match (args.seed, args.seeds) {
        (Some(seed), _) => run_one(&args, base.seed(seed)),
        (None, Some((first, end))) => run_many(&args, &base, first, end),
        (None, None) => run_one(&args, base.seed(0)),
    }
}

fn config(args: &Args) -> Result<SimConfig, String> {
    let mut config = SimConfig::new(0)
        .publishers(args.publishers)
        .consumers(args.consumers)
        .users(args.users)
        .fault_phase_ms(args.fault_ms)
        .liveness_phase_ms(args.liveness_ms)
        .segment_bytes_max(args.segment_bytes)
        .full_trace(args.trace)
        .encryption(args.encryption);
    if args.no_faults {
        config = config.faults(Faults::none());
    }
    config.workload.shared_drainer = args.shared_drainer;
    if let Some(name) = &args.mutant {
        #[cfg(feature = "mutants")]
        {
            let mutant = chute_core::mutants::Mutant::from_name(name)
                .ok_or_else(|| format!("no mutant {name:?}; --list-mutants prints the names"))?;
            config = config.mutant(Some(mutant));
        }
        #[cfg(not(feature = "mutants"))]
        return Err(format!("--mutant {name} needs a build with --features mutants"));
    }
    Ok(config)
}

/// The command that replays `seed` with the same settings.
fn reproduce(args: &Args, seed: u64) -> String {
    let features = if cfg!(feature = "mutants") { " --features mutants" } else { "" };
    let mut command = format!("cargo run --release -p chute-sim{features} -- --seed {seed}");
    if let Some(mutant) = &args.mutant {
        command += &format!(" --mutant {mutant}");
    }
    let defaults = Args::parse_from(["chute-sim"]);
    if args.publishers != defaults.publishers {
        command += &format!(" --publishers {}", args.publishers);
    }
    if args.consumers != defaults.consumers {
        command += &format!(" --consumers {}", args.consumers);
    }
    if args.users != defaults.users {
        command += &format!(" --users {}", args.users);
    }
    if args.fault_ms != defaults.fault_ms {
        command += &format!(" --fault-ms {}", args.fault_ms);
    }
    if args.liveness_ms != defaults.liveness_ms {
        command += &format!(" --liveness-ms {}", args.liveness_ms);
    }
    if args.segment_bytes != defaults.segment_bytes {
        command += &format!(" --segment-bytes {}", args.segment_bytes);
    }
    if args.no_faults {
        command += " --no-faults";
    }
    if args.shared_drainer {
        command += " --shared-drainer";
    }
    command + " --trace"
}

/// Runs one seed; with determinism checking, twice. Returns the summary and wall seconds.
fn run_seed(config: SimConfig, check_determinism: bool) -> Result<(Summary, f64), Failure> {
    #[allow(clippy::disallowed_methods)] // wall time for the report only
    let started = std::time::Instant::now();
    let summary = Simulation::new(config.clone()).run()?;
    let wall_s = started.elapsed().as_secs_f64();
    if check_determinism {
        let again = Simulation::new(config).run()?;
        if again.trace_hash != summary.trace_hash || again.events != summary.events {
            return Err(Failure {
                seed: summary.seed,
                invariant: "determinism",
                detail: format!(
                    "two runs differ: trace {:016x} ({} events) then {:016x} ({} events)",
                    summary.trace_hash, summary.events, again.trace_hash, again.events
                ),
                at_ms: 0,
                trace_hash: again.trace_hash,
                trace: Vec::new(),
            });
        }
    }
    Ok((summary, wall_s))
}

fn run_one(args: &Args, config: SimConfig) -> ExitCode {
    let seed = config.seed;
    match run_seed(config, args.check_determinism) {
        Ok((summary, wall_s)) => {
            let mut out = std::io::stdout().lock();
            for line in &summary.trace {
                // A reader that stopped (`| head`) is not an error.
                if writeln!(out, "{line}").is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            drop(out);
            let speed = summary.sim_ms as f64 / 1000.0 / wall_s.max(1e-9);
            sayln!("{} | wall {wall_s:.3}s, {speed:.0} sim-s/wall-s", summary.line());
            match &summary.outcome {
                Outcome::CorruptionDetected { error } => {
                    sayln!("  recovery refused the flipped log: {error}")
                }
                Outcome::LossDetected { error } => {
                    sayln!("  recovery refused the log cut short: {error}")
                }
                Outcome::Drained => {}
            }
            if args.check_determinism {
                sayln!("determinism: two runs, same trace hash {:016x}", summary.trace_hash);
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            say(format_args!("{failure}"));
            sayln!("reproduce: {}", reproduce(args, seed));
            ExitCode::FAILURE
        }
    }
}

fn run_many(args: &Args, base: &SimConfig, first: u64, end: u64) -> ExitCode {
    #[allow(clippy::disallowed_methods)] // wall time for the report only
    let started = std::time::Instant::now();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let next = AtomicU64::new(first);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let results: Mutex<Vec<Result<(Summary, f64), Failure>>> = Mutex::new(Vec::new());
    let total = end - first;
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                let result = run_seed(base.clone().seed(seed), args.check_determinism);
                if result.is_err() && !args.keep_going {
                    stop.store(true, Ordering::Relaxed);
                }
                let count = done.fetch_add(1, Ordering::Relaxed) + 1;
                if args.verbose {
                    match &result {
                        Ok((summary, _)) => sayln!("{}", summary.line()),
                        Err(failure) => {
                            sayln!("seed {} FAIL [{}]", failure.seed, failure.invariant)
                        }
                    }
                } else if count.is_multiple_of(100) {
                    eprintln!("... {count}/{total} seeds");
                }
                results.lock().expect("no poisoned lock").push(result);
            });
        }
    });
    let wall_s = started.elapsed().as_secs_f64();
    let results = results.into_inner().expect("no poisoned lock");
    let mut failures: Vec<&Failure> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    failures.sort_by_key(|f| f.seed);
    let passed: Vec<&Summary> =
        results.iter().filter_map(|r| r.as_ref().ok()).map(|(s, _)| s).collect();
    let corrupt =
        passed.iter().filter(|s| matches!(s.outcome, Outcome::CorruptionDetected { .. })).count();
    let lost = passed.iter().filter(|s| matches!(s.outcome, Outcome::LossDetected { .. })).count();
    let sim_s: f64 = passed.iter().map(|s| s.sim_ms as f64 / 1000.0).sum();
    let cpu_s: f64 = results.iter().filter_map(|r| r.as_ref().ok()).map(|(_, w)| *w).sum();
    let seeds_per_minute = results.len() as f64 / wall_s.max(1e-9) * 60.0;
    sayln!(
        "{} seeds run, {} passed ({} drained, {corrupt} corruption detected, {lost} loss \
         detected), {} failed; \
         {wall_s:.1}s wall on {jobs} threads: {seeds_per_minute:.0} seeds/minute, \
         {:.0} sim-s per wall-s per thread",
        results.len(),
        passed.len(),
        passed.len() - corrupt - lost,
        failures.len(),
        sim_s / cpu_s.max(1e-9),
    );
    match failures.first() {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            say(format_args!("{failure}"));
            sayln!("failing seed: {}", failure.seed);
            sayln!("reproduce: {}", reproduce(args, failure.seed));
            ExitCode::FAILURE
        }
    }
}
