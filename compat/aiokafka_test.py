#!/usr/bin/env python3
"""aiokafka (asyncio client) interop suite.

    BOOTSTRAP=127.0.0.1:9092 python3 compat/aiokafka_test.py

Covers: AIOKafkaAdminClient create_topics + list_topics, an idempotent AIOKafkaProducer
(acks='all') sending N keyed records, consuming everything from the beginning (assign +
seek_to_beginning) and comparing keys/values/offsets with beginning/end offsets, and a consumer
group with manual commits: member 1 consumes part of the topic, commits and checks committed();
member 2 in the same group must resume exactly after the committed offsets. Then transactions
(each on a single-partition topic): a transactional producer commits, aborts and commits while
another leaves a transaction open between them: a read_committed consumer stops at the open
one (end_offsets is the last stable offset), read_uncommitted reads everything, and once it
commits read_committed reads exactly the committed records; zombie fencing (a second producer
with the same transactional_id: the first one's commit raises ProducerFenced, its open
transaction is aborted); a transaction left open past transaction_timeout_ms is aborted by the
broker (the records behind it become readable read_committed, its commit raises
ProducerFenced); consume-transform-produce with send_offsets_to_transaction (the group's
committed offset moves with commits only, the output holds each input record once). Topic
configs: create_topics with topic_configs, describe_configs (values and sources),
alter_configs replacing the overrides (LogAppendTime then shows in what send() and a consumer
see), and a bad value refused with INVALID_CONFIG naming it.
Exit code 0 = pass.
Knobs: COMPAT_RECORDS (default 60), COMPAT_STEP_TIMEOUT seconds (default 60),
       COMPAT_TIMEOUT whole-script seconds (default 240), AIOKAFKA_DEBUG=1 (DEBUG logging).
"""

import asyncio
import faulthandler
import logging
import os
import sys
import time
import uuid

import aiokafka
import aiokafka.errors as Errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

BOOTSTRAP = os.environ.get("BOOTSTRAP")
N = int(os.environ.get("COMPAT_RECORDS", "60"))
K = N // 3  # records member 1 consumes and commits
STEP_TIMEOUT = float(os.environ.get("COMPAT_STEP_TIMEOUT", "60"))
TOTAL_TIMEOUT = float(os.environ.get("COMPAT_TIMEOUT", "240"))
PARTITIONS = 3
RUN_ID = uuid.uuid4().hex[:12]
TOPIC = f"compat-aiokafka-{RUN_ID}"
GROUP = f"compat-aiokafka-group-{RUN_ID}"
TXN_TIMEOUT_MS = 2000  # the transaction left open for the broker to abort

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


def common(**extra):
    return {
        "bootstrap_servers": BOOTSTRAP,
        "request_timeout_ms": 30000,
        "client_id": f"compat-aiokafka-{RUN_ID}",
        **extra,
    }


async def timed(awaitable, what, seconds=STEP_TIMEOUT):
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        raise SuiteFailure(f"{what}: timed out after {seconds:.0f}s") from None


async def poll_records(consumer, want, what):
    """getmany until `want` records arrived (at most the missing number per call, so positions
    advance only past returned records); returns [(partition, offset, key, value)]."""
    got = []
    deadline = time.monotonic() + STEP_TIMEOUT
    while len(got) < want:
        check(time.monotonic() < deadline,
              f"{what}: timed out after {STEP_TIMEOUT:.0f}s with {len(got)}/{want} records")
        batches = await consumer.getmany(timeout_ms=500, max_records=want - len(got))
        for records in batches.values():
            for r in records:
                got.append((r.partition, r.offset,
                            r.key.decode() if r.key is not None else None,
                            r.value.decode() if r.value is not None else None))
    return got


async def check_basics(admin):
    expected = {f"key-{i:03d}": f"value-{i:03d}-{RUN_ID}" for i in range(N)}
    await timed(admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]), "create_topics")
    topics = await timed(admin.list_topics(), "list_topics")
    check(TOPIC in topics, f"list_topics() does not include {TOPIC}")
    ok(f"AIOKafkaAdminClient.create_topics created {TOPIC} with {PARTITIONS} partitions; "
       "list_topics shows it")

    producer = AIOKafkaProducer(**common(acks="all", enable_idempotence=True))
    await timed(producer.start(), "producer start")
    try:
        futures = [await producer.send(TOPIC, key=k.encode(), value=v.encode())
                   for k, v in expected.items()]
        delivered = [(md.partition, md.offset) for md in await timed(asyncio.gather(*futures),
                                                                     "send")]
    finally:
        await producer.stop()
    per_partition = {}
    for part, off in delivered:
        per_partition.setdefault(part, []).append(off)
    for part, offs in per_partition.items():
        check(sorted(offs) == list(range(len(offs))),
              f"partition {part}: acknowledged offsets {sorted(offs)} are not 0..{len(offs) - 1}")
    ok(f"idempotent AIOKafkaProducer(acks='all') delivered {N} keyed records, offsets "
       "contiguous per partition")

    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    reader = AIOKafkaConsumer(**common(enable_auto_commit=False))
    await timed(reader.start(), "reader start")
    try:
        reader.assign(tps)
        await reader.seek_to_beginning()
        records = await poll_records(reader, N, "consume from beginning")
        begin = await reader.beginning_offsets(tps)
        end = await reader.end_offsets(tps)
    finally:
        await reader.stop()
    got = {k: v for _, _, k, v in records}
    check(len(records) == N and got == expected,
          f"consumed records differ: {len(records)} records, "
          f"missing {sorted(set(expected) - set(got))[:5]}")
    check(sorted((p, o) for p, o, _, _ in records) == sorted(delivered),
          "consumed (partition, offset) pairs differ from the producer's acknowledgements")
    for tp in tps:
        check(begin[tp] == 0 and end[tp] == len(per_partition.get(tp.partition, [])),
              f"partition {tp.partition}: offsets {begin[tp]}..{end[tp]}")
    ok(f"consumed all {N} records from the beginning; keys, values, offsets, begin/end offsets "
       "match")

    group_kw = common(group_id=GROUP, enable_auto_commit=False, auto_offset_reset="earliest",
                      session_timeout_ms=10000, heartbeat_interval_ms=1000)
    c1 = AIOKafkaConsumer(TOPIC, **group_kw)
    await timed(c1.start(), "member 1 start")
    try:
        first = await poll_records(c1, K, "group member 1")
        next_offsets = {}
        for p, o, _, _ in first:
            next_offsets[p] = max(next_offsets.get(p, 0), o + 1)
        await timed(c1.commit({TopicPartition(TOPIC, p): o for p, o in next_offsets.items()}),
                    "member 1 commit")
        for tp in tps:
            committed = await c1.committed(tp)
            check(committed == next_offsets.get(tp.partition),
                  f"committed({tp.partition}) = {committed}, expected "
                  f"{next_offsets.get(tp.partition)}")
    finally:
        await c1.stop()
    c2 = AIOKafkaConsumer(TOPIC, **group_kw)
    await timed(c2.start(), "member 2 start")
    try:
        second = await poll_records(c2, N - K, "group member 2")
    finally:
        await c2.stop()
    first_keys = {k for _, _, k, _ in first}
    second_keys = {k for _, _, k, _ in second}
    check(not first_keys & second_keys,
          f"member 2 re-consumed records member 1 committed: "
          f"{sorted(first_keys & second_keys)[:5]}")
    check(first_keys | second_keys == set(expected), "members 1+2 missed records")
    ok(f"group {GROUP}: member 1 consumed {K} records and committed "
       f"{dict(sorted(next_offsets.items()))} (committed() agrees); member 2 resumed after them")


# --- topic configs ----------------------------------------------------------------------
async def topic_configs(admin, topic):
    """describe_configs of one topic: {name: (value, source)}."""
    responses = await timed(
        admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]),
        "describe_configs")
    resources = [r for response in responses for r in response.resources]
    check(len(resources) == 1 and resources[0][0] == 0,
          f"describe_configs of {topic}: {resources}")
    # entries: (name, value, read_only, config_source, is_sensitive, synonyms) from v1 on
    return {entry[0]: (entry[1], entry[3]) for entry in resources[0][4]}


async def alter(admin, topic, configs):
    """alter_configs of one topic: (error code, message)."""
    responses = await timed(
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)]),
        "alter_configs")
    resources = [r for response in responses for r in response.resources]
    check(len(resources) == 1, f"alter_configs answered {resources}")
    return resources[0][0], resources[0][1]


async def check_topic_configs(admin):
    topic = f"{TOPIC}-configs"
    await timed(admin.create_topics([NewTopic(topic, 1, 1, topic_configs={
        "retention.ms": "3600000", "cleanup.policy": "compact"})]), "create_topics")
    got = await topic_configs(admin, topic)
    check(got.get("retention.ms") == ("3600000", 1)
          and got.get("cleanup.policy") == ("compact", 1)
          and got.get("max.message.bytes") == ("1048588", 5),
          f"describe_configs after create_topics: {got}")
    ok("create_topics with topic_configs; describe_configs shows the overrides (source 1) and "
       "a default (source 5)")

    code, message = await alter(admin, topic, {"retention.ms": "7200000",
                                               "message.timestamp.type": "LogAppendTime"})
    check(code == 0, f"alter_configs: {code} {message}")
    got = await topic_configs(admin, topic)
    values = {name: got[name] for name in ("retention.ms", "message.timestamp.type",
                                           "cleanup.policy")}
    want = {"retention.ms": ("7200000", 1), "message.timestamp.type": ("LogAppendTime", 1),
            "cleanup.policy": ("delete", 5)}
    check(values == want, f"after alter_configs: {values}, expected {want}")
    ok("alter_configs replaces the overrides: set ones are shown, the dropped one is default")

    producer = AIOKafkaProducer(**common(acks="all"))
    await timed(producer.start(), "producer start")
    sent_at = int(time.time() * 1000)
    try:
        metadata = await timed(
            await producer.send(topic, key=b"k", value=b"v", timestamp_ms=1000), "send")
    finally:
        await producer.stop()
    check(metadata.timestamp >= sent_at,
          f"send() reports the log append time, got {metadata.timestamp} (sent at {sent_at})")
    reader = AIOKafkaConsumer(**common(enable_auto_commit=False))
    await timed(reader.start(), "reader start")
    try:
        reader.assign([TopicPartition(topic, 0)])
        await reader.seek_to_beginning()
        record = await timed(reader.getone(), "getone")
    finally:
        await reader.stop()
    check(record.timestamp_type == 1 and record.timestamp == metadata.timestamp,
          f"consumed timestamp {(record.timestamp_type, record.timestamp)}, expected "
          f"LogAppendTime {metadata.timestamp}")
    ok("message.timestamp.type=LogAppendTime: the broker's time replaces the producer's "
       "timestamp 1000, as send() and a consumer see it")

    code, message = await alter(admin, topic, {"retention.ms": "soon"})
    check(code == Errors.InvalidConfigurationError.errno and "retention.ms" in (message or ""),
          f"alter_configs with a bad value: {code} {message}")
    check((await topic_configs(admin, topic))["retention.ms"][0] == "7200000",
          "a refused alter_configs changes nothing")
    ok("alter_configs: INVALID_CONFIG naming the config for a bad value, nothing changed")


# --- transactions -----------------------------------------------------------------------
async def txn_producer(txn_id, **extra):
    """A started transactional producer (start() sends InitProducerId)."""
    producer = AIOKafkaProducer(**common(transactional_id=txn_id, acks="all", **extra))
    await timed(producer.start(), f"producer {txn_id} start")
    return producer


async def produce_values(producer, topic, values):
    for value in values:
        await timed(producer.send_and_wait(topic, value.encode(), partition=0), "send_and_wait")


async def read_values(topic, isolation, until=None):
    """The values of partition 0 of `topic` from the beginning, as an `isolation_level` consumer
    reads them: up to and including the value `until`, or, without it, until its position
    reaches end_offsets() (the last stable offset for read_committed)."""
    reader = AIOKafkaConsumer(**common(enable_auto_commit=False, isolation_level=isolation))
    await timed(reader.start(), "reader start")
    tp = TopicPartition(topic, 0)
    values = []
    deadline = time.monotonic() + STEP_TIMEOUT
    try:
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp] if until is None else None
        while (until not in values) if until is not None else await reader.position(tp) < end:
            check(time.monotonic() < deadline,
                  f"{isolation} read of {topic}: no {until or f'position {end}'} within "
                  f"{STEP_TIMEOUT:.0f}s; read {values}, position {await reader.position(tp)}")
            for records in (await reader.getmany(timeout_ms=500)).values():
                values.extend(r.value.decode() for r in records)
    finally:
        await reader.stop()
    return values


async def refused(awaitable, what):
    """The exception a transactional call raises; fails the suite if it succeeds."""
    try:
        await timed(awaitable, what)
    except Errors.KafkaError as e:
        return e
    raise SuiteFailure(f"{what} succeeded")


async def check_transactions(admin):
    topics = {name: f"{TOPIC}-{name}" for name in ("txn", "fence", "timeout", "ctp-in", "ctp-out")}
    await timed(admin.create_topics([NewTopic(t, 1, 1) for t in topics.values()]),
                "create_topics (transactions)")

    topic = topics["txn"]
    names = lambda prefix: [f"{prefix}-{i}" for i in range(3)]  # noqa: E731
    c1, aborted, held, c2 = names("c1"), names("aborted"), names("open"), names("c2")
    producer = await txn_producer(f"{GROUP}-txn")
    other = await txn_producer(f"{GROUP}-txn-open")
    try:
        async with producer.transaction():
            await produce_values(producer, topic, c1)
        await producer.begin_transaction()
        await produce_values(producer, topic, aborted)
        await timed(producer.abort_transaction(), "abort_transaction")
        await other.begin_transaction()
        await produce_values(other, topic, held)  # stays open while c2 is committed after it
        async with producer.transaction():
            await produce_values(producer, topic, c2)
        got = await read_values(topic, "read_committed")
        check(got == c1, f"read_committed with a transaction open before c2: {got}, expected {c1}")
        got = await read_values(topic, "read_uncommitted", until=c2[-1])
        check(got == c1 + aborted + held + c2, f"read_uncommitted: {got}")
        ok("transactional AIOKafkaProducer: a committed, an aborted and a committed transaction, "
           "another left open between them; read_committed stops at the open one (end_offsets "
           "is the last stable offset), read_uncommitted reads all 12 records")
        await timed(other.commit_transaction(), "commit_transaction")
    finally:
        await producer.stop()
        await other.stop()
    got = await read_values(topic, "read_committed", until=c2[-1])
    check(got == c1 + held + c2, f"read_committed after the open transaction committed: {got}, "
          f"expected {c1 + held + c2}")
    ok("once the open transaction commits, read_committed reads exactly the committed records "
       "in offset order, none of the aborted one")

    # Zombie fencing: a second producer with the same transactional_id.
    topic = topics["fence"]
    zombie = await txn_producer(f"{GROUP}-fence")
    try:
        await zombie.begin_transaction()
        await produce_values(zombie, topic, ["zombie-0", "zombie-1"])
        successor = await txn_producer(f"{GROUP}-fence")
        try:
            err = await refused(zombie.commit_transaction(),
                                "commit_transaction of the fenced producer")
            check(isinstance(err, Errors.ProducerFenced),
                  f"the fenced producer's commit_transaction raised {type(err).__name__}: {err}, "
                  "expected ProducerFenced")
            async with successor.transaction():
                await produce_values(successor, topic, ["successor-0"])
        finally:
            await successor.stop()
    finally:
        await zombie.stop()
    got = await read_values(topic, "read_committed", until="successor-0")
    check(got == ["successor-0"], f"read_committed after fencing: {got}, expected only successor-0")
    ok("zombie fencing: a second producer with the same transactional_id aborts the first one's "
       "open transaction; its commit_transaction raises ProducerFenced")

    # A transaction left open past transaction_timeout_ms is aborted by the broker.
    topic = topics["timeout"]
    stuck = await txn_producer(f"{GROUP}-stuck", transaction_timeout_ms=TXN_TIMEOUT_MS)
    try:
        await stuck.begin_transaction()
        await produce_values(stuck, topic, ["stuck-0", "stuck-1"])
        started = time.monotonic()
        after = await txn_producer(f"{GROUP}-after")
        try:
            async with after.transaction():
                await produce_values(after, topic, ["after-0"])
        finally:
            await after.stop()
        got = await read_values(topic, "read_committed", until="after-0")
        waited = time.monotonic() - started
        check(got == ["after-0"], f"read_committed after the timeout: {got}, expected only after-0")
        err = await refused(stuck.commit_transaction(),
                            "commit_transaction of a transaction past its timeout")
        check(isinstance(err, Errors.ProducerFenced),
              f"commit_transaction past the timeout raised {type(err).__name__}: {err}, "
              "expected ProducerFenced")
    finally:
        await stuck.stop()
    ok(f"the broker aborted a transaction open past transaction_timeout_ms={TXN_TIMEOUT_MS} "
       f"(the records behind it readable read_committed after {waited:.1f}s); its "
       "commit_transaction then raises ProducerFenced")

    await check_consume_transform_produce(topics["ctp-in"], topics["ctp-out"])


async def check_consume_transform_produce(source, sink):
    """A consumer in a group reads `source`, a transactional producer writes what it read to
    `sink` and commits the consumer's offsets with send_offsets_to_transaction."""
    group = f"{GROUP}-ctp"
    plain = AIOKafkaProducer(**common(acks="all"))
    await timed(plain.start(), "producer start")
    try:
        await produce_values(plain, source, [f"in-{i}" for i in range(10)])
    finally:
        await plain.stop()
    tp = TopicPartition(source, 0)
    consumer = AIOKafkaConsumer(source, **common(
        group_id=group, isolation_level="read_committed", enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=1000))
    reader = AIOKafkaConsumer(**common(group_id=group, enable_auto_commit=False))
    producer = await txn_producer(f"{GROUP}-ctp")

    async def transform(round_no, count, commit):
        records = await poll_records(consumer, count, f"round {round_no}")
        await producer.begin_transaction()
        await produce_values(producer, sink, [f"out-{value}-r{round_no}"
                                              for _, _, _, value in records])
        await timed(producer.send_offsets_to_transaction({tp: records[-1][1] + 1}, group),
                    f"round {round_no}: send_offsets_to_transaction")
        await timed(producer.commit_transaction() if commit else producer.abort_transaction(),
                    f"round {round_no}: {'commit' if commit else 'abort'}_transaction")
        return [value for _, _, _, value in records]

    async def committed():
        return await timed(reader.committed(tp), "committed")

    await timed(consumer.start(), "consumer start")
    await timed(reader.start(), "reader start")
    try:
        first = await transform(1, 5, commit=True)
        check(first == [f"in-{i}" for i in range(5)], f"round 1 consumed {first}")
        check(await committed() == 5, f"committed after round 1: {await committed()}")
        await transform(2, 5, commit=False)
        check(await committed() == 5,
              f"committed after the aborted round 2: {await committed()}, expected 5")
        consumer.seek(tp, 5)
        third = await transform(3, 5, commit=True)
        check(third == [f"in-{i}" for i in range(5, 10)], f"round 3 consumed {third}")
        check(await committed() == 10, f"committed after round 3: {await committed()}")
    finally:
        await producer.stop()
        await reader.stop()
        await consumer.stop()
    want = [f"out-in-{i}-r1" for i in range(5)] + [f"out-in-{i}-r3" for i in range(5, 10)]
    got = await read_values(sink, "read_committed", until=want[-1])
    check(got == want, f"read_committed of {sink}: {got}, expected {want}")
    ok("consume-transform-produce: send_offsets_to_transaction; the group's committed offset "
       "moves with each commit (5, 10), not with the aborted round; the output holds each "
       "input record once")


async def main():
    check(BOOTSTRAP, "BOOTSTRAP must be set to host:port of the broker")
    print(f"# aiokafka {aiokafka.__version__}; topic {TOPIC}, group {GROUP}, {N} records, "
          f"bootstrap {BOOTSTRAP}", flush=True)
    admin = AIOKafkaAdminClient(**common())
    await timed(admin.start(), "admin start")
    try:
        await check_basics(admin)
        await check_topic_configs(admin)
        await check_transactions(admin)
    finally:
        await admin.close()
    print(f"aiokafka suite: PASS ({_step} checks)", flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("AIOKAFKA_DEBUG") else logging.WARNING,
        format="# %(asctime)s %(name)s %(levelname)s %(message)s",
    )
    print(f"# watchdog: the whole suite fails after {TOTAL_TIMEOUT:.0f}s", flush=True)
    faulthandler.dump_traceback_later(TOTAL_TIMEOUT, exit=True)
    try:
        sys.exit(asyncio.run(main()))
    except SuiteFailure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - any client exception is a failure
        import traceback

        traceback.print_exc()
        print(f"FAIL: unexpected {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
