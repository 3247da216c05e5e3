//! Benchmark of the CPU work of one agent poll over a repository of 100 000 tags: parsing every
//! listed tag and selecting the newest release, without the network.
//!
//! Full run, 200 repetitions: `cargo bench -p stagger --bench agent_poll`.
//! Short run, 20 repetitions: add `-- --short`.
//!
//! Each repetition times the steps of `record_poll` in `crates/stagger/src/agent/mod.rs`: reading
//! every tag (with `parse_release_tag`, and with `ReleaseTag::recognize` as the agent does), then
//! `Engine::observe`, which calls `select_newest`. The engine is in the steady state of a node
//! that already runs the newest release, so the observe returns no decision. Times are wall time (`Instant`) and CPU time of this thread
//! (`CLOCK_THREAD_CPUTIME_ID`), given as median and 99th percentile over the repetitions.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use stagger_core::engine::select_newest;
use stagger_core::{parse_release_tag, Engine, Group, NodeId, ReleaseTag, Strategy, Windows};

/// Tags in the benchmarked repository.
const TAGS: usize = 100_000;

/// Repetitions of the full and the short run.
const FULL_REPETITIONS: usize = 200;
const SHORT_REPETITIONS: usize = 20;

/// Wall time and thread CPU time of one repetition, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall_millis: f64,
    cpu_millis: f64,
}

fn main() {
    let short = std::env::args().any(|argument| argument == "--short");
    let repetitions = if short {
        SHORT_REPETITIONS
    } else {
        FULL_REPETITIONS
    };

    let texts = realistic_tags(TAGS, 1);
    let release_count = texts
        .iter()
        .filter(|text| parse_release_tag(text).is_ok())
        .count();
    let newest = select_newest(&parse_all(&texts), Group::Main).expect("a main release is listed");
    println!(
        "{} tags: {release_count} release tags, {} other tags; newest main release {newest}; \
         {repetitions} repetitions",
        texts.len(),
        texts.len() - release_count
    );

    let parse = measure(repetitions, || {
        black_box(parse_all(black_box(&texts)));
    });
    report("parse_release_tag on every tag", &parse);

    let recognize = measure(repetitions, || {
        black_box(recognize_all(black_box(&texts)));
    });
    report("ReleaseTag::recognize on every tag", &recognize);

    let (release_texts, other_texts): (Vec<String>, Vec<String>) = texts
        .iter()
        .cloned()
        .partition(|text| parse_release_tag(text).is_ok());
    let recognize_other = measure(repetitions, || {
        black_box(recognize_all(black_box(&other_texts)));
    });
    report(
        "ReleaseTag::recognize on the other tags only",
        &recognize_other,
    );
    let recognize_release = measure(repetitions, || {
        black_box(recognize_all(black_box(&release_texts)));
    });
    report(
        "ReleaseTag::recognize on the release tags only",
        &recognize_release,
    );

    let tags = parse_all(&texts);
    let select = measure(repetitions, || {
        black_box(select_newest(black_box(&tags), Group::Main));
    });
    report("select_newest over the release tags", &select);

    let mut engine = steady_engine(&tags, newest);
    let observe = measure(repetitions, || {
        let decisions = engine
            .observe("node", 1_764_806_500, black_box(&tags))
            .expect("the service is declared");
        assert!(decisions.is_empty(), "the steady state decides nothing");
    });
    report("Engine::observe over the release tags", &observe);

    let mut engine = steady_engine(&tags, newest);
    let selection = measure(repetitions, || {
        let tags = parse_all(black_box(&texts));
        let decisions = engine
            .observe("node", 1_764_806_500, &tags)
            .expect("the service is declared");
        black_box(decisions);
    });
    report("tag selection (parse_release_tag + observe)", &selection);

    // The agent also remembers a 64-bit fingerprint of each other tag of the last listing
    // (`ServiceRuntime::ignored_tags`), so that it reports each one only when it appears.
    let mut ignored = HashSet::new();
    let before = allocated_bytes();
    ignored = remember_ignored(&texts, &ignored).1;
    let set_bytes = allocated_bytes() as f64 - before as f64;
    let mut engine = steady_engine(&tags, newest);
    let agent_like = measure(repetitions, || {
        let (tags, next) = remember_ignored(black_box(&texts), &ignored);
        ignored = next;
        let decisions = engine
            .observe("node", 1_764_806_500, &tags)
            .expect("the service is declared");
        black_box(decisions);
    });
    report(
        "tag selection as agent::release_tags (recognize, fingerprint set, observe)",
        &agent_like,
    );
    println!(
        "ignored-tag fingerprints: {} tags, {:.1} MiB of heap until the next poll replaces them",
        ignored.len(),
        set_bytes / (1024.0 * 1024.0)
    );
}

/// Builds `count` tags shaped like a busy staging repository, sorted as a registry lists them.
///
/// 709 are release tags over 400 versions `v1.M.P`, some with `-canary`, `-hotfix`,
/// `-canary-hotfix` or `-immediate`. The rest are staging tags such as `v1.3.13-cc1cc788`, plus
/// `latest`, `experimental` and 20 `sha-…` tags.
fn realistic_tags(count: usize, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tags = BTreeSet::new();
    for minor in 0..20u32 {
        for patch in 0..20u32 {
            let version = format!("v1.{minor}.{patch}");
            let index = minor * 20 + patch;
            tags.insert(version.clone());
            if index % 3 == 0 {
                tags.insert(format!("{version}-canary"));
            }
            if index % 5 == 0 {
                tags.insert(format!("{version}-hotfix"));
            }
            if index % 7 == 0 {
                tags.insert(format!("{version}-canary-hotfix"));
            }
            if index % 11 == 0 {
                tags.insert(format!("{version}-immediate"));
            }
        }
    }
    tags.insert("latest".to_string());
    tags.insert("experimental".to_string());
    for _ in 0..20 {
        tags.insert(format!("sha-{:07x}", rng.gen::<u32>() >> 4));
    }
    while tags.len() < count {
        let minor = rng.gen_range(0..20);
        let patch = rng.gen_range(0..40);
        tags.insert(format!("v1.{minor}.{patch}-{:08x}", rng.gen::<u32>()));
    }
    tags.into_iter().collect()
}

/// Parses every tag and keeps the release tags.
fn parse_all(texts: &[String]) -> Vec<ReleaseTag> {
    texts
        .iter()
        .filter_map(|text| parse_release_tag(text).ok())
        .collect()
}

/// Recognizes the release tags among `texts`, as the agent does.
fn recognize_all(texts: &[String]) -> Vec<ReleaseTag> {
    texts
        .iter()
        .filter_map(|text| ReleaseTag::recognize(text))
        .collect()
}

/// Recognizes the release tags like `recognize_all`, and returns them with the fingerprints of
/// the other tags. Counts the fingerprints missing from `previous`, as the agent does to report
/// new tags.
fn remember_ignored(texts: &[String], previous: &HashSet<u64>) -> (Vec<ReleaseTag>, HashSet<u64>) {
    let mut tags = Vec::new();
    let mut ignored = HashSet::with_capacity(previous.len());
    let mut newly_ignored = 0usize;
    for text in texts {
        if let Some(tag) = ReleaseTag::recognize(text) {
            tags.push(tag);
            continue;
        }
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        let fingerprint = hasher.finish();
        if ignored.insert(fingerprint) && !previous.contains(&fingerprint) {
            newly_ignored += 1;
        }
    }
    black_box(newly_ignored);
    (tags, ignored)
}

/// Returns an engine with one `main` service that already runs `newest` and has seen `tags`.
fn steady_engine(tags: &[ReleaseTag], newest: ReleaseTag) -> Engine {
    let node = NodeId::parse("8cd2a24f0c3f50bce2f12c846277491433b47ae0").expect("valid address");
    let mut engine = Engine::new(node, Windows::default(), Strategy::Random);
    engine.set_services([("node", Group::Main)]);
    engine
        .observe("node", 1_764_806_400, tags)
        .expect("the service is declared");
    engine
        .complete("node", newest, None, 1_764_806_400)
        .expect("the service is declared");
    engine
}

/// Runs `work` once to warm up, then `repetitions` times, timing each run.
fn measure(repetitions: usize, mut work: impl FnMut()) -> Vec<Sample> {
    work();
    (0..repetitions)
        .map(|_| {
            let cpu_before = thread_cpu_millis();
            let started = Instant::now();
            work();
            Sample {
                wall_millis: started.elapsed().as_secs_f64() * 1e3,
                cpu_millis: thread_cpu_millis() - cpu_before,
            }
        })
        .collect()
}

/// Prints the median and 99th percentile of the wall and CPU times of `samples`.
fn report(label: &str, samples: &[Sample]) {
    let wall: Vec<f64> = samples.iter().map(|sample| sample.wall_millis).collect();
    let cpu: Vec<f64> = samples.iter().map(|sample| sample.cpu_millis).collect();
    println!(
        "{label}: wall median {:.3} ms, p99 {:.3} ms; CPU median {:.3} ms, p99 {:.3} ms",
        percentile(&wall, 50.0),
        percentile(&wall, 99.0),
        percentile(&cpu, 50.0),
        percentile(&cpu, 99.0),
    );
}

/// Returns the nearest-rank percentile `rank` (0 to 100) of `values`.
fn percentile(values: &[f64], rank: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((rank / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[index.clamp(1, sorted.len()) - 1]
}

/// Returns the CPU time this thread has used so far, in milliseconds.
fn thread_cpu_millis() -> f64 {
    // SAFETY: clock_gettime only writes into the zero-initialised timespec it is given.
    let time = unsafe {
        let mut time: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time);
        time
    };
    time.tv_sec as f64 * 1e3 + time.tv_nsec as f64 / 1e6
}

/// Returns the bytes the glibc allocator has handed out and not yet taken back: those in the
/// heap (`uordblks`) plus the large blocks it maps on their own (`hblkhd`).
fn allocated_bytes() -> usize {
    // SAFETY: mallinfo2 takes no arguments and returns a struct by value.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}
