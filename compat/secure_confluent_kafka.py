#!/usr/bin/env python3
"""confluent-kafka (bundled librdkafka) against a secured Freshet broker; run by compat/secure.sh.

    bash compat/secure.sh confluent-kafka      (or: restart)

Setup as admin (SASL_PLAINTEXT + SCRAM-SHA-512, a super user): AdminClient.create_topics of
`granted` and `secret`. Then, as alice, for SASL_SSL+SCRAM-SHA-256, SASL_SSL+SCRAM-SHA-512,
SASL_PLAINTEXT+PLAIN and SSL+client certificate (librdkafka does them all):
  produce-consume  Producer(acks=all) to `granted`, a Consumer in group alice-... reads the
                   records back and commits them
  bad-credentials  a wrong password (SSL: a self-signed CN=alice certificate): error_cb
                   reports _AUTHENTICATION (SSL: the _SSL / _TRANSPORT handshake failure)
                   within SECURE_FAST_SECONDS, and list_topics fails
  topic-denied     producing to `secret`: the delivery report says TOPIC_AUTHORIZATION_FAILED
  group-denied     a Consumer in group bob-... polls GROUP_AUTHORIZATION_FAILED
  metadata-hides   list_topics as alice shows `granted` and not `secret` (admin sees both)
SECURE_PHASE=before-restart does the setup and produce-consume on SASL_SSL+SCRAM-SHA-256
only; after-restart runs every check again on the restarted broker (no setup).
Debug: LIBRDKAFKA_DEBUG=security,broker,protocol.
"""

import faulthandler
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, libversion
from confluent_kafka import version as ck_version
from confluent_kafka.admin import AdminClient, NewTopic

import secure_common as sc
from secure_common import check

CLIENT = "confluent-kafka"


def conf(combo, user="alice", password=None, cert=None, errors=None, **extra):
    """librdkafka settings for `combo` as `user`; `errors` collects error_cb errors."""
    if password is None:
        password = sc.ALICE_PASSWORD if user == "alice" else sc.ADMIN_PASSWORD
    c = {
        "bootstrap.servers": combo.bootstrap,
        "security.protocol": combo.protocol,
        "socket.timeout.ms": 10000,
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 2000,
    }
    if errors is not None:
        def on_error(err):
            print(f"# client error: {err}", file=sys.stderr, flush=True)
            errors.append(err)
        c["error_cb"] = on_error
    if combo.tls:
        c["ssl.ca.location"] = sc.CA
        c["ssl.endpoint.identification.algorithm"] = "https"
    client_cert = combo.client_cert(cert)
    if client_cert:
        c["ssl.certificate.location"], c["ssl.key.location"] = client_cert
    if combo.sasl:
        c["sasl.mechanism"] = combo.mechanism
        c["sasl.username"] = user
        c["sasl.password"] = password
    if os.environ.get("LIBRDKAFKA_DEBUG"):
        c["debug"] = os.environ["LIBRDKAFKA_DEBUG"]
    c.update(extra)
    return c


def setup(rep):
    admin = AdminClient(conf(sc.admin_combo(), user="admin"))
    futures = admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)
                                   for t in (sc.GRANTED, sc.SECRET)],
                                  request_timeout=sc.STEP_TIMEOUT)
    for topic, future in futures.items():
        try:
            future.result(timeout=sc.STEP_TIMEOUT)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    md = admin.list_topics(timeout=sc.STEP_TIMEOUT)
    check(sc.GRANTED in md.topics and sc.SECRET in md.topics,
          f"admin's list_topics lacks a topic: {sorted(md.topics)}")
    rep.ok(f"setup: admin (super user, SASL_PLAINTEXT+SCRAM-SHA-512) created topics "
           f"{sc.GRANTED} and {sc.SECRET}")


def produce_consume(combo):
    values = [f"{CLIENT}-{combo.id}-{sc.RUN_ID}-{i}" for i in range(5)]
    errors = []
    producer = Producer(conf(combo, errors=errors, acks="all", **{"message.timeout.ms": 20000}))
    delivered, failed = [], []

    def on_delivery(err, msg):
        (failed if err else delivered).append(err or msg.offset())

    for v in values:
        producer.produce(sc.GRANTED, value=v.encode(), on_delivery=on_delivery)
    left = producer.flush(sc.STEP_TIMEOUT)
    check(left == 0 and not failed, f"produce to {sc.GRANTED}: {left} undelivered, failures {failed[:3]}")
    check(len(delivered) == len(values), f"{len(delivered)} delivery reports, expected {len(values)}")

    group = f"{sc.GROUP_PREFIX}{CLIENT}-{combo.id}-{sc.RUN_ID}"
    consumer = Consumer(conf(combo, errors=errors, **{
        "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "session.timeout.ms": 10000}))
    consumer.subscribe([sc.GRANTED])
    want, got = set(values), set()
    deadline = time.monotonic() + sc.STEP_TIMEOUT
    last = None
    try:
        while want - got:
            check(time.monotonic() < deadline,
                  f"group {group}: got {len(got & want)}/{len(want)} records in {sc.STEP_TIMEOUT:.0f}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                check(msg.error().code() == KafkaError._PARTITION_EOF, f"consumer error {msg.error()}")
                continue
            got.add(msg.value().decode())
            last = msg
        committed = consumer.commit(message=last, asynchronous=False)
        errs = [tp for tp in committed or [] if tp.error]
        check(not errs, f"commit errors: {errs}")
    finally:
        consumer.close()
    return (f"produced {len(values)} records (acks=all) to {sc.GRANTED}, consumed them back in group "
            f"{group} and committed offset {last.offset() + 1}")


def bad_credentials(combo):
    """librdkafka does not fail a call on an authentication error (it keeps reconnecting, with
    backoff, until the call's timeout): it reports the error through error_cb at once."""
    errors = []
    if combo.sasl:
        c = conf(combo, password=sc.WRONG_PASSWORD, errors=errors)
        want = {KafkaError._AUTHENTICATION}
        what = "wrong password"
    else:
        c = conf(combo, cert=(sc.ROGUE_CERT, sc.ROGUE_KEY), errors=errors)
        want = {KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._AUTHENTICATION}
        what = "self-signed CN=alice certificate"
    started = time.monotonic()
    producer = Producer(c)
    seen = []
    while not seen and time.monotonic() - started < sc.FAST_SECONDS:
        producer.poll(0.1)
        seen = [e for e in errors if e.code() in want]
    took = time.monotonic() - started
    check(seen, f"{what}: no {' or '.join(KafkaError(w).name() for w in sorted(want))} error from "
                f"error_cb within {sc.FAST_SECONDS:.0f}s (got {[str(e) for e in errors]})")
    listed, list_error = None, None
    try:
        listed = producer.list_topics(timeout=1)
    except KafkaException as e:
        list_error = e.args[0]
    check(listed is None, f"{what}: list_topics succeeded: {listed and sorted(listed.topics)}")
    return (f"{what}: error_cb {seen[0].name()} \"{seen[0].str()}\" after {took:.1f}s; "
            f"list_topics then failed with {list_error.name()}")


def topic_denied(combo):
    errors = []
    producer = Producer(conf(combo, errors=errors, **{"message.timeout.ms": 15000}))
    reports = []
    producer.produce(sc.SECRET, value=b"must not be stored", on_delivery=lambda err, msg: reports.append(err))
    started = time.monotonic()
    left = producer.flush(sc.STEP_TIMEOUT)
    took = time.monotonic() - started
    check(left == 0 and len(reports) == 1, f"no delivery report for the produce to {sc.SECRET}")
    err = reports[0]
    check(err is not None, f"the produce to {sc.SECRET} succeeded")
    check(err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
          f"delivery report error {err.name()} ({err.str()}), expected TOPIC_AUTHORIZATION_FAILED")
    return f"delivery report {err.name()} \"{err.str()}\" after {took:.1f}s"


def group_denied(combo):
    errors = []
    group = f"{sc.DENIED_GROUP_PREFIX}{CLIENT}-{combo.id}-{sc.RUN_ID}"
    consumer = Consumer(conf(combo, errors=errors, **{
        "group.id": group, "auto.offset.reset": "earliest", "session.timeout.ms": 10000}))
    consumer.subscribe([sc.GRANTED])
    deadline = time.monotonic() + sc.STEP_TIMEOUT
    started = time.monotonic()
    try:
        while True:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error():
                if msg.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                    err = msg.error()
                    break
                check(msg.error().code() == KafkaError._PARTITION_EOF,
                      f"consumer error {msg.error()}, expected GROUP_AUTHORIZATION_FAILED")
            check(msg is None or msg.error(), f"group {group} got a record: {msg and msg.value()}")
            hits = [e for e in errors if e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED]
            if hits:
                err = hits[0]
                break
            check(time.monotonic() < deadline,
                  f"no GROUP_AUTHORIZATION_FAILED within {sc.STEP_TIMEOUT:.0f}s (errors: {[str(e) for e in errors]})")
    finally:
        consumer.close()
    return f"group {group}: consumer poll gave {err.name()} \"{err.str()}\" after {time.monotonic() - started:.1f}s"


def metadata_hides(combo):
    md = AdminClient(conf(combo)).list_topics(timeout=sc.STEP_TIMEOUT)
    topics = sorted(md.topics)
    check(sc.GRANTED in md.topics, f"alice's list_topics lacks {sc.GRANTED}: {topics}")
    check(sc.SECRET not in md.topics, f"alice's list_topics shows {sc.SECRET}: {topics}")
    admin = AdminClient(conf(sc.admin_combo(), user="admin")).list_topics(timeout=sc.STEP_TIMEOUT)
    check(sc.SECRET in admin.topics, f"admin's list_topics lacks {sc.SECRET}: {sorted(admin.topics)}")
    return f"alice's list_topics: {topics} (admin's also has {sc.SECRET})"


def main():
    sc.require_env()
    client = CLIENT
    if sc.PHASE != "matrix":
        client = f"{CLIENT} ({sc.PHASE})"
    rep = sc.Reporter(client)
    print(f"# confluent-kafka {ck_version()[0]}, librdkafka {libversion()[0]}; phase {sc.PHASE}",
          flush=True)
    if sc.PHASE != "after-restart":
        setup(rep)
    checks = [("produce-consume", produce_consume), ("bad-credentials", bad_credentials),
              ("topic-denied", topic_denied), ("group-denied", group_denied),
              ("metadata-hides", metadata_hides)]
    combos = sc.combos()
    if sc.PHASE == "before-restart":
        combos, checks = combos[:1], checks[:1]
    for combo in combos:
        for name, fn in checks:
            rep.run(combo, name, lambda fn=fn, combo=combo: fn(combo))
    return rep.finish()


if __name__ == "__main__":
    print(f"# watchdog: the whole program fails after {sc.TOTAL_TIMEOUT:.0f}s", flush=True)
    faulthandler.dump_traceback_later(sc.TOTAL_TIMEOUT, exit=True)
    sys.exit(main())
