// CPU per record check (src/gossip/record.ts openRecord: UTF-8, JSON, schema, author's key,
// Ed25519 signature): every member checks every new version of every member's record, from
// gossip and sync. AUTHORS members sign ROUNDS records each; the first round is each author's
// first record, the later ones are what a running mesh sees. V8 runs as in a daemon (no
// TurboFan, cmd/load-daemon.ts) unless BENCH_TURBOFAN=1.
// `npx tsx bench/record-check.ts [AUTHORS] [ROUNDS]` (default 200 and 10). In-process only.

import { setFlagsFromString } from 'node:v8'

if (process.env.BENCH_TURBOFAN !== '1') setFlagsFromString('--max-opt=1')
const { openRecord, signRecord } = await import('../src/gossip/record.ts')
const { makeNode } = await import('../test/unit/fixtures.ts')

const authors = Number(process.argv[2] ?? 200)
const rounds = Number(process.argv[3] ?? 10)
const nodes = await Promise.all(Array.from({ length: authors }, async (_, i) => await makeNode(`n${i}`)))
const envelopes: Uint8Array[][] = []
for (let r = 0; r < rounds; r++) envelopes.push(await Promise.all(nodes.map(async n => (await signRecord(n.record(), n.key)).envelope)))
// warm-up on records of others (lazy compilation), not on the measured authors
const warm = await Promise.all(Array.from({ length: 50 }, async (_, i) => await makeNode(`w${i}`)))
for (const n of warm) for (let k = 0; k < 4; k++) await openRecord((await n.sign()).envelope)

const timeRound = async (batch: Uint8Array[]): Promise<number> => {
  const cpu0 = process.cpuUsage()
  for (const envelope of batch) await openRecord(envelope)
  const cpu = process.cpuUsage(cpu0)
  return (cpu.user + cpu.system) / batch.length
}
const first = await timeRound(envelopes[0] ?? [])
const later: number[] = []
for (const batch of envelopes.slice(1)) later.push(await timeRound(batch))
const mean = later.reduce((s, x) => s + x, 0) / Math.max(1, later.length)
console.log(`[record-check] ${authors} authors × ${rounds} records: CPU per check ${first.toFixed(0)} µs for an author's first record, ${mean.toFixed(0)} µs for later ones`)
