//! What members subscribe to: topic names, and regular expressions (ConsumerGroupHeartbeat
//! v1) that the coordinator resolves against the broker's topics, as Kafka 4 does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::{Regex, RegexBuilder};

use super::{ConsumerGroup, TopicCatalog};
use crate::store::{MemberRecord, TopicRecord};

/// Largest compiled size of a subscription regex: a client must not make the coordinator
/// allocate without bound (the default limit of the `regex` crate is 10 MiB).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a subscription regex with Kafka's semantics: the whole topic name must match
/// (Java's `Matcher.matches`), not just a part of it.
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Why `pattern` is not a valid subscription regex (`None` if it is one).
pub(crate) fn validate_regex(pattern: &str) -> Option<String> {
    compile(pattern).err().map(|error| error.to_string())
}

/// The group's compiled regexes, by pattern. Patterns were validated when members sent them;
/// one that no longer compiles (a file from another version) matches nothing.
#[derive(Debug, Default)]
pub(super) struct Regexes(HashMap<String, Option<Regex>>);

impl Regexes {
    /// The names among `names` that `pattern` matches; none for the empty pattern.
    pub(super) fn matching<'a>(
        &mut self,
        pattern: &str,
        names: &'a [String],
    ) -> impl Iterator<Item = String> + 'a {
        let regex = if pattern.is_empty() {
            None
        } else {
            self.0
                .entry(pattern.to_owned())
                .or_insert_with(|| compile(pattern).ok())
                .clone()
        };
        names
            .iter()
            .filter(move |name| regex.as_ref().is_some_and(|r| r.is_match(name)))
            .cloned()
    }

    /// Forgets the patterns no member uses any more.
    pub(super) fn retain_used<'a>(&mut self, used: impl Iterator<Item = &'a str>) {
        let used: BTreeSet<&str> = used.collect();
        self.0.retain(|pattern, _| used.contains(pattern.as_str()));
    }
}

impl ConsumerGroup {
    /// The subscribed topics that exist now: every member's names and the topics its regex
    /// matches, looked up in the broker's catalog (Kafka's subscription metadata).
    pub(super) fn subscription_metadata(
        &mut self,
        catalog: &dyn TopicCatalog,
    ) -> BTreeMap<String, TopicRecord> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut patterns: BTreeSet<String> = BTreeSet::new();
        for member in self.members.values() {
            names.extend(member.record.subscribed_topic_names.iter().cloned());
            if !member.record.subscribed_topic_regex.is_empty() {
                patterns.insert(member.record.subscribed_topic_regex.clone());
            }
        }
        if !patterns.is_empty() {
            let all = catalog.topic_names();
            for pattern in &patterns {
                names.extend(self.regexes.matching(pattern, &all));
            }
        }
        self.regexes
            .retain_used(patterns.iter().map(String::as_str));
        names
            .into_iter()
            .filter_map(|name| {
                let topic = catalog.topic(&name)?;
                let record = TopicRecord {
                    name: topic.name,
                    id: topic.id,
                    partitions: topic.partitions,
                };
                Some((name, record))
            })
            .collect()
    }

    /// The names of the group's known topics that `member` subscribes to.
    pub(super) fn member_topics(&mut self, member: &MemberRecord) -> BTreeSet<String> {
        let known: Vec<String> = self.topics.keys().cloned().collect();
        let mut topics: BTreeSet<String> = member
            .subscribed_topic_names
            .iter()
            .filter(|name| self.topics.contains_key(*name))
            .cloned()
            .collect();
        topics.extend(
            self.regexes
                .matching(&member.subscribed_topic_regex, &known),
        );
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regex_must_match_the_whole_name() {
        let names = [
            "orders".to_owned(),
            "orders-eu".to_owned(),
            "old-orders".to_owned(),
        ];
        let mut regexes = Regexes::default();
        let matched: Vec<String> = regexes.matching("orders.*", &names).collect();
        assert_eq!(matched, ["orders", "orders-eu"]);
        let matched: Vec<String> = regexes.matching("orders|old.*", &names).collect();
        assert_eq!(matched, ["orders", "old-orders"]);
        assert_eq!(regexes.matching("", &names).count(), 0);
    }

    #[test]
    fn invalid_and_oversized_regexes_are_refused() {
        assert!(validate_regex("orders-(eu|us)").is_none());
        assert!(validate_regex("orders-(eu").is_some());
        assert!(validate_regex("(a{1000}){1000}").is_some());
    }
}
