#!/usr/bin/env python3
"""kafka-python (pure Python) against a secured Freshet broker; run by compat/secure.sh.

    bash compat/secure.sh kafka-python

Setup as admin (SASL_PLAINTEXT + SCRAM-SHA-512, a super user): KafkaAdminClient.create_topics
of `granted` and `secret`. Then, as alice, for SASL_SSL+SCRAM-SHA-256, SASL_SSL+SCRAM-SHA-512,
SASL_PLAINTEXT+PLAIN and SSL+client certificate (kafka-python does them all: SASL PLAIN and
SCRAM, TLS through Python's ssl with ssl_certfile/ssl_keyfile):
  produce-consume  KafkaProducer(acks='all') to `granted`; a KafkaConsumer in group alice-...
                   reads the records back and commits them
  bad-credentials  a wrong password: kafka-python logs SaslAuthenticationFailedError with the
                   broker's message at once, closes the connection and retries; the send
                   gives up with KafkaTimeoutError after max_block_ms (3 s here). SSL: a
                   self-signed CN=alice certificate: ssl.SSLError (unknown CA alert)
  topic-denied     producer.send to `secret` raises TopicAuthorizationFailedError
  group-denied     KafkaConsumer.poll in group bob-... raises GroupAuthorizationFailedError
  metadata-hides   KafkaAdminClient.list_topics as alice shows `granted`, not `secret`
Debug: KAFKA_PYTHON_DEBUG=1.
"""

import faulthandler
import logging
import ssl
import sys
import time

import kafka
import kafka.errors as Errors
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

import secure_common as sc
from secure_common import check

CLIENT = "kafka-python"
BAD_CREDENTIALS_BLOCK_MS = 3000  # how long a send waits for metadata it cannot get


CAPTURED, _ = sc.capture_logs("kafka", "KAFKA_PYTHON_DEBUG")


def conf(combo, user="alice", password=None, cert=None, **extra):
    if password is None:
        password = sc.ALICE_PASSWORD if user == "alice" else sc.ADMIN_PASSWORD
    c = {
        "bootstrap_servers": combo.bootstrap,
        "security_protocol": combo.protocol,
        "client_id": f"{CLIENT}-{sc.RUN_ID}",
        "request_timeout_ms": 20000,
        "api_version_auto_timeout_ms": 10000,
        "reconnect_backoff_ms": 100,
        "reconnect_backoff_max_ms": 1000,
    }
    if combo.tls:
        c["ssl_cafile"] = sc.CA
        c["ssl_check_hostname"] = True
    client_cert = combo.client_cert(cert)
    if client_cert:
        c["ssl_certfile"], c["ssl_keyfile"] = client_cert
    if combo.sasl:
        c["sasl_mechanism"] = combo.mechanism
        c["sasl_plain_username"] = user
        c["sasl_plain_password"] = password
    c.update(extra)
    return c


def admin_conf(combo, **kw):
    c = conf(combo, **kw)
    c.pop("reconnect_backoff_max_ms")  # not a KafkaAdminClient setting
    return c


def setup(rep):
    admin = KafkaAdminClient(**admin_conf(sc.admin_combo(), user="admin"))
    try:
        try:
            admin.create_topics([NewTopic(t, 1, 1) for t in (sc.GRANTED, sc.SECRET)])
        except Errors.TopicAlreadyExistsError:
            pass
        topics = admin.list_topics()
    finally:
        admin.close()
    check(sc.GRANTED in topics and sc.SECRET in topics, f"admin's list_topics lacks a topic: {topics}")
    rep.ok(f"setup: admin (super user, SASL_PLAINTEXT+SCRAM-SHA-512) created topics "
           f"{sc.GRANTED} and {sc.SECRET}")


def produce_consume(combo):
    values = [f"{CLIENT}-{combo.id}-{sc.RUN_ID}-{i}" for i in range(5)]
    producer = KafkaProducer(**conf(combo, acks="all"))
    try:
        offsets = [producer.send(sc.GRANTED, v.encode()).get(timeout=sc.STEP_TIMEOUT).offset
                   for v in values]
        producer.flush(sc.STEP_TIMEOUT)
    finally:
        producer.close(timeout=5)
    group = f"{sc.GROUP_PREFIX}{CLIENT}-{combo.id}-{sc.RUN_ID}"
    consumer = KafkaConsumer(sc.GRANTED, **conf(combo, group_id=group, auto_offset_reset="earliest",
                                                enable_auto_commit=False))
    want, got = set(values), set()
    deadline = time.monotonic() + sc.STEP_TIMEOUT
    try:
        while want - got:
            check(time.monotonic() < deadline,
                  f"group {group}: got {len(got & want)}/{len(want)} records in {sc.STEP_TIMEOUT:.0f}s")
            for records in consumer.poll(timeout_ms=500).values():
                got.update(r.value.decode() for r in records)
        consumer.commit()
        committed = consumer.committed(next(iter(consumer.assignment())))
    finally:
        consumer.close(autocommit=False)
    check(committed is not None and committed >= max(offsets) + 1,
          f"committed offset {committed}, expected at least {max(offsets) + 1}")
    return (f"produced {len(values)} records (acks=all) to {sc.GRANTED}, consumed them back in group "
            f"{group}, committed offset {committed}")


def bad_credentials(combo):
    """kafka-python logs the failed authentication (ERROR, with the broker's message), closes
    the connection and retries with backoff; a send then gives up after max_block_ms with
    KafkaTimeoutError. A TLS failure may be raised directly as ssl.SSLError."""
    CAPTURED.records.clear()
    if combo.sasl:
        c = conf(combo, password=sc.WRONG_PASSWORD)
        what, needles = "wrong password", ("SaslAuthenticationFailedError",)
    else:
        c = conf(combo, cert=(sc.ROGUE_CERT, sc.ROGUE_KEY))
        what, needles = "self-signed CN=alice certificate", ("SSLError", "SSL", "certificate")
    c["max_block_ms"] = BAD_CREDENTIALS_BLOCK_MS
    started = time.monotonic()
    raised, producer = None, None
    try:
        producer = KafkaProducer(**c)
        producer.send(sc.GRANTED, b"must not be stored").get(timeout=sc.STEP_TIMEOUT)
    except (Errors.KafkaError, ssl.SSLError, OSError) as e:
        raised = e
    finally:
        if producer is not None:
            producer.close(timeout=1)
    took = time.monotonic() - started
    check(raised is not None, f"{what}: the produce to {sc.GRANTED} succeeded")
    if isinstance(raised, ssl.SSLError):
        first, logged = took, f"{type(raised).__name__}: {raised}"
    else:
        ts, logged = CAPTURED.find(*needles)
        check(logged, f"{what}: {type(raised).__name__} raised, but no log record with "
                      f"{' or '.join(needles)} ({[r.getMessage() for _, r in CAPTURED.records][-5:]})")
        first = ts - started
    check(first <= sc.FAST_SECONDS, f"{what}: first authentication error after {first:.1f}s")
    return (f"{what}: \"{logged}\" after {first:.1f}s; send raised {type(raised).__name__} "
            f"after {took:.1f}s")


def topic_denied(combo):
    producer = KafkaProducer(**conf(combo, max_block_ms=15000))
    started = time.monotonic()
    try:
        producer.send(sc.SECRET, b"must not be stored").get(timeout=sc.STEP_TIMEOUT)
    except Errors.TopicAuthorizationFailedError as e:
        return f"send raised {type(e).__name__}: {e} after {time.monotonic() - started:.1f}s"
    except Errors.KafkaError as e:
        raise sc.CheckFailure(f"send raised {type(e).__name__}: {e}, expected TopicAuthorizationFailedError")
    finally:
        producer.close(timeout=5)
    raise sc.CheckFailure(f"the produce to {sc.SECRET} succeeded")


def group_denied(combo):
    group = f"{sc.DENIED_GROUP_PREFIX}{CLIENT}-{combo.id}-{sc.RUN_ID}"
    consumer = KafkaConsumer(sc.GRANTED, **conf(combo, group_id=group, auto_offset_reset="earliest"))
    started = time.monotonic()
    deadline = started + sc.STEP_TIMEOUT
    try:
        while time.monotonic() < deadline:
            got = consumer.poll(timeout_ms=500)
            check(not got, f"group {group} got records")
    except Errors.GroupAuthorizationFailedError as e:
        return f"group {group}: poll raised {type(e).__name__}: {e} after {time.monotonic() - started:.1f}s"
    except Errors.KafkaError as e:
        raise sc.CheckFailure(f"poll raised {type(e).__name__}: {e}, expected GroupAuthorizationFailedError")
    finally:
        consumer.close(autocommit=False)
    raise sc.CheckFailure(f"no GroupAuthorizationFailedError within {sc.STEP_TIMEOUT:.0f}s")


def metadata_hides(combo):
    admin = KafkaAdminClient(**admin_conf(combo))
    try:
        topics = sorted(admin.list_topics())
    finally:
        admin.close()
    check(sc.GRANTED in topics, f"alice's list_topics lacks {sc.GRANTED}: {topics}")
    check(sc.SECRET not in topics, f"alice's list_topics shows {sc.SECRET}: {topics}")
    return f"alice's list_topics: {topics}"


def with_logged_errors(fn):
    """fn, whose failures also quote the last errors kafka-python logged (it often logs the
    cause and raises something generic, e.g. KafkaConnectionError: Connection to 1 failed)."""
    def run(combo):
        CAPTURED.records.clear()
        try:
            return fn(combo)
        except Exception as e:
            logged = [r.getMessage() for _, r in CAPTURED.records if r.levelno >= logging.ERROR][-2:]
            if not logged:
                raise
            what = str(e) if isinstance(e, sc.CheckFailure) else f"{type(e).__name__}: {e}"
            raise sc.CheckFailure(f"{what}; kafka-python logged: {logged}") from e
    return run


def main():
    sc.require_env()
    rep = sc.Reporter(CLIENT)
    print(f"# kafka-python {kafka.__version__}; phase {sc.PHASE}", flush=True)
    setup(rep)
    checks = [("produce-consume", produce_consume), ("bad-credentials", bad_credentials),
              ("topic-denied", topic_denied), ("group-denied", group_denied),
              ("metadata-hides", metadata_hides)]
    for combo in sc.combos():
        for name, fn in checks:
            rep.run(combo, name, lambda fn=fn, combo=combo: with_logged_errors(fn)(combo))
    return rep.finish()


if __name__ == "__main__":
    print(f"# watchdog: the whole program fails after {sc.TOTAL_TIMEOUT:.0f}s", flush=True)
    faulthandler.dump_traceback_later(sc.TOTAL_TIMEOUT, exit=True)
    sys.exit(main())
