#!/usr/bin/env python3
"""confluent-kafka (current bundled librdkafka) interop suite.

    BOOTSTRAP=127.0.0.1:9092 python3 compat/confluent_kafka_test.py

Covers: AdminClient create_topics + list_topics (partition count, leaders), an idempotent
Producer with acks=all sending N keyed records (delivery reports: offsets contiguous per
partition), watermarks, consuming everything from the beginning (assign at OFFSET_BEGINNING)
and comparing keys/values, and a consumer group with manual commits: member 1 consumes part
of the topic, commits synchronously and checks committed(); member 2 in the same group must
resume exactly after the committed offsets, commits, and committed() must equal the high
watermarks; then AdminClient.delete_consumer_groups deletes the (now empty) group with its
offsets (NON_EMPTY_GROUP for a group with a member, GROUP_ID_NOT_FOUND for one that never
existed; confluent-kafka 2.16 has no wrapper for OffsetDelete); then topic configs:
create_topics with configs, describe_configs (sources), INVALID_CONFIG for bad values and
names, incremental_alter_configs (SET, DELETE, APPEND, SUBTRACT, validate_only, errors) and
alter_configs (replaces every override; a lowered max.message.bytes refuses a larger record
with MSG_SIZE_TOO_LARGE); AdminClient.list_offsets with every OffsetSpec (max_timestamp:
the first record with the largest timestamp, KIP-734; both isolation levels), and
AdminClient.describe_cluster (this broker as node and controller, the cluster id Metadata
reports, the cluster's authorized operations); a compacted topic refusing a keyless record
with INVALID_RECORD while taking keyed ones. Then transactions (each on a single-partition
topic): a transactional producer commits, aborts and commits while another leaves a transaction
open between them: a read_committed consumer stops at the open one (librdkafka's partition EOF
at the last stable offset), read_uncommitted reads everything, and once it commits
read_committed reads exactly the committed records; zombie fencing (init_transactions of a
second producer with the same transactional.id: the first one's commit_transaction fails with
fatal _FENCED, its open transaction is aborted); a transaction left open past
transaction.timeout.ms is aborted by the broker (the records behind it become readable
read_committed, its commit fails with _FENCED); consume-transform-produce with
send_offsets_to_transaction and the consumer's group metadata (the group's committed offset
moves with commits only, the output holds each input record once). confluent-kafka 2.16 has no
AdminClient call for DescribeTransactions or ListTransactions. Last, a KIP-848 consumer group
(group.protocol=consumer): two consumers split a topic's partitions between them without ever
owning one at the same time, each commits its partitions at its member epoch and committed()
reads them back, describe_consumer_groups (ConsumerGroupDescribe) and list_consumer_groups
report a group of type CONSUMER, and when one consumer closes the other gets every partition;
the emptied group is deleted. Exit code 0 = pass.
Knobs: COMPAT_RECORDS (default 60), COMPAT_STEP_TIMEOUT seconds (default 60),
       COMPAT_TIMEOUT whole-script seconds (default 240), LIBRDKAFKA_DEBUG=protocol,broker,cgrp.
"""

import faulthandler
import os
import sys
import time
import uuid

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupType,
    OFFSET_INVALID,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
    libversion,
)
from confluent_kafka import version as ck_version
from confluent_kafka.admin import (
    AclOperation,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

BOOTSTRAP = os.environ.get("BOOTSTRAP")
N = int(os.environ.get("COMPAT_RECORDS", "60"))
K = N // 3  # records member 1 consumes and commits
STEP_TIMEOUT = float(os.environ.get("COMPAT_STEP_TIMEOUT", "60"))
TOTAL_TIMEOUT = float(os.environ.get("COMPAT_TIMEOUT", "240"))
PARTITIONS = 3
RUN_ID = uuid.uuid4().hex[:12]
TOPIC = f"compat-confluent-{RUN_ID}"
GROUP = f"compat-confluent-group-{RUN_ID}"

_step = 0


class SuiteFailure(Exception):
    pass


def ok(msg):
    global _step
    _step += 1
    print(f"ok {_step} - {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise SuiteFailure(msg)


def base_conf(**extra):
    conf = {
        "bootstrap.servers": BOOTSTRAP,
        "socket.timeout.ms": 10000,
        "error_cb": on_error,
    }
    if os.environ.get("LIBRDKAFKA_DEBUG"):
        conf["debug"] = os.environ["LIBRDKAFKA_DEBUG"]
    conf.update(extra)
    return conf


FATAL_ERRORS = []


def on_error(err):
    print(f"# client error: {err}", file=sys.stderr, flush=True)
    if err.fatal():
        FATAL_ERRORS.append(err)


def check_no_fatal():
    check(not FATAL_ERRORS, f"librdkafka raised fatal error(s): {FATAL_ERRORS}")


def expected_records():
    return {f"key-{i:03d}": f"value-{i:03d}-{RUN_ID}" for i in range(N)}


def poll_records(consumer, want, what):
    """Polls until `want` records arrived; returns [(partition, offset, key, value)]."""
    got = []
    deadline = time.monotonic() + STEP_TIMEOUT
    while len(got) < want:
        check_no_fatal()
        left = deadline - time.monotonic()
        if left <= 0:
            raise SuiteFailure(
                f"{what}: timed out after {STEP_TIMEOUT:.0f}s with {len(got)}/{want} records"
            )
        msg = consumer.poll(min(1.0, left))
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise SuiteFailure(f"{what}: consumer error: {msg.error()}")
        got.append(
            (
                msg.partition(),
                msg.offset(),
                msg.key().decode() if msg.key() is not None else None,
                msg.value().decode() if msg.value() is not None else None,
            )
        )
    return got


def committed_offsets(conf, topic=TOPIC, partitions=PARTITIONS):
    """The group's committed offset per partition, read by a client that does not join it."""
    reader = Consumer(conf)
    try:
        committed = reader.committed([TopicPartition(topic, p) for p in range(partitions)],
                                     timeout=STEP_TIMEOUT)
    finally:
        reader.close()
    for tp in committed:
        check(tp.error is None, f"committed(): partition {tp.partition} error {tp.error}")
    return {tp.partition: tp.offset for tp in committed}


def admin_error(future):
    """The KafkaError code an admin future fails with, or None when it succeeds."""
    try:
        future.result(timeout=STEP_TIMEOUT)
    except KafkaException as e:
        return e.args[0].code()
    return None


def topic_configs(admin, topic):
    """{name: (value, source)} of every config of a topic, from describe_configs."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    futures = admin.describe_configs([resource], request_timeout=STEP_TIMEOUT)
    entries = futures[resource].result(timeout=STEP_TIMEOUT)
    # The source is a ConfigSource; compared by its code.
    return {name: (entry.value, getattr(entry.source, "value", entry.source))
            for name, entry in entries.items()}


def incremental(admin, topic, ops, validate_only=False):
    """incremental_alter_configs of one topic with [(name, value, AlterConfigOpType)]; the
    KafkaError code it fails with, or None."""
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=op) for name, value, op in ops])
    futures = admin.incremental_alter_configs([resource], validate_only=validate_only,
                                              request_timeout=STEP_TIMEOUT)
    return admin_error(futures[resource])


def check_topic_configs(admin):
    topic = f"{TOPIC}-configs"
    dynamic, default = ConfigSource.DYNAMIC_TOPIC_CONFIG.value, ConfigSource.DEFAULT_CONFIG.value
    overrides = {"cleanup.policy": "compact", "retention.ms": "3600000",
                 "message.timestamp.type": "LogAppendTime"}
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                            config=overrides)],
                                  request_timeout=STEP_TIMEOUT)
    check(admin_error(futures[topic]) is None, f"create_topics({topic}) with configs failed")
    got = topic_configs(admin, topic)
    want = {name: (value, dynamic) for name, value in overrides.items()}
    check({name: got.get(name) for name in overrides} == want,
          f"describe_configs: {[(n, got.get(n)) for n in overrides]}, expected {want}")
    check(got.get("segment.bytes") == ("1073741824", default),
          f"describe_configs segment.bytes: {got.get('segment.bytes')}")
    check(len(got) >= 36, f"describe_configs: {len(got)} configs, expected every Kafka 4 one")
    ok("create_topics with configs; describe_configs shows them as DYNAMIC_TOPIC_CONFIG, "
       "the others as DEFAULT_CONFIG")

    refused = {f"{topic}-bad-value": {"retention.ms": "soon"},
               f"{topic}-bad-name": {"flux.capacitor": "1"},
               f"{topic}-removed": {"message.format.version": "3.0"}}
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1,
                                            config=config) for name, config in refused.items()],
                                  request_timeout=STEP_TIMEOUT)
    errors = {name: admin_error(f) for name, f in futures.items()}
    check(errors == {name: KafkaError.INVALID_CONFIG for name in refused},
          f"create_topics with bad configs: {errors}")
    ok("create_topics refuses a bad value, an unknown name and a name removed in Kafka 4 "
       "with INVALID_CONFIG")

    error = incremental(admin, topic, [
        ("segment.ms", "600000", AlterConfigOpType.SET),
        ("retention.ms", None, AlterConfigOpType.DELETE),
        ("cleanup.policy", "delete", AlterConfigOpType.APPEND)])
    check(error is None, f"incremental_alter_configs failed: {error}")
    got = topic_configs(admin, topic)
    want = {"segment.ms": ("600000", dynamic), "retention.ms": ("604800000", default),
            "cleanup.policy": ("compact,delete", dynamic),
            "message.timestamp.type": ("LogAppendTime", dynamic)}
    check({name: got.get(name) for name in want} == want,
          f"after incremental_alter_configs: {[(n, got.get(n)) for n in want]}, expected {want}")
    error = incremental(admin, topic, [("cleanup.policy", "compact", AlterConfigOpType.SUBTRACT)])
    check(error is None, f"incremental_alter_configs SUBTRACT failed: {error}")
    check(topic_configs(admin, topic).get("cleanup.policy") == ("delete", dynamic),
          "SUBTRACT compact from compact,delete")
    ok("incremental_alter_configs SET, DELETE, APPEND and SUBTRACT edit the overrides")

    errors = [
        incremental(admin, topic, [("retention.ms", "5", AlterConfigOpType.APPEND)]),
        incremental(admin, topic, [("segment.ms", "0", AlterConfigOpType.SET)]),
        incremental(admin, f"{topic}-missing", [("segment.ms", "1", AlterConfigOpType.SET)]),
        incremental(admin, topic, [("segment.ms", "1", AlterConfigOpType.SET)],
                    validate_only=True),
    ]
    want = [KafkaError.INVALID_CONFIG, KafkaError.INVALID_CONFIG,
            KafkaError.UNKNOWN_TOPIC_OR_PART, None]
    check(errors == want, f"incremental_alter_configs refusals: {errors}, expected {want}")
    check(topic_configs(admin, topic).get("segment.ms") == ("600000", dynamic),
          "refused and validate_only changes left segment.ms alone")
    ok("incremental_alter_configs: INVALID_CONFIG for APPEND to a LONG and for a bad value, "
       "UNKNOWN_TOPIC_OR_PART for a missing topic, validate_only changes nothing")

    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"max.message.bytes": "2000"})
    futures = admin.alter_configs([resource], request_timeout=STEP_TIMEOUT)
    check(admin_error(futures[resource]) is None, "alter_configs failed")
    got = topic_configs(admin, topic)
    want = {"max.message.bytes": ("2000", dynamic), "segment.ms": ("604800000", default),
            "cleanup.policy": ("delete", default), "message.timestamp.type": ("CreateTime", default)}
    check({name: got.get(name) for name in want} == want,
          f"after alter_configs: {[(n, got.get(n)) for n in want]}, expected {want}")
    delivered = []
    producer = Producer(base_conf(**{"acks": "all", "linger.ms": 0}))
    remaining = 0
    for size in (100, 5000):
        # One record per batch: the broker refuses a batch as a whole.
        producer.produce(topic, key=b"k", value=b"x" * size,
                         on_delivery=lambda err, msg: delivered.append(err and err.code()))
        remaining += producer.flush(STEP_TIMEOUT)
    check(remaining == 0 and delivered == [None, KafkaError.MSG_SIZE_TOO_LARGE],
          f"produce after lowering max.message.bytes: {delivered}")
    ok("alter_configs replaces every override; the lowered max.message.bytes refuses a "
       "5000-byte record with MSG_SIZE_TOO_LARGE at once")


def create_topic(admin, topic, partitions, config=None):
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=STEP_TIMEOUT,
    )
    try:
        futures[topic].result(timeout=STEP_TIMEOUT)
    except Exception as e:
        raise SuiteFailure(f"AdminClient.create_topics({topic}) failed: {e!r}") from e


def check_list_offsets_and_cluster(admin):
    """list_offsets with every OffsetSpec, describe_cluster, and keyless records refused on
    a compacted topic."""
    topic = f"{TOPIC}-times"
    create_topic(admin, topic, 1)
    # Out of order, the largest twice (offsets 1 and 3): Kafka answers the first.
    base = int(time.time() * 1000) - 60_000
    offsets_ms = [3000, 9000, 1000, 9000, 5000]
    producer = Producer(base_conf(**{"acks": "all", "linger.ms": 0}))
    failures = []
    for i, ms in enumerate(offsets_ms):
        producer.produce(topic, key=b"k", value=f"t{i}".encode(), partition=0, timestamp=base + ms,
                         on_delivery=lambda err, msg: err and failures.append(err))
        producer.flush(STEP_TIMEOUT)
    check(not failures, f"produce with timestamps failed: {failures}")
    tp = TopicPartition(topic, 0)

    def listed(spec, **kwargs):
        futures = admin.list_offsets({tp: spec}, request_timeout=STEP_TIMEOUT, **kwargs)
        info = futures[tp].result(timeout=STEP_TIMEOUT)
        return info.offset, info.timestamp

    got = listed(OffsetSpec.max_timestamp())
    check(got == (1, base + 9000), f"list_offsets(max_timestamp): {got}, expected (1, {base + 9000})")
    check(listed(OffsetSpec.earliest())[0] == 0, "list_offsets(earliest) is not 0")
    check(listed(OffsetSpec.latest())[0] == len(offsets_ms), "list_offsets(latest) is not the end")
    got = listed(OffsetSpec.for_timestamp(base + 4000))
    check(got == (1, base + 9000), f"list_offsets(for_timestamp): {got}, expected (1, {base + 9000})")
    committed = listed(OffsetSpec.latest(), isolation_level=IsolationLevel.READ_COMMITTED)[0]
    check(committed == len(offsets_ms), f"list_offsets(latest, read_committed): {committed}")
    ok("AdminClient.list_offsets: max_timestamp finds the first record with the largest "
       "timestamp; earliest, latest, for_timestamp and read_committed agree")

    cluster = admin.describe_cluster(include_authorized_operations=True,
                                     request_timeout=STEP_TIMEOUT).result(timeout=STEP_TIMEOUT)
    host, port = BOOTSTRAP.rsplit(":", 1)
    check(len(cluster.nodes) == 1, f"describe_cluster: nodes {cluster.nodes}")
    node = cluster.nodes[0]
    check((node.host, node.port) == (host, int(port)),
          f"describe_cluster: node at {node.host}:{node.port}, expected {BOOTSTRAP}")
    check(cluster.controller is not None and cluster.controller.id == node.id,
          f"describe_cluster: controller {cluster.controller}, expected node {node.id}")
    metadata_cluster_id = admin.list_topics(timeout=STEP_TIMEOUT).cluster_id
    check(cluster.cluster_id and cluster.cluster_id == metadata_cluster_id,
          f"describe_cluster: cluster id {cluster.cluster_id!r}, Metadata says {metadata_cluster_id!r}")
    operations = set(cluster.authorized_operations or [])
    for wanted in (AclOperation.DESCRIBE, AclOperation.ALTER, AclOperation.CREATE):
        check(wanted in operations, f"describe_cluster: {wanted} missing from {operations}")
    ok(f"AdminClient.describe_cluster: node {node.id} at {BOOTSTRAP} is the controller of "
       f"cluster {cluster.cluster_id}; authorized operations reported")

    compacted = f"{TOPIC}-compacted"
    create_topic(admin, compacted, 1, {"cleanup.policy": "compact"})
    outcomes = {}
    producer = Producer(base_conf(**{"acks": "all", "retries": 0}))
    producer.produce(compacted, value=b"no key", partition=0,
                     on_delivery=lambda err, msg: outcomes.__setitem__("keyless", err))
    # Flushed apart: in one batch, the keyed record would be refused with the keyless one.
    producer.flush(STEP_TIMEOUT)
    producer.produce(compacted, key=b"k", value=b"keyed", partition=0,
                     on_delivery=lambda err, msg: outcomes.__setitem__("keyed", err))
    producer.flush(STEP_TIMEOUT)
    keyless = outcomes.get("keyless")
    check(keyless is not None and keyless.code() == KafkaError.INVALID_RECORD,
          f"keyless record on a compacted topic: {keyless}, expected INVALID_RECORD")
    check("keyed" in outcomes and outcomes["keyed"] is None,
          f"keyed record on a compacted topic: {outcomes.get('keyed', 'no report')}")
    ok("a compacted topic refuses a keyless record with INVALID_RECORD and takes a keyed one")


# --- transactions -----------------------------------------------------------------------
TXN_TIMEOUT_MS = 2000  # the transaction left open for the broker to abort


def on_expected_fatal(err):
    """error_cb of a producer that is meant to be fenced: its fatal error is not the suite's."""
    print(f"# expected client error: {err}", file=sys.stderr, flush=True)


def txn_producer(txn_id, **extra):
    """A transactional producer after init_transactions."""
    producer = Producer(base_conf(**{"transactional.id": txn_id, "acks": "all", **extra}))
    producer.init_transactions(STEP_TIMEOUT)
    return producer


def produce_values(producer, topic, values):
    for value in values:
        producer.produce(topic, value=value.encode(), partition=0)
    check(producer.flush(STEP_TIMEOUT) == 0, f"flush to {topic}: records left undelivered")


def read_values(topic, isolation, until=None):
    """The values of partition 0 of `topic` from the beginning, as an `isolation.level` consumer
    reads them: up to and including the value `until`, or, without it, up to the end of the
    partition as that level sees it (the last stable offset for read_committed: librdkafka
    reports the partition's EOF there)."""
    reader = Consumer(base_conf(**{"group.id": f"{GROUP}-txn-reader", "isolation.level": isolation,
                                   "enable.auto.commit": False, "enable.partition.eof": True}))
    reader.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values = []
    deadline = time.monotonic() + STEP_TIMEOUT
    try:
        while until is None or until not in values:
            check_no_fatal()
            check(time.monotonic() < deadline,
                  f"{isolation} read of {topic}: no {until or 'end of partition'} within "
                  f"{STEP_TIMEOUT:.0f}s; read {values}")
            msg = reader.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if until is None:
                        break
                    continue
                raise SuiteFailure(f"{isolation} read of {topic}: {msg.error()}")
            values.append(msg.value().decode())
    finally:
        reader.close()
    return values


def fenced_error(call, what):
    """The KafkaError a transactional call fails with; fails the suite if it succeeds."""
    try:
        call()
    except KafkaException as e:
        return e.args[0]
    raise SuiteFailure(f"{what} succeeded")


def check_transactions(admin):
    """Commit and abort, read_committed and read_uncommitted, zombie fencing, the broker
    aborting a transaction past its timeout, and consume-transform-produce."""
    topic = f"{TOPIC}-txn"
    create_topic(admin, topic, 1)
    names = lambda prefix: [f"{prefix}-{i}" for i in range(3)]  # noqa: E731
    c1, aborted, held, c2 = names("c1"), names("aborted"), names("open"), names("c2")
    producer = txn_producer(f"{GROUP}-txn")
    producer.begin_transaction()
    produce_values(producer, topic, c1)
    producer.commit_transaction(STEP_TIMEOUT)
    producer.begin_transaction()
    produce_values(producer, topic, aborted)
    producer.abort_transaction(STEP_TIMEOUT)
    other = txn_producer(f"{GROUP}-txn-open")
    other.begin_transaction()
    produce_values(other, topic, held)  # stays open while c2 is committed after it
    producer.begin_transaction()
    produce_values(producer, topic, c2)
    producer.commit_transaction(STEP_TIMEOUT)
    got = read_values(topic, "read_committed")
    check(got == c1, f"read_committed with a transaction open before c2: {got}, expected {c1}")
    got = read_values(topic, "read_uncommitted", until=c2[-1])
    check(got == c1 + aborted + held + c2, f"read_uncommitted: {got}")
    ok("transactional producer: a committed, an aborted and a committed transaction, another "
       "left open between them; read_committed stops at the open one (the last stable "
       "offset), read_uncommitted reads all 12 records")
    other.commit_transaction(STEP_TIMEOUT)
    got = read_values(topic, "read_committed", until=c2[-1])
    check(got == c1 + held + c2, f"read_committed after the open transaction committed: {got}, "
          f"expected {c1 + held + c2}")
    check_no_fatal()
    ok("once the open transaction commits, read_committed reads exactly the committed records "
       "in offset order, none of the aborted one")

    # Zombie fencing: a second producer with the same transactional.id.
    topic = f"{TOPIC}-fence"
    create_topic(admin, topic, 1)
    txn_id = f"{GROUP}-fence"
    zombie = txn_producer(txn_id, error_cb=on_expected_fatal)
    zombie.begin_transaction()
    produce_values(zombie, topic, ["zombie-0", "zombie-1"])
    successor = txn_producer(txn_id)
    err = fenced_error(lambda: zombie.commit_transaction(STEP_TIMEOUT),
                       "commit_transaction of the fenced producer")
    check(err.code() == KafkaError._FENCED and err.fatal(),
          f"the fenced producer's commit_transaction: {err}, expected a fatal _FENCED")
    successor.begin_transaction()
    produce_values(successor, topic, ["successor-0"])
    successor.commit_transaction(STEP_TIMEOUT)
    got = read_values(topic, "read_committed", until="successor-0")
    check(got == ["successor-0"], f"read_committed after fencing: {got}, expected only successor-0")
    check_no_fatal()
    ok("zombie fencing: init_transactions of a second producer with the same transactional.id "
       "aborts the first one's open transaction; its commit_transaction fails with fatal _FENCED")

    # A transaction left open past transaction.timeout.ms is aborted by the broker.
    topic = f"{TOPIC}-timeout"
    create_topic(admin, topic, 1)
    # librdkafka wants socket.timeout.ms <= transaction.timeout.ms + 100.
    stuck = txn_producer(f"{GROUP}-stuck", error_cb=on_expected_fatal,
                         **{"transaction.timeout.ms": TXN_TIMEOUT_MS,
                            "socket.timeout.ms": TXN_TIMEOUT_MS})
    stuck.begin_transaction()
    produce_values(stuck, topic, ["stuck-0", "stuck-1"])
    started = time.monotonic()
    after = txn_producer(f"{GROUP}-after")
    after.begin_transaction()
    produce_values(after, topic, ["after-0"])
    after.commit_transaction(STEP_TIMEOUT)
    got = read_values(topic, "read_committed", until="after-0")
    waited = time.monotonic() - started
    check(got == ["after-0"], f"read_committed after the timeout: {got}, expected only after-0")
    err = fenced_error(lambda: stuck.commit_transaction(STEP_TIMEOUT),
                       "commit_transaction of a transaction past its timeout")
    check(err.code() == KafkaError._FENCED and err.fatal(),
          f"commit_transaction past the timeout: {err}, expected a fatal _FENCED")
    check_no_fatal()
    ok(f"the broker aborted a transaction open past transaction.timeout.ms={TXN_TIMEOUT_MS} "
       f"(the records behind it readable read_committed after {waited:.1f}s); its producer's "
       "commit_transaction then fails with fatal _FENCED")

    check_consume_transform_produce(admin)


def check_consume_transform_produce(admin):
    """A consumer in a group reads `in`, a transactional producer writes what it read to `out`
    and commits the consumer's offsets with send_offsets_to_transaction."""
    source, sink = f"{TOPIC}-ctp-in", f"{TOPIC}-ctp-out"
    create_topic(admin, source, 1)
    create_topic(admin, sink, 1)
    group = f"{GROUP}-ctp"
    plain = Producer(base_conf(**{"acks": "all"}))
    produce_values(plain, source, [f"in-{i}" for i in range(10)])
    group_conf = base_conf(**{"group.id": group, "isolation.level": "read_committed",
                              "enable.auto.commit": False, "auto.offset.reset": "earliest",
                              "session.timeout.ms": 10000})
    consumer = Consumer(group_conf)
    consumer.subscribe([source])
    producer = txn_producer(f"{GROUP}-ctp")

    def transform(round_no, count, commit):
        records = poll_records(consumer, count, f"consume-transform-produce round {round_no}")
        producer.begin_transaction()
        produce_values(producer, sink, [f"out-{value}-r{round_no}" for _, _, _, value in records])
        next_offset = records[-1][1] + 1
        producer.send_offsets_to_transaction([TopicPartition(source, 0, next_offset)],
                                             consumer.consumer_group_metadata(), STEP_TIMEOUT)
        if commit:
            producer.commit_transaction(STEP_TIMEOUT)
        else:
            producer.abort_transaction(STEP_TIMEOUT)
        return [value for _, _, _, value in records]

    def committed():
        return committed_offsets(group_conf, source, 1)[0]

    try:
        first = transform(1, 5, commit=True)
        check(first == [f"in-{i}" for i in range(5)], f"round 1 consumed {first}")
        check(committed() == 5, f"committed after round 1: {committed()}, expected 5")
        transform(2, 5, commit=False)
        check(committed() == 5, f"committed after the aborted round 2: {committed()}, expected 5")
        consumer.seek(TopicPartition(source, 0, 5))
        third = transform(3, 5, commit=True)
        check(third == [f"in-{i}" for i in range(5, 10)], f"round 3 consumed {third}")
        check(committed() == 10, f"committed after round 3: {committed()}, expected 10")
    finally:
        consumer.close()
    want = [f"out-in-{i}-r1" for i in range(5)] + [f"out-in-{i}-r3" for i in range(5, 10)]
    got = read_values(sink, "read_committed", until=want[-1])
    check(got == want, f"read_committed of {sink}: {got}, expected {want}")
    check_no_fatal()
    ok("consume-transform-produce: send_offsets_to_transaction with the consumer's group "
       "metadata; the group's committed offset moves with each commit (5, 10), not with the "
       "aborted round; the output holds each input record once")


def wait_assignments(consumers, done, what):
    """Polls every consumer until `done(assignments)`; returns the assigned partition sets."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        check_no_fatal()
        for consumer in consumers:
            consumer.poll(0.1)
        assignments = [{tp.partition for tp in c.assignment()} for c in consumers]
        if done(assignments):
            return assignments
        check(time.monotonic() < deadline, f"{what}: timed out with assignments {assignments}")


def check_consumer_protocol_group(admin):
    """Two consumers in a KIP-848 group (ConsumerGroupHeartbeat, broker-side assignment)."""
    topic, group = f"{TOPIC}-kip848", f"{GROUP}-kip848"
    create_topic(admin, topic, 4)
    conf = base_conf(**{"group.id": group, "group.protocol": "consumer",
                        "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c1 = Consumer(conf)
    c1.subscribe([topic])
    wait_assignments([c1], lambda a: len(a[0]) == 4, "member 1 owning all 4 partitions")
    c2 = Consumer(conf)
    c2.subscribe([topic])

    def split(assignments):
        first, second = assignments
        check(not first & second, f"partitions owned by both members at once: {first & second}")
        return len(first) == 2 and len(second) == 2

    first, second = wait_assignments([c1, c2], split, "4 partitions split 2/2")
    ok(f"group.protocol=consumer: two members split the partitions {sorted(first)} / "
       f"{sorted(second)}, never owning one at the same time")

    for consumer, mine, offset in ((c1, first, 1), (c2, second, 2)):
        result = consumer.commit(offsets=[TopicPartition(topic, p, offset) for p in sorted(mine)],
                                 asynchronous=False)
        errors = [tp for tp in result or [] if tp.error]
        check(not errors, f"commit at the member epoch failed: {errors}")
    want = {p: 1 if p in first else 2 for p in range(4)}
    for consumer in (c1, c2):
        got = {tp.partition: tp.offset
               for tp in consumer.committed([TopicPartition(topic, p) for p in range(4)],
                                            timeout=STEP_TIMEOUT)}
        check(got == want, f"committed() by a member: {got}, expected {want}")
    ok("each member committed its own partitions (OffsetCommit v9 at its member epoch); "
       "committed() (OffsetFetch v9) reads them back")

    described = admin.describe_consumer_groups([group], request_timeout=STEP_TIMEOUT)[group]
    described = described.result(timeout=STEP_TIMEOUT)
    check(described.type == ConsumerGroupType.CONSUMER,
          f"describe_consumer_groups: type {described.type}, expected CONSUMER")
    check(described.partition_assignor == "uniform",
          f"describe_consumer_groups: assignor {described.partition_assignor!r}")
    owned = sorted(sorted(tp.partition for tp in m.assignment.topic_partitions)
                   for m in described.members)
    check(owned == sorted([sorted(first), sorted(second)]),
          f"describe_consumer_groups: members own {owned}, the consumers {first} / {second}")
    listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER},
                                        request_timeout=STEP_TIMEOUT).result(timeout=STEP_TIMEOUT)
    check(any(g.group_id == group and g.type == ConsumerGroupType.CONSUMER for g in listed.valid),
          f"list_consumer_groups(CONSUMER) misses {group}: {[g.group_id for g in listed.valid]}")
    ok("describe_consumer_groups (ConsumerGroupDescribe) and list_consumer_groups report a "
       "CONSUMER group, assignor uniform, with the members' partitions")

    c2.close()
    wait_assignments([c1], lambda a: len(a[0]) == 4, "member 1 owning all 4 partitions again")
    c1.close()
    futures = admin.delete_consumer_groups([group], request_timeout=STEP_TIMEOUT)
    check(admin_error(futures[group]) is None, "delete_consumer_groups of the emptied group")
    check_no_fatal()
    ok("when a member closes the other gets every partition; the emptied group is deleted")


def main():
    check(BOOTSTRAP, "BOOTSTRAP must be set to host:port of the broker")
    print(
        f"# confluent-kafka {ck_version()[0]}, librdkafka {libversion()[0]}; "
        f"topic {TOPIC}, group {GROUP}, {N} records, bootstrap {BOOTSTRAP}",
        flush=True,
    )
    expected = expected_records()

    # 1. AdminClient: create the topic, then list it.
    admin = AdminClient(base_conf())
    futures = admin.create_topics(
        [NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)],
        operation_timeout=STEP_TIMEOUT / 2,
        request_timeout=STEP_TIMEOUT / 2,
    )
    try:
        futures[TOPIC].result(timeout=STEP_TIMEOUT)
    except Exception as e:
        raise SuiteFailure(f"AdminClient.create_topics({TOPIC}) failed: {e!r}") from e
    ok(f"AdminClient.create_topics created {TOPIC} with {PARTITIONS} partitions")

    md = admin.list_topics(timeout=STEP_TIMEOUT)
    check(len(md.brokers) == 1, f"list_topics: expected 1 broker, got {md.brokers}")
    check(TOPIC in md.topics, f"list_topics: {TOPIC} missing from {sorted(md.topics)}")
    tmd = md.topics[TOPIC]
    check(tmd.error is None, f"list_topics: topic error {tmd.error}")
    check(
        sorted(tmd.partitions) == list(range(PARTITIONS)),
        f"list_topics: partitions {sorted(tmd.partitions)}, expected 0..{PARTITIONS - 1}",
    )
    broker_ids = set(md.brokers)
    for p in tmd.partitions.values():
        check(p.error is None, f"list_topics: partition {p.id} error {p.error}")
        check(p.leader in broker_ids, f"list_topics: partition {p.id} leader {p.leader} unknown")
    ok(f"AdminClient.list_topics shows {TOPIC} with {PARTITIONS} partitions, all led")

    # 2. Idempotent producer, acks=all.
    producer = Producer(
        base_conf(**{"acks": "all", "enable.idempotence": True, "message.timeout.ms": 30000})
    )
    delivered = []
    failures = []

    def on_delivery(err, msg):
        if err is not None:
            failures.append((msg.key(), err))
        else:
            delivered.append((msg.partition(), msg.offset(), msg.key().decode()))

    for key, value in expected.items():
        producer.produce(TOPIC, key=key.encode(), value=value.encode(), on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(STEP_TIMEOUT)
    check_no_fatal()
    check(remaining == 0, f"Producer.flush: {remaining} records still undelivered after {STEP_TIMEOUT:.0f}s")
    check(not failures, f"delivery failures: {failures[:5]}")
    check(len(delivered) == N, f"{len(delivered)} delivery reports, expected {N}")
    per_partition = {}
    for part, off, _ in delivered:
        per_partition.setdefault(part, []).append(off)
    for part, offs in per_partition.items():
        check(
            sorted(offs) == list(range(len(offs))),
            f"partition {part}: delivered offsets {sorted(offs)} are not 0..{len(offs) - 1}",
        )
    ok(f"idempotent producer (acks=all) delivered {N} keyed records, offsets contiguous per partition")

    # 3. Consume everything from the beginning (no group commits) and compare.
    reader = Consumer(
        base_conf(**{"group.id": f"{GROUP}-reader", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest"})
    )
    reader.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    records = poll_records(reader, N, "consume from beginning")
    got = {k: v for _, _, k, v in records}
    check(len(records) == N and got == expected,
          f"consumed records differ: {len(records)} records, "
          f"missing {sorted(set(expected) - set(got))[:5]}, "
          f"wrong values {[k for k in got if expected.get(k) != got[k]][:5]}")
    check(
        sorted((p, o) for p, o, _, _ in records) == sorted((p, o) for p, o, _ in delivered),
        "consumed (partition, offset) pairs differ from the producer's delivery reports",
    )
    high = {}
    for p in range(PARTITIONS):
        lo, hi = reader.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=STEP_TIMEOUT)
        check(lo == 0, f"partition {p}: low watermark {lo}, expected 0")
        check(hi == len(per_partition.get(p, [])),
              f"partition {p}: high watermark {hi}, expected {len(per_partition.get(p, []))}")
        high[p] = hi
    reader.close()
    ok(f"consumed all {N} records from the beginning; keys, values, offsets and watermarks match")

    # 4. Group member 1: consume K, commit synchronously, verify with committed().
    group_conf = base_conf(**{"group.id": GROUP, "enable.auto.commit": False,
                              "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
    c1 = Consumer(group_conf)
    c1.subscribe([TOPIC])
    first = poll_records(c1, K, "group member 1")
    next_offsets = {}
    for p, o, _, _ in first:
        next_offsets[p] = max(next_offsets.get(p, 0), o + 1)
    to_commit = [TopicPartition(TOPIC, p, o) for p, o in sorted(next_offsets.items())]
    result = c1.commit(offsets=to_commit, asynchronous=False)
    errs = [tp for tp in result or [] if tp.error]
    check(not errs, f"member 1 commit errors: {errs}")
    committed = c1.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)],
                             timeout=STEP_TIMEOUT)
    for tp in committed:
        check(tp.error is None, f"committed(): partition {tp.partition} error {tp.error}")
        want = next_offsets.get(tp.partition, OFFSET_INVALID)
        check(tp.offset == want,
              f"committed(): partition {tp.partition} offset {tp.offset}, expected {want}")
    c1.close()
    ok(f"group {GROUP} member 1 consumed {K} records, committed {dict(sorted(next_offsets.items()))}, "
       "committed() agrees")

    # 5. Group member 2 resumes after the committed offsets.
    c2 = Consumer(group_conf)
    c2.subscribe([TOPIC])
    second = poll_records(c2, N - K, "group member 2")
    first_keys = {k for _, _, k, _ in first}
    second_keys = {k for _, _, k, _ in second}
    again = sorted(first_keys & second_keys)
    check(not again, f"member 2 re-consumed records member 1 committed: {again[:5]}")
    for p, o, _, _ in second:
        check(o >= next_offsets.get(p, 0),
              f"member 2 got partition {p} offset {o}, below the committed {next_offsets.get(p, 0)}")
    check(first_keys | second_keys == set(expected),
          f"members 1+2 missed records: {sorted(set(expected) - first_keys - second_keys)[:5]}")
    final = [TopicPartition(TOPIC, p, high[p]) for p in range(PARTITIONS)]
    result = c2.commit(offsets=final, asynchronous=False)
    errs = [tp for tp in result or [] if tp.error]
    check(not errs, f"member 2 commit errors: {errs}")
    committed = c2.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)],
                             timeout=STEP_TIMEOUT)
    got_committed = {tp.partition: tp.offset for tp in committed}
    check(got_committed == high,
          f"committed() after member 2: {got_committed}, expected the high watermarks {high}")
    c2.close()
    check_no_fatal()
    ok(f"group member 2 resumed after the committed offsets ({N - K} records), "
       f"committed() == high watermarks {high}")

    # 6. Both members left: the group is empty and can be deleted, offsets included; a group
    #    with a member and an unknown group are refused.
    busy_group = f"{GROUP}-busy"
    busy = Consumer(base_conf(**{"group.id": busy_group, "enable.auto.commit": False,
                                 "session.timeout.ms": 10000}))
    busy.subscribe([TOPIC])
    deadline = time.monotonic() + STEP_TIMEOUT
    while not busy.assignment():
        check(time.monotonic() < deadline, f"{busy_group} got no partitions")
        busy.poll(0.2)
    missing_group = f"{GROUP}-never-was"
    futures = admin.delete_consumer_groups([GROUP, busy_group, missing_group],
                                           request_timeout=STEP_TIMEOUT)
    errors = {g: admin_error(f) for g, f in futures.items()}
    expected_errors = {GROUP: None, busy_group: KafkaError.NON_EMPTY_GROUP,
                       missing_group: KafkaError.GROUP_ID_NOT_FOUND}
    check(errors == expected_errors,
          f"delete_consumer_groups: {errors}, expected {expected_errors}")
    busy.close()
    left = committed_offsets(group_conf)
    check(all(o == OFFSET_INVALID for o in left.values()),
          f"committed() after deleting the group: {left}, expected none")
    check_no_fatal()
    ok("AdminClient.delete_consumer_groups deleted the empty group with its offsets; "
       "NON_EMPTY_GROUP for a group with a member, GROUP_ID_NOT_FOUND for an unknown one")

    # 7. Topic configs.
    check_topic_configs(admin)

    # 8. ListOffsets by spec, DescribeCluster, keyless records on a compacted topic.
    check_list_offsets_and_cluster(admin)

    # 9. Transactions.
    check_transactions(admin)

    # 10. A KIP-848 consumer group (group.protocol=consumer).
    check_consumer_protocol_group(admin)

    print(f"confluent-kafka suite: PASS ({_step} checks)", flush=True)
    return 0


if __name__ == "__main__":
    print(f"# watchdog: the whole suite fails after {TOTAL_TIMEOUT:.0f}s", flush=True)
    faulthandler.dump_traceback_later(TOTAL_TIMEOUT, exit=True)
    try:
        sys.exit(main())
    except SuiteFailure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - any client exception is a failure
        import traceback

        traceback.print_exc()
        print(f"FAIL: unexpected {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
