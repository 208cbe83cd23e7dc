"""Shared by the Python programs of compat/secure.sh (secure_confluent_kafka.py,
secure_kafka_python.py, secure_aiokafka.py): the combinations, the broker's addresses and
credentials from the environment, and the reporting of checks.

Environment (set by compat/secure.sh): SASL_SSL_BOOTSTRAP, SASL_PLAINTEXT_BOOTSTRAP,
SSL_BOOTSTRAP (host:port), CERTS_DIR (compat/certs.sh output, plus rogue/alice.{crt,key}),
ADMIN_PASSWORD, ALICE_PASSWORD, SECURE_PHASE (matrix | before-restart | after-restart),
SECURE_COMBOS (comma-separated subset of the combination ids; default all).
"""

import logging
import os
import sys
import time
import traceback
import uuid

GRANTED = "granted"  # alice: Read + Write
SECRET = "secret"  # alice: nothing
GROUP_PREFIX = "alice-"  # alice: Read on every group starting with it
DENIED_GROUP_PREFIX = "bob-"  # alice: nothing
FAST_SECONDS = float(os.environ.get("SECURE_FAST_SECONDS", "10"))  # "fails fast" bound
STEP_TIMEOUT = float(os.environ.get("COMPAT_STEP_TIMEOUT", "30"))
TOTAL_TIMEOUT = float(os.environ.get("COMPAT_TIMEOUT", "140"))
RUN_ID = uuid.uuid4().hex[:8]
PHASE = os.environ.get("SECURE_PHASE", "matrix")

CHECKS = ["produce-consume", "bad-credentials", "topic-denied", "group-denied", "metadata-hides"]


class Combo:
    """One way of connecting as alice: a listener plus a SASL mechanism or a certificate."""

    def __init__(self, cid, label, protocol, mechanism):
        self.id = cid
        self.label = label
        self.protocol = protocol
        self.mechanism = mechanism  # None: SSL with a client certificate
        env = {"SASL_SSL": "SASL_SSL_BOOTSTRAP", "SASL_PLAINTEXT": "SASL_PLAINTEXT_BOOTSTRAP",
               "SSL": "SSL_BOOTSTRAP"}[protocol]
        self.bootstrap = os.environ.get(env, "")

    @property
    def tls(self):
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self):
        return self.mechanism is not None

    def client_cert(self, cert=None):
        """(certificate, key) files this combination presents, or None: SSL presents alice's
        (or `cert`), SASL_SSL the SASL_SSL_CERT, SASL_PLAINTEXT none."""
        if self.protocol == "SSL":
            return cert or (ALICE_CERT, ALICE_KEY)
        if self.protocol == "SASL_SSL":
            return SASL_SSL_CERT
        return None

    def __str__(self):
        return self.label


ALL_COMBOS = [
    Combo("sasl_ssl-scram256", "SASL_SSL+SCRAM-SHA-256", "SASL_SSL", "SCRAM-SHA-256"),
    Combo("sasl_ssl-scram512", "SASL_SSL+SCRAM-SHA-512", "SASL_SSL", "SCRAM-SHA-512"),
    Combo("sasl_plaintext-plain", "SASL_PLAINTEXT+PLAIN", "SASL_PLAINTEXT", "PLAIN"),
    Combo("ssl-cert", "SSL+client-cert", "SSL", None),
]


def combos():
    wanted = os.environ.get("SECURE_COMBOS", "")
    if not wanted:
        return list(ALL_COMBOS)
    ids = [w.strip() for w in wanted.split(",") if w.strip()]
    unknown = [i for i in ids if i not in {c.id for c in ALL_COMBOS}]
    if unknown:
        raise SystemExit(f"SECURE_COMBOS: unknown combination(s) {unknown}")
    return [c for c in ALL_COMBOS if c.id in ids]


def admin_combo():
    """admin over SASL_PLAINTEXT + SCRAM-SHA-512, for the setup."""
    return Combo("admin", "SASL_PLAINTEXT+SCRAM-SHA-512", "SASL_PLAINTEXT", "SCRAM-SHA-512")


CERTS = os.environ.get("CERTS_DIR", "")
CA = os.path.join(CERTS, "ca.crt")
ALICE_CERT = os.path.join(CERTS, "alice.crt")
ALICE_KEY = os.path.join(CERTS, "alice.key")
# The certificate SASL_SSL clients present, or None (see compat/secure.sh): CN=sasl-client,
# which no ACL names, so only the SASL user can give them alice's rights.
SASL_SSL_CERT = None
if os.environ.get("SASL_SSL_CLIENT_CERT", "1") == "1":
    SASL_SSL_CERT = (os.path.join(CERTS, "sasl-client.crt"), os.path.join(CERTS, "sasl-client.key"))
ROGUE_CERT = os.path.join(CERTS, "rogue", "alice.crt")
ROGUE_KEY = os.path.join(CERTS, "rogue", "alice.key")
ADMIN_PASSWORD = os.environ.get("ADMIN_PASSWORD", "")
ALICE_PASSWORD = os.environ.get("ALICE_PASSWORD", "")
WRONG_PASSWORD = "not-" + ALICE_PASSWORD


class CheckFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailure(msg)


class Reporter:
    """`ok N - [combo] ...` per verified step, a RESULT line per check, a summary."""

    def __init__(self, client):
        self.client = client
        self.step = 0
        self.results = []  # (combo label, check, status, detail)

    def ok(self, msg):
        self.step += 1
        print(f"ok {self.step} - {msg}", flush=True)

    def result(self, combo, name, status, detail):
        self.results.append((str(combo), name, status, detail))
        detail = " ".join(str(detail).split())
        print(f"RESULT|{self.client}|{combo}|{name}|{status}|{detail}", flush=True)

    def run(self, combo, name, fn):
        """Runs one check; never raises (the other checks still run)."""
        started = time.monotonic()
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - any client exception fails the check
            return self.failed(combo, name, e)
        return self.passed(combo, name, detail, time.monotonic() - started)

    def passed(self, combo, name, detail, took):
        self.ok(f"[{combo}] {name}: {detail} ({took:.1f}s)")
        self.result(combo, name, "PASS", detail)
        return True

    def failed(self, combo, name, error):
        if isinstance(error, CheckFailure):
            msg = str(error)
        else:
            traceback.print_exception(error)
            msg = f"unexpected {type(error).__name__}: {error}"
        print(f"FAIL: [{combo}] {name}: {msg}", file=sys.stderr, flush=True)
        self.result(combo, name, "FAIL", msg)
        return False

    def skip(self, combo, name, why):
        print(f"skip - [{combo}] {name}: {why}", flush=True)
        self.result(combo, name, "SKIP", why)

    def finish(self):
        failed = [r for r in self.results if r[2] == "FAIL"]
        passed = [r for r in self.results if r[2] == "PASS"]
        skipped = [r for r in self.results if r[2] == "SKIP"]
        verdict = "FAIL" if failed else "PASS"
        print(f"{self.client} secure suite ({PHASE}): {verdict} ({len(passed)} checks passed, "
              f"{len(failed)} failed, {len(skipped)} skipped)", flush=True)
        return 1 if failed else 0


def require_env():
    missing = [v for v in ("SASL_SSL_BOOTSTRAP", "SASL_PLAINTEXT_BOOTSTRAP", "SSL_BOOTSTRAP",
                           "CERTS_DIR", "ADMIN_PASSWORD", "ALICE_PASSWORD")
               if not os.environ.get(v)]
    if missing:
        raise SystemExit(f"missing environment: {', '.join(missing)} (run through compat/secure.sh)")


def expect_fast(started, what):
    took = time.monotonic() - started
    check(took <= FAST_SECONDS, f"{what} took {took:.1f}s, more than {FAST_SECONDS:.0f}s")
    return took


class Captured(logging.Handler):
    """Keeps a client's log records, to find the cause it logged but did not raise."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append((time.monotonic(), record))

    def find(self, *needles):
        for ts, record in self.records:
            text = record.getMessage()
            if any(n in text for n in needles):
                return ts, text
        return None, None


def capture_logs(logger_name, debug_env):
    """Captures the client's logger; its lines also go to stderr when `debug_env` is set."""
    captured = Captured()
    debug = bool(os.environ.get(debug_env))
    logger = logging.getLogger(logger_name)
    logger.addHandler(captured)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = debug
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="# %(asctime)s %(name)s %(levelname)s %(message)s")
    return captured, debug
