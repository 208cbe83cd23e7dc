// Apache Kafka's documentation of the topic configs, for the configuration editor. The
// describe API carries names and effective values only, so the text lives here: it is the
// documentation string of each config in Kafka 4.x (`TopicConfig.java`, and `QuotaConfig`
// for the throttled-replica lists), with the HTML taken out, and Kafka's default value.
// `choices` lists the values a config takes when there are only a few, for a select.
//
// A config not listed here (another cluster's own, or one newer than this table) is still
// shown and editable, without a description.

const BOOLEAN = ['true', 'false'];

export const TOPIC_CONFIGS = {
  'cleanup.policy': {
    default: 'delete',
    choices: ['delete', 'compact', 'compact,delete'],
    doc: 'This config designates the retention policy to use on log segments. The "delete" policy (which is the default) will discard old segments when their retention time or size limit has been reached. The "compact" policy will enable log compaction, which retains the latest value for each key. It is also possible to specify both policies in a comma-separated list (e.g. "delete,compact"). In this case, old segments will be discarded per the retention time and size configuration, while retained segments will be compacted.',
  },
  'compression.type': {
    default: 'producer',
    choices: ['producer', 'uncompressed', 'gzip', 'snappy', 'lz4', 'zstd'],
    doc: "Specify the final compression type for a given topic. This configuration accepts the standard compression codecs ('gzip', 'snappy', 'lz4', 'zstd'). It additionally accepts 'uncompressed' which is equivalent to no compression; and 'producer' which means retain the original compression codec set by the producer.",
  },
  'compression.gzip.level': {
    default: '-1',
    doc: 'The compression level to use if compression.type is set to gzip.',
  },
  'compression.lz4.level': {
    default: '9',
    doc: 'The compression level to use if compression.type is set to lz4.',
  },
  'compression.zstd.level': {
    default: '3',
    doc: 'The compression level to use if compression.type is set to zstd.',
  },
  'delete.retention.ms': {
    default: '86400000',
    doc: 'The amount of time to retain delete tombstone markers for log compacted topics. This setting also gives a bound on the time in which a consumer must complete a read if they begin from offset 0 to ensure that they get a valid snapshot of the final stage (otherwise delete tombstones may be collected before they complete their scan).',
  },
  'file.delete.delay.ms': {
    default: '60000',
    doc: 'The time to wait before deleting a file from the filesystem',
  },
  'flush.messages': {
    default: '9223372036854775807',
    doc: "This setting allows specifying an interval at which we will force an fsync of data written to the log. For example if this was set to 1 we would fsync after every message; if it were 5 we would fsync after every five messages. In general we recommend you not set this and use replication for durability and allow the operating system's background flush capabilities as it is more efficient. This setting can be overridden on a per-topic basis (see the per-topic configuration section).",
  },
  'flush.ms': {
    default: '9223372036854775807',
    doc: "This setting allows specifying a time interval at which we will force an fsync of data written to the log. For example if this was set to 1000 we would fsync after 1000 ms had passed. In general we recommend you not set this and use replication for durability and allow the operating system's background flush capabilities as it is more efficient.",
  },
  'follower.replication.throttled.replicas': {
    default: '',
    doc: "A list of replicas for which log replication should be throttled on the follower side. The list should describe a set of replicas in the form [PartitionId]:[BrokerId],[PartitionId]:[BrokerId]:... or alternatively the wildcard '*' can be used to throttle all replicas for this topic.",
  },
  'index.interval.bytes': {
    default: '4096',
    doc: "This setting controls how frequently Kafka adds an index entry to its offset index. The default setting ensures that we index a message roughly every 4096 bytes. More indexing allows reads to jump closer to the exact position in the log but makes the index larger. You probably don't need to change this.",
  },
  'leader.replication.throttled.replicas': {
    default: '',
    doc: "A list of replicas for which log replication should be throttled on the leader side. The list should describe a set of replicas in the form [PartitionId]:[BrokerId],[PartitionId]:[BrokerId]:... or alternatively the wildcard '*' can be used to throttle all replicas for this topic.",
  },
  'local.retention.bytes': {
    default: '-2',
    doc: 'The maximum size of local log segments that can grow for a partition before it deletes the old segments. Default value is -2, it represents `retention.bytes` value to be used. The effective value should always be less than or equal to `retention.bytes` value.',
  },
  'local.retention.ms': {
    default: '-2',
    doc: 'The number of milliseconds to keep the local log segment before it gets deleted. Default value is -2, it represents `retention.ms` value is to be used. The effective value should always be less than or equal to `retention.ms` value.',
  },
  'max.compaction.lag.ms': {
    default: '9223372036854775807',
    doc: 'The maximum time a message will remain ineligible for compaction in the log. Only applicable for logs that are being compacted.',
  },
  'max.message.bytes': {
    default: '1048588',
    doc: "The largest record batch size allowed by Kafka (after compression if compression is enabled). If this is increased and there are consumers older than 0.10.2, the consumers' fetch size must also be increased so that they can fetch record batches this large. In the latest message format version, records are always grouped into batches for efficiency. In previous message format versions, uncompressed records are not grouped into batches and this limit only applies to a single record in that case.",
  },
  'message.downconversion.enable': {
    default: 'true',
    choices: BOOLEAN,
    doc: 'Down-conversion is not possible in Apache Kafka 4.0 and newer, hence this configuration is no-op and it is deprecated for removal in Apache Kafka 5.0.',
  },
  'message.timestamp.after.max.ms': {
    default: '3600000',
    doc: "This configuration sets the allowable timestamp difference between the message timestamp and the broker's timestamp. The message timestamp can be later than or equal to the broker's timestamp, with the maximum allowable difference determined by the value set in this configuration. If message.timestamp.type=CreateTime, the message will be rejected if the difference in timestamps exceeds this specified threshold. This configuration is ignored if message.timestamp.type=LogAppendTime.",
  },
  'message.timestamp.before.max.ms': {
    default: '9223372036854775807',
    doc: "This configuration sets the allowable timestamp difference between the broker's timestamp and the message timestamp. The message timestamp can be earlier than or equal to the broker's timestamp, with the maximum allowable difference determined by the value set in this configuration. If message.timestamp.type=CreateTime, the message will be rejected if the difference in timestamps exceeds this specified threshold. This configuration is ignored if message.timestamp.type=LogAppendTime.",
  },
  'message.timestamp.type': {
    default: 'CreateTime',
    choices: ['CreateTime', 'LogAppendTime'],
    doc: 'Define whether the timestamp in the message is message create time or log append time.',
  },
  'min.cleanable.dirty.ratio': {
    default: '0.5',
    doc: 'This configuration controls how frequently the log compactor will attempt to clean the log (assuming log compaction is enabled). By default we will avoid cleaning a log where more than 50% of the log has been compacted. This ratio bounds the maximum space wasted in the log by duplicates (at 50% at most 50% of the log could be duplicates). A higher ratio will mean fewer, more efficient cleanings but will mean more wasted space in the log. If the max.compaction.lag.ms or the min.compaction.lag.ms configurations are also specified, then the log compactor considers the log to be eligible for compaction as soon as either: (i) the dirty ratio threshold has been met and the log has had dirty (uncompacted) records for at least the min.compaction.lag.ms duration, or (ii) if the log has had dirty (uncompacted) records for at most the max.compaction.lag.ms period.',
  },
  'min.compaction.lag.ms': {
    default: '0',
    doc: 'The minimum time a message will remain uncompacted in the log. Only applicable for logs that are being compacted.',
  },
  'min.insync.replicas': {
    default: '1',
    doc: 'When a producer sets acks to "all" (or "-1"), this configuration specifies the minimum number of replicas that must acknowledge a write for the write to be considered successful. If this minimum cannot be met, then the producer will raise an exception (either NotEnoughReplicas or NotEnoughReplicasAfterAppend). When used together, min.insync.replicas and acks allow you to enforce greater durability guarantees. A typical scenario would be to create a topic with a replication factor of 3, set min.insync.replicas to 2, and produce with acks of "all". This will ensure that the producer raises an exception if a majority of replicas do not receive a write.',
  },
  preallocate: {
    default: 'false',
    choices: BOOLEAN,
    doc: 'True if we should preallocate the file on disk when creating a new log segment.',
  },
  'remote.log.copy.disable': {
    default: 'false',
    choices: BOOLEAN,
    doc: 'Determines whether tiered data for a topic should become read only, and no more data uploading on a topic. Once this config is set to true, the local retention configuration (i.e. local.retention.ms/bytes) becomes irrelevant, and all data expiration follows the topic-wide retention configuration (i.e. retention.ms/bytes).',
  },
  'remote.log.delete.on.disable': {
    default: 'false',
    choices: BOOLEAN,
    doc: 'Determines whether tiered data for a topic should be deleted after tiered storage is disabled on a topic. This configuration should be enabled when trying to set `remote.storage.enable` from true to false',
  },
  'remote.storage.enable': {
    default: 'false',
    choices: BOOLEAN,
    doc: 'To enable tiered storage for a topic, set this configuration as true. You can not disable this config once it is enabled. It will be provided in future versions.',
  },
  'retention.bytes': {
    default: '-1',
    doc: 'This configuration controls the maximum size a partition (which consists of log segments) can grow to before we will discard old log segments to free up space if we are using the "delete" retention policy. By default there is no size limit only a time limit. Since this limit is enforced at the partition level, multiply it by the number of partitions to compute the topic retention in bytes. Additionally, retention.bytes configuration operates independently of "segment.ms" and "segment.bytes" configurations. Moreover, it triggers the rolling of new segment if the retention.bytes is configured to zero.',
  },
  'retention.ms': {
    default: '604800000',
    doc: 'This configuration controls the maximum time we will retain a log before we will discard old log segments to free up space if we are using the "delete" retention policy. This represents an SLA on how soon consumers must read their data. If set to -1, no time limit is applied. Additionally, retention.ms configuration operates independently of "segment.ms" and "segment.bytes" configurations. Moreover, it triggers the rolling of new segment if the retention.ms condition is satisfied.',
  },
  'segment.bytes': {
    default: '1073741824',
    doc: 'This configuration controls the segment file size for the log. Retention and cleaning is always done a file at a time so a larger segment size means fewer files but less granular control over retention.',
  },
  'segment.index.bytes': {
    default: '10485760',
    doc: 'This configuration controls the size of the index that maps offsets to file positions. We preallocate this index file and shrink it only after log rolls. You generally should not need to change this setting.',
  },
  'segment.jitter.ms': {
    default: '0',
    doc: 'The maximum random jitter subtracted from the scheduled segment roll time to avoid thundering herds of segment rolling',
  },
  'segment.ms': {
    default: '604800000',
    doc: "This configuration controls the period of time after which Kafka will force the log to roll even if the segment file isn't full to ensure that retention can delete or compact old data.",
  },
  'unclean.leader.election.enable': {
    default: 'false',
    choices: BOOLEAN,
    doc: 'Indicates whether to enable replicas not in the ISR set to be elected as leader as a last resort, even though doing so may result in data loss.',
  },
};

/** What the console knows of a config: `{ default, doc, choices }`, or null. */
export function topicConfig(name) {
  return Object.hasOwn(TOPIC_CONFIGS, name) ? TOPIC_CONFIGS[name] : null;
}
