//! Property tests of the tag grammar, the timeslot function and the engine over random timelines.

use std::collections::BTreeMap;

use proptest::prelude::*;
use stagger_core::engine::{is_eligible, Action, Cause, Decision, Engine, EngineState};
use stagger_core::{
    parse_release_tag, random_offset, Group, NodeId, ReleaseTag, Strategy as TimeslotStrategy,
    Urgency, Version, Windows,
};

fn urgency_strategy() -> impl proptest::strategy::Strategy<Value = Urgency> {
    prop_oneof![
        Just(Urgency::Normal),
        Just(Urgency::Hotfix),
        Just(Urgency::Immediate)
    ]
}

fn group_strategy() -> impl proptest::strategy::Strategy<Value = Group> {
    prop_oneof![Just(Group::Main), Just(Group::Canary)]
}

fn tag_strategy() -> impl proptest::strategy::Strategy<Value = ReleaseTag> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        group_strategy(),
        urgency_strategy(),
    )
        .prop_map(|(major, minor, patch, group, urgency)| {
            ReleaseTag::new(Version::new(major, minor, patch), group, urgency)
        })
}

proptest! {
    #[test]
    fn parse_format_round_trip(tag in tag_strategy()) {
        let text = tag.to_string();
        prop_assert_eq!(parse_release_tag(&text).unwrap(), tag);
    }

    #[test]
    fn ordering_follows_numbers(left in tag_strategy(), right in tag_strategy()) {
        let by_numbers = (left.version.major, left.version.minor, left.version.patch)
            .cmp(&(right.version.major, right.version.minor, right.version.patch));
        prop_assert_eq!(left.cmp_version(&right), by_numbers);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
        // Any string either parses or yields an error naming the input.
        if let Err(error) = parse_release_tag(&text) {
            let message = error.to_string();
            let quoted = format!("\"{text}\"");
            prop_assert!(message.contains(&quoted));
        }
    }

    #[test]
    fn offset_below_window(
        node in "[a-z0-9-]{1,30}",
        detected_at in any::<u64>(),
        window in 1u64..=u64::MAX,
    ) {
        let node = NodeId::parse(&node).unwrap();
        prop_assert!(random_offset(&node, detected_at, window) < window);
    }
}

#[test]
fn offsets_spread_evenly_over_window() {
    // 20 000 detection times into 10 buckets: each bucket expects 2 000. A bound of ±10 % is
    // more than 7 standard deviations (sqrt(2000 * 0.9) ≈ 42), so a fair hash never fails it.
    let node = NodeId::parse("8cd2a24f0c3f50bce2f12c846277491433b47ae0").unwrap();
    let window = 86_400;
    let mut buckets = [0u32; 10];
    for step in 0..20_000u64 {
        let offset = random_offset(&node, 1_764_806_400 + step * 7, window);
        buckets[(offset * 10 / window) as usize] += 1;
    }
    for (index, count) in buckets.iter().enumerate() {
        assert!(
            (1_800..=2_200).contains(count),
            "bucket {index} has {count} of 20000 offsets, expected about 2000"
        );
    }
}

/// One step of a random timeline.
#[derive(Debug, Clone)]
enum Step {
    Observe {
        advance: u64,
        service: usize,
        tags: Vec<ReleaseTag>,
    },
    Redeploy {
        advance: u64,
    },
    Reload {
        advance: u64,
    },
}

const SERVICES: [(&str, Group); 2] = [("signer", Group::Main), ("vc", Group::Canary)];
const WINDOWS: Windows = Windows {
    normal_secs: 20_000,
    hotfix_secs: 2_000,
};

fn small_tag() -> impl proptest::strategy::Strategy<Value = ReleaseTag> {
    (0u64..6, group_strategy(), urgency_strategy()).prop_map(|(patch, group, urgency)| {
        ReleaseTag::new(Version::new(1, 0, patch), group, urgency)
    })
}

fn step_strategy() -> impl proptest::strategy::Strategy<Value = Step> {
    prop_oneof![
        8 => (0u64..30_000, 0usize..2, prop::collection::vec(small_tag(), 0..5))
            .prop_map(|(advance, service, tags)| Step::Observe { advance, service, tags }),
        1 => (0u64..30_000).prop_map(|advance| Step::Redeploy { advance }),
        1 => (0u64..30_000).prop_map(|advance| Step::Reload { advance }),
    ]
}

fn new_engine() -> Engine {
    let node = NodeId::parse("node-eu-1").unwrap();
    let mut engine = Engine::new(node, WINDOWS, TimeslotStrategy::Random);
    engine.set_services(SERVICES);
    engine
}

fn reload(engine: &Engine) -> Engine {
    let saved = serde_json::to_string(engine.state()).unwrap();
    let state: EngineState = serde_json::from_str(&saved).unwrap();
    Engine::with_state(
        engine.node().clone(),
        engine.windows(),
        engine.strategy().clone(),
        state,
    )
}

/// Tracks what a timeline has done, to check the invariants after every decision.
#[derive(Default, Clone)]
struct Checker {
    current: BTreeMap<String, Version>,
    last_observed: BTreeMap<String, Vec<ReleaseTag>>,
}

impl Checker {
    fn check_applied(&mut self, decision: &Decision) -> Result<(), TestCaseError> {
        if let Some(previous) = self.current.get(&decision.service) {
            prop_assert!(
                decision.tag.version > *previous,
                "downgrade or reinstall: {} after {}",
                decision.tag,
                previous
            );
        }
        let group = SERVICES
            .iter()
            .find(|(name, _)| *name == decision.service)
            .unwrap()
            .1;
        let listed = self
            .last_observed
            .get(&decision.service)
            .is_some_and(|tags| {
                tags.iter()
                    .any(|tag| is_eligible(tag, group) && tag.version == decision.tag.version)
            });
        prop_assert!(
            listed,
            "applied {} missing from the latest observation",
            decision.tag
        );
        self.current
            .insert(decision.service.clone(), decision.tag.version);
        Ok(())
    }
}

fn check_pending_bounds(engine: &Engine) -> Result<(), TestCaseError> {
    for (name, state) in &engine.state().services {
        let Some(pending) = &state.pending else {
            continue;
        };
        prop_assert!(
            pending.detected_at <= pending.rollout_at,
            "{name}: slot before detection"
        );
        if pending.cause == Cause::Timeslot {
            prop_assert!(pending.window_secs > 0);
            prop_assert!(
                pending.rollout_at < pending.detected_at + pending.window_secs,
                "{name}: slot {} past window end {}",
                pending.rollout_at,
                pending.detected_at + pending.window_secs
            );
            prop_assert!(
                pending.window_secs == WINDOWS.normal_secs
                    || pending.window_secs == WINDOWS.hotfix_secs
            );
        } else {
            prop_assert_eq!(pending.rollout_at, pending.detected_at);
        }
    }
    Ok(())
}

/// Runs the timeline from `start`, applying due upgrades at their rollout_at before each step.
fn run(
    engine: &mut Engine,
    steps: &[Step],
    mut now: u64,
    checker: &mut Checker,
) -> Result<Vec<Decision>, TestCaseError> {
    let mut decisions = Vec::new();
    for step in steps {
        let advance = match step {
            Step::Observe { advance, .. }
            | Step::Redeploy { advance }
            | Step::Reload { advance } => *advance,
        };
        now += advance;

        while let Some(due) = engine.due(now).into_iter().next() {
            let applied = engine
                .complete(&due.service, due.tag, None, due.rollout_at)
                .unwrap();
            checker.check_applied(&applied)?;
            decisions.push(applied);
        }

        match step {
            Step::Observe { service, tags, .. } => {
                let name = SERVICES[*service].0;
                checker.last_observed.insert(name.to_string(), tags.clone());
                decisions.extend(engine.observe(name, now, tags).unwrap());
            }
            Step::Redeploy { .. } => {
                engine.redeploy(now, None).unwrap();
            }
            Step::Reload { .. } => *engine = reload(engine),
        }
        check_pending_bounds(engine)?;

        while let Some(due) = engine.due(now).into_iter().next() {
            let applied = engine
                .complete(&due.service, due.tag, None, due.rollout_at)
                .unwrap();
            checker.check_applied(&applied)?;
            decisions.push(applied);
        }
    }
    Ok(decisions)
}

fn end_time(steps: &[Step]) -> u64 {
    steps
        .iter()
        .map(|step| match step {
            Step::Observe { advance, .. }
            | Step::Redeploy { advance }
            | Step::Reload { advance } => *advance,
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn engine_invariants_hold(steps in prop::collection::vec(step_strategy(), 1..40)) {
        let mut engine = new_engine();
        let mut checker = Checker::default();
        let decisions = run(&mut engine, &steps, 1_764_806_400, &mut checker)?;
        let applies = decisions
            .iter()
            .filter(|decision| matches!(decision.action, Action::Apply | Action::Adopt))
            .count();
        prop_assert!(applies <= steps.len() * 2 + 2);
    }

    #[test]
    fn reload_keeps_future_decisions(
        steps in prop::collection::vec(step_strategy(), 2..40),
        split in any::<prop::sample::Index>(),
    ) {
        let split = split.index(steps.len());
        let (before, after) = steps.split_at(split);
        let start = 1_764_806_400;

        let mut engine = new_engine();
        let mut checker = Checker::default();
        run(&mut engine, before, start, &mut checker)?;
        let mut reloaded = reload(&engine);
        let resume_at = start + end_time(before);

        let original = run(&mut engine, after, resume_at, &mut checker.clone())?;
        let resumed = run(&mut reloaded, after, resume_at, &mut checker)?;
        prop_assert_eq!(original, resumed);
    }
}

proptest! {
    #[test]
    fn recognize_matches_parse_on_tag_like_text(
        text in "v(0|[1-9][0-9]{0,2}|01)\\.[0-9]{1,2}\\.[0-9]{1,2}(-(canary|hotfix|immediate|rc1|)){0,3}",
    ) {
        // `recognize` has a fast path that rejects unknown suffixes before parsing numbers; it
        // must accept exactly what the full parser accepts.
        prop_assert_eq!(ReleaseTag::recognize(&text), parse_release_tag(&text).ok());
    }
}
