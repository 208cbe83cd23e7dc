//! Unit tests of the state machine without the coordinator: explicit instants, no timers.

use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn settings(delay_secs: u64) -> RebalanceSettings {
    RebalanceSettings {
        initial_rebalance_delay: Duration::from_secs(delay_secs),
    }
}

fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: 10 * SECOND,
        rebalance_timeout: 10 * SECOND,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|name| Protocol {
                name: (*name).into(),
                metadata: Bytes::from(name.to_string()),
            })
            .collect(),
        require_known_member_id: false,
    }
}

/// Joins a new member and returns its receiver.
fn join_new(
    group: &mut Group,
    protocols: &[&str],
    now: Instant,
    settings: &RebalanceSettings,
) -> (oneshot::Receiver<JoinOutcome>, Effects) {
    let mut fx = Effects::default();
    match group.join(request("", protocols), now, settings, &mut fx) {
        Reply::Later(answer) => (answer, fx),
        Reply::Now(outcome) => panic!("expected to wait, got {outcome:?}"),
    }
}

fn deliver(fx: Effects) {
    for (waiter, outcome) in fx.join_answers {
        let _ = waiter.send(outcome);
    }
}

/// A group in its first join phase, with members supporting the given protocol lists
/// (the first is the leader).
fn group_with(members: &[&[&str]]) -> Group {
    let now = Instant::now();
    let mut group = Group::new("g");
    for protocols in members {
        let (_, fx) = join_new(&mut group, protocols, now, &settings(3));
        deliver(fx);
    }
    group
}

#[test]
fn the_protocol_every_member_supports_wins_even_if_less_preferred() {
    let group = group_with(&[
        &["range", "roundrobin"],
        &["range", "roundrobin"],
        &["roundrobin"],
    ]);
    assert_eq!(group.select_protocol().as_deref(), Some("roundrobin"));
}

#[test]
fn the_most_preferred_common_protocol_wins() {
    let group = group_with(&[
        &["roundrobin", "range"],
        &["range", "roundrobin"],
        &["range"],
    ]);
    assert_eq!(group.select_protocol().as_deref(), Some("range"));
}

#[test]
fn a_tied_vote_goes_to_the_leaders_preference() {
    let group = group_with(&[&["sticky", "range"], &["range", "sticky"]]);
    assert_eq!(group.select_protocol().as_deref(), Some("sticky"));
}

#[test]
fn protocols_must_match_the_group() {
    let group = group_with(&[&["range"]]);
    let range = request("", &["range"]).protocols;
    let other = request("", &["cooperative-sticky"]).protocols;
    assert!(group.supports_protocols("consumer", &range));
    assert!(!group.supports_protocols("connect", &range));
    assert!(!group.supports_protocols("consumer", &other));
    let empty = Group::new("e");
    assert!(empty.supports_protocols("anything", &other));
    assert!(!empty.supports_protocols("", &other));
    assert!(!empty.supports_protocols("consumer", &[]));
}

#[test]
fn the_initial_delay_is_extended_while_members_keep_arriving() {
    let settings = settings(3);
    let t0 = Instant::now();
    let mut group = Group::new("g");
    let (first, _) = join_new(&mut group, &["range"], t0, &settings);
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert_eq!(group.next_deadline(), Some(t0 + 3 * SECOND));

    let (second, _) = join_new(&mut group, &["range"], t0 + SECOND, &settings);
    let mut fx = Effects::default();
    group.expire(t0 + 3 * SECOND, &settings, &mut fx);
    assert!(fx.join_answers.is_empty(), "a member arrived: wait again");
    assert_eq!(group.next_deadline(), Some(t0 + 6 * SECOND));

    group.expire(t0 + 6 * SECOND, &settings, &mut fx);
    assert_eq!(group.state, GroupState::CompletingRebalance);
    assert_eq!(group.generation, 1);
    assert_eq!(fx.join_answers.len(), 2);
    assert_eq!(
        fx.new_generation,
        Some(NewGeneration {
            generation: 1,
            protocol_type: "consumer".into(),
            has_members: true
        })
    );
    drop((first, second));
}

#[test]
fn the_initial_delay_never_exceeds_the_rebalance_timeout() {
    let settings = settings(3);
    let t0 = Instant::now();
    let mut group = Group::new("g");
    let mut receivers = Vec::new();
    let mut now = t0;
    // A member arrives every second, forever; rebalance timeout is 10 s.
    let mut fx = Effects::default();
    while group.generation == 0 {
        receivers.push(join_new(&mut group, &["range"], now, &settings).0);
        now += SECOND;
        group.expire(now, &settings, &mut fx);
    }
    let waited = now - t0;
    assert!(waited <= 13 * SECOND, "waited {waited:?}");
    assert_eq!(fx.join_answers.len(), receivers.len());
}

#[test]
fn only_the_leader_gets_the_member_list() {
    let t0 = Instant::now();
    let settings = settings(0);
    let mut group = Group::new("g");
    let (_, fx) = join_new(&mut group, &["range"], t0, &settings);
    // Without an initial delay a lone member completes the phase at once.
    assert_eq!(fx.join_answers.len(), 1);
    let leader = &fx.join_answers[0].1;
    assert_eq!(leader.leader, leader.member_id);
    assert_eq!(leader.members.len(), 1);
    assert_eq!(leader.members[0].metadata, Bytes::from("range"));
}
