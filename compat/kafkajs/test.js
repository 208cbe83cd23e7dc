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
// and refuses an unknown one with GROUP_ID_NOT_FOUND. Exit code 0 = pass.
// Knobs: COMPAT_RECORDS (default 60), COMPAT_STEP_TIMEOUT seconds (default 60),
//        COMPAT_TIMEOUT whole-script seconds (default 240), KAFKAJS_LOG_LEVEL (default WARN;
//        DEBUG shows every request/response).
'use strict'

const crypto = require('crypto')
const { Kafka, logLevel, Partitioners } = require('kafkajs')
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

async function fetchCommitted (admin, groupId) {
  const res = await withTimeout(admin.fetchOffsets({ groupId, topics: [TOPIC] }),
    'admin.fetchOffsets')
  check(res.length === 1 && res[0].topic === TOPIC, `fetchOffsets returned ${JSON.stringify(res)}`)
  const out = {}
  for (const p of res[0].partitions) out[p.partition] = Number(p.offset)
  return out
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
  await withTimeout(admin.disconnect(), 'admin.disconnect')
  ok('admin.deleteGroups deleted the empty group with its offsets; GROUP_ID_NOT_FOUND for an ' +
    'unknown group')

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
