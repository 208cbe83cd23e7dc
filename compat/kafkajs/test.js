#!/usr/bin/env node
// kafkajs 2.2.4 interop suite.
//
//   BOOTSTRAP=127.0.0.1:9092 node compat/kafkajs/test.js
//
// Covers: admin.createTopics + fetchTopicMetadata (partition count, leaders) + listTopics,
// producer.send with acks=-1 of N keyed records (acknowledged offsets), admin.fetchTopicOffsets,
// consuming everything from the beginning in a scratch group and comparing keys/values/offsets,
// and a consumer group with manual commits (autoCommit: false + consumer.commitOffsets): member 1
// consumes part of the topic and commits, admin.fetchOffsets must show those offsets; member 2
// in the same group must resume exactly after them, commit, and admin.fetchOffsets must equal
// the high watermarks; then admin.deleteGroups deletes the (now empty) group with its offsets
// and refuses an unknown one with GROUP_ID_NOT_FOUND. Then transactions (each on a
// single-partition topic): producer.transaction() commits, aborts and commits while another
// producer leaves a transaction open between them: a read_committed consumer stops at the open
// one, readUncommitted reads everything, and once it commits read_committed reads exactly the
// committed records; zombie fencing (a second producer with the same transactionalId: the first
// one's commit rejects with INVALID_PRODUCER_EPOCH, what EndTxn v1 answers, its open transaction
// is aborted); a transaction left open past transactionTimeout is aborted by the broker;
// consume-transform-produce with transaction.sendOffsets (admin.fetchOffsets: the group's offset
// moves with commits only; the output holds each input record once). Topic configs:
// createTopics with configEntries, describeConfigs (values and sources), alterConfigs
// replacing the overrides (LogAppendTime then shows in what a consumer reads), a bad value
// refused with INVALID_CONFIG. Exit code 0 = pass.
// Knobs: COMPAT_RECORDS (default 60), COMPAT_STEP_TIMEOUT seconds (default 60),
//        COMPAT_TIMEOUT whole-script seconds (default 240), KAFKAJS_LOG_LEVEL (default WARN;
//        DEBUG shows every request/response).
'use strict'

const crypto = require('crypto')
const { ConfigResourceTypes, Kafka, logLevel, Partitioners } = require('kafkajs')
const kafkajsVersion = require('kafkajs/package.json').version

const BOOTSTRAP = process.env.BOOTSTRAP
const N = parseInt(process.env.COMPAT_RECORDS || '60', 10)
const K = Math.floor(N / 3) // records member 1 consumes and commits
const STEP_MS = parseFloat(process.env.COMPAT_STEP_TIMEOUT || '60') * 1000
const TOTAL_MS = parseFloat(process.env.COMPAT_TIMEOUT || '240') * 1000
const PARTITIONS = 3
const RUN_ID = crypto.randomBytes(6).toString('hex')
const TOPIC = `compat-kafkajs-${RUN_ID}`
const GROUP = `compat-kafkajs-group-${RUN_ID}`

class SuiteFailure extends Error {}

let step = 0
const ok = msg => console.log(`ok ${++step} - ${msg}`)
const check = (cond, msg) => {
  if (!cond) throw new SuiteFailure(msg)
}

// Rejects with a clear message if `promise` does not settle within STEP_MS.
function withTimeout (promise, what, ms = STEP_MS) {
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new SuiteFailure(`${what}: timed out after ${ms / 1000}s`)),
      ms
    )
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

const levelName = (process.env.KAFKAJS_LOG_LEVEL || 'WARN').toUpperCase()
const kafka = new Kafka({
  clientId: `compat-kafkajs-${RUN_ID}`,
  brokers: [BOOTSTRAP],
  logLevel: logLevel[levelName] !== undefined ? logLevel[levelName] : logLevel.WARN,
  connectionTimeout: 10000,
  requestTimeout: 30000,
  retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 5000 }
})

// Collects records with a group consumer until `want` arrived (further ones are ignored and,
// with autoCommit off, never committed). Returns { consumer, records }; the consumer keeps
// running so the caller can commit through it.
async function consumeInGroup (groupId, want, what) {
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    retry: { retries: 5 }
  })
  const records = []
  let crashed = null
  let done
  const finished = new Promise(resolve => { done = resolve })
  consumer.on(consumer.events.CRASH, e => {
    crashed = e.payload.error
    done()
  })
  await withTimeout(consumer.connect(), `${what}: consumer.connect`)
  await withTimeout(consumer.subscribe({ topics: [TOPIC], fromBeginning: true }),
    `${what}: consumer.subscribe`)
  await withTimeout(consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      if (records.length >= want) return
      records.push({
        partition,
        offset: Number(message.offset),
        key: message.key === null ? null : message.key.toString(),
        value: message.value === null ? null : message.value.toString()
      })
      if (records.length === want) done()
    }
  }), `${what}: consumer.run`)
  if (want > 0) {
    await withTimeout(finished, `${what}: waiting for ${want} records`).catch(e => {
      e.message += ` (got ${records.length}/${want})`
      throw e
    })
  }
  if (crashed) throw new SuiteFailure(`${what}: consumer crashed: ${crashed}`)
  return { consumer, records }
}

async function fetchCommitted (admin, groupId, topic = TOPIC) {
  const res = await withTimeout(admin.fetchOffsets({ groupId, topics: [topic] }),
    'admin.fetchOffsets')
  check(res.length === 1 && res[0].topic === topic, `fetchOffsets returned ${JSON.stringify(res)}`)
  const out = {}
  for (const p of res[0].partitions) out[p.partition] = Number(p.offset)
  return out
}

// --- topic configs -----------------------------------------------------------------------
// describeConfigs of one topic: { name: [value, source] }.
async function topicConfigs (admin, topic) {
  const described = await withTimeout(admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }]
  }), 'admin.describeConfigs')
  check(described.resources.length === 1 && described.resources[0].errorCode === 0,
    `describeConfigs of ${topic}: ${JSON.stringify(described.resources)}`)
  const out = {}
  for (const entry of described.resources[0].configEntries) {
    out[entry.configName] = [entry.configValue, entry.configSource]
  }
  return out
}

function alterTopic (admin, topic, entries) {
  return withTimeout(admin.alterConfigs({
    validateOnly: false,
    resources: [{
      type: ConfigResourceTypes.TOPIC,
      name: topic,
      configEntries: Object.entries(entries).map(([name, value]) => ({ name, value }))
    }]
  }), 'admin.alterConfigs')
}

async function checkTopicConfigs (admin) {
  const topic = `${TOPIC}-configs`
  await withTimeout(admin.createTopics({
    topics: [{
      topic,
      numPartitions: 1,
      replicationFactor: 1,
      configEntries: [{ name: 'retention.ms', value: '3600000' },
        { name: 'cleanup.policy', value: 'compact' }]
    }],
    waitForLeaders: true
  }), 'admin.createTopics (configs)')
  let got = await topicConfigs(admin, topic)
  const shown = name => JSON.stringify(got[name])
  check(shown('retention.ms') === '["3600000",1]' && shown('cleanup.policy') === '["compact",1]' &&
    shown('max.message.bytes') === '["1048588",5]',
  `describeConfigs after createTopics: ${JSON.stringify(got)}`)
  ok('createTopics with configEntries; describeConfigs shows the overrides (source 1) and a ' +
    'default (source 5)')

  await alterTopic(admin, topic, { 'retention.ms': '7200000', 'message.timestamp.type': 'LogAppendTime' })
  got = await topicConfigs(admin, topic)
  check(shown('retention.ms') === '["7200000",1]' &&
    shown('message.timestamp.type') === '["LogAppendTime",1]' &&
    shown('cleanup.policy') === '["delete",5]',
  `after alterConfigs: ${JSON.stringify(got)}`)
  ok('alterConfigs replaces the overrides: set ones are shown, the dropped one is default')

  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await withTimeout(producer.connect(), 'producer.connect (configs)')
  const sentAt = Date.now()
  await withTimeout(producer.send({
    topic, acks: -1, messages: [{ key: 'k', value: 'v', partition: 0, timestamp: '1000' }]
  }), 'producer.send (configs)')
  await producer.disconnect()
  const consumer = kafka.consumer({ groupId: `${GROUP}-configs-reader` })
  let stamped = null
  let arrived
  const seen = new Promise(resolve => { arrived = resolve })
  await withTimeout(consumer.connect(), 'consumer.connect (configs)')
  try {
    await withTimeout(consumer.subscribe({ topics: [topic], fromBeginning: true }),
      'consumer.subscribe (configs)')
    await withTimeout(consumer.run({
      eachMessage: async ({ message }) => {
        stamped = Number(message.timestamp)
        arrived()
      }
    }), 'consumer.run (configs)')
    await withTimeout(seen, 'waiting for the record (configs)')
  } finally {
    await consumer.disconnect()
  }
  check(stamped >= sentAt, `consumed timestamp ${stamped}, expected the log append time (sent at ${sentAt})`)
  ok('message.timestamp.type=LogAppendTime: the broker\'s time replaces the producer\'s ' +
    'timestamp 1000, as a consumer reads it')

  const refused = await rejection(alterTopic(admin, topic, { 'retention.ms': 'soon' }),
    'alterConfigs with a bad value')
  check(refused.type === 'INVALID_CONFIG', `alterConfigs with a bad value: ${describeError(refused)}`)
  got = await topicConfigs(admin, topic)
  check(shown('retention.ms') === '["7200000",1]', 'a refused alterConfigs changes nothing')
  ok('alterConfigs: INVALID_CONFIG for a bad value, nothing changed')
}

// --- transactions ------------------------------------------------------------------------
const TXN_TIMEOUT_MS = 2000 // the transaction left open for the broker to abort
const SETTLE_MS = 3000 // how long a reader waits for records that must not come
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function txnProducer (transactionalId, extra = {}) {
  return kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, ...extra })
}

// producer.transaction() (the first one sends InitProducerId with the transactional id).
async function begin (producer, what) {
  return withTimeout(producer.transaction(), `${what}: producer.transaction`)
}

async function sendValues (txn, topic, values, what) {
  const messages = values.map(value => ({ value, partition: 0 }))
  await withTimeout(txn.send({ topic, acks: -1, messages }), `${what}: send`)
}

// The values of partition 0 of `topic` from the beginning, read in a scratch group (kafkajs has
// no assign()) until the value `until` arrived, then for `settleMs` more.
let readers = 0
async function readValues (topic, readUncommitted, until, settleMs = 0) {
  const what = `${readUncommitted ? 'read_uncommitted' : 'read_committed'} read of ${topic}`
  const consumer = kafka.consumer({
    groupId: `${GROUP}-txn-reader-${++readers}`,
    readUncommitted,
    sessionTimeout: 10000,
    heartbeatInterval: 1000
  })
  const values = []
  let arrived
  const seen = new Promise(resolve => { arrived = resolve })
  await withTimeout(consumer.connect(), `${what}: consumer.connect`)
  try {
    await withTimeout(consumer.subscribe({ topics: [topic], fromBeginning: true }),
      `${what}: consumer.subscribe`)
    await withTimeout(consumer.run({
      eachMessage: async ({ message }) => {
        const value = message.value.toString()
        values.push(value)
        if (value === until) arrived()
      }
    }), `${what}: consumer.run`)
    await withTimeout(seen, `${what}: waiting for ${until}`).catch(e => {
      e.message += ` (read ${JSON.stringify(values)})`
      throw e
    })
    if (settleMs) await sleep(settleMs)
  } finally {
    await consumer.disconnect()
  }
  return values
}

// The error a promise rejects with; fails the suite if it resolves.
async function rejection (promise, what) {
  const outcome = await withTimeout(promise, what).then(() => null, e => e)
  check(outcome !== null, `${what} succeeded`)
  return outcome
}

// EndTxn v0-1 (what kafkajs 2.2.4 sends) answers a fenced producer INVALID_PRODUCER_EPOCH, as
// Kafka does; PRODUCER_FENCED exists from v2.
const isFenced = e => e && e.name === 'KafkaJSProtocolError' &&
  ['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED'].includes(e.type)
const describeError = e => `${e && e.name}${e && e.type ? ` ${e.type}` : ''}: ${e && e.message}`

async function checkTransactions (admin) {
  const topics = {}
  for (const name of ['txn', 'fence', 'timeout', 'ctp-in', 'ctp-out']) {
    topics[name] = `${TOPIC}-${name}`
  }
  await withTimeout(admin.createTopics({
    topics: Object.values(topics).map(topic => ({ topic, numPartitions: 1, replicationFactor: 1 })),
    waitForLeaders: true
  }), 'admin.createTopics (transactions)')
  const names = prefix => [0, 1, 2].map(i => `${prefix}-${i}`)
  const [c1, aborted, held, c2] = ['c1', 'aborted', 'open', 'c2'].map(names)

  // Commit, abort, and a transaction left open while another commits after it.
  let topic = topics.txn
  const producer = txnProducer(`${GROUP}-txn`)
  const other = txnProducer(`${GROUP}-txn-open`)
  await withTimeout(producer.connect(), 'producer.connect')
  await withTimeout(other.connect(), 'producer.connect')
  let txn = await begin(producer, 'c1')
  await sendValues(txn, topic, c1, 'c1')
  await withTimeout(txn.commit(), 'c1: commit')
  txn = await begin(producer, 'aborted')
  await sendValues(txn, topic, aborted, 'aborted')
  await withTimeout(txn.abort(), 'aborted: abort')
  const open = await begin(other, 'open')
  await sendValues(open, topic, held, 'open') // stays open while c2 is committed after it
  txn = await begin(producer, 'c2')
  await sendValues(txn, topic, c2, 'c2')
  await withTimeout(txn.commit(), 'c2: commit')
  let got = await readValues(topic, false, c1[2], SETTLE_MS)
  check(JSON.stringify(got) === JSON.stringify(c1),
    `read_committed with a transaction open before c2: ${JSON.stringify(got)}, expected ${c1}`)
  got = await readValues(topic, true, c2[2])
  check(JSON.stringify(got) === JSON.stringify([...c1, ...aborted, ...held, ...c2]),
    `read_uncommitted: ${JSON.stringify(got)}`)
  ok('producer.transaction(): a committed, an aborted and a committed transaction, another ' +
    'left open between them; a read_committed consumer stops at the open one (nothing more in ' +
    `${SETTLE_MS / 1000}s), readUncommitted reads all 12 records`)
  await withTimeout(open.commit(), 'open: commit')
  got = await readValues(topic, false, c2[2])
  check(JSON.stringify(got) === JSON.stringify([...c1, ...held, ...c2]),
    `read_committed after the open transaction committed: ${JSON.stringify(got)}`)
  await producer.disconnect()
  await other.disconnect()
  ok('once the open transaction commits, read_committed reads exactly the committed records ' +
    'in offset order, none of the aborted one')

  // Zombie fencing: a second producer with the same transactionalId.
  topic = topics.fence
  const zombie = txnProducer(`${GROUP}-fence`)
  const successor = txnProducer(`${GROUP}-fence`)
  await withTimeout(zombie.connect(), 'zombie connect')
  await withTimeout(successor.connect(), 'successor connect')
  const zombieTxn = await begin(zombie, 'zombie')
  await sendValues(zombieTxn, topic, ['zombie-0', 'zombie-1'], 'zombie')
  txn = await begin(successor, 'successor')
  let err = await rejection(zombieTxn.commit(), 'commit of the fenced producer')
  check(isFenced(err), `the fenced producer's commit: ${describeError(err)}, expected ` +
    'INVALID_PRODUCER_EPOCH')
  await sendValues(txn, topic, ['successor-0'], 'successor')
  await withTimeout(txn.commit(), 'successor: commit')
  await zombie.disconnect()
  await successor.disconnect()
  got = await readValues(topic, false, 'successor-0')
  check(JSON.stringify(got) === JSON.stringify(['successor-0']),
    `read_committed after fencing: ${JSON.stringify(got)}, expected only successor-0`)
  ok('zombie fencing: a second producer with the same transactionalId starting a transaction ' +
    `aborts the first one's open transaction; its commit rejects with ${err.type}`)

  // A transaction left open past its transactionTimeout is aborted by the broker.
  topic = topics.timeout
  const stuck = txnProducer(`${GROUP}-stuck`, { transactionTimeout: TXN_TIMEOUT_MS })
  const after = txnProducer(`${GROUP}-after`)
  await withTimeout(stuck.connect(), 'stuck connect')
  await withTimeout(after.connect(), 'after connect')
  const stuckTxn = await begin(stuck, 'stuck')
  await sendValues(stuckTxn, topic, ['stuck-0', 'stuck-1'], 'stuck')
  const started = Date.now()
  txn = await begin(after, 'after')
  await sendValues(txn, topic, ['after-0'], 'after')
  await withTimeout(txn.commit(), 'after: commit')
  got = await readValues(topic, false, 'after-0')
  const waited = (Date.now() - started) / 1000
  check(JSON.stringify(got) === JSON.stringify(['after-0']),
    `read_committed after the timeout: ${JSON.stringify(got)}, expected only after-0`)
  err = await rejection(stuckTxn.commit(), 'commit of a transaction past its timeout')
  check(isFenced(err), `commit past the timeout: ${describeError(err)}, expected ` +
    'INVALID_PRODUCER_EPOCH')
  await stuck.disconnect()
  await after.disconnect()
  ok(`the broker aborted a transaction open past transactionTimeout=${TXN_TIMEOUT_MS} (the ` +
    `records behind it readable read_committed after ${waited.toFixed(1)}s); its commit then ` +
    `rejects with ${err.type}`)

  await checkConsumeTransformProduce(admin, topics['ctp-in'], topics['ctp-out'])
}

// Records of `source` written to `sink` by a transactional producer that commits the offsets of
// group `${GROUP}-ctp` with transaction.sendOffsets (kafkajs sends no member id or generation,
// so the group needs no member).
async function checkConsumeTransformProduce (admin, source, sink) {
  const group = `${GROUP}-ctp`
  const plain = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await withTimeout(plain.connect(), 'plain producer connect')
  await withTimeout(plain.send({
    topic: source,
    acks: -1,
    messages: [...Array(10).keys()].map(i => ({ value: `in-${i}`, partition: 0 }))
  }), 'plain producer send')
  await plain.disconnect()
  const input = await readValues(source, false, 'in-9')
  check(input.length === 10, `input: ${JSON.stringify(input)}`)
  const producer = txnProducer(`${GROUP}-ctp`)
  await withTimeout(producer.connect(), 'ctp producer connect')
  const transform = async (round, from, to, commit) => {
    const txn = await begin(producer, `round ${round}`)
    const outputs = input.slice(from, to).map(v => `out-${v}-r${round}`)
    await sendValues(txn, sink, outputs, `round ${round}`)
    await withTimeout(txn.sendOffsets({
      consumerGroupId: group,
      topics: [{ topic: source, partitions: [{ partition: 0, offset: String(to) }] }]
    }), `round ${round}: sendOffsets`)
    await withTimeout(commit ? txn.commit() : txn.abort(), `round ${round}: commit/abort`)
    return (await fetchCommitted(admin, group, source))[0]
  }
  let committed = await transform(1, 0, 5, true)
  check(committed === 5, `committed after round 1: ${committed}, expected 5`)
  committed = await transform(2, 5, 10, false)
  check(committed === 5, `committed after the aborted round 2: ${committed}, expected 5`)
  committed = await transform(3, 5, 10, true)
  check(committed === 10, `committed after round 3: ${committed}, expected 10`)
  await producer.disconnect()
  const want = [...input.slice(0, 5).map(v => `out-${v}-r1`),
    ...input.slice(5).map(v => `out-${v}-r3`)]
  const got = await readValues(sink, false, want[9])
  check(JSON.stringify(got) === JSON.stringify(want),
    `read_committed of ${sink}: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`)
  ok('consume-transform-produce: transaction.sendOffsets; admin.fetchOffsets shows the ' +
    "group's offset move with each commit (5, 10), not with the aborted round; the output " +
    'holds each input record once')
}

async function main () {
  check(BOOTSTRAP, 'BOOTSTRAP must be set to host:port of the broker')
  console.log(`# kafkajs ${kafkajsVersion}, node ${process.version}; topic ${TOPIC}, ` +
    `group ${GROUP}, ${N} records, bootstrap ${BOOTSTRAP}`)
  const expected = new Map()
  for (let i = 0; i < N; i++) {
    const n = String(i).padStart(3, '0')
    expected.set(`key-${n}`, `value-${n}-${RUN_ID}`)
  }

  // 1. Admin: create, describe, list.
  const admin = kafka.admin()
  await withTimeout(admin.connect(), 'admin.connect')
  const created = await withTimeout(admin.createTopics({
    topics: [{ topic: TOPIC, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: STEP_MS / 2
  }), 'admin.createTopics')
  check(created === true, `admin.createTopics returned ${created} (false: topic already existed)`)
  ok(`admin.createTopics created ${TOPIC} with ${PARTITIONS} partitions`)

  const md = await withTimeout(admin.fetchTopicMetadata({ topics: [TOPIC] }),
    'admin.fetchTopicMetadata')
  check(md.topics.length === 1 && md.topics[0].name === TOPIC,
    `fetchTopicMetadata returned ${JSON.stringify(md.topics.map(t => t.name))}`)
  const parts = md.topics[0].partitions
  check(parts.length === PARTITIONS,
    `fetchTopicMetadata: ${parts.length} partitions, expected ${PARTITIONS}`)
  for (const p of parts) {
    check(p.partitionErrorCode === 0 && p.leader >= 0,
      `partition ${p.partitionId}: error ${p.partitionErrorCode}, leader ${p.leader}`)
  }
  const topics = await withTimeout(admin.listTopics(), 'admin.listTopics')
  check(topics.includes(TOPIC), `listTopics does not include ${TOPIC}`)
  ok(`fetchTopicMetadata/listTopics show ${TOPIC} with ${PARTITIONS} partitions, all led`)

  // 2. Producer: one send with acks=-1.
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await withTimeout(producer.connect(), 'producer.connect')
  const acks = await withTimeout(producer.send({
    topic: TOPIC,
    acks: -1,
    timeout: 30000,
    messages: [...expected].map(([key, value]) => ({ key, value }))
  }), 'producer.send')
  await withTimeout(producer.disconnect(), 'producer.disconnect')
  for (const r of acks) check(r.errorCode === 0, `producer.send: ${JSON.stringify(r)}`)
  // Each RecordMetadata gives the base offset of the batch sent to one partition.
  check(acks.every(r => r.baseOffset === '0'),
    `first produce to an empty topic should start at offset 0 in every partition: ${JSON.stringify(acks)}`)
  const offsets = await withTimeout(admin.fetchTopicOffsets(TOPIC), 'admin.fetchTopicOffsets')
  const high = {}
  let total = 0
  for (const o of offsets) {
    check(o.low === '0', `partition ${o.partition}: low watermark ${o.low}`)
    high[o.partition] = Number(o.high)
    total += Number(o.high)
  }
  check(offsets.length === PARTITIONS && total === N,
    `high watermarks ${JSON.stringify(high)} sum to ${total}, expected ${N}`)
  ok(`producer.send (acks=-1) delivered ${N} keyed records; watermarks ${JSON.stringify(high)}`)

  // 3. Consume everything from the beginning (scratch group, no commits) and compare.
  const all = await consumeInGroup(`${GROUP}-reader`, N, 'consume from beginning')
  await withTimeout(all.consumer.disconnect(), 'reader consumer.disconnect')
  const got = new Map(all.records.map(r => [r.key, r.value]))
  check(all.records.length === N && got.size === N &&
        [...expected].every(([k, v]) => got.get(k) === v),
  `consumed records differ: ${all.records.length} records, missing ` +
  `${[...expected.keys()].filter(k => !got.has(k)).slice(0, 5)}, wrong values ` +
  `${[...got.keys()].filter(k => expected.get(k) !== got.get(k)).slice(0, 5)}`)
  for (const [p, h] of Object.entries(high)) {
    const offs = all.records.filter(r => r.partition === Number(p)).map(r => r.offset)
      .sort((a, b) => a - b)
    check(offs.length === h && offs.every((o, i) => o === i),
      `partition ${p}: consumed offsets ${offs} are not 0..${h - 1}`)
  }
  ok(`consumed all ${N} records from the beginning; keys, values and offsets match`)

  // 4. Group member 1: consume K, commit them, check with admin.fetchOffsets.
  const m1 = await consumeInGroup(GROUP, K, 'group member 1')
  const next = {}
  for (const r of m1.records) next[r.partition] = Math.max(next[r.partition] || 0, r.offset + 1)
  await withTimeout(m1.consumer.commitOffsets(Object.entries(next).map(([p, o]) =>
    ({ topic: TOPIC, partition: Number(p), offset: String(o) }))), 'member 1 commitOffsets')
  await withTimeout(m1.consumer.disconnect(), 'member 1 consumer.disconnect')
  const committed1 = await fetchCommitted(admin, GROUP)
  for (let p = 0; p < PARTITIONS; p++) {
    const want = next[p] === undefined ? -1 : next[p]
    check(committed1[p] === want,
      `fetchOffsets after member 1: partition ${p} = ${committed1[p]}, expected ${want}`)
  }
  ok(`group ${GROUP} member 1 consumed ${K} records, committed ${JSON.stringify(next)}, ` +
    'admin.fetchOffsets agrees')

  // 5. Group member 2 resumes after the committed offsets.
  const m2 = await consumeInGroup(GROUP, N - K, 'group member 2')
  const firstKeys = new Set(m1.records.map(r => r.key))
  const again = m2.records.filter(r => firstKeys.has(r.key)).map(r => r.key)
  check(again.length === 0,
    `member 2 re-consumed records member 1 committed: ${again.slice(0, 5)}`)
  for (const r of m2.records) {
    check(r.offset >= (next[r.partition] || 0),
      `member 2 got partition ${r.partition} offset ${r.offset}, below the committed ` +
      `${next[r.partition] || 0}`)
  }
  const union = new Set([...firstKeys, ...m2.records.map(r => r.key)])
  check(union.size === N, `members 1+2 consumed ${union.size} distinct records, expected ${N}`)
  await withTimeout(m2.consumer.commitOffsets(Object.entries(high).map(([p, h]) =>
    ({ topic: TOPIC, partition: Number(p), offset: String(h) }))), 'member 2 commitOffsets')
  await withTimeout(m2.consumer.disconnect(), 'member 2 consumer.disconnect')
  const committed2 = await fetchCommitted(admin, GROUP)
  check(JSON.stringify(committed2) === JSON.stringify(high),
    `fetchOffsets after member 2: ${JSON.stringify(committed2)}, expected the high watermarks ` +
    JSON.stringify(high))
  ok(`group member 2 resumed after the committed offsets (${N - K} records), ` +
    `fetchOffsets == high watermarks ${JSON.stringify(high)}`)

  // 6. Both members left: the group is empty and can be deleted, offsets included.
  const deleted = await withTimeout(admin.deleteGroups([GROUP]), 'admin.deleteGroups')
  check(deleted.length === 1 && deleted[0].groupId === GROUP && deleted[0].errorCode === 0,
    `deleteGroups returned ${JSON.stringify(deleted)}`)
  const afterDelete = await fetchCommitted(admin, GROUP)
  check(Object.values(afterDelete).every(o => o === -1),
    `fetchOffsets after deleteGroups: ${JSON.stringify(afterDelete)}, expected none`)
  const missing = `${GROUP}-never-was`
  const refused = await withTimeout(admin.deleteGroups([missing]), 'admin.deleteGroups (unknown)')
    .then(() => null, e => e)
  const refusal = refused && refused.groups && refused.groups[0]
  check(refused && refused.name === 'KafkaJSDeleteGroupsError' && refusal &&
    refusal.groupId === missing && refusal.error && refusal.error.type === 'GROUP_ID_NOT_FOUND',
  `deleteGroups of an unknown group: ${refused && refused.name} ${JSON.stringify(refusal)}`)
  ok('admin.deleteGroups deleted the empty group with its offsets; GROUP_ID_NOT_FOUND for an ' +
    'unknown group')

  // 7. Topic configs.
  await checkTopicConfigs(admin)

  // 8. Transactions.
  await checkTransactions(admin)
  await withTimeout(admin.disconnect(), 'admin.disconnect')

  console.log(`kafkajs suite: PASS (${step} checks)`)
}

console.log(`# watchdog: the whole suite fails after ${TOTAL_MS / 1000}s`)
const watchdog = setTimeout(() => {
  console.error(`FAIL: the whole kafkajs suite timed out after ${TOTAL_MS / 1000}s ` +
    `(last passed check: ${step})`)
  process.exit(1)
}, TOTAL_MS)

main().then(
  () => {
    clearTimeout(watchdog)
    process.exit(0)
  },
  e => {
    clearTimeout(watchdog)
    if (e instanceof SuiteFailure) {
      console.error(`FAIL: ${e.message}`)
    } else {
      console.error(e && e.stack ? e.stack : e)
      console.error(`FAIL: unexpected ${e && e.name}: ${e && e.message}`)
    }
    process.exit(1)
  }
)
