#!/usr/bin/env python3
"""aiokafka (asyncio) against a secured Freshet broker; run by compat/secure.sh.

    bash compat/secure.sh aiokafka

Setup as admin (SASL_PLAINTEXT + SCRAM-SHA-512, a super user): AIOKafkaAdminClient.create_topics
of `granted` and `secret`. Then, as alice, for SASL_SSL+SCRAM-SHA-256, SASL_SSL+SCRAM-SHA-512,
SASL_PLAINTEXT+PLAIN and SSL+client certificate (aiokafka does them all: SASL PLAIN and SCRAM,
TLS through an ssl.SSLContext from aiokafka.helpers.create_ssl_context):
  produce-consume  AIOKafkaProducer(acks='all').send_and_wait to `granted`; an AIOKafkaConsumer
                   in group alice-... reads the records back and commits them
  bad-credentials  a wrong password (SSL: a self-signed CN=alice certificate): start() raises
                   KafkaConnectionError("Unable to bootstrap ...") after aiokafka logged the
                   cause (SaslAuthenticationFailedError with the broker's message; for SSL
                   "Connection ... closed": asyncio drops the TLS alert)
  topic-denied     send_and_wait to `secret` raises TopicAuthorizationFailedError
  group-denied     an AIOKafkaConsumer in group bob-... raises GroupAuthorizationFailedError
  metadata-hides   AIOKafkaAdminClient.list_topics as alice shows `granted`, not `secret`
Debug: AIOKAFKA_DEBUG=1.
"""

import asyncio
import faulthandler
import sys
import time

import aiokafka
import aiokafka.errors as Errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

import secure_common as sc
from secure_common import check

CLIENT = "aiokafka"


CAPTURED, _ = sc.capture_logs("aiokafka", "AIOKAFKA_DEBUG")


def conf(combo, user="alice", password=None, cert=None, **extra):
    if password is None:
        password = sc.ALICE_PASSWORD if user == "alice" else sc.ADMIN_PASSWORD
    c = {
        "bootstrap_servers": combo.bootstrap,
        "security_protocol": combo.protocol,
        "client_id": f"{CLIENT}-{sc.RUN_ID}",
        "request_timeout_ms": 20000,
    }
    if combo.tls:
        client_cert = combo.client_cert(cert)
        certfile, keyfile = client_cert or (None, None)
        c["ssl_context"] = create_ssl_context(cafile=sc.CA, certfile=certfile, keyfile=keyfile)
    if combo.sasl:
        c["sasl_mechanism"] = combo.mechanism
        c["sasl_plain_username"] = user
        c["sasl_plain_password"] = password
    c.update(extra)
    return c


async def timed(coro, what, seconds=sc.STEP_TIMEOUT):
    try:
        return await asyncio.wait_for(coro, seconds)
    except asyncio.TimeoutError:
        raise sc.CheckFailure(f"{what}: timed out after {seconds:.0f}s") from None


async def setup(rep):
    admin = AIOKafkaAdminClient(**conf(sc.admin_combo(), user="admin"))
    await timed(admin.start(), "admin start")
    try:
        try:
            await timed(admin.create_topics([NewTopic(t, 1, 1) for t in (sc.GRANTED, sc.SECRET)]),
                        "create_topics")
        except Errors.TopicAlreadyExistsError:
            pass
        topics = await timed(admin.list_topics(), "admin list_topics")
    finally:
        await admin.close()
    check(sc.GRANTED in topics and sc.SECRET in topics, f"admin's list_topics lacks a topic: {topics}")
    rep.ok(f"setup: admin (super user, SASL_PLAINTEXT+SCRAM-SHA-512) created topics "
           f"{sc.GRANTED} and {sc.SECRET}")


async def produce_consume(combo):
    values = [f"{CLIENT}-{combo.id}-{sc.RUN_ID}-{i}" for i in range(5)]
    producer = AIOKafkaProducer(**conf(combo, acks="all"))
    await timed(producer.start(), "producer start")
    try:
        offsets = [(await timed(producer.send_and_wait(sc.GRANTED, v.encode()), "send_and_wait")).offset
                   for v in values]
    finally:
        await producer.stop()
    group = f"{sc.GROUP_PREFIX}{CLIENT}-{combo.id}-{sc.RUN_ID}"
    consumer = AIOKafkaConsumer(sc.GRANTED, **conf(combo, group_id=group, auto_offset_reset="earliest",
                                                   enable_auto_commit=False))
    await timed(consumer.start(), "consumer start")
    want, got = set(values), set()
    deadline = time.monotonic() + sc.STEP_TIMEOUT
    try:
        while want - got:
            check(time.monotonic() < deadline,
                  f"group {group}: got {len(got & want)}/{len(want)} records in {sc.STEP_TIMEOUT:.0f}s")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.update(r.value.decode() for r in records)
        await timed(consumer.commit(), "commit")
        committed = await timed(consumer.committed(next(iter(consumer.assignment()))), "committed")
    finally:
        await consumer.stop()
    check(committed is not None and committed >= max(offsets) + 1,
          f"committed offset {committed}, expected at least {max(offsets) + 1}")
    return (f"produced {len(values)} records (acks=all) to {sc.GRANTED}, consumed them back in group "
            f"{group}, committed offset {committed}")


async def bad_credentials(combo):
    CAPTURED.records.clear()
    if combo.sasl:
        c = conf(combo, password=sc.WRONG_PASSWORD)
        what, cause = "wrong password", "SaslAuthenticationFailed"
    else:
        c = conf(combo, cert=(sc.ROGUE_CERT, sc.ROGUE_KEY))
        # TLS 1.3: the client's side of the handshake is over before the broker checks its
        # certificate; asyncio drops the broker's alert, so aiokafka sees the connection close.
        what, cause = "self-signed CN=alice certificate", ""
    started = time.monotonic()
    producer = AIOKafkaProducer(**c)
    raised = None
    try:
        await timed(producer.start(), f"{what}: producer start", sc.FAST_SECONDS)
    except Errors.KafkaError as e:
        raised = e
    finally:
        await producer.stop()
    took = time.monotonic() - started
    check(raised is not None, f"{what}: the producer started")
    ts, logged = CAPTURED.find("Unable connect to")
    check(logged and cause in logged,
          f"{what}: start() raised {type(raised).__name__}: {raised}, but aiokafka logged no "
          f"'Unable connect to' with '{cause}' ({[r.getMessage() for _, r in CAPTURED.records][-5:]})")
    return (f"{what}: aiokafka logged \"{logged}\" after {ts - started:.1f}s; start() raised "
            f"{type(raised).__name__}: {raised} after {took:.1f}s")


async def topic_denied(combo):
    producer = AIOKafkaProducer(**conf(combo))
    await timed(producer.start(), "producer start")
    started = time.monotonic()
    try:
        await timed(producer.send_and_wait(sc.SECRET, b"must not be stored"), "send_and_wait")
    except Errors.TopicAuthorizationFailedError as e:
        return f"send_and_wait raised {type(e).__name__}: {e} after {time.monotonic() - started:.1f}s"
    except Errors.KafkaError as e:
        raise sc.CheckFailure(f"send_and_wait raised {type(e).__name__}: {e}, "
                              "expected TopicAuthorizationFailedError") from e
    finally:
        await producer.stop()
    raise sc.CheckFailure(f"the produce to {sc.SECRET} succeeded")


async def group_denied(combo):
    group = f"{sc.DENIED_GROUP_PREFIX}{CLIENT}-{combo.id}-{sc.RUN_ID}"
    consumer = AIOKafkaConsumer(sc.GRANTED, **conf(combo, group_id=group, auto_offset_reset="earliest"))
    started = time.monotonic()
    try:
        await timed(consumer.start(), "consumer start")
        deadline = started + sc.STEP_TIMEOUT
        while time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=500)
            check(not got, f"group {group} got records")
    except Errors.GroupAuthorizationFailedError as e:
        return f"group {group}: consumer raised {type(e).__name__}: {e} after {time.monotonic() - started:.1f}s"
    except Errors.KafkaError as e:
        raise sc.CheckFailure(f"consumer raised {type(e).__name__}: {e}, "
                              "expected GroupAuthorizationFailedError") from e
    finally:
        await consumer.stop()
    raise sc.CheckFailure(f"no GroupAuthorizationFailedError within {sc.STEP_TIMEOUT:.0f}s")


async def metadata_hides(combo):
    admin = AIOKafkaAdminClient(**conf(combo))
    await timed(admin.start(), "admin start")
    try:
        topics = sorted(await timed(admin.list_topics(), "list_topics"))
    finally:
        await admin.close()
    check(sc.GRANTED in topics, f"alice's list_topics lacks {sc.GRANTED}: {topics}")
    check(sc.SECRET not in topics, f"alice's list_topics shows {sc.SECRET}: {topics}")
    return f"alice's list_topics: {topics}"


async def run_check(rep, combo, name, fn):
    """Reporter.run for a coroutine: never raises (the other checks still run)."""
    started = time.monotonic()
    try:
        detail = await fn(combo)
    except Exception as e:  # noqa: BLE001 - any client exception fails the check
        return rep.failed(combo, name, e)
    return rep.passed(combo, name, detail, time.monotonic() - started)


async def main():
    sc.require_env()
    rep = sc.Reporter(CLIENT)
    print(f"# aiokafka {aiokafka.__version__}; phase {sc.PHASE}", flush=True)
    await setup(rep)
    checks = [("produce-consume", produce_consume), ("bad-credentials", bad_credentials),
              ("topic-denied", topic_denied), ("group-denied", group_denied),
              ("metadata-hides", metadata_hides)]
    for combo in sc.combos():
        for name, fn in checks:
            await run_check(rep, combo, name, fn)
    return rep.finish()


if __name__ == "__main__":
    print(f"# watchdog: the whole program fails after {sc.TOTAL_TIMEOUT:.0f}s", flush=True)
    faulthandler.dump_traceback_later(sc.TOTAL_TIMEOUT, exit=True)
    sys.exit(asyncio.run(main()))
