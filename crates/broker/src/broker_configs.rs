//! Dynamic broker configs: the broker-level defaults of topic configs (Kafka's KIP-226),
//! changed at runtime by AlterConfigs and IncrementalAlterConfigs on the BROKER resource.
//!
//! Kafka names two broker resources: `""`, the default of every broker of the cluster, and
//! `"<node id>"`, one broker. On this single node both apply, the per-broker value winning.
//! A topic's effective config is its override, else the per-broker dynamic value, else the
//! cluster-wide one, else the command line's (see [`TopicDefaults`]).
//!
//! The dynamic names are the broker synonyms of the topic configs ([`TopicConfigDef`]'s
//! `broker_synonym`: `log.retention.ms`, `log.roll.ms`, `message.max.bytes`, ...), the set
//! Kafka's `DynamicLogConfig` makes reconfigurable. Their values are validated exactly as the
//! topic config's values are. Other broker configs are this broker's command line.
//!
//! They are stored in `<data-dir>/broker-configs.json`, replaced atomically (write, fsync,
//! rename, fsync the directory), and loaded at start. Per-broker values are kept by node id:
//! a data directory restarted under another `--node-id` does not take the old node's.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use freshet_log::LogConfig;
use serde::{Deserialize, Serialize};

use crate::topic_config::{TopicConfigDef, TopicConfigs, TopicDefaults, TOPIC_CONFIGS};
use crate::topics::{write_atomically, TopicError};

/// The file in the data directory that holds the dynamic broker configs.
pub const FILE_NAME: &str = "broker-configs.json";

/// Which broker resource a change names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerScope {
    /// Resource name `""`: the default of every broker (DYNAMIC_DEFAULT_BROKER_CONFIG).
    ClusterDefault,
    /// Resource name `"<node id>"`: this broker only (DYNAMIC_BROKER_CONFIG).
    ThisBroker,
}

/// Dynamic configs of one broker resource: Kafka broker config name to value as sent.
pub type BrokerLayer = BTreeMap<String, String>;

/// What `broker-configs.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredBrokerConfigs {
    /// Resource `""`.
    #[serde(default)]
    pub cluster_default: BrokerLayer,
    /// Resources `"<node id>"`, by node id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerLayer>,
}

/// The topic config whose default the dynamic broker config `broker_name` sets.
pub fn topic_config_of(broker_name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .find(|def| def.broker_synonym == Some(broker_name))
}

impl StoredBrokerConfigs {
    /// Reads `<data_dir>/broker-configs.json`; none yet is no dynamic config.
    pub fn load(data_dir: &Path) -> io::Result<StoredBrokerConfigs> {
        let path = data_dir.join(FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Replaces `<data_dir>/broker-configs.json` atomically and durably.
    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| io::Error::other(e.to_string()))?;
        write_atomically(&data_dir.join(FILE_NAME), &json)
    }

    /// The dynamic configs of one resource.
    pub fn layer(&self, scope: BrokerScope, node_id: i32) -> BrokerLayer {
        match scope {
            BrokerScope::ClusterDefault => self.cluster_default.clone(),
            BrokerScope::ThisBroker => self.brokers.get(&node_id).cloned().unwrap_or_default(),
        }
    }

    /// These configs with one resource's replaced by `layer`.
    pub fn with_layer(&self, scope: BrokerScope, node_id: i32, layer: BrokerLayer) -> Self {
        let mut next = self.clone();
        match scope {
            BrokerScope::ClusterDefault => next.cluster_default = layer,
            BrokerScope::ThisBroker if layer.is_empty() => {
                next.brokers.remove(&node_id);
            }
            BrokerScope::ThisBroker => {
                next.brokers.insert(node_id, layer);
            }
        }
        next
    }

    /// The topic defaults these configs make over the command line's, every value checked as
    /// the topic config's (INVALID_CONFIG naming the broker config), and the layers together
    /// (the compaction lags must still agree).
    pub fn defaults(
        &self,
        static_config: &LogConfig,
        node_id: i32,
    ) -> Result<TopicDefaults, TopicError> {
        let cluster = strictly(&self.cluster_default)?;
        let per_broker = strictly(&self.layer(BrokerScope::ThisBroker, node_id))?;
        let defaults = TopicDefaults::new(static_config.clone(), cluster, per_broker);
        defaults
            .dynamic()
            .apply(static_config)
            .map_err(under_broker_name)?;
        Ok(defaults)
    }

    /// [`StoredBrokerConfigs::defaults`] for what is stored: a value this version refuses is
    /// skipped with a warning rather than keeping the broker from starting.
    pub fn defaults_leniently(&self, static_config: &LogConfig, node_id: i32) -> TopicDefaults {
        if let Ok(defaults) = self.defaults(static_config, node_id) {
            return defaults;
        }
        let cluster = leniently(&self.cluster_default);
        let per_broker = leniently(&self.layer(BrokerScope::ThisBroker, node_id));
        let defaults = TopicDefaults::new(static_config.clone(), cluster, per_broker);
        if defaults.dynamic().apply(static_config).is_ok() {
            defaults
        } else {
            tracing::warn!("ignoring the stored dynamic broker configs: they conflict");
            TopicDefaults::from_static(static_config.clone())
        }
    }
}

/// One resource's configs under their topic names, each value checked.
fn strictly(layer: &BrokerLayer) -> Result<TopicConfigs, TopicError> {
    let mut configs = TopicConfigs::default();
    for (broker_name, value) in layer {
        let def = dynamic_definition(broker_name)?;
        def.check_value(value).map_err(under_broker_name)?;
        configs.0.insert(def.name.to_string(), value.clone());
    }
    Ok(configs)
}

/// One resource's configs under their topic names, those this version refuses left out.
fn leniently(layer: &BrokerLayer) -> TopicConfigs {
    let mut configs = TopicConfigs::default();
    for (broker_name, value) in layer {
        let checked = dynamic_definition(broker_name)
            .and_then(|def| def.check_value(value).map(|()| def))
            .map_err(under_broker_name);
        match checked {
            Ok(def) => {
                configs.0.insert(def.name.to_string(), value.clone());
            }
            Err(error) => {
                tracing::warn!(%error, "ignoring a stored dynamic broker config this version refuses")
            }
        }
    }
    configs
}

/// The topic config a dynamic broker config sets, or INVALID_CONFIG naming it.
fn dynamic_definition(broker_name: &str) -> Result<&'static TopicConfigDef, TopicError> {
    topic_config_of(broker_name).ok_or_else(|| {
        TopicError::InvalidConfig(
            broker_name.to_string(),
            "not a dynamic broker config".to_string(),
        )
    })
}

/// A topic config's refusal restated under its broker name (the name the client used).
fn under_broker_name(error: TopicError) -> TopicError {
    match error {
        TopicError::InvalidConfig(name, why) => {
            let broker_name = crate::topic_config::definition(&name)
                .and_then(|def| def.broker_synonym)
                .map_or(name, str::to_string);
            TopicError::InvalidConfig(broker_name, why)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic_config::ConfigSource;

    fn layer(pairs: &[(&str, &str)]) -> BrokerLayer {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn broker_synonyms_name_one_topic_config_each() {
        let mut names: Vec<&str> = TOPIC_CONFIGS
            .iter()
            .filter_map(|def| def.broker_synonym)
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "no broker name sets two topic configs");
        assert_eq!(
            topic_config_of("log.roll.ms").map(|d| d.name),
            Some("segment.ms")
        );
        assert!(topic_config_of("broker.id").is_none());
    }

    #[test]
    fn values_are_checked_under_their_broker_name() {
        let stored = StoredBrokerConfigs {
            cluster_default: layer(&[("log.retention.ms", "-5")]),
            ..Default::default()
        };
        let error = stored
            .defaults(&LogConfig::default(), 1)
            .expect_err("a refused value");
        assert_eq!(
            error.to_string(),
            "invalid config log.retention.ms: invalid value \"-5\": value must be at least -1"
        );
        let conflicting = StoredBrokerConfigs {
            cluster_default: layer(&[("log.cleaner.min.compaction.lag.ms", "10")]),
            brokers: [(1, layer(&[("log.cleaner.max.compaction.lag.ms", "5")]))].into(),
        };
        assert!(conflicting.defaults(&LogConfig::default(), 1).is_err());
        assert!(
            conflicting.defaults(&LogConfig::default(), 2).is_ok(),
            "another node's per-broker configs do not apply"
        );
    }

    #[test]
    fn per_broker_wins_over_the_cluster_default_which_wins_over_the_command_line() {
        let stored = StoredBrokerConfigs {
            cluster_default: layer(&[("log.retention.ms", "2000"), ("log.roll.ms", "3000")]),
            brokers: [(1, layer(&[("log.retention.ms", "1000")]))].into(),
        };
        let static_config = LogConfig {
            retention_bytes: 77,
            ..LogConfig::default()
        };
        let defaults = stored.defaults(&static_config, 1).expect("valid");
        let config = defaults.log_config();
        assert_eq!(
            (
                config.retention_ms,
                config.segment_ms,
                config.retention_bytes
            ),
            (1000, 3000, 77)
        );
        let retention = crate::topic_config::definition("retention.ms").expect("known");
        let names = |synonyms: Vec<(String, String, ConfigSource)>| {
            synonyms
                .into_iter()
                .map(|(name, value, source)| format!("{name}={value}@{}", source.code()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(defaults.broker_synonyms(retention)),
            [
                "log.retention.ms=1000@2",
                "log.retention.ms=2000@3",
                "log.retention.ms=604800000@5"
            ]
        );
        let overridden = TopicConfigs([("retention.ms".to_string(), "5".to_string())].into());
        assert_eq!(
            overridden
                .apply_over(&defaults)
                .expect("valid")
                .retention_ms,
            5
        );
    }

    #[test]
    fn stored_values_this_version_refuses_are_skipped() {
        let stored = StoredBrokerConfigs {
            cluster_default: layer(&[("log.retention.ms", "soon"), ("log.roll.ms", "3000")]),
            brokers: [(1, layer(&[("flux.capacitor", "1")]))].into(),
        };
        let defaults = stored.defaults_leniently(&LogConfig::default(), 1);
        assert_eq!(defaults.log_config().segment_ms, 3000);
        assert_eq!(
            defaults.log_config().retention_ms,
            LogConfig::default().retention_ms
        );
    }
}
