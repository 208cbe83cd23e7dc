//! Changing topics: their configs (IncrementalAlterConfigs), their partition count
//! (CreatePartitions) and their records (DeleteRecords), and which topics the services keep
//! for themselves.
//!
//! rdkafka's `alter_configs` is Kafka's old AlterConfigs, which replaces every override of a
//! topic with the ones sent; the incremental request, which sets and removes only the configs
//! it names, is not exposed, so it goes over [`wire`](super::wire) to any broker (Kafka
//! brokers forward it to the controller). CreatePartitions and DeleteRecords go through
//! rdkafka's admin client.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use rdkafka::admin::NewPartitions;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::topics::{admin_options, broker_address, TopicLayout};
use super::view::{
    PartitionCountChange, PurgeRequest, PurgedPartition, PurgedTopic, TopicConfigChange,
    TopicConfigs, TopicDescription,
};
use super::wire::Connection;
use super::{
    not_found_topic, validate_partition, validate_topic_name, Cluster, ClusterError,
    MAX_PARTITIONS, REQUEST_TIMEOUT,
};
use crate::error::full_message;
use crate::event::DEVICE_EVENTS_DLQ;

/// IncrementalAlterConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// The largest `before` a purge takes: 2^53 - 1, the largest integer a JSON number carries
/// exactly in every client, and far past any real offset.
pub const MAX_PURGE_OFFSET: i64 = (1 << 53) - 1;

/// How long new partitions may take to show up in metadata.
const NEW_PARTITIONS_VISIBLE_WITHIN: Duration = Duration::from_secs(5);

/// Which service keeps `name`, when one does: every topic of
/// [`service_topic_owner`](crate::service_topic_owner) (the login guard's topics and every
/// `freshet.` topic: the tracker's and the guard's state), and the tracker's dead-letter topic
/// `device-events.dlq` under its default name. The topic API marks them `managed` and refuses
/// to delete or purge them unless told to (`?force=true`); the service topics among them it
/// never deletes or purges, nor writes to.
///
/// A tracker started with another input topic (`--input-topic`) has its dead-letter topic
/// under another name, which this does not know.
pub fn managed_topic_owner(name: &str) -> Option<&'static str> {
    crate::service_topic_owner(name)
        .or_else(|| (name == DEVICE_EVENTS_DLQ).then_some("the tracker"))
}

impl Cluster {
    /// Sets and removes topic config overrides in one IncrementalAlterConfigs request, then
    /// answers the topic's effective configs. A refusal by the cluster (a bad value, an
    /// unknown config) is `InvalidParams` with the broker's own message.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        change: TopicConfigChange,
    ) -> Result<TopicConfigs, ClusterError> {
        validate_topic_name(name)?;
        validate_config_change(&change)?;
        self.topic_layout(name).await?;
        if change.set.is_empty() && change.delete.is_empty() {
            // Nothing to change: the answer is the configs as they are, as after any change.
            let configs = self.topic_configs(name).await?;
            return Ok(TopicConfigs {
                name: name.to_string(),
                configs,
            });
        }
        let request = incremental_request(name, &change);
        let response = self.call_any_broker(&request).await?;
        let answer = response
            .responses
            .iter()
            .find(|answer| answer.resource_name.as_str() == name)
            .ok_or_else(|| ClusterError::TopicUnavailable {
                topic: name.to_string(),
                reason: "the broker's IncrementalAlterConfigs answer does not name the topic"
                    .into(),
            })?;
        if answer.error_code != 0 {
            let message = answer.error_message.as_ref().map(|m| m.as_str());
            return Err(refused_config_change(name, answer.error_code, message));
        }
        let configs = self.topic_configs(name).await?;
        Ok(TopicConfigs {
            name: name.to_string(),
            configs,
        })
    }

    /// Grows the topic to `change.count` partitions and describes it.
    pub async fn add_partitions(
        &self,
        name: &str,
        change: PartitionCountChange,
    ) -> Result<TopicDescription, ClusterError> {
        validate_topic_name(name)?;
        let count = change.count;
        if !(1..=MAX_PARTITIONS).contains(&count) {
            return Err(ClusterError::Invalid(format!(
                "count {count} is out of range: a topic has 1 to {MAX_PARTITIONS} partitions"
            )));
        }
        let layout = self.topic_layout(name).await?;
        let current = layout.partitions.len();
        if usize::try_from(count).is_ok_and(|count| count <= current) {
            return Err(ClusterError::Conflict(format!(
                "topic {name:?} has {current} partitions; count {count} must be more than that \
                 (partitions are added, never removed)"
            )));
        }
        let grown = NewPartitions::new(name, usize::try_from(count).unwrap_or_default());
        let results = self
            .inner
            .admin
            .create_partitions([&grown], &admin_options())
            .await?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(refused_partitions(name, count, code));
            }
        }
        let described = self.describe_grown_topic(name, count).await?;
        self.refresh_producer_metadata(name).await;
        Ok(described)
    }

    /// Deletes the records of the chosen partitions (all by default) before `before` (by
    /// default all of them, up to the high watermark), and answers where each partition
    /// starts now.
    pub async fn purge_topic(
        &self,
        name: &str,
        request: PurgeRequest,
    ) -> Result<PurgedTopic, ClusterError> {
        validate_topic_name(name)?;
        if let Some(before) = request.before.filter(|before| *before < 0) {
            return Err(ClusterError::Invalid(format!(
                "before {before} is negative; offsets start at 0"
            )));
        }
        if let Some(before) = request.before.filter(|before| *before > MAX_PURGE_OFFSET) {
            return Err(ClusterError::Invalid(format!(
                "before {before} is out of range: at most {MAX_PURGE_OFFSET}"
            )));
        }
        let layout = self.topic_layout(name).await?;
        let partitions = select_partitions(&layout, request.partitions.as_deref())?;
        let topic = name.to_string();
        let (checked, before) = (partitions.clone(), request.before);
        self.blocking(move |cluster| {
            if let Some(before) = before {
                for partition in &checked {
                    let (_, latest) = cluster.watermarks(&topic, *partition)?;
                    if before > latest {
                        return Err(ClusterError::NotFound(format!(
                            "before {before} is past the latest offset {latest} of partition \
                             {partition}; only stored records can be deleted"
                        )));
                    }
                }
            }
            Ok(())
        })
        .await?;
        let mut offsets = TopicPartitionList::new();
        for partition in &partitions {
            let offset = request.before.map_or(Offset::End, Offset::Offset);
            offsets.add_partition_offset(name, *partition, offset)?;
        }
        let deleted = self
            .inner
            .admin
            .delete_records(&offsets, &admin_options())
            .await?;
        for element in deleted.elements() {
            if let Err(error) = element.error() {
                return Err(refused_purge(name, element.partition(), &error));
            }
        }
        let topic = name.to_string();
        self.blocking(move |cluster| {
            let partitions = partitions
                .iter()
                .map(|partition| {
                    let (earliest, latest) = cluster.watermarks(&topic, *partition)?;
                    Ok(PurgedPartition {
                        partition: *partition,
                        earliest_offset: earliest,
                        latest_offset: latest,
                    })
                })
                .collect::<Result<_, ClusterError>>()?;
            Ok(PurgedTopic { topic, partitions })
        })
        .await
    }

    /// Describes a topic just grown to `count` partitions, waiting briefly for metadata to
    /// show them.
    async fn describe_grown_topic(
        &self,
        name: &str,
        count: i32,
    ) -> Result<TopicDescription, ClusterError> {
        let deadline = Instant::now() + NEW_PARTITIONS_VISIBLE_WITHIN;
        loop {
            let described = self.describe_topic(name).await?;
            let shown = i32::try_from(described.partitions.len()).unwrap_or(i32::MAX);
            if shown >= count || Instant::now() >= deadline {
                return Ok(described);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Has the shared producer ask for the topic's metadata now, so that records can be sent
    /// to new partitions at once: librdkafka refuses a partition its cached metadata lacks,
    /// and refreshes that cache only every few minutes. Best effort.
    async fn refresh_producer_metadata(&self, name: &str) {
        let topic = name.to_string();
        let refreshed = self
            .blocking(move |cluster| {
                let client = cluster.inner.producer.client();
                client.fetch_metadata(Some(&topic), REQUEST_TIMEOUT)?;
                Ok(())
            })
            .await;
        if let Err(error) = refreshed {
            let error = full_message(&error);
            tracing::debug!(%error, topic = name, "the producer's metadata was not refreshed");
        }
    }

    /// `host:port` of every broker the cluster's metadata names.
    pub(super) async fn broker_addresses(&self) -> Result<Vec<String>, ClusterError> {
        self.blocking(|cluster| {
            let metadata = cluster
                .inner
                .metadata
                .fetch_metadata(None, REQUEST_TIMEOUT)?;
            Ok(metadata
                .brokers()
                .iter()
                .map(|b| broker_address(b.host(), b.port()))
                .collect())
        })
        .await
    }

    /// Sends `request` over the raw protocol to the first broker that answers it.
    async fn call_any_broker<R: Request>(&self, request: &R) -> Result<R::Response, ClusterError> {
        let mut failures = Vec::new();
        for address in self.broker_addresses().await? {
            let answer = match Connection::open(&address, self.kafka(), REQUEST_TIMEOUT).await {
                Ok(mut connection) => connection.call(request, REQUEST_TIMEOUT).await,
                Err(reason) => Err(reason),
            };
            match answer {
                Ok((_, response)) => return Ok(response),
                Err(reason) => failures.push(format!("{address}: {reason}")),
            }
        }
        Err(ClusterError::Unavailable(format!(
            "no broker answered: {}",
            failures.join("; ")
        )))
    }
}

/// The partitions a request names, checked against the topic (`None`: all of them), in
/// ascending order.
pub(super) fn select_partitions(
    layout: &TopicLayout,
    requested: Option<&[i32]>,
) -> Result<Vec<i32>, ClusterError> {
    let Some(requested) = requested else {
        return Ok(layout.partitions.iter().map(|p| p.id).collect());
    };
    if requested.is_empty() {
        return Err(ClusterError::Invalid(
            "partitions is empty: leave it out for every partition of the topic".into(),
        ));
    }
    let mut selected = BTreeSet::new();
    for partition in requested {
        validate_partition(*partition)?;
        if !selected.insert(*partition) {
            return Err(ClusterError::Invalid(format!(
                "partition {partition} is listed twice"
            )));
        }
        if !layout.has_partition(*partition) {
            return Err(ClusterError::NotFound(format!(
                "topic {:?} has no partition {partition} (it has {})",
                layout.name,
                layout.partitions.len()
            )));
        }
    }
    Ok(selected.into_iter().collect())
}

/// Checks a config change before anything is sent.
fn validate_config_change(change: &TopicConfigChange) -> Result<(), ClusterError> {
    let names = change
        .set
        .keys()
        .map(|name| (name, "set"))
        .chain(change.delete.iter().map(|name| (name, "delete")));
    for (name, list) in names {
        if name.trim().is_empty() {
            return Err(ClusterError::Invalid(format!(
                "config name {name:?} in {list} is empty"
            )));
        }
        if name.contains('\0') {
            return Err(ClusterError::Invalid(format!(
                "config name {name:?} in {list} contains a NUL character"
            )));
        }
    }
    if let Some((name, value)) = change.set.iter().find(|(_, value)| value.contains('\0')) {
        return Err(ClusterError::Invalid(format!(
            "config {name:?} = {value:?} contains a NUL character"
        )));
    }
    let mut deleted = BTreeSet::new();
    for name in &change.delete {
        if !deleted.insert(name) {
            return Err(ClusterError::Invalid(format!(
                "config {name:?} is listed twice in delete"
            )));
        }
        if change.set.contains_key(name) {
            return Err(ClusterError::Conflict(format!(
                "config {name:?} is both in set and in delete: say one or the other"
            )));
        }
    }
    Ok(())
}

fn incremental_request(name: &str, change: &TopicConfigChange) -> IncrementalAlterConfigsRequest {
    let set = change.set.iter().map(|(name, value)| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(name.clone()))
            .with_config_operation(OP_SET)
            .with_value(Some(StrBytes::from_string(value.clone())))
    });
    let delete = change.delete.iter().map(|name| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(name.clone()))
            .with_config_operation(OP_DELETE)
            .with_value(None)
    });
    let resource = AlterConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configs(set.chain(delete).collect());
    IncrementalAlterConfigsRequest::default()
        .with_resources(vec![resource])
        .with_validate_only(false)
}

/// A broker's error code by name, with its message when it gave one.
pub(super) fn broker_error(code: i16, message: Option<&str>) -> String {
    let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code));
    match message.filter(|message| !message.is_empty()) {
        Some(message) => format!("{error:?}: {message}"),
        None => format!("{error:?}"),
    }
}

fn refused_config_change(name: &str, code: i16, message: Option<&str>) -> ClusterError {
    let reason = broker_error(code, message);
    match ResponseError::try_from_code(code) {
        Some(ResponseError::UnknownTopicOrPartition) => not_found_topic(name),
        Some(
            ResponseError::InvalidConfig
            | ResponseError::InvalidRequest
            | ResponseError::PolicyViolation,
        ) => ClusterError::Invalid(format!(
            "the cluster refused to change the configs of topic {name:?}: {reason}"
        )),
        _ => ClusterError::TopicUnavailable {
            topic: name.to_string(),
            reason: format!("changing its configs: {reason}"),
        },
    }
}

fn refused_partitions(name: &str, count: i32, code: RDKafkaErrorCode) -> ClusterError {
    use RDKafkaErrorCode as Code;
    match code {
        Code::UnknownTopicOrPartition => not_found_topic(name),
        Code::InvalidPartitions
        | Code::InvalidReplicaAssignment
        | Code::InvalidRequest
        | Code::PolicyViolation => ClusterError::Invalid(format!(
            "the cluster refused to give topic {name:?} {count} partitions: {code}"
        )),
        other => ClusterError::topic_refused(name, "adding partitions")(other),
    }
}

fn refused_purge(name: &str, partition: i32, error: &KafkaError) -> ClusterError {
    use RDKafkaErrorCode as Code;
    match error.rdkafka_error_code() {
        Some(Code::UnknownTopicOrPartition) => not_found_topic(name),
        Some(Code::OffsetOutOfRange | Code::PolicyViolation | Code::InvalidRequest) => {
            ClusterError::Invalid(format!(
                "the cluster refused to delete records of partition {partition} of topic \
                 {name:?}: {error}"
            ))
        }
        _ => ClusterError::TopicUnavailable {
            topic: name.to_string(),
            reason: format!("deleting records of partition {partition}: {error}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn change(set: &[(&str, &str)], delete: &[&str]) -> TopicConfigChange {
        TopicConfigChange {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            delete: delete.iter().map(|name| name.to_string()).collect(),
        }
    }

    fn refusal(change: &TopicConfigChange) -> String {
        match validate_config_change(change) {
            Err(ClusterError::Invalid(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn config_changes_are_checked_before_anything_is_sent() {
        assert!(validate_config_change(&change(&[("retention.ms", "1")], &["segment.ms"])).is_ok());
        assert!(
            validate_config_change(&change(&[], &[])).is_ok(),
            "nothing to change"
        );
        assert!(refusal(&change(&[(" ", "1")], &[])).contains("is empty"));
        assert!(refusal(&change(&[], &["a\0b"])).contains("NUL"));
        assert!(refusal(&change(&[("retention.ms", "1\0")], &[])).contains("NUL"));
        assert!(refusal(&change(&[], &["x", "x"])).contains("listed twice"));
        assert!(matches!(
            validate_config_change(&change(&[("x", "1")], &["x"])),
            Err(ClusterError::Conflict(reason)) if reason.contains("both in set and in delete")
        ));
    }

    #[test]
    fn the_incremental_request_sets_then_deletes() {
        let request = incremental_request("t", &change(&[("retention.ms", "5")], &["segment.ms"]));
        let resource = &request.resources[0];
        assert_eq!(
            (resource.resource_type, resource.resource_name.as_str()),
            (RESOURCE_TOPIC, "t")
        );
        let configs: Vec<(&str, i8, Option<&str>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.as_str()),
                )
            })
            .collect();
        assert_eq!(
            configs,
            [
                ("retention.ms", OP_SET, Some("5")),
                ("segment.ms", OP_DELETE, None)
            ]
        );
        assert!(!request.validate_only);
    }

    #[test]
    fn broker_refusals_keep_the_brokers_words() {
        let error = refused_config_change("t", 40, Some("Invalid value soon for retention.ms"));
        match error {
            ClusterError::Invalid(reason) => assert_eq!(
                reason,
                "the cluster refused to change the configs of topic \"t\": InvalidConfig: \
                 Invalid value soon for retention.ms"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            refused_config_change("t", 3, None),
            ClusterError::NotFound(_)
        ));
        assert!(matches!(
            refused_config_change("t", 29, None),
            ClusterError::TopicUnavailable { .. }
        ));
        assert_eq!(broker_error(69, None), "GroupIdNotFound");
        assert_eq!(broker_error(69, Some("")), "GroupIdNotFound");
        assert_eq!(broker_error(-7, None), "Unknown(-7)");
    }

    #[test]
    fn managed_topics_are_the_service_topics_and_the_trackers_dead_letters() {
        for (name, owner) in [
            ("login-attempts", "the login guard"),
            ("blocked-users", "the login guard"),
            ("login-attempts.dlq", "the login guard"),
            (
                "freshet.tracker.freshet-tracker.device-events",
                "the tracker",
            ),
            ("freshet.guard.checkpoints", "the login guard"),
            ("freshet.other", "a Freshet service"),
            ("device-events.dlq", "the tracker"),
        ] {
            assert_eq!(managed_topic_owner(name), Some(owner), "{name}");
        }
        for name in [
            "device-events",
            "orders",
            "device-events.dlq2",
            "__consumer_offsets",
        ] {
            assert_eq!(managed_topic_owner(name), None, "{name}");
        }
    }
}
