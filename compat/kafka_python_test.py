#!/usr/bin/env python3
"""kafka-python (pure-Python client) interop suite.

    BOOTSTRAP=127.0.0.1:9092 python3 compat/kafka_python_test.py

Covers: the client's broker-version probe, KafkaAdminClient create_topics + describe_topics
(partition count, leaders) + list_topics, KafkaProducer(acks='all') sending N keyed records,
consuming everything from the beginning (assign + seek_to_beginning) and comparing
keys/values/offsets, beginning/end offsets, and a consumer group with manual commits: member 1
consumes part of the topic, commits and checks committed(); member 2 in the same group must
resume exactly after the committed offsets, commits, and committed() must equal the end
offsets; then KafkaAdminClient.delete_consumer_groups deletes the (now empty) group with its
offsets, refusing a group with a member (NonEmptyGroupError) and an unknown one
(GroupIdNotFoundError); then topic configs: create_topics with topic_configs,
describe_configs with synonyms, alter_configs replacing the overrides (LogAppendTime then
stamps what a consumer reads) and refusing a bad value with INVALID_CONFIG. Then transactions
(each on a single-partition topic): a transactional producer commits, aborts and commits while
another leaves a transaction open between them: a read_committed consumer stops at the open
one (end_offsets is the last stable offset), read_uncommitted reads everything, and once it
commits read_committed reads exactly the committed records; zombie fencing (a second producer
with the same transactional_id: the first one's commit raises InvalidProducerEpochError, what
EndTxn v1 answers, its open transaction is aborted); a transaction left open past
transaction_timeout_ms is aborted by the broker; DescribeTransactions and ListTransactions as
raw v0 requests (kafka-python has no admin call for them) while it is open and after;
consume-transform-produce with send_offsets_to_transaction (the group's committed offset moves
with commits only, the output holds each input record once). Last, `$FRESHET_BIN generate`
(default settings, so its default compression) sends device events to the suite's broker and
a kafka-python consumer that cannot import `lz4` (a child interpreter with the module blocked,
as on a machine without the optional package) reads every one of them; the same consumer
fails with UnsupportedCodecError on a `--compression lz4` run, which shows lz4 really is
blocked. Exit code 0 = pass.
Env: BOOTSTRAP (host:port of the broker), FRESHET_BIN (the freshet binary; compat/run.sh
exports it).
Knobs: COMPAT_RECORDS (default 60), COMPAT_STEP_TIMEOUT seconds (default 60),
       COMPAT_TIMEOUT whole-script seconds (default 240), KAFKA_PYTHON_DEBUG=1 (DEBUG logging).
"""

import faulthandler
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid

import kafka
import kafka.errors as Errors
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.protocol.api import Request, Response
from kafka.protocol.types import (CompactArray, CompactString, Int16, Int32, Int64, Schema,
                                  TaggedFields)
from kafka.structs import OffsetAndMetadata

BOOTSTRAP = os.environ.get("BOOTSTRAP")
N = int(os.environ.get("COMPAT_RECORDS", "60"))
K = N // 3  # records member 1 consumes and commits
STEP_TIMEOUT = float(os.environ.get("COMPAT_STEP_TIMEOUT", "60"))
TOTAL_TIMEOUT = float(os.environ.get("COMPAT_TIMEOUT", "240"))
PARTITIONS = 3
RUN_ID = uuid.uuid4().hex[:12]
TOPIC = f"compat-kafka-python-{RUN_ID}"
GROUP = f"compat-kafka-python-group-{RUN_ID}"
STEP_MS = int(STEP_TIMEOUT * 1000)

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


def common():
    return {
        "bootstrap_servers": BOOTSTRAP,
        "request_timeout_ms": 30000,
        "api_version_auto_timeout_ms": 10000,
        "client_id": f"compat-kafka-python-{RUN_ID}",
    }


def offset_and_metadata(offset):
    # kafka-python 2.0.x has (offset, metadata); 2.1+ adds leader_epoch.
    if len(OffsetAndMetadata._fields) == 3:
        return OffsetAndMetadata(offset, "", -1)
    return OffsetAndMetadata(offset, "")


def poll_records(consumer, want, what):
    """Polls one record at a time (so positions advance only past returned records) until
    `want` records arrived; returns [(partition, offset, key, value)]."""
    got = []
    deadline = time.monotonic() + STEP_TIMEOUT
    while len(got) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SuiteFailure(
                f"{what}: timed out after {STEP_TIMEOUT:.0f}s with {len(got)}/{want} records"
            )
        batch = consumer.poll(timeout_ms=int(min(1.0, left) * 1000), max_records=1)
        for recs in batch.values():
            for r in recs:
                got.append(
                    (
                        r.partition,
                        r.offset,
                        r.key.decode() if r.key is not None else None,
                        r.value.decode() if r.value is not None else None,
                    )
                )
    return got


def topic_configs(admin, topic):
    """{name: (value, source, synonyms)} of every config of a topic, from describe_configs
    with synonyms; synonyms as [(name, value, source)]."""
    responses = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       include_synonyms=True)
    (error_code, error_message, _, _, entries), = responses[0].resources
    check(error_code == 0, f"describe_configs({topic}): error {error_code} {error_message}")
    return {name: (value, source, [tuple(s) for s in synonyms])
            for name, value, _read_only, source, _sensitive, synonyms in entries}


def alter(admin, topic, configs):
    """alter_configs of one topic: (error code, message)."""
    response = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                   configs=configs)])
    (error_code, error_message, _, _), = response.resources
    return error_code, error_message


def check_topic_configs():
    topic = f"{TOPIC}-configs"
    admin = KafkaAdminClient(**common())
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={
        "retention.ms": "3600000", "cleanup.policy": "compact"})], timeout_ms=STEP_MS)
    got = topic_configs(admin, topic)
    want = ("3600000", 1, [("retention.ms", "3600000", 1), ("log.retention.ms", "604800000", 5)])
    check(got.get("retention.ms") == want,
          f"describe_configs retention.ms: {got.get('retention.ms')}, expected {want}")
    check(got.get("max.message.bytes") == ("1048588", 5, [("message.max.bytes", "1048588", 5)]),
          f"describe_configs max.message.bytes: {got.get('max.message.bytes')}")
    ok("create_topics with topic_configs; describe_configs shows the override (source 1) and "
       "defaults (source 5) with their broker synonyms")

    result = alter(admin, topic, {"retention.ms": "7200000",
                                  "message.timestamp.type": "LogAppendTime"})
    check(result == (0, None), f"alter_configs: {result}")
    got = topic_configs(admin, topic)
    values = {name: got[name][:2] for name in ("retention.ms", "message.timestamp.type",
                                               "cleanup.policy")}
    want = {"retention.ms": ("7200000", 1), "message.timestamp.type": ("LogAppendTime", 1),
            "cleanup.policy": ("delete", 5)}
    check(values == want, f"after alter_configs: {values}, expected {want}")
    ok("alter_configs replaces the overrides: set ones are shown, the dropped one is default")

    producer = KafkaProducer(acks="all", **common())
    sent_at = int(time.time() * 1000)
    metadata = producer.send(topic, key=b"k", value=b"v", timestamp_ms=1000).get(
        timeout=STEP_TIMEOUT)
    producer.close()
    check(metadata.timestamp >= sent_at,
          f"send() reports the log append time, got {metadata.timestamp} (sent at {sent_at})")
    reader = KafkaConsumer(**common())
    tp = TopicPartition(topic, 0)
    reader.assign([tp])
    reader.seek_to_beginning(tp)
    message = None
    deadline = time.monotonic() + STEP_TIMEOUT
    while message is None and time.monotonic() < deadline:
        for batch in reader.poll(timeout_ms=200, max_records=1).values():
            message = batch[0]
    reader.close(autocommit=False)
    check(message is not None and message.timestamp_type == 1
          and message.timestamp == metadata.timestamp,
          f"consumed timestamp {message and (message.timestamp_type, message.timestamp)}, "
          f"expected LogAppendTime {metadata.timestamp}")
    ok("message.timestamp.type=LogAppendTime: the broker's time replaces the producer's "
       "timestamp 1000, as send() and a consumer see it")

    code, message = alter(admin, topic, {"retention.ms": "soon"})
    check(code == Errors.InvalidConfigurationError.errno and "retention.ms" in (message or ""),
          f"alter_configs with a bad value: {code} {message}")
    code, _ = alter(admin, f"{topic}-missing", {"retention.ms": "1"})
    check(code == Errors.UnknownTopicOrPartitionError.errno,
          f"alter_configs of a missing topic: {code}")
    check(topic_configs(admin, topic)["retention.ms"][0] == "7200000",
          "a refused alter_configs changes nothing")
    admin.close()
    ok("alter_configs: INVALID_CONFIG naming the config for a bad value, "
       "UNKNOWN_TOPIC_OR_PARTITION for a missing topic, nothing changed")


# --- transactions -----------------------------------------------------------------------
TXN_TIMEOUT_MS = 2000  # the transaction left open for the broker to abort


# kafka-python 2.3 has no admin call for DescribeTransactions (API 65) or ListTransactions
# (API 66): their v0 schemas, sent with KafkaAdminClient.send_request.
class DescribeTransactionsResponse_v0(Response):
    API_KEY = 65
    API_VERSION = 0
    FLEXIBLE_VERSION = True
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("transaction_states", CompactArray(
            ("error_code", Int16),
            ("transactional_id", CompactString("utf-8")),
            ("transaction_state", CompactString("utf-8")),
            ("transaction_timeout_ms", Int32),
            ("transaction_start_time_ms", Int64),
            ("producer_id", Int64),
            ("producer_epoch", Int16),
            ("topics", CompactArray(
                ("topic", CompactString("utf-8")),
                ("partitions", CompactArray(Int32)),
                ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields))


class DescribeTransactionsRequest_v0(Request):
    API_KEY = 65
    API_VERSION = 0
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = DescribeTransactionsResponse_v0
    SCHEMA = Schema(
        ("transactional_ids", CompactArray(CompactString("utf-8"))),
        ("tags", TaggedFields))


class ListTransactionsResponse_v0(Response):
    API_KEY = 66
    API_VERSION = 0
    FLEXIBLE_VERSION = True
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("unknown_state_filters", CompactArray(CompactString("utf-8"))),
        ("transaction_states", CompactArray(
            ("transactional_id", CompactString("utf-8")),
            ("producer_id", Int64),
            ("transaction_state", CompactString("utf-8")),
            ("tags", TaggedFields))),
        ("tags", TaggedFields))


class ListTransactionsRequest_v0(Request):
    API_KEY = 66
    API_VERSION = 0
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = ListTransactionsResponse_v0
    SCHEMA = Schema(
        ("state_filters", CompactArray(CompactString("utf-8"))),
        ("producer_id_filters", CompactArray(Int64)),
        ("tags", TaggedFields))


def describe_transactions(admin, ids):
    """{id: (error, state, timeout_ms, start_ms, producer_id, epoch, {topic: [partitions]})}"""
    response = admin.send_request(DescribeTransactionsRequest_v0(transactional_ids=ids, tags={}))
    return {txn_id: (error, state, timeout, start, pid, epoch,
                     {topic: sorted(parts) for topic, parts, _ in topics})
            for error, txn_id, state, timeout, start, pid, epoch, topics, _
            in response.transaction_states}


def list_transactions(admin, states=(), producer_ids=()):
    """(error, unknown state filters, {id: (producer_id, state)}) of this run's ids."""
    response = admin.send_request(ListTransactionsRequest_v0(
        state_filters=list(states), producer_id_filters=list(producer_ids), tags={}))
    return (response.error_code, response.unknown_state_filters,
            {txn_id: (pid, state) for txn_id, pid, state, _ in response.transaction_states
             if RUN_ID in txn_id})


def txn_producer(txn_id, **extra):
    """A transactional producer after init_transactions."""
    producer = KafkaProducer(transactional_id=txn_id, acks="all", **common(), **extra)
    producer.init_transactions()
    return producer


def produce_values(producer, topic, values):
    for value in values:
        producer.send(topic, value=value.encode(), partition=0)
    producer.flush(timeout=STEP_TIMEOUT)


def read_values(topic, isolation, until=None):
    """The values of partition 0 of `topic` from the beginning, as an `isolation_level` consumer
    reads them: up to and including the value `until`, or, without it, until its position
    reaches end_offsets() (the last stable offset for read_committed)."""
    reader = KafkaConsumer(group_id=None, enable_auto_commit=False, isolation_level=isolation,
                           **common())
    tp = TopicPartition(topic, 0)
    reader.assign([tp])
    reader.seek_to_beginning(tp)
    end = reader.end_offsets([tp])[tp] if until is None else None
    values = []
    deadline = time.monotonic() + STEP_TIMEOUT
    try:
        while (until not in values) if until is not None else reader.position(tp) < end:
            check(time.monotonic() < deadline,
                  f"{isolation} read of {topic}: no {until or f'position {end}'} within "
                  f"{STEP_TIMEOUT:.0f}s; read {values}, position {reader.position(tp)}")
            for records in reader.poll(timeout_ms=500).values():
                values.extend(r.value.decode() for r in records)
    finally:
        reader.close(autocommit=False)
    return values


def bounded(call, what):
    """call() in a thread, failing the suite if it does not return within STEP_TIMEOUT:
    kafka-python's transactional calls wait without a deadline (a broker that drops the
    connection has them retry forever)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            outcome["error"] = e

    worker = threading.Thread(target=run, name=what, daemon=True)
    worker.start()
    worker.join(STEP_TIMEOUT)
    check(not worker.is_alive(), f"{what}: no answer within {STEP_TIMEOUT:.0f}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def refused(call, what):
    """The exception a transactional call raises; fails the suite if it succeeds."""
    try:
        call()
    except Errors.KafkaError as e:
        return e
    raise SuiteFailure(f"{what} succeeded")


# EndTxn as kafka-python sends it (v0-1 for the broker version it infers, 2.5) answers a fenced
# producer INVALID_PRODUCER_EPOCH, as Kafka does; v2+ would be PRODUCER_FENCED.
FENCED = (Errors.InvalidProducerEpochError, Errors.ProducerFencedError)


def check_transactions():
    """Commit and abort, read_committed and read_uncommitted, zombie fencing, the broker
    aborting a transaction past its timeout, DescribeTransactions and ListTransactions, and
    consume-transform-produce."""
    admin = KafkaAdminClient(**common())
    topics = {name: f"{TOPIC}-{name}" for name in ("txn", "fence", "timeout", "ctp-in", "ctp-out")}
    admin.create_topics([NewTopic(t, 1, 1) for t in topics.values()], timeout_ms=STEP_MS)
    ids = {name: f"{GROUP}-{name}" for name in ("txn", "open", "fence", "stuck", "after", "ctp")}

    topic = topics["txn"]
    names = lambda prefix: [f"{prefix}-{i}" for i in range(3)]  # noqa: E731
    c1, aborted, held, c2 = names("c1"), names("aborted"), names("open"), names("c2")
    producer = txn_producer(ids["txn"])
    producer.begin_transaction()
    produce_values(producer, topic, c1)
    producer.commit_transaction()
    producer.begin_transaction()
    produce_values(producer, topic, aborted)
    producer.abort_transaction()
    other = txn_producer(ids["open"])
    other.begin_transaction()
    produce_values(other, topic, held)  # stays open while c2 is committed after it
    producer.begin_transaction()
    produce_values(producer, topic, c2)
    producer.commit_transaction()
    got = read_values(topic, "read_committed")
    check(got == c1, f"read_committed with a transaction open before c2: {got}, expected {c1}")
    got = read_values(topic, "read_uncommitted", until=c2[-1])
    check(got == c1 + aborted + held + c2, f"read_uncommitted: {got}")
    ok("transactional KafkaProducer: a committed, an aborted and a committed transaction, "
       "another left open between them; read_committed stops at the open one (end_offsets is "
       "the last stable offset), read_uncommitted reads all 12 records")
    other.commit_transaction()
    got = read_values(topic, "read_committed", until=c2[-1])
    check(got == c1 + held + c2, f"read_committed after the open transaction committed: {got}, "
          f"expected {c1 + held + c2}")
    producer.close(timeout=STEP_TIMEOUT)
    other.close(timeout=STEP_TIMEOUT)
    ok("once the open transaction commits, read_committed reads exactly the committed records "
       "in offset order, none of the aborted one")

    # Zombie fencing: a second producer with the same transactional_id.
    topic = topics["fence"]
    zombie = txn_producer(ids["fence"])
    zombie.begin_transaction()
    produce_values(zombie, topic, ["zombie-0", "zombie-1"])
    successor = txn_producer(ids["fence"])
    err = refused(zombie.commit_transaction, "commit_transaction of the fenced producer")
    check(isinstance(err, FENCED), f"the fenced producer's commit_transaction raised "
          f"{type(err).__name__}: {err}, expected InvalidProducerEpochError")
    successor.begin_transaction()
    produce_values(successor, topic, ["successor-0"])
    successor.commit_transaction()
    successor.close(timeout=STEP_TIMEOUT)
    zombie.close(timeout=0)
    got = read_values(topic, "read_committed", until="successor-0")
    check(got == ["successor-0"], f"read_committed after fencing: {got}, expected only successor-0")
    ok("zombie fencing: init_transactions of a second producer with the same transactional_id "
       f"aborts the first one's open transaction; its commit_transaction raises "
       f"{type(err).__name__}")

    # A transaction left open past transaction_timeout_ms, seen by DescribeTransactions and
    # ListTransactions while open and after the broker aborted it.
    topic = topics["timeout"]
    stuck = txn_producer(ids["stuck"], transaction_timeout_ms=TXN_TIMEOUT_MS)
    stuck.begin_transaction()
    produce_values(stuck, topic, ["stuck-0", "stuck-1"])
    started = time.monotonic()
    described = describe_transactions(admin, [ids["stuck"], ids["txn"], f"{GROUP}-never-was"])
    error, state, timeout, start_ms, pid, epoch, parts = described[ids["stuck"]]
    now_ms = int(time.time() * 1000)
    check((error, state, timeout, parts) == (0, "Ongoing", TXN_TIMEOUT_MS, {topic: [0]})
          and pid >= 0 and now_ms - 60_000 < start_ms <= now_ms + 1000,
          f"DescribeTransactions of the open transaction: {described[ids['stuck']]}")
    check(described[ids["txn"]][:2] == (0, "CompleteCommit"),
          f"DescribeTransactions of a committed transaction: {described[ids['txn']]}")
    missing = described[f"{GROUP}-never-was"][0]
    check(missing == Errors.TransactionalIdNotFoundError.errno,
          f"DescribeTransactions of an unknown id: error {missing}, expected "
          "TRANSACTIONAL_ID_NOT_FOUND")
    listed = list_transactions(admin, states=["Ongoing"])
    check(listed == (0, [], {ids["stuck"]: (pid, "Ongoing")}),
          f"ListTransactions(Ongoing): {listed}, expected only {ids['stuck']}")
    listed = list_transactions(admin, states=["Ongoing", "Bogus"], producer_ids=[pid])
    check(listed == (0, ["Bogus"], {ids["stuck"]: (pid, "Ongoing")}),
          f"ListTransactions(Ongoing, Bogus; producer {pid}): {listed}")
    ok(f"DescribeTransactions (raw v0 request): the open transaction is Ongoing in {topic}-0 "
       f"with its {TXN_TIMEOUT_MS} ms timeout, a committed one CompleteCommit, an unknown id "
       "TRANSACTIONAL_ID_NOT_FOUND; ListTransactions filters by state and producer id and "
       "names unknown states")

    after = txn_producer(ids["after"])
    after.begin_transaction()
    produce_values(after, topic, ["after-0"])
    after.commit_transaction()
    after.close(timeout=STEP_TIMEOUT)
    got = read_values(topic, "read_committed", until="after-0")
    waited = time.monotonic() - started
    check(got == ["after-0"], f"read_committed after the timeout: {got}, expected only after-0")
    err = refused(stuck.commit_transaction, "commit_transaction of a transaction past its timeout")
    check(isinstance(err, FENCED), f"commit_transaction past the timeout raised "
          f"{type(err).__name__}: {err}, expected InvalidProducerEpochError")
    stuck.close(timeout=0)
    described = describe_transactions(admin, [ids["stuck"]])[ids["stuck"]]
    check(described[:2] == (0, "CompleteAbort") and described[4:6] == (pid, epoch + 1),
          f"DescribeTransactions after the timeout: {described}, expected CompleteAbort with "
          f"producer {pid} at epoch {epoch + 1}")
    ok(f"the broker aborted a transaction open past transaction_timeout_ms={TXN_TIMEOUT_MS} "
       f"(the records behind it readable read_committed after {waited:.1f}s; "
       "DescribeTransactions: CompleteAbort, epoch bumped); its commit_transaction then raises "
       f"{type(err).__name__}")
    _, _, listed = list_transactions(admin)
    want = {ids["txn"]: "CompleteCommit", ids["open"]: "CompleteCommit",
            ids["fence"]: "CompleteCommit", ids["stuck"]: "CompleteAbort",
            ids["after"]: "CompleteCommit"}
    check({txn_id: state for txn_id, (_, state) in listed.items()} == want,
          f"ListTransactions: {listed}, expected states {want}")
    admin.close()
    ok("ListTransactions without filters lists every transactional id of the suite with its "
       "final state")

    check_consume_transform_produce(topics["ctp-in"], topics["ctp-out"], ids["ctp"])


def check_consume_transform_produce(source, sink, txn_id):
    """A consumer in a group reads `source`, a transactional producer writes what it read to
    `sink` and commits the consumer's offsets with send_offsets_to_transaction."""
    group = f"{GROUP}-ctp"
    plain = KafkaProducer(acks="all", **common())
    produce_values(plain, source, [f"in-{i}" for i in range(10)])
    plain.close(timeout=STEP_TIMEOUT)
    consumer = KafkaConsumer(group_id=group, isolation_level="read_committed",
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=10000, heartbeat_interval_ms=1000, **common())
    tp = TopicPartition(source, 0)
    consumer.subscribe([source])
    producer = txn_producer(txn_id)

    def transform(round_no, count, commit):
        records = []
        deadline = time.monotonic() + STEP_TIMEOUT
        while len(records) < count:
            check(time.monotonic() < deadline, f"round {round_no}: {len(records)}/{count} records")
            for batch in consumer.poll(timeout_ms=500, max_records=count - len(records)).values():
                records.extend(batch)
        producer.begin_transaction()
        produce_values(producer, sink, [f"out-{r.value.decode()}-r{round_no}" for r in records])
        bounded(lambda: producer.send_offsets_to_transaction(
            {tp: offset_and_metadata(records[-1].offset + 1)}, group),
            f"round {round_no}: send_offsets_to_transaction")
        bounded(producer.commit_transaction if commit else producer.abort_transaction,
                f"round {round_no}: {'commit' if commit else 'abort'}_transaction")
        return [r.value.decode() for r in records]

    reader = KafkaConsumer(group_id=group, enable_auto_commit=False, **common())
    try:
        first = transform(1, 5, commit=True)
        check(first == [f"in-{i}" for i in range(5)], f"round 1 consumed {first}")
        check(reader.committed(tp) == 5, f"committed after round 1: {reader.committed(tp)}")
        transform(2, 5, commit=False)
        check(reader.committed(tp) == 5,
              f"committed after the aborted round 2: {reader.committed(tp)}, expected 5")
        consumer.seek(tp, 5)
        third = transform(3, 5, commit=True)
        check(third == [f"in-{i}" for i in range(5, 10)], f"round 3 consumed {third}")
        check(reader.committed(tp) == 10, f"committed after round 3: {reader.committed(tp)}")
    finally:
        reader.close(autocommit=False)
        consumer.close(autocommit=False)
        producer.close(timeout=0)
    want = [f"out-in-{i}-r1" for i in range(5)] + [f"out-in-{i}-r3" for i in range(5, 10)]
    got = read_values(sink, "read_committed", until=want[-1])
    check(got == want, f"read_committed of {sink}: {got}, expected {want}")
    ok("consume-transform-produce: send_offsets_to_transaction; the group's committed offset "
       "moves with each commit (5, 10), not with the aborted round; the output holds each "
       "input record once")


GENERATED = 500  # events `freshet generate` sends for the lz4-free consumer

# Run by a child interpreter: kafka-python with `lz4` unimportable (None in sys.modules makes
# `import lz4`, `import lz4.frame`, ... raise ImportError, as when the package is missing;
# kafka.codec also tries `lz4f` and `lz4framed`). Reads every partition of a topic from the
# beginning until it has `want` records, then prints them as one JSON line.
LZ4_FREE_READER = r"""
import json, sys, time
for name in ("lz4", "lz4.frame", "lz4.block", "lz4f", "lz4framed"):
    sys.modules[name] = None
import kafka.codec
from kafka import KafkaConsumer, TopicPartition

bootstrap, topic, want, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if kafka.codec.has_lz4():
    sys.exit("lz4 is still importable: the check would prove nothing")
consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", request_timeout_ms=30000)
deadline = time.monotonic() + timeout
partitions = None
while not partitions and time.monotonic() < deadline:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        time.sleep(0.1)
if not partitions:
    sys.exit(f"no partitions for {topic}")
consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
consumer.seek_to_beginning()
values = []
while len(values) < want and time.monotonic() < deadline:
    for records in consumer.poll(timeout_ms=500).values():
        values.extend(r.value.decode() for r in records)
consumer.close()
print(json.dumps({"partitions": len(partitions), "values": values}))
"""


def freshet_generate(topic, *extra):
    """Runs `$FRESHET_BIN generate` against the suite's broker (no FRESHET_* variable of this
    environment leaks into it, so its defaults are the defaults) and returns its JSON
    summary."""
    freshet = os.environ.get("FRESHET_BIN")
    check(freshet and os.access(freshet, os.X_OK),
          f"FRESHET_BIN must name the freshet binary (compat/run.sh exports it): {freshet!r}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHET_")}
    command = [freshet, "generate", "--bootstrap-servers", BOOTSTRAP, "--topic", topic,
               "--num-messages", str(GENERATED), "--num-devices", "50", "--pause-ms", "0",
               "--seed", "7", "--json", *extra]
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=STEP_TIMEOUT)
    check(done.returncode == 0,
          f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    check(summary["sent"] == GENERATED and summary["failed"] == 0,
          f"freshet generate did not deliver every event: {summary}")
    return summary


def read_without_lz4(topic):
    """(exit code, stdout, stderr) of the lz4-free reader on `topic`."""
    done = subprocess.run(
        [sys.executable, "-c", LZ4_FREE_READER, BOOTSTRAP, topic, str(GENERATED),
         str(STEP_TIMEOUT)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=STEP_TIMEOUT + 30)
    return done.returncode, done.stdout, done.stderr


def check_generator_without_lz4():
    topic = f"compat-generated-{RUN_ID}"
    summary = freshet_generate(topic)
    code, out, err = read_without_lz4(topic)
    check(code == 0, f"a consumer without lz4 failed on freshet generate's records: {err[-2000:]}")
    got = json.loads(out.strip().splitlines()[-1])
    values = got["values"]
    check(len(values) == GENERATED,
          f"a consumer without lz4 read {len(values)} of the {GENERATED} generated records")
    events = [json.loads(v) for v in values]
    check(all(set(e) == {"timestamp", "device_ip", "error_code"} for e in events),
          f"not device events: {values[:3]}")
    distinct = len({e["device_ip"] for e in events})
    check(distinct == summary["distinct_ips"],
          f"{distinct} distinct device IPs read, the generator reported {summary['distinct_ips']}")
    ok(f"kafka-python without lz4 read all {GENERATED} records of `freshet generate` "
       f"(default compression) from {got['partitions']} partitions, {distinct} distinct IPs")

    # The control: the same reader on lz4 batches fails, so lz4 really was unimportable.
    lz4_topic = f"{topic}-lz4"
    freshet_generate(lz4_topic, "--compression", "lz4")
    code, out, err = read_without_lz4(lz4_topic)
    check(code != 0 and "UnsupportedCodecError" in err,
          f"the lz4-free reader should fail on lz4 batches; exit {code}, stderr {err[-1000:]}")
    ok("the same reader fails with UnsupportedCodecError on `freshet generate --compression lz4`")


def main():
    check(BOOTSTRAP, "BOOTSTRAP must be set to host:port of the broker")
    print(f"# kafka-python {kafka.__version__}; topic {TOPIC}, group {GROUP}, {N} records, "
          f"bootstrap {BOOTSTRAP}", flush=True)
    expected = {f"key-{i:03d}": f"value-{i:03d}-{RUN_ID}" for i in range(N)}

    # 1. Admin: create the topic, describe it, list it.
    admin = KafkaAdminClient(**common())
    print(f"# kafka-python inferred broker version {admin.config['api_version']}", flush=True)
    resp = admin.create_topics(
        [NewTopic(name=TOPIC, num_partitions=PARTITIONS, replication_factor=1)],
        timeout_ms=STEP_MS,
    )
    errors = [(e[0], e[1]) + tuple(e[2:3]) for e in getattr(resp, "topic_errors", [])]
    check(errors and all(e[1] == 0 for e in errors),
          f"create_topics({TOPIC}) returned errors: {errors}")
    ok(f"KafkaAdminClient.create_topics created {TOPIC} with {PARTITIONS} partitions")

    check(TOPIC in admin.list_topics(), f"list_topics() does not include {TOPIC}")
    described = admin.describe_topics([TOPIC])
    check(len(described) == 1, f"describe_topics returned {len(described)} topics")
    t = described[0]
    check(t["error_code"] == 0, f"describe_topics: {TOPIC} error_code {t['error_code']}")
    parts = sorted(p["partition"] for p in t["partitions"])
    check(parts == list(range(PARTITIONS)),
          f"describe_topics: partitions {parts}, expected 0..{PARTITIONS - 1}")
    for p in t["partitions"]:
        check(p["error_code"] == 0 and p["leader"] >= 0,
              f"describe_topics: partition {p['partition']} error {p['error_code']} leader {p['leader']}")
    admin.close()
    ok(f"describe_topics/list_topics show {TOPIC} with {PARTITIONS} partitions, all led")

    # 2. Producer, acks='all'.
    producer = KafkaProducer(acks="all", retries=5, linger_ms=5, **common())
    futures = [
        producer.send(TOPIC, key=k.encode(), value=v.encode()) for k, v in expected.items()
    ]
    producer.flush(timeout=STEP_TIMEOUT)
    delivered = []
    for f in futures:
        try:
            md = f.get(timeout=STEP_TIMEOUT)
        except Exception as e:
            raise SuiteFailure(f"KafkaProducer.send failed: {e!r}") from e
        delivered.append((md.partition, md.offset))
    producer.close(timeout=STEP_TIMEOUT)
    per_partition = {}
    for part, off in delivered:
        per_partition.setdefault(part, []).append(off)
    for part, offs in per_partition.items():
        check(sorted(offs) == list(range(len(offs))),
              f"partition {part}: acknowledged offsets {sorted(offs)} are not 0..{len(offs) - 1}")
    ok(f"KafkaProducer(acks='all') delivered {N} keyed records, offsets contiguous per partition")

    # 3. Consume everything from the beginning (no group) and compare.
    reader = KafkaConsumer(group_id=None, enable_auto_commit=False,
                           auto_offset_reset="earliest", **common())
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    reader.assign(tps)
    reader.seek_to_beginning()
    records = poll_records(reader, N, "consume from beginning")
    got = {k: v for _, _, k, v in records}
    check(len(records) == N and got == expected,
          f"consumed records differ: {len(records)} records, "
          f"missing {sorted(set(expected) - set(got))[:5]}, "
          f"wrong values {[k for k in got if expected.get(k) != got[k]][:5]}")
    check(sorted((p, o) for p, o, _, _ in records) == sorted(delivered),
          "consumed (partition, offset) pairs differ from the producer's acknowledgements")
    begin = reader.beginning_offsets(tps)
    end = reader.end_offsets(tps)
    for tp in tps:
        check(begin[tp] == 0, f"partition {tp.partition}: beginning offset {begin[tp]}")
        check(end[tp] == len(per_partition.get(tp.partition, [])),
              f"partition {tp.partition}: end offset {end[tp]}, expected "
              f"{len(per_partition.get(tp.partition, []))}")
    reader.close()
    high = {tp.partition: end[tp] for tp in tps}
    ok(f"consumed all {N} records from the beginning; keys, values, offsets, begin/end offsets match")

    # 4. Group member 1: consume K, commit, verify with committed().
    group_kw = dict(group_id=GROUP, enable_auto_commit=False, auto_offset_reset="earliest",
                    session_timeout_ms=10000, heartbeat_interval_ms=1000, **common())
    c1 = KafkaConsumer(**group_kw)
    c1.subscribe([TOPIC])
    first = poll_records(c1, K, "group member 1")
    next_offsets = {}
    for p, o, _, _ in first:
        next_offsets[p] = max(next_offsets.get(p, 0), o + 1)
    c1.commit({TopicPartition(TOPIC, p): offset_and_metadata(o) for p, o in next_offsets.items()})
    for tp in tps:
        c = c1.committed(tp)
        want = next_offsets.get(tp.partition)
        check(c == want, f"committed({tp.partition}) = {c}, expected {want}")
    c1.close(autocommit=False)
    ok(f"group {GROUP} member 1 consumed {K} records, committed {dict(sorted(next_offsets.items()))}, "
       "committed() agrees")

    # 5. Group member 2 resumes after the committed offsets.
    c2 = KafkaConsumer(**group_kw)
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
    c2.commit()  # the consumed positions: should be the end offsets now
    got_committed = {tp.partition: c2.committed(tp) for tp in tps}
    check(got_committed == high,
          f"committed() after member 2: {got_committed}, expected the end offsets {high}")
    c2.close(autocommit=False)
    ok(f"group member 2 resumed after the committed offsets ({N - K} records), "
       f"committed() == end offsets {high}")

    # 6. Delete the group (empty now that both members left); a group with a member and an
    #    unknown group are refused.
    busy_group = f"{GROUP}-busy"
    busy = KafkaConsumer(**dict(group_kw, group_id=busy_group))
    busy.subscribe([TOPIC])
    deadline = time.monotonic() + STEP_TIMEOUT
    while not busy.assignment():
        check(time.monotonic() < deadline, f"{busy_group} got no partitions")
        busy.poll(timeout_ms=200)
    missing_group = f"{GROUP}-never-was"
    admin = KafkaAdminClient(**common())
    results = dict(admin.delete_consumer_groups([GROUP, busy_group, missing_group]))
    expected_errors = {GROUP: Errors.NoError, busy_group: Errors.NonEmptyGroupError,
                       missing_group: Errors.GroupIdNotFoundError}
    check(results == expected_errors,
          f"delete_consumer_groups: {results}, expected {expected_errors}")
    admin.close()
    busy.close(autocommit=False)
    reader = KafkaConsumer(group_id=GROUP, enable_auto_commit=False, **common())
    left = {tp.partition: reader.committed(tp) for tp in tps}
    reader.close(autocommit=False)
    check(all(o is None for o in left.values()),
          f"committed() after deleting the group: {left}, expected none")
    ok("KafkaAdminClient.delete_consumer_groups deleted the empty group with its offsets; "
       "NonEmptyGroupError for a group with a member, GroupIdNotFoundError for an unknown one")

    check_topic_configs()

    check_transactions()

    check_generator_without_lz4()

    print(f"kafka-python suite: PASS ({_step} checks)", flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("KAFKA_PYTHON_DEBUG") else logging.WARNING,
        format="# %(asctime)s %(name)s %(levelname)s %(message)s",
    )
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
