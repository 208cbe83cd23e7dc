#!/usr/bin/env python3
"""confluent-kafka (current bundled librdkafka) interop suite.

    BOOTSTRAP=127.0.0.1:9092 python3 compat/confluent_kafka_test.py

Covers: AdminClient create_topics + list_topics (partition count, leaders), an idempotent
Producer with acks=all sending N keyed records (delivery reports: offsets contiguous per
partition), watermarks, consuming everything from the beginning (assign at OFFSET_BEGINNING)
and comparing keys/values, and a consumer group with manual commits: member 1 consumes part
of the topic, commits synchronously and checks committed(); member 2 in the same group must
resume exactly after the committed offsets, commits, and committed() must equal the high
watermarks. Exit code 0 = pass.
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
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
    libversion,
)
from confluent_kafka import version as ck_version
from confluent_kafka.admin import AdminClient, NewTopic

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
