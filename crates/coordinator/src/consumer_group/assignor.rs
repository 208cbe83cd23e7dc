//! The server-side assignors of consumer groups: `uniform` (Kafka's default) and `range`.
//! Both are pure functions from the members' subscriptions (and, for `uniform`, their
//! previous targets) to a target assignment.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use crate::store::{Partitions, TopicRecord};

/// Balanced and sticky: every member gets as many partitions as the others (±1 where
/// subscriptions allow), and keeps what it had as far as balance allows.
pub(crate) const UNIFORM: &str = "uniform";
/// Per topic, consecutive partition ranges in member order, so members subscribed to topics
/// of equal partition counts get the same partition numbers of each (co-partitioning).
pub(crate) const RANGE: &str = "range";
/// The assignors members may ask for, in the order Kafka lists them.
pub(crate) const ASSIGNORS: [&str; 2] = [UNIFORM, RANGE];
/// The assignor of a group whose members ask for none (`group.consumer.assignors`' first).
pub(crate) const DEFAULT_ASSIGNOR: &str = UNIFORM;

/// One member as an assignor sees it.
#[derive(Debug)]
pub(super) struct MemberSpec<'a> {
    pub(super) member_id: &'a str,
    pub(super) instance_id: Option<&'a str>,
    /// Names of the existing topics it subscribes to.
    pub(super) topics: BTreeSet<String>,
    /// Its previous target.
    pub(super) previous: &'a Partitions,
}

/// The target of every member (members without partitions included, with none).
pub(super) fn assign(
    assignor: &str,
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicRecord>,
) -> BTreeMap<String, Partitions> {
    let owned = if assignor == RANGE {
        range(members, topics)
    } else {
        uniform(members, topics)
    };
    members
        .iter()
        .zip(owned)
        .map(|(member, partitions)| {
            let mut target = Partitions::new();
            for (name, partition) in partitions {
                if let Some(topic) = topics.get(&name) {
                    target.entry(topic.id).or_default().insert(partition);
                }
            }
            (member.member_id.to_owned(), target)
        })
        .collect()
}

/// A topic partition by topic name, ordered by name then partition.
type NamedPartition = (String, i32);

/// Every partition of `topics`, in order.
fn all_partitions(topics: &BTreeMap<String, TopicRecord>) -> Vec<NamedPartition> {
    topics
        .values()
        .flat_map(|t| (0..t.partitions.max(0)).map(move |p| (t.name.clone(), p)))
        .collect()
}

/// Keeps each member's previous partitions it still subscribes to, hands out the rest to the
/// least loaded eligible member, then moves partitions from the most to the least loaded
/// member until no move can narrow the gap (members subscribed to different topics may stay
/// unequal when no partition fits both).
fn uniform(
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicRecord>,
) -> Vec<BTreeSet<NamedPartition>> {
    let names_by_id: HashMap<Uuid, &TopicRecord> = topics.values().map(|t| (t.id, t)).collect();
    let mut owned: Vec<BTreeSet<NamedPartition>> = vec![BTreeSet::new(); members.len()];
    let mut taken: BTreeSet<NamedPartition> = BTreeSet::new();
    for (index, member) in members.iter().enumerate() {
        for (topic_id, partitions) in member.previous {
            let Some(topic) = names_by_id.get(topic_id) else {
                continue;
            };
            if !member.topics.contains(&topic.name) {
                continue;
            }
            for &partition in partitions.iter().filter(|&&p| p < topic.partitions) {
                let key = (topic.name.clone(), partition);
                if taken.insert(key.clone()) {
                    owned[index].insert(key);
                }
            }
        }
    }
    for key in all_partitions(topics) {
        if taken.contains(&key) {
            continue;
        }
        let least_loaded = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.topics.contains(&key.0))
            .min_by_key(|(index, m)| (owned[*index].len(), m.member_id))
            .map(|(index, _)| index);
        if let Some(index) = least_loaded {
            owned[index].insert(key);
        }
    }
    while let Some((from, to, key)) = best_move(members, &owned) {
        owned[from].remove(&key);
        owned[to].insert(key);
    }
    owned
}

/// A partition to move from a member to one with at least two fewer partitions that
/// subscribes to its topic, the most loaded members giving first. Each move lowers the sum
/// of squared loads, so repeating this ends.
fn best_move(
    members: &[MemberSpec<'_>],
    owned: &[BTreeSet<NamedPartition>],
) -> Option<(usize, usize, NamedPartition)> {
    let mut by_load: Vec<usize> = (0..members.len()).collect();
    by_load.sort_by_key(|&i| (Reverse(owned[i].len()), members[i].member_id));
    for &from in &by_load {
        for &to in by_load.iter().rev() {
            if owned[from].len() <= owned[to].len() + 1 {
                break;
            }
            let movable = owned[from]
                .iter()
                .rev()
                .find(|(topic, _)| members[to].topics.contains(topic));
            if let Some(key) = movable {
                return Some((from, to, key.clone()));
            }
        }
    }
    None
}

/// Per topic, its subscribers ordered by instance id (else member id, so that restarted
/// static members keep their ranges) share the partitions in consecutive ranges, the first
/// `partitions % subscribers` getting one more.
fn range(
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicRecord>,
) -> Vec<BTreeSet<NamedPartition>> {
    let mut owned: Vec<BTreeSet<NamedPartition>> = vec![BTreeSet::new(); members.len()];
    for topic in topics.values() {
        let mut subscribers: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].topics.contains(&topic.name))
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        subscribers.sort_by_key(|&i| {
            let member = &members[i];
            (
                member.instance_id.unwrap_or(member.member_id),
                member.member_id,
            )
        });
        let count = subscribers.len();
        let partitions = usize::try_from(topic.partitions).unwrap_or(0);
        let (each, extra) = (partitions / count, partitions % count);
        let mut next = 0;
        for (rank, &index) in subscribers.iter().enumerate() {
            let share = each + usize::from(rank < extra);
            for partition in next..next + share {
                let partition = i32::try_from(partition).unwrap_or(i32::MAX);
                owned[index].insert((topic.name.clone(), partition));
            }
            next += share;
        }
    }
    owned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, id: u128, partitions: i32) -> (String, TopicRecord) {
        let record = TopicRecord {
            name: name.into(),
            id: Uuid::from_u128(id),
            partitions,
        };
        (name.into(), record)
    }

    fn spec<'a>(id: &'a str, topics: &[&str], previous: &'a Partitions) -> MemberSpec<'a> {
        MemberSpec {
            member_id: id,
            instance_id: None,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            previous,
        }
    }

    fn count(target: &Partitions) -> usize {
        target.values().map(BTreeSet::len).sum()
    }

    /// Every partition of every topic goes to exactly one member.
    fn assert_covers_once(
        targets: &BTreeMap<String, Partitions>,
        topics: &BTreeMap<String, TopicRecord>,
    ) {
        let mut seen = BTreeSet::new();
        for target in targets.values() {
            for (id, partitions) in target {
                for p in partitions {
                    assert!(seen.insert((*id, *p)), "{id}/{p} assigned twice");
                }
            }
        }
        let all: usize = topics.values().map(|t| t.partitions as usize).sum();
        assert_eq!(
            seen.len(),
            all,
            "not every partition is assigned: {targets:?}"
        );
    }

    #[test]
    fn uniform_balances_and_keeps_what_it_can() {
        let topics = BTreeMap::from([topic("a", 1, 5), topic("b", 2, 2)]);
        let none = Partitions::new();
        let first = assign(UNIFORM, &[spec("m1", &["a", "b"], &none)], &topics);
        assert_eq!(count(&first["m1"]), 7);

        let previous = first["m1"].clone();
        let members = [
            spec("m1", &["a", "b"], &previous),
            spec("m2", &["a", "b"], &none),
        ];
        let second = assign(UNIFORM, &members, &topics);
        assert_covers_once(&second, &topics);
        assert_eq!((count(&second["m1"]), count(&second["m2"])), (4, 3));
        for (id, partitions) in &second["m1"] {
            assert!(
                partitions.is_subset(&previous[id]),
                "m1 only keeps partitions"
            );
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let topics = BTreeMap::from([topic("a", 1, 4), topic("b", 2, 4)]);
        let none = Partitions::new();
        let members = [
            spec("m1", &["a"], &none),
            spec("m2", &["a", "b"], &none),
            spec("m3", &["b"], &none),
        ];
        let targets = assign(UNIFORM, &members, &topics);
        assert_covers_once(&targets, &topics);
        assert!(targets["m1"].keys().all(|id| *id == Uuid::from_u128(1)));
        assert!(targets["m3"].keys().all(|id| *id == Uuid::from_u128(2)));
        let loads: Vec<usize> = targets.values().map(count).collect();
        assert!(loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0) <= 1);
    }

    #[test]
    fn uniform_drops_partitions_of_unsubscribed_or_shrunk_topics() {
        let topics = BTreeMap::from([topic("a", 1, 2)]);
        let previous = Partitions::from([
            (Uuid::from_u128(1), BTreeSet::from([0, 1, 7])),
            (Uuid::from_u128(9), BTreeSet::from([0])),
        ]);
        let targets = assign(UNIFORM, &[spec("m1", &["a"], &previous)], &topics);
        assert_eq!(
            targets["m1"],
            Partitions::from([(Uuid::from_u128(1), BTreeSet::from([0, 1]))])
        );
    }

    #[test]
    fn range_gives_consecutive_ranges_in_member_order() {
        let topics = BTreeMap::from([topic("a", 1, 5), topic("b", 2, 5)]);
        let none = Partitions::new();
        let members = [
            spec("m2", &["a", "b"], &none),
            spec("m1", &["a", "b"], &none),
        ];
        let targets = assign(RANGE, &members, &topics);
        assert_covers_once(&targets, &topics);
        let expect = |ps: &[i32]| -> Partitions {
            let set: BTreeSet<i32> = ps.iter().copied().collect();
            Partitions::from([(Uuid::from_u128(1), set.clone()), (Uuid::from_u128(2), set)])
        };
        assert_eq!(targets["m1"], expect(&[0, 1, 2]));
        assert_eq!(targets["m2"], expect(&[3, 4]));
    }

    #[test]
    fn members_without_subscriptions_get_nothing() {
        let topics = BTreeMap::from([topic("a", 1, 3)]);
        let none = Partitions::new();
        for assignor in ASSIGNORS {
            let members = [spec("m1", &[], &none), spec("m2", &["a"], &none)];
            let targets = assign(assignor, &members, &topics);
            assert!(targets["m1"].is_empty(), "{assignor}");
            assert_eq!(count(&targets["m2"]), 3, "{assignor}");
        }
    }
}
