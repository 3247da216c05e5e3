//! Benchmark of the `stagger simulate` model: node timeslots per second next to raw SHA-256.
//!
//! Full run, 1000 nodes × 100 000 trials per strategy:
//! `cargo bench -p stagger --bench simulate`.
//! Short run for CI, 1000 nodes × 1000 trials: add `-- --short` or set `STAGGER_BENCH_SHORT=1`.
//!
//! Each rate is given per second of wall time and per second of CPU time of this process. On a
//! machine shared with other work the wall-time rates drop with the load, while the CPU-time
//! rates, and their ratio, change much less.

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use stagger::simulate::model::{run_trials, Scenario, SimStrategy};

/// Nodes in the benchmarked network.
const NODES: u32 = 1_000;

/// Trials of the full and the short run.
const FULL_TRIALS: u64 = 100_000;
const SHORT_TRIALS: u64 = 1_000;

/// Single-block SHA-256 calls per thread of the full and the short run.
const FULL_HASHES: u64 = 20_000_000;
const SHORT_HASHES: u64 = 500_000;

/// Work done per second of wall time and per second of CPU time of this process.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_wall_second: f64,
    per_cpu_second: f64,
}

fn main() {
    let short = std::env::args().any(|argument| argument == "--short")
        || std::env::var_os("STAGGER_BENCH_SHORT").is_some_and(|value| value != "0");
    let (trials, hashes) = if short {
        (SHORT_TRIALS, SHORT_HASHES)
    } else {
        (FULL_TRIALS, FULL_HASHES)
    };
    let threads = rayon::current_num_threads();
    println!(
        "{} run on {threads} rayon threads",
        if short { "short" } else { "full" }
    );

    let single = sha256_rate(1, hashes);
    let parallel = sha256_rate(threads, hashes);
    println!(
        "sha256, 40-byte input (one block): {} per wall second on 1 thread, {} on {threads}; \
         {} per CPU second",
        millions(single.per_wall_second),
        millions(parallel.per_wall_second),
        millions(parallel.per_cpu_second)
    );

    for strategy in [SimStrategy::Random, SimStrategy::Spread] {
        let rate = simulator_rate(strategy, trials);
        println!(
            "simulate {NODES} nodes x {trials} trials, {}: {} node timeslots per wall second, \
             {} per CPU second; one timeslot costs the CPU time of {:.1} single-block SHA-256",
            strategy.name(),
            millions(rate.per_wall_second),
            millions(rate.per_cpu_second),
            parallel.per_cpu_second / rate.per_cpu_second
        );
    }
}

/// Measures node timeslots per second for 1000 nodes, a 24-hour window and 5-minute restarts.
fn simulator_rate(strategy: SimStrategy, trials: u64) -> Rate {
    let scenario = Scenario {
        nodes: NODES,
        window_secs: 86_400,
        downtime_secs: 300,
        downtime_jitter_secs: 60,
        poll_interval_secs: 300,
        tolerated_down: 333,
        strategy,
        seed: 1,
    };

    measure((trials * u64::from(NODES)) as f64, || {
        let outcomes = run_trials(&scenario, trials, &|_| {});
        let lost = outcomes
            .iter()
            .filter(|outcome| outcome.max_down > scenario.tolerated_down)
            .count();
        black_box(lost);
    })
}

/// Measures SHA-256 digests of 40-byte inputs per second on `threads` threads together.
fn sha256_rate(threads: usize, hashes_per_thread: u64) -> Rate {
    measure((threads as u64 * hashes_per_thread) as f64, || {
        let checksum: u64 = (0..threads)
            .into_par_iter()
            .with_max_len(1)
            .map(|thread| hash_loop(thread as u64, hashes_per_thread))
            .reduce(|| 0, u64::wrapping_add);
        black_box(checksum);
    })
}

/// Runs `work` once and divides `units` by the wall time and by the CPU time it took.
fn measure(units: f64, work: impl FnOnce()) -> Rate {
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    work();
    let wall_seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    Rate {
        per_wall_second: units / wall_seconds,
        per_cpu_second: units / cpu_seconds,
    }
}

/// Returns the user and system CPU time this process has used so far, in seconds.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zero-initialised struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Hashes `count` distinct 40-byte inputs and folds the digests into a checksum.
fn hash_loop(thread: u64, count: u64) -> u64 {
    let mut input = [0u8; 40];
    input[..8].copy_from_slice(&thread.to_be_bytes());
    let mut checksum = 0u64;
    for index in 0..count {
        input[32..].copy_from_slice(&index.to_be_bytes());
        let digest = Sha256::digest(black_box(&input));
        checksum = checksum.wrapping_add(u64::from(digest[0]));
    }
    checksum
}

fn millions(rate: f64) -> String {
    format!("{:.2} M", rate / 1e6)
}
