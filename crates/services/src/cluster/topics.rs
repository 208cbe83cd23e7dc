//! Topics: list, describe, create and delete, from Metadata, ListOffsets (watermarks),
//! DescribeConfigs, DescribeLogDirs, CreateTopics and DeleteTopics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminOptions, NewTopic as AdminNewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::metadata::MetadataTopic;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use super::log_dirs::{partition_sizes, LeaderPartitions};
use super::topic_admin::managed_topic_owner;
use super::view::{NewTopic, PartitionDescription, TopicDescription, TopicList, TopicSummary};
use super::wire::Connection;
use super::{
    is_internal_topic, not_found_topic, validate_topic_name, Cluster, ClusterError,
    DEFAULT_PARTITIONS, MAX_PARTITIONS, MAX_REPLICATION_FACTOR, REQUEST_TIMEOUT, SIZES_TIMEOUT,
};

/// How long a created topic may take to show up in metadata (a multi-broker cluster
/// propagates it asynchronously).
const CREATED_TOPIC_VISIBLE_WITHIN: Duration = Duration::from_secs(5);

/// One topic's partitions and the brokers leading them, from one Metadata answer.
#[derive(Debug, Clone)]
pub(super) struct TopicLayout {
    pub(super) name: String,
    /// In partition order.
    pub(super) partitions: Vec<PartitionLayout>,
    /// Node id to `host:port`.
    brokers: BTreeMap<i32, String>,
}

#[derive(Debug, Clone)]
pub(super) struct PartitionLayout {
    pub(super) id: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

impl TopicLayout {
    fn from_metadata(topic: &MetadataTopic, brokers: BTreeMap<i32, String>) -> TopicLayout {
        let mut partitions: Vec<PartitionLayout> = topic
            .partitions()
            .iter()
            .map(|p| PartitionLayout {
                id: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            })
            .collect();
        partitions.sort_by_key(|p| p.id);
        TopicLayout {
            name: topic.name().to_string(),
            partitions,
            brokers,
        }
    }

    pub(super) fn has_partition(&self, partition: i32) -> bool {
        self.partitions.iter().any(|p| p.id == partition)
    }

    /// `host:port` of the partition's leader, if it has one the metadata names.
    pub(super) fn leader_address(&self, partition: i32) -> Option<&str> {
        let leader = self.partitions.iter().find(|p| p.id == partition)?.leader;
        self.brokers.get(&leader).map(String::as_str)
    }

    /// The partitions each reachable leader leads.
    fn leaders(&self) -> Vec<LeaderPartitions> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in &self.partitions {
            by_leader
                .entry(partition.leader)
                .or_default()
                .push(partition.id);
        }
        by_leader
            .into_iter()
            .filter_map(|(leader, partitions)| {
                let address = self.brokers.get(&leader)?.clone();
                Some(LeaderPartitions {
                    address,
                    partitions,
                })
            })
            .collect()
    }
}

impl Cluster {
    /// Every topic with its record counts, by name; internal ones only if asked for.
    pub async fn list_topics(&self, include_internal: bool) -> Result<TopicList, ClusterError> {
        self.blocking(move |cluster| {
            let metadata = cluster
                .inner
                .metadata
                .fetch_metadata(None, REQUEST_TIMEOUT)?;
            let mut topics = Vec::new();
            for topic in metadata.topics() {
                let internal = is_internal_topic(topic.name());
                if internal && !include_internal {
                    continue;
                }
                let (mut records, mut latest_offset_sum) = (0, 0);
                for partition in topic.partitions() {
                    let (earliest, latest) = cluster.watermarks(topic.name(), partition.id())?;
                    records += latest - earliest;
                    latest_offset_sum += latest;
                }
                topics.push(TopicSummary {
                    name: topic.name().to_string(),
                    partitions: u32::try_from(topic.partitions().len()).unwrap_or(u32::MAX),
                    internal,
                    managed: managed_topic_owner(topic.name()).is_some(),
                    managed_by: managed_topic_owner(topic.name()),
                    accepts_records: !crate::is_service_topic(topic.name()),
                    records,
                    latest_offset_sum,
                });
            }
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(TopicList { topics })
        })
        .await
    }

    /// One topic: partitions with their offsets and sizes, and its effective configs.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClusterError> {
        validate_topic_name(name)?;
        let layout = self.topic_layout(name).await?;
        let (offsets, configs, sizes) = tokio::join!(
            self.partition_watermarks(&layout),
            self.topic_configs(name),
            partition_sizes(name, layout.leaders(), self.kafka(), SIZES_TIMEOUT),
        );
        let offsets = offsets?;
        let partitions: Vec<PartitionDescription> = layout
            .partitions
            .iter()
            .zip(offsets)
            .map(|(partition, (earliest, latest))| PartitionDescription {
                partition: partition.id,
                leader: partition.leader,
                replicas: partition.replicas.clone(),
                in_sync_replicas: partition.isr.clone(),
                earliest_offset: earliest,
                latest_offset: latest,
                records: latest - earliest,
                size_bytes: sizes.get(&partition.id).copied(),
            })
            .collect();
        // Known only when every partition's size is.
        let size_bytes = partitions.iter().map(|p| p.size_bytes).sum();
        Ok(TopicDescription {
            name: layout.name,
            internal: is_internal_topic(name),
            managed: managed_topic_owner(name).is_some(),
            managed_by: managed_topic_owner(name),
            accepts_records: !crate::is_service_topic(name),
            records: partitions.iter().map(|p| p.records).sum(),
            size_bytes,
            partitions,
            configs: configs?,
        })
    }

    /// Creates a topic and describes it. A refusal by the cluster says why, in the broker's
    /// words when it gives them.
    pub async fn create_topic(&self, request: NewTopic) -> Result<TopicDescription, ClusterError> {
        let partitions = validate_new_topic(&request)?;
        let replication = request.replication_factor.unwrap_or(-1);
        let mut topic = AdminNewTopic::new(
            &request.name,
            partitions,
            TopicReplication::Fixed(i32::from(replication)),
        );
        for (key, value) in &request.configs {
            topic = topic.set(key, value);
        }
        let results = self
            .inner
            .admin
            .create_topics([&topic], &admin_options())
            .await?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(self.refused_create(&request, partitions, code).await);
            }
        }
        self.describe_created_topic(&request.name).await
    }

    /// Deletes a topic and its records.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClusterError> {
        validate_topic_name(name)?;
        let results = self
            .inner
            .admin
            .delete_topics(&[name], &admin_options())
            .await?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    return Err(not_found_topic(name))
                }
                Err((topic, code)) => {
                    return Err(ClusterError::topic_refused(&topic, "deleting it")(code))
                }
            }
        }
        Ok(())
    }

    /// The topic's partitions and leaders; `NotFound` when the cluster has no such topic.
    pub(super) async fn topic_layout(&self, name: &str) -> Result<TopicLayout, ClusterError> {
        let name = name.to_string();
        self.blocking(move |cluster| cluster.topic_layout_now(&name))
            .await
    }

    fn topic_layout_now(&self, name: &str) -> Result<TopicLayout, ClusterError> {
        let metadata = self
            .inner
            .metadata
            .fetch_metadata(Some(name), REQUEST_TIMEOUT)?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| not_found_topic(name))?;
        match topic.error() {
            None => {}
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
                return Err(not_found_topic(name))
            }
            Some(error) => {
                let refused = ClusterError::topic_refused(name, "reading its metadata");
                return Err(refused(RDKafkaErrorCode::from(error)));
            }
        }
        let brokers = metadata
            .brokers()
            .iter()
            .map(|b| (b.id(), broker_address(b.host(), b.port())))
            .collect();
        Ok(TopicLayout::from_metadata(topic, brokers))
    }

    /// `(earliest, latest)` offsets of one partition (ListOffsets). Blocks.
    pub(super) fn watermarks(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i64, i64), ClusterError> {
        Ok(self
            .inner
            .metadata
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)?)
    }

    /// Watermarks of every partition of `layout`, in its order.
    async fn partition_watermarks(
        &self,
        layout: &TopicLayout,
    ) -> Result<Vec<(i64, i64)>, ClusterError> {
        let layout = layout.clone();
        self.blocking(move |cluster| {
            layout
                .partitions
                .iter()
                .map(|p| cluster.watermarks(&layout.name, p.id))
                .collect()
        })
        .await
    }

    /// The topic's effective configs (sensitive values left out).
    pub(super) async fn topic_configs(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ClusterError> {
        let described = self
            .inner
            .admin
            .describe_configs([&ResourceSpecifier::Topic(name)], &admin_options())
            .await?;
        let mut configs = BTreeMap::new();
        for resource in described {
            let resource =
                resource.map_err(ClusterError::topic_refused(name, "describing its configs"))?;
            for entry in resource.entries {
                if let (Some(value), false) = (entry.value, entry.is_sensitive) {
                    configs.insert(entry.name, value);
                }
            }
        }
        Ok(configs)
    }

    /// Describes a topic just created, waiting briefly for it to show up in metadata and for
    /// its partitions to get leaders.
    async fn describe_created_topic(&self, name: &str) -> Result<TopicDescription, ClusterError> {
        let deadline = Instant::now() + CREATED_TOPIC_VISIBLE_WITHIN;
        loop {
            match self.describe_topic(name).await {
                Err(
                    ClusterError::NotFound(_)
                    | ClusterError::TopicRefused { .. }
                    | ClusterError::TopicUnavailable { .. }
                    | ClusterError::Kafka(_),
                ) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                described => return described,
            }
        }
    }

    /// The error for a create the cluster refused with `code`.
    async fn refused_create(
        &self,
        request: &NewTopic,
        partitions: i32,
        code: RDKafkaErrorCode,
    ) -> ClusterError {
        use RDKafkaErrorCode as Code;
        let name = &request.name;
        match code {
            Code::TopicAlreadyExists => {
                ClusterError::Conflict(format!("topic {name:?} already exists"))
            }
            // More replicas than the cluster has brokers (Freshet's embedded broker is one):
            // a valid request the cluster cannot serve as it is now, so a conflict with its
            // state rather than a bad request.
            Code::InvalidReplicationFactor => {
                let reason = self.refusal_reason(request, partitions, code).await;
                ClusterError::Conflict(format!(
                    "the cluster refused to create topic {name:?}: {reason}"
                ))
            }
            Code::InvalidTopic
            | Code::InvalidPartitions
            | Code::InvalidReplicaAssignment
            | Code::InvalidConfig
            | Code::PolicyViolation
            | Code::InvalidRequest => {
                let reason = self.refusal_reason(request, partitions, code).await;
                ClusterError::Invalid(format!(
                    "the cluster refused to create topic {name:?}: {reason}"
                ))
            }
            other => ClusterError::topic_refused(name, "creating it")(other),
        }
    }

    /// `code` with the broker's own message when one says more.
    async fn refusal_reason(
        &self,
        request: &NewTopic,
        partitions: i32,
        code: RDKafkaErrorCode,
    ) -> String {
        match self.broker_reason(request, partitions).await {
            Some(message) => format!("{code}: {message}"),
            None => code.to_string(),
        }
    }

    /// The broker's own message for a refused create. rdkafka keeps only the error code, so
    /// the same topic is sent again with `validate_only` over the raw protocol, which creates
    /// nothing. Best effort: `None` when no broker says more.
    async fn broker_reason(&self, request: &NewTopic, partitions: i32) -> Option<String> {
        let brokers = self
            .blocking(|cluster| {
                let metadata = cluster
                    .inner
                    .metadata
                    .fetch_metadata(None, REQUEST_TIMEOUT)?;
                Ok(metadata
                    .brokers()
                    .iter()
                    .map(|b| broker_address(b.host(), b.port()))
                    .collect::<Vec<_>>())
            })
            .await
            .ok()?;
        let validation = validation_request(request, partitions);
        for address in brokers {
            let Ok(mut connection) = Connection::open(&address, self.kafka(), SIZES_TIMEOUT).await
            else {
                continue;
            };
            let Ok((_, response)) = connection.call(&validation, SIZES_TIMEOUT).await else {
                continue;
            };
            // Old ZooKeeper-based clusters take CreateTopics only at the controller.
            const NOT_CONTROLLER: i16 = 41;
            let message = response
                .topics
                .iter()
                .filter(|t| t.error_code != 0 && t.error_code != NOT_CONTROLLER)
                .find_map(|t| t.error_message.as_ref());
            if let Some(message) = message {
                return Some(message.to_string());
            }
        }
        None
    }
}

/// The partition count of a valid create request.
fn validate_new_topic(request: &NewTopic) -> Result<i32, ClusterError> {
    validate_topic_name(&request.name)?;
    let partitions = request.partitions.unwrap_or(DEFAULT_PARTITIONS);
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(ClusterError::Invalid(format!(
            "partitions {partitions} is out of range: a topic has 1 to {MAX_PARTITIONS}"
        )));
    }
    match request.replication_factor {
        None | Some(-1) => {}
        Some(factor) if (1..=MAX_REPLICATION_FACTOR).contains(&factor) => {}
        Some(factor) => {
            return Err(ClusterError::Invalid(format!(
                "replication_factor {factor} is invalid: use -1 (the cluster's default) or 1 \
                 to {MAX_REPLICATION_FACTOR}"
            )))
        }
    }
    if let Some(key) = request.configs.keys().find(|key| key.trim().is_empty()) {
        return Err(ClusterError::Invalid(format!(
            "config name {key:?} is empty"
        )));
    }
    // The Kafka client hands configs to C as NUL-terminated strings: one with a NUL inside
    // cannot be sent at all, so it is the request that is wrong.
    let with_nul = request
        .configs
        .iter()
        .find(|(name, value)| name.contains('\0') || value.contains('\0'));
    if let Some((name, value)) = with_nul {
        return Err(ClusterError::Invalid(format!(
            "config {name:?} = {value:?} contains a NUL character"
        )));
    }
    Ok(partitions)
}

/// `host:port` as a socket address string, bracketing IPv6 literals.
pub(super) fn broker_address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub(super) fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// `request` as a CreateTopics that only validates.
fn validation_request(request: &NewTopic, partitions: i32) -> CreateTopicsRequest {
    let configs = request
        .configs
        .iter()
        .map(|(name, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_value(Some(StrBytes::from_string(value.clone())))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(request.name.clone())))
        .with_num_partitions(partitions)
        .with_replication_factor(request.replication_factor.unwrap_or(-1))
        .with_configs(configs);
    CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(i32::try_from(REQUEST_TIMEOUT.as_millis()).unwrap_or(i32::MAX))
        .with_validate_only(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, partitions: Option<i32>, factor: Option<i16>) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: factor,
            configs: BTreeMap::new(),
        }
    }

    fn refusal(request: &NewTopic) -> String {
        match validate_new_topic(request) {
            Err(ClusterError::Invalid(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn create_requests_are_checked_before_anything_is_sent() {
        assert_eq!(validate_new_topic(&request("t", None, None)).ok(), Some(1));
        assert_eq!(
            validate_new_topic(&request("t", Some(MAX_PARTITIONS), Some(3))).ok(),
            Some(MAX_PARTITIONS)
        );
        assert!(refusal(&request("a b", None, None)).contains("contains ' '"));
        assert!(refusal(&request("..", None, None)).contains("not a valid topic name"));
        for partitions in [0, -1, MAX_PARTITIONS + 1] {
            assert!(refusal(&request("t", Some(partitions), None)).contains("out of range"));
        }
        for factor in [0, -2, MAX_REPLICATION_FACTOR + 1] {
            assert!(refusal(&request("t", None, Some(factor))).contains("replication_factor"));
        }
        let mut empty_key = request("t", None, None);
        empty_key.configs.insert(" ".into(), "x".into());
        assert!(refusal(&empty_key).contains("config name"));
        for (name, value) in [("a\0b", "x"), ("retention.ms", "1\0")] {
            let mut nul = request("t", None, None);
            nul.configs.insert(name.into(), value.into());
            assert!(
                refusal(&nul).contains("contains a NUL character"),
                "{name:?}"
            );
        }
    }

    #[test]
    fn broker_addresses_bracket_ipv6_hosts() {
        assert_eq!(broker_address("10.0.0.1", 9092), "10.0.0.1:9092");
        assert_eq!(broker_address("kafka-1", 9092), "kafka-1:9092");
        assert_eq!(broker_address("::1", 9092), "[::1]:9092");
    }

    #[test]
    fn the_validation_request_repeats_the_create() {
        let mut new = request("t", None, None);
        new.configs
            .insert("cleanup.policy".into(), "compact".into());
        let validation = validation_request(&new, 4);
        assert!(validation.validate_only);
        let topic = &validation.topics[0];
        assert_eq!(
            (
                topic.name.as_str(),
                topic.num_partitions,
                topic.replication_factor
            ),
            ("t", 4, -1)
        );
        assert_eq!(topic.configs[0].name.as_str(), "cleanup.policy");
    }
}
