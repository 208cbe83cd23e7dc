#!/usr/bin/env node
// kafkajs 2.2.4 against a secured Freshet broker; run by compat/secure.sh.
//
//   bash compat/secure.sh kafkajs
//
// Setup as admin (SASL_PLAINTEXT + SCRAM-SHA-512, a super user): admin.createTopics of `granted`
// and `secret`. Then, as alice, for SASL_SSL+SCRAM-SHA-256, SASL_SSL+SCRAM-SHA-512,
// SASL_PLAINTEXT+PLAIN and SSL+client certificate (kafkajs does them all: sasl mechanisms
// plain, scram-sha-256, scram-sha-512; ssl { ca, cert, key } through node's tls):
//   produce-consume  producer.send (acks -1) to `granted`; a consumer in group alice-... reads
//                    the records back and commits them (commitOffsets)
//   bad-credentials  a wrong password: connect() rejects with KafkaJSSASLAuthenticationError;
//                    SSL, a self-signed CN=alice certificate: connect() rejects with the TLS
//                    error (KafkaJSConnectionError), within SECURE_FAST_SECONDS
//   topic-denied     producer.send to `secret` rejects with TOPIC_AUTHORIZATION_FAILED
//   group-denied     a consumer in group bob-... crashes: FindCoordinator answers
//                    GROUP_AUTHORIZATION_FAILED, which kafkajs 2.2.4 reports as
//                    KafkaJSGroupCoordinatorNotFound (the code is in its debug log)
//   metadata-hides   admin.listTopics as alice shows `granted`, not `secret`
// Each check prints `ok N - [combination] check: detail` and a line
// `RESULT|kafkajs|combination|check|PASS/FAIL|detail` (see compat/secure.sh).
// Knobs: SECURE_COMBOS, SECURE_FAST_SECONDS (default 10), COMPAT_STEP_TIMEOUT (default 30),
//        COMPAT_TIMEOUT (default 140), KAFKAJS_LOG_LEVEL (default NOTHING; DEBUG shows every
//        request and response).
'use strict'

const crypto = require('crypto')
const fs = require('fs')
const path = require('path')
const { Kafka, logLevel } = require('kafkajs')
const kafkajsVersion = require('kafkajs/package.json').version

const CLIENT = 'kafkajs'
const GRANTED = 'granted'
const SECRET = 'secret'
const GROUP_PREFIX = 'alice-'
const DENIED_GROUP_PREFIX = 'bob-'
const FAST_MS = parseFloat(process.env.SECURE_FAST_SECONDS || '10') * 1000
const STEP_MS = parseFloat(process.env.COMPAT_STEP_TIMEOUT || '30') * 1000
const TOTAL_MS = parseFloat(process.env.COMPAT_TIMEOUT || '140') * 1000
const RUN_ID = crypto.randomBytes(4).toString('hex')
const CERTS = process.env.CERTS_DIR || ''
const ALICE_PASSWORD = process.env.ALICE_PASSWORD || ''
const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD || ''
const WRONG_PASSWORD = 'not-' + ALICE_PASSWORD
const PHASE = process.env.SECURE_PHASE || 'matrix'
// See compat/secure.sh: SASL_SSL clients present CN=sasl-client, which no ACL names.
const SASL_SSL_CERT = (process.env.SASL_SSL_CLIENT_CERT || '1') === '1' ? 'sasl-client' : null

const ALL_COMBOS = [
  { id: 'sasl_ssl-scram256', label: 'SASL_SSL+SCRAM-SHA-256', protocol: 'SASL_SSL', mechanism: 'scram-sha-256' },
  { id: 'sasl_ssl-scram512', label: 'SASL_SSL+SCRAM-SHA-512', protocol: 'SASL_SSL', mechanism: 'scram-sha-512' },
  { id: 'sasl_plaintext-plain', label: 'SASL_PLAINTEXT+PLAIN', protocol: 'SASL_PLAINTEXT', mechanism: 'plain' },
  { id: 'ssl-cert', label: 'SSL+client-cert', protocol: 'SSL', mechanism: null }
]
const ADMIN_COMBO = { id: 'admin', label: 'SASL_PLAINTEXT+SCRAM-SHA-512', protocol: 'SASL_PLAINTEXT', mechanism: 'scram-sha-512' }

class CheckFailure extends Error {}
const check = (cond, msg) => {
  if (!cond) throw new CheckFailure(msg)
}

function bootstrap (combo) {
  return process.env[`${combo.protocol}_BOOTSTRAP`]
}

function withTimeout (promise, what, ms = STEP_MS) {
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new CheckFailure(`${what}: timed out after ${ms / 1000}s`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

const readCert = name => ({
  cert: fs.readFileSync(path.join(CERTS, `${name}.crt`)),
  key: fs.readFileSync(path.join(CERTS, `${name}.key`))
})

// A Kafka client for `combo` as `user`; `cert` overrides the SSL certificate (a name under
// CERTS_DIR, e.g. 'rogue/alice').
// `logSink`, an array: collects the client's DEBUG log entries instead of printing them
// (kafkajs reports some broker errors only there).
function client (combo, { user = 'alice', password, cert, retries = 3, logSink } = {}) {
  if (password === undefined) password = user === 'alice' ? ALICE_PASSWORD : ADMIN_PASSWORD
  const levelName = (process.env.KAFKAJS_LOG_LEVEL || 'NOTHING').toUpperCase()
  const config = {
    clientId: `${CLIENT}-${RUN_ID}`,
    brokers: [bootstrap(combo)],
    logLevel: logLevel[levelName] !== undefined ? logLevel[levelName] : logLevel.NOTHING,
    connectionTimeout: 5000,
    requestTimeout: 20000,
    retry: { retries, initialRetryTime: 100, maxRetryTime: 1000 }
  }
  if (combo.protocol === 'SSL' || combo.protocol === 'SASL_SSL') {
    config.ssl = { ca: [fs.readFileSync(path.join(CERTS, 'ca.crt'))] }
    const name = combo.protocol === 'SSL' ? (cert || 'alice') : SASL_SSL_CERT
    if (name) Object.assign(config.ssl, readCert(name))
  }
  if (combo.mechanism) config.sasl = { mechanism: combo.mechanism, username: user, password }
  if (logSink) {
    config.logLevel = logLevel.DEBUG
    config.logCreator = () => ({ namespace, level, log }) => logSink.push({ namespace, level, ...log })
  }
  return new Kafka(config)
}

// The Kafka error type (e.g. TOPIC_AUTHORIZATION_FAILED) of a kafkajs error or of the errors
// it wraps (retriers wrap the last error as `originalError`, `cause` or in `errors`).
function errorTypes (e, seen = new Set()) {
  if (!e || typeof e !== 'object' || seen.has(e)) return []
  seen.add(e)
  const out = []
  if (e.type) out.push(e.type)
  for (const inner of [e.originalError, e.cause, ...(Array.isArray(e.errors) ? e.errors : [])]) {
    out.push(...errorTypes(inner, seen))
  }
  return out
}
const describe = e => `${e && e.name}: ${e && e.message}`

let step = 0
const results = []
function result (combo, name, status, detail) {
  results.push(status)
  console.log(`RESULT|${CLIENT}|${combo.label}|${name}|${status}|${String(detail).replace(/\s+/g, ' ')}`)
}
async function runCheck (combo, name, fn) {
  const started = Date.now()
  try {
    const detail = await fn(combo)
    console.log(`ok ${++step} - [${combo.label}] ${name}: ${detail} (${((Date.now() - started) / 1000).toFixed(1)}s)`)
    result(combo, name, 'PASS', detail)
  } catch (e) {
    const msg = e instanceof CheckFailure ? e.message : `unexpected ${describe(e)}`
    if (!(e instanceof CheckFailure)) console.error(e && e.stack ? e.stack : e)
    console.error(`FAIL: [${combo.label}] ${name}: ${msg}`)
    result(combo, name, 'FAIL', msg)
  }
}

async function setup () {
  const admin = client(ADMIN_COMBO, { user: 'admin' }).admin()
  await withTimeout(admin.connect(), 'admin connect')
  try {
    await withTimeout(admin.createTopics({
      topics: [GRANTED, SECRET].map(topic => ({ topic, numPartitions: 1, replicationFactor: 1 })),
      waitForLeaders: true
    }), 'admin.createTopics')
    const topics = await withTimeout(admin.listTopics(), 'admin.listTopics')
    check(topics.includes(GRANTED) && topics.includes(SECRET), `admin's listTopics lacks a topic: ${topics}`)
  } finally {
    await admin.disconnect()
  }
  console.log(`ok ${++step} - setup: admin (super user, SASL_PLAINTEXT+SCRAM-SHA-512) created topics ${GRANTED} and ${SECRET}`)
}

// Runs a consumer in `groupId` on `granted`; resolves when `until(records)` holds, rejects on
// a crash. Returns { consumer, records }; the caller disconnects.
async function consume (kafka, groupId, until, what) {
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 500,
    retry: { retries: 0, restartOnFailure: async () => false }
  })
  const records = []
  let settle
  const settled = new Promise((resolve, reject) => { settle = { resolve, reject } })
  consumer.on(consumer.events.CRASH, e => settle.reject(e.payload.error))
  try {
    await withTimeout(consumer.connect(), `${what}: consumer.connect`)
    await withTimeout(consumer.subscribe({ topics: [GRANTED], fromBeginning: true }), `${what}: subscribe`)
    await withTimeout(consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        records.push({ partition, offset: Number(message.offset), value: message.value && message.value.toString() })
        if (until(records)) settle.resolve()
      }
    }), `${what}: consumer.run`)
    await withTimeout(settled, what)
  } catch (e) {
    await consumer.disconnect().catch(() => {})
    throw e
  }
  return { consumer, records }
}

async function produceConsume (combo) {
  const kafka = client(combo)
  const values = Array.from({ length: 5 }, (_, i) => `${CLIENT}-${combo.id}-${RUN_ID}-${i}`)
  const producer = kafka.producer()
  await withTimeout(producer.connect(), 'producer.connect')
  let acks
  try {
    acks = await withTimeout(producer.send({ topic: GRANTED, acks: -1, messages: values.map(value => ({ value })) }),
      'producer.send')
  } finally {
    await producer.disconnect()
  }
  check(acks.every(r => r.errorCode === 0), `producer.send: ${JSON.stringify(acks)}`)
  const group = `${GROUP_PREFIX}${CLIENT}-${combo.id}-${RUN_ID}`
  const want = new Set(values)
  const { consumer, records } = await consume(kafka, group,
    recs => values.every(v => recs.some(r => r.value === v)), `group ${group}`)
  try {
    const next = {}
    for (const r of records) next[r.partition] = Math.max(next[r.partition] || 0, r.offset + 1)
    await withTimeout(consumer.commitOffsets(Object.entries(next).map(([p, o]) =>
      ({ topic: GRANTED, partition: Number(p), offset: String(o) }))), 'commitOffsets')
    const mine = records.filter(r => want.has(r.value)).length
    return `produced ${values.length} records (acks -1) to ${GRANTED}, consumed them back (${mine}/${values.length}) ` +
      `in group ${group}, committed ${JSON.stringify(next)}`
  } finally {
    await consumer.disconnect()
  }
}

async function badCredentials (combo) {
  const what = combo.mechanism ? 'wrong password' : 'self-signed CN=alice certificate'
  const kafka = combo.mechanism
    ? client(combo, { password: WRONG_PASSWORD, retries: 0 })
    : client(combo, { cert: 'rogue/alice', retries: 0 })
  const admin = kafka.admin()
  const started = Date.now()
  let error = null
  try {
    await withTimeout(admin.connect(), `${what}: admin.connect`, FAST_MS)
  } catch (e) {
    if (e instanceof CheckFailure) throw e
    error = e
  } finally {
    await admin.disconnect().catch(() => {})
  }
  const took = (Date.now() - started) / 1000
  check(error, `${what}: admin.connect succeeded`)
  if (combo.mechanism) {
    check(error.name === 'KafkaJSSASLAuthenticationError',
      `${what}: admin.connect rejected with ${describe(error)}, expected KafkaJSSASLAuthenticationError`)
  } else {
    check(error.name === 'KafkaJSConnectionError' || /certificate|ssl|tls|alert|socket|closed/i.test(error.message),
      `${what}: admin.connect rejected with ${describe(error)}, expected a TLS/connection error`)
  }
  return `${what}: admin.connect rejected with ${describe(error)} after ${took.toFixed(1)}s`
}

async function topicDenied (combo) {
  const producer = client(combo, { retries: 1 }).producer()
  await withTimeout(producer.connect(), 'producer.connect')
  const started = Date.now()
  try {
    await withTimeout(producer.send({ topic: SECRET, messages: [{ value: 'must not be stored' }] }), 'producer.send')
  } catch (e) {
    if (e instanceof CheckFailure) throw e
    const types = errorTypes(e)
    check(types.includes('TOPIC_AUTHORIZATION_FAILED'),
      `producer.send rejected with ${describe(e)} (types ${types}), expected TOPIC_AUTHORIZATION_FAILED`)
    return `producer.send rejected with ${describe(e)} [TOPIC_AUTHORIZATION_FAILED] after ` +
      `${((Date.now() - started) / 1000).toFixed(1)}s`
  } finally {
    await producer.disconnect()
  }
  throw new CheckFailure(`the produce to ${SECRET} succeeded`)
}

// kafkajs 2.2.4 does not surface FindCoordinator's error: BrokerPool.withBroker swallows it and
// the consumer crashes with KafkaJSGroupCoordinatorNotFound. The broker's error code is in the
// client's debug log ('Tried to find group coordinator', error.type), which this checks too.
async function groupDenied (combo) {
  const group = `${DENIED_GROUP_PREFIX}${CLIENT}-${combo.id}-${RUN_ID}`
  const started = Date.now()
  const logs = []
  let got
  try {
    got = await consume(client(combo, { retries: 0, logSink: logs }), group, () => true, `group ${group}`)
  } catch (e) {
    if (e instanceof CheckFailure) throw e
    const took = ((Date.now() - started) / 1000).toFixed(1)
    const types = errorTypes(e)
    if (types.includes('GROUP_AUTHORIZATION_FAILED')) {
      return `group ${group}: the consumer crashed with ${describe(e)} [GROUP_AUTHORIZATION_FAILED] after ${took}s`
    }
    const found = logs.find(l => l.message === 'Tried to find group coordinator')
    const brokerError = found && found.error
    check(brokerError && brokerError.type === 'GROUP_AUTHORIZATION_FAILED',
      `the consumer failed with ${describe(e)} (types ${types}); FindCoordinator error in the ` +
      `client's log: ${brokerError ? describe(brokerError) + ' ' + brokerError.type : 'none'}; ` +
      'expected GROUP_AUTHORIZATION_FAILED')
    return `group ${group}: FindCoordinator answered ${brokerError.type} ("${brokerError.message}"); ` +
      `the consumer crashed with ${describe(e)} after ${took}s`
  }
  await got.consumer.disconnect()
  throw new CheckFailure(`group ${group} consumed ${got.records.length} records`)
}

async function metadataHides (combo) {
  const admin = client(combo).admin()
  await withTimeout(admin.connect(), 'admin.connect')
  try {
    const topics = (await withTimeout(admin.listTopics(), 'admin.listTopics')).sort()
    check(topics.includes(GRANTED), `alice's listTopics lacks ${GRANTED}: ${topics}`)
    check(!topics.includes(SECRET), `alice's listTopics shows ${SECRET}: ${topics}`)
    return `alice's listTopics: ${JSON.stringify(topics)}`
  } finally {
    await admin.disconnect()
  }
}

async function main () {
  for (const v of ['SASL_SSL_BOOTSTRAP', 'SASL_PLAINTEXT_BOOTSTRAP', 'SSL_BOOTSTRAP', 'CERTS_DIR', 'ADMIN_PASSWORD', 'ALICE_PASSWORD']) {
    if (!process.env[v]) throw new Error(`missing environment: ${v} (run through compat/secure.sh)`)
  }
  console.log(`# kafkajs ${kafkajsVersion}, node ${process.version}; phase ${PHASE}`)
  await setup()
  const wanted = (process.env.SECURE_COMBOS || '').split(',').filter(Boolean)
  const combos = wanted.length ? ALL_COMBOS.filter(c => wanted.includes(c.id)) : ALL_COMBOS
  const checks = [['produce-consume', produceConsume], ['bad-credentials', badCredentials],
    ['topic-denied', topicDenied], ['group-denied', groupDenied], ['metadata-hides', metadataHides]]
  for (const combo of combos) {
    for (const [name, fn] of checks) await runCheck(combo, name, fn)
  }
  const failed = results.filter(s => s === 'FAIL').length
  const passed = results.filter(s => s === 'PASS').length
  console.log(`${CLIENT} secure suite (${PHASE}): ${failed ? 'FAIL' : 'PASS'} (${passed} checks passed, ${failed} failed, 0 skipped)`)
  return failed ? 1 : 0
}

console.log(`# watchdog: the whole program fails after ${TOTAL_MS / 1000}s`)
const watchdog = setTimeout(() => {
  console.error(`FAIL: the whole kafkajs program timed out after ${TOTAL_MS / 1000}s (last passed check: ${step})`)
  process.exit(1)
}, TOTAL_MS)

main().then(
  code => {
    clearTimeout(watchdog)
    process.exit(code)
  },
  e => {
    clearTimeout(watchdog)
    console.error(e && e.stack ? e.stack : e)
    console.error(`FAIL: ${describe(e)}`)
    process.exit(1)
  }
)
