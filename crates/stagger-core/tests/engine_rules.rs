//! One test or more for each rollout rule of the engine.

use stagger_core::engine::{select_newest, Action, Cause, Engine, Reason};
use stagger_core::{
    parse_release_tag, random_offset, Group, NodeId, ReleaseTag, Strategy, Windows,
};

const NODE: &str = "8cd2a24f0c3f50bce2f12c846277491433b47ae0";
const T0: u64 = 1_764_806_400;
const WINDOWS: Windows = Windows {
    normal_secs: 86_400,
    hotfix_secs: 3_600,
};

fn tag(text: &str) -> ReleaseTag {
    parse_release_tag(text).unwrap()
}

fn tags(texts: &[&str]) -> Vec<ReleaseTag> {
    texts.iter().map(|text| tag(text)).collect()
}

fn node() -> NodeId {
    NodeId::parse(NODE).unwrap()
}

fn offset(at: u64, window_secs: u64) -> u64 {
    random_offset(&node(), at, window_secs)
}

/// An engine with one main service "signer" and one canary service "vc".
fn engine() -> Engine {
    let mut engine = Engine::new(node(), WINDOWS, Strategy::Random);
    engine.set_services([("signer", Group::Main), ("vc", Group::Canary)]);
    engine
}

/// Creates an engine whose "signer" already runs `current`.
fn engine_running(current: &str) -> Engine {
    let mut engine = engine();
    engine
        .observe("signer", T0 - 10, &tags(&[current]))
        .unwrap();
    let due = engine.due(T0 - 10);
    engine
        .complete("signer", due[0].tag, None, T0 - 10)
        .unwrap();
    engine
}

fn pending_rollout_at(engine: &Engine) -> u64 {
    engine
        .service("signer")
        .unwrap()
        .pending
        .as_ref()
        .unwrap()
        .rollout_at
}

#[test]
fn newest_prefers_highest_version() {
    let newest = select_newest(&tags(&["v1.3.9", "v1.3.13", "v1.3.11"]), Group::Main);
    assert_eq!(newest, Some(tag("v1.3.13")));
}

#[test]
fn newest_prefers_most_urgent_of_version() {
    let newest = select_newest(
        &tags(&["v2.0.0", "v2.0.0-hotfix", "v1.9.0-immediate"]),
        Group::Main,
    );
    assert_eq!(newest, Some(tag("v2.0.0-hotfix")));
}

#[test]
fn newest_prefers_own_group_on_tie() {
    let listed = tags(&["v2.0.0-hotfix", "v2.0.0-canary-hotfix"]);
    assert_eq!(
        select_newest(&listed, Group::Canary),
        Some(tag("v2.0.0-canary-hotfix"))
    );
    assert_eq!(
        select_newest(&listed, Group::Main),
        Some(tag("v2.0.0-hotfix"))
    );
}

#[test]
fn main_ignores_canary_tags() {
    let newest = select_newest(&tags(&["v1.0.0", "v2.0.0-canary"]), Group::Main);
    assert_eq!(newest, Some(tag("v1.0.0")));
}

#[test]
fn canary_takes_main_tags() {
    let newest = select_newest(&tags(&["v3.0.0", "v2.0.0-canary"]), Group::Canary);
    assert_eq!(newest, Some(tag("v3.0.0")));
}

#[test]
fn first_observation_adopts_newest() {
    let mut engine = engine();
    let decisions = engine
        .observe("signer", T0, &tags(&["v1.0.0", "v1.1.0"]))
        .unwrap();
    assert!(decisions.is_empty());

    let due = engine.due(T0);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].tag, tag("v1.1.0"));
    assert_eq!(due[0].cause, Cause::Initial);

    let adopted = engine.complete("signer", due[0].tag, None, T0).unwrap();
    assert_eq!(adopted.action, Action::Adopt);
    assert_eq!(adopted.reason, Some(Reason::Initial));
    assert_eq!(adopted.rollout_at, None);
}

#[test]
fn same_version_does_nothing() {
    let mut engine = engine_running("v1.0.0");
    let decisions = engine
        .observe("signer", T0, &tags(&["v1.0.0-hotfix"]))
        .unwrap();
    assert!(decisions.is_empty());
    assert!(engine.service("signer").unwrap().pending.is_none());
}

#[test]
fn older_version_never_downgrades() {
    let mut engine = engine_running("v2.0.0");
    let decisions = engine
        .observe("signer", T0, &tags(&["v1.9.9-immediate"]))
        .unwrap();
    assert!(decisions.is_empty());
    assert!(engine.due(T0 + 1_000_000).is_empty());
}

#[test]
fn normal_release_schedules_at_offset() {
    let mut engine = engine_running("v1.0.0");
    let decisions = engine
        .observe("signer", T0, &tags(&["v1.0.0", "v1.1.0"]))
        .unwrap();

    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].action, Action::Schedule);
    assert_eq!(decisions[0].rollout_at, Some(T0 + offset(T0, 86_400)));
    assert_eq!(decisions[0].rollout_at, Some(T0 + 27_348));
}

#[test]
fn hotfix_schedules_in_hotfix_window() {
    let mut engine = engine_running("v1.0.0");
    let decisions = engine
        .observe("signer", T0, &tags(&["v1.1.0-hotfix"]))
        .unwrap();
    assert_eq!(decisions[0].rollout_at, Some(T0 + offset(T0, 3_600)));
}

#[test]
fn repeated_observation_keeps_slot() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let decisions = engine
        .observe("signer", T0 + 180, &tags(&["v1.1.0"]))
        .unwrap();
    assert!(decisions.is_empty());
    assert_eq!(pending_rollout_at(&engine), T0 + offset(T0, 86_400));
}

#[test]
fn pending_applies_exactly_at_rollout_at() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let rollout_at = pending_rollout_at(&engine);

    assert!(engine.due(rollout_at - 1).is_empty());
    let due = engine.due(rollout_at);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].rollout_at, rollout_at);

    let applied = engine
        .complete("signer", due[0].tag, None, rollout_at)
        .unwrap();
    assert_eq!(applied.action, Action::Apply);
    assert_eq!(applied.reason, Some(Reason::Timeslot));
    assert_eq!(applied.rollout_at, Some(rollout_at));
}

#[test]
fn immediate_applies_at_once() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let decisions = engine
        .observe("signer", T0 + 60, &tags(&["v1.1.0", "v1.2.0-immediate"]))
        .unwrap();
    assert!(decisions.is_empty());

    let due = engine.due(T0 + 60);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].tag, tag("v1.2.0-immediate"));
    assert_eq!(due[0].cause, Cause::Immediate);

    let applied = engine
        .complete("signer", due[0].tag, None, T0 + 60)
        .unwrap();
    assert_eq!(applied.reason, Some(Reason::Immediate));
    assert!(engine.service("signer").unwrap().pending.is_none());
}

#[test]
fn hotfix_of_pending_version_escalates() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let normal_slot = pending_rollout_at(&engine);

    let at = T0 + 600;
    let decisions = engine
        .observe("signer", at, &tags(&["v1.1.0", "v1.1.0-hotfix"]))
        .unwrap();
    let expected = normal_slot.min(at + offset(at, 3_600));

    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].action, Action::Reschedule);
    assert_eq!(decisions[0].reason, Some(Reason::Escalated));
    assert_eq!(decisions[0].tag, tag("v1.1.0-hotfix"));
    assert_eq!(decisions[0].previous_tag, Some(tag("v1.1.0")));
    assert_eq!(decisions[0].rollout_at, Some(expected));
    assert_eq!(pending_rollout_at(&engine), expected);
}

#[test]
fn escalation_keeps_earlier_slot() {
    // The normal slot of this node at T0 is T0 + 27348; detected at T0 + 27000, a hotfix slot
    // would land later than that unless its offset is under 348 s.
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let at = T0 + 27_000;
    let hotfix_slot = at + offset(at, 3_600);
    engine
        .observe("signer", at, &tags(&["v1.1.0-hotfix"]))
        .unwrap();
    assert_eq!(pending_rollout_at(&engine), (T0 + 27_348).min(hotfix_slot));
}

#[test]
fn less_urgent_same_version_does_nothing() {
    let mut engine = engine_running("v1.0.0");
    engine
        .observe("signer", T0, &tags(&["v1.1.0-hotfix"]))
        .unwrap();
    let slot = pending_rollout_at(&engine);
    let decisions = engine
        .observe("signer", T0 + 60, &tags(&["v1.1.0"]))
        .unwrap();
    assert!(decisions.is_empty());
    assert_eq!(pending_rollout_at(&engine), slot);
}

#[test]
fn newer_release_supersedes_and_keeps_slot() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let slot = pending_rollout_at(&engine);

    let decisions = engine
        .observe("signer", T0 + 600, &tags(&["v1.1.0", "v1.2.0"]))
        .unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].action, Action::Reschedule);
    assert_eq!(decisions[0].reason, Some(Reason::Superseded));
    assert_eq!(decisions[0].tag, tag("v1.2.0"));
    assert_eq!(decisions[0].rollout_at, Some(slot));
    assert_eq!(pending_rollout_at(&engine), slot);
}

#[test]
fn newer_hotfix_supersedes_with_escalation() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let slot = pending_rollout_at(&engine);

    let at = T0 + 600;
    let decisions = engine
        .observe("signer", at, &tags(&["v1.1.0", "v1.2.0-hotfix"]))
        .unwrap();
    assert_eq!(decisions[0].reason, Some(Reason::Escalated));
    assert_eq!(
        decisions[0].rollout_at,
        Some(slot.min(at + offset(at, 3_600)))
    );
}

#[test]
fn newer_normal_after_hotfix_keeps_hotfix_slot() {
    let mut engine = engine_running("v1.0.0");
    engine
        .observe("signer", T0, &tags(&["v1.1.0-hotfix"]))
        .unwrap();
    let slot = pending_rollout_at(&engine);
    let decisions = engine
        .observe("signer", T0 + 60, &tags(&["v1.1.0-hotfix", "v1.2.0"]))
        .unwrap();
    assert_eq!(decisions[0].reason, Some(Reason::Superseded));
    assert_eq!(pending_rollout_at(&engine), slot);
}

#[test]
fn removed_pending_tag_is_withdrawn() {
    let mut engine = engine_running("v1.0.0");
    engine
        .observe("signer", T0, &tags(&["v1.0.0", "v1.1.0"]))
        .unwrap();
    let slot = pending_rollout_at(&engine);

    let decisions = engine
        .observe("signer", T0 + 60, &tags(&["v1.0.0"]))
        .unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].action, Action::Cancel);
    assert_eq!(decisions[0].reason, Some(Reason::Withdrawn));
    assert_eq!(decisions[0].rollout_at, Some(slot));
    assert!(engine.service("signer").unwrap().pending.is_none());
}

#[test]
fn empty_observation_withdraws_pending() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let decisions = engine.observe("signer", T0 + 60, &[]).unwrap();
    assert_eq!(decisions[0].action, Action::Cancel);
}

#[test]
fn withdrawal_then_older_release_reschedules() {
    let mut engine = engine_running("v1.0.0");
    engine
        .observe("signer", T0, &tags(&["v1.1.0", "v1.2.0"]))
        .unwrap();
    let at = T0 + 60;
    let decisions = engine.observe("signer", at, &tags(&["v1.1.0"])).unwrap();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0].action, Action::Cancel);
    assert_eq!(decisions[1].action, Action::Schedule);
    assert_eq!(decisions[1].rollout_at, Some(at + offset(at, 86_400)));
}

#[test]
fn same_version_other_suffix_is_not_withdrawal() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let decisions = engine
        .observe("signer", T0 + 60, &tags(&["v1.1.0-hotfix"]))
        .unwrap();
    assert_eq!(decisions[0].action, Action::Reschedule);
}

#[test]
fn canary_pending_withdrawn_for_main_service_tags() {
    // A main service never counts a canary tag as listing its pending version.
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let decisions = engine
        .observe("signer", T0 + 60, &tags(&["v1.1.0-canary"]))
        .unwrap();
    assert_eq!(decisions[0].action, Action::Cancel);
}

#[test]
fn redeploy_applies_newest_at_once() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let started = engine.redeploy(T0 + 5, None).unwrap();
    assert_eq!(started, vec![("signer".to_string(), tag("v1.1.0"))]);

    let due = engine.due(T0 + 5);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].cause, Cause::Redeploy);
    let applied = engine.complete("signer", due[0].tag, None, T0 + 5).unwrap();
    assert_eq!(applied.reason, Some(Reason::Redeploy));
    assert!(engine.service("signer").unwrap().pending.is_none());
}

#[test]
fn redeploy_skips_up_to_date_service() {
    let mut engine = engine_running("v1.1.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    assert!(engine.redeploy(T0, None).unwrap().is_empty());
}

#[test]
fn redeploy_of_all_skips_held_service() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    engine.set_held("signer", true).unwrap();
    assert!(engine.redeploy(T0, None).unwrap().is_empty());
    assert_eq!(engine.redeploy(T0, Some("signer")).unwrap().len(), 1);
    assert_eq!(engine.due(T0).len(), 1);
}

#[test]
fn held_service_keeps_pending_until_resumed() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let slot = pending_rollout_at(&engine);
    engine.set_held("signer", true).unwrap();

    assert!(engine.due(slot + 100).is_empty());
    assert_eq!(engine.next_rollout_at(), None);
    assert!(engine.service("signer").unwrap().pending.is_some());

    engine.set_held("signer", false).unwrap();
    assert_eq!(engine.due(slot + 100).len(), 1);
}

#[test]
fn unknown_service_is_an_error() {
    let mut engine = engine();
    let error = engine.observe("ghost", T0, &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown service \"ghost\": declare it before observing or controlling it"
    );
}

#[test]
fn complete_keeps_newer_pending() {
    // A newer release was scheduled while an older upgrade was being carried out.
    let mut engine = engine_running("v1.0.0");
    engine
        .observe("signer", T0, &tags(&["v1.1.0-immediate"]))
        .unwrap();
    engine
        .observe("signer", T0 + 1, &tags(&["v1.1.0-immediate", "v1.2.0"]))
        .unwrap();
    let pending_tag = engine
        .service("signer")
        .unwrap()
        .pending
        .as_ref()
        .unwrap()
        .tag;
    assert_eq!(pending_tag, tag("v1.2.0"));

    engine
        .complete("signer", tag("v1.1.0-immediate"), None, T0 + 2)
        .unwrap();
    let state = engine.service("signer").unwrap();
    assert_eq!(state.current.as_ref().unwrap().tag, tag("v1.1.0-immediate"));
    assert_eq!(state.pending.as_ref().unwrap().tag, tag("v1.2.0"));
}

#[test]
fn services_share_poll_detection_time() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("vc", T0 - 10, &tags(&["v1.0.0"])).unwrap();
    engine.complete("vc", tag("v1.0.0"), None, T0 - 10).unwrap();

    let signer = engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    let vc = engine.observe("vc", T0, &tags(&["v1.1.0-canary"])).unwrap();
    assert_eq!(signer[0].rollout_at, vc[0].rollout_at);
}

#[test]
fn spread_strategy_uses_rank() {
    let peers: Vec<NodeId> = ["a", "b", NODE, "c"]
        .iter()
        .map(|peer| NodeId::parse(peer).unwrap())
        .collect();
    let expected =
        stagger_core::spread_offset(&node(), &peers, tag("v1.1.0").version, 86_400).unwrap();

    let mut engine = Engine::new(node(), WINDOWS, Strategy::Spread { peers });
    engine.set_services([("signer", Group::Main)]);
    engine
        .observe("signer", T0 - 10, &tags(&["v1.0.0"]))
        .unwrap();
    engine
        .complete("signer", tag("v1.0.0"), None, T0 - 10)
        .unwrap();
    let decisions = engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();

    assert_eq!(decisions[0].rollout_at, Some(T0 + expected));
    assert!(!decisions[0].strategy_fell_back);
}

#[test]
fn spread_outside_peers_reports_fallback() {
    let peers = vec![NodeId::parse("a").unwrap(), NodeId::parse("b").unwrap()];
    let mut engine = Engine::new(node(), WINDOWS, Strategy::Spread { peers });
    engine.set_services([("signer", Group::Main)]);
    engine
        .observe("signer", T0 - 10, &tags(&["v1.0.0"]))
        .unwrap();
    engine
        .complete("signer", tag("v1.0.0"), None, T0 - 10)
        .unwrap();
    let decisions = engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();

    assert!(decisions[0].strategy_fell_back);
    assert_eq!(decisions[0].rollout_at, Some(T0 + offset(T0, 86_400)));
}

#[test]
fn forget_drops_everything_but_groups() {
    let mut engine = engine_running("v1.0.0");
    engine.observe("signer", T0, &tags(&["v1.1.0"])).unwrap();
    engine.forget();
    let state = engine.service("signer").unwrap();
    assert!(state.current.is_none());
    assert!(state.pending.is_none());
    assert_eq!(state.group, Group::Main);
}
