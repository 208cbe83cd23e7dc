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
stamps what a consumer reads) and refusing a bad value with INVALID_CONFIG. Exit code 0 = pass.
Knobs: COMPAT_RECORDS (default 60), COMPAT_STEP_TIMEOUT seconds (default 60),
       COMPAT_TIMEOUT whole-script seconds (default 240), KAFKA_PYTHON_DEBUG=1 (DEBUG logging).
"""

import faulthandler
import logging
import os
import sys
import time
import uuid

import kafka
import kafka.errors as Errors
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
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
