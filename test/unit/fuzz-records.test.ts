import { describe, it, expect, beforeAll } from 'vitest'
import { openRecord, RecordError, MAX_ENVELOPE_BYTES } from '../../src/gossip/record.ts'
import { Membership, type AcceptResult } from '../../src/membership/table.ts'
import { addressFor } from '../../src/membership/ipam.ts'
import { ranges } from './fixtures.ts'
import { createRng, fuzzSeed, generators, hostileContext, hostileInput, seededNode, signBody, utf8, type HostileContext } from './hostile.ts'

// Hostile-input fuzz (issue 4, item 6): ≥10,000 malformed or hostile envelopes through the
// real decoding and validation path. Required: 0 crashes (every call resolves; openRecord only
// ever throws RecordError) and 0 accepted (the table holds exactly the legit members).
// Reproduce a run with FUZZ_SEED=<printed seed>; FUZZ_COUNT=<n> runs more inputs.

const SEED = fuzzSeed(0x77e5_4e12)
const COUNT = Math.max(10_000, Number(process.env.FUZZ_COUNT ?? 10_500))

let ctx: HostileContext & { held: Uint8Array[] }

const tableFor = (c: HostileContext): Membership =>
  new Membership({ self: c.observer.peerId, selfWgPublicKey: c.observer.wgPublicKey, ipv6Range: ranges.ipv6, ipv4Range: ranges.ipv4 })

/** The observer's table with the legit members (alice, bob, and mallory before she turns). */
async function seededTable (): Promise<Membership> {
  const table = tableFor(ctx)
  for (const envelope of ctx.held) {
    const result = await table.acceptEnvelope(envelope)
    if (!result.accepted) throw new Error(`setup: a legit record was rejected: ${result.reason} ${result.detail}`)
  }
  return table
}

const snapshot = (table: Membership): string[] =>
  table.all().map(e => `${e.record.peerId}:${e.record.seq}:${Buffer.from(e.envelope).toString('base64')}`).sort()

beforeAll(async () => {
  ctx = await hostileContext(createRng(SEED))
})

describe('record fuzz', () => {
  it(`rejects ${COUNT} hostile envelopes without a crash or an acceptance (seed ${SEED})`, async () => {
    console.log(`record fuzz: seed ${SEED} (FUZZ_SEED=${SEED} reproduces), ${COUNT} inputs`)
    const rng = createRng(SEED ^ 0x5a5a5a5a)
    const table = await seededTable()
    const before = snapshot(table)
    const legit = table.members().map(e => e.record.peerId).sort()

    const reasons = new Map<string, number>()
    const byKind = new Map<string, Map<string, number>>()
    const crashes: string[] = []
    const accepted: string[] = []
    const bump = (map: Map<string, number>, key: string): void => { map.set(key, (map.get(key) ?? 0) + 1) }
    const started = performance.now()
    let bytes = 0

    // Every kind at least once, then random kinds.
    const kinds = Object.keys(generators)
    for (let i = 0; i < COUNT; i++) {
      const input = i < kinds.length ? await generators[kinds[i] as string]!(rng, ctx) : await hostileInput(rng, ctx)
      bytes += input.bytes.length
      const perKind = byKind.get(input.kind) ?? new Map<string, number>()
      byKind.set(input.kind, perKind)

      // The decoder on its own: it resolves or throws a RecordError, nothing else.
      try {
        await openRecord(input.bytes)
      } catch (err) {
        if (!(err instanceof RecordError)) crashes.push(`openRecord ${input.kind}: ${String(err)}`)
      }

      // The real entry point, as gossip and sync call it.
      let result: AcceptResult
      try {
        result = await table.acceptEnvelope(input.bytes, input.author)
      } catch (err) {
        crashes.push(`acceptEnvelope ${input.kind}: ${String(err)}`)
        bump(reasons, 'CRASH')
        bump(perKind, 'CRASH')
        continue
      }
      if (result.accepted) {
        accepted.push(`${input.kind}: ${Buffer.from(input.bytes).toString('utf8', 0, Math.min(input.bytes.length - 64, 600))}`)
        bump(reasons, 'ACCEPTED')
        bump(perKind, 'ACCEPTED')
        continue
      }
      bump(reasons, result.reason)
      bump(perKind, result.reason)
    }
    const seconds = (performance.now() - started) / 1000

    const histogram = [...reasons.entries()].sort((a, b) => b[1] - a[1])
    console.log(`record fuzz: ${COUNT} inputs (${(bytes / 1e6).toFixed(1)} MB) in ${seconds.toFixed(2)} s; outcomes:`)
    console.table(Object.fromEntries(histogram))
    console.table(Object.fromEntries([...byKind.entries()].sort().map(([kind, m]) => [kind, Object.fromEntries(m)])))
    if (crashes.length > 0) console.log('crashes (first 10):', crashes.slice(0, 10))
    if (accepted.length > 0) console.log('accepted (first 10):', accepted.slice(0, 10))

    expect(crashes).toEqual([])
    expect(accepted).toEqual([])
    expect(histogram.reduce((n, [, c]) => n + c, 0)).toBe(COUNT)
    // every kind was exercised
    expect([...byKind.keys()].sort()).toEqual(kinds.sort())
    // nothing changed: exactly the legit members, with exactly the bytes they signed
    expect(snapshot(table)).toEqual(before)
    expect(table.members().map(e => e.record.peerId).sort()).toEqual(legit)
    // no prototype was polluted on the way
    expect(({} as Record<string, unknown>).wgPublicKey).toBeUndefined()
    expect(({} as Record<string, unknown>).seq).toBeUndefined()
    expect(Object.keys(Object.prototype)).toEqual([])

    // ...and the table still works: a newer record from a member and a new member get in.
    const [alice] = ctx.members
    expect((await table.acceptEnvelope((await alice!.sign({ seq: ctx.baseSeq + 5_000_000 })).envelope, alice!.peerId)).accepted).toBe(true)
    const carol = await seededNode('carol', createRng(SEED + 1))
    expect((await table.acceptEnvelope((await carol.sign({ seq: 1 })).envelope)).accepted).toBe(true)
  })

  it('control group: the valid twins of the hostile inputs are accepted (so the fuzz can fail)', async () => {
    // The fresh envelopes that truncation, bit flips, splices and wrong authors start from.
    for (const envelope of ctx.fresh) {
      const table = await seededTable()
      const result = await table.acceptEnvelope(envelope)
      expect(result, 'an unmodified fresh envelope').toMatchObject({ accepted: true })
    }
    // The raw signing path the generators use (same domain, same layout as signRecord).
    const raw = await seededTable()
    const body = utf8(JSON.stringify(ctx.attacker.record({ seq: ctx.baseSeq + 1 })))
    expect(await raw.acceptEnvelope(await signBody(body, ctx.attacker.key), ctx.attacker.peerId)).toMatchObject({ accepted: true })
    // The attacker's own new address under a higher counter is a legitimate move, not a hijack.
    const moved = await seededTable()
    const counter = 7
    const ipv4 = { address: addressFor(ranges.ipv4, ctx.attacker.peerId, counter), counter, since: 5000 }
    expect(await moved.acceptEnvelope((await ctx.attacker.sign({ seq: ctx.baseSeq + 2, ipv4 })).envelope)).toMatchObject({ accepted: true })
    // A record right at the size limit, and one from a newer version with unknown fields.
    const limit = await seededTable()
    const base = ctx.attacker.record({ seq: ctx.baseSeq + 3 })
    const padding = 'p'.repeat(MAX_ENVELOPE_BYTES - 64 - JSON.stringify({ ...base, padding: '' }).length)
    const atLimit = await signBody(utf8(JSON.stringify({ ...base, padding })), ctx.attacker.key)
    expect(atLimit.length).toBe(MAX_ENVELOPE_BYTES)
    expect(await limit.acceptEnvelope(atLimit)).toMatchObject({ accepted: true })
    const newer = await seededTable()
    const future = await signBody(utf8(JSON.stringify({ ...base, v: 2, future: { nested: [[[1]]], __proto__x: 1 } })), ctx.attacker.key)
    expect(await newer.acceptEnvelope(future)).toMatchObject({ accepted: true })
    // A leaving member's honest tombstone is accepted and drops it from the live members.
    const tomb = await seededTable()
    expect(await tomb.acceptEnvelope((await ctx.attacker.sign({ seq: ctx.baseSeq + 4, leaving: true })).envelope)).toMatchObject({ accepted: true })
    expect(tomb.members().map(e => e.record.peerId)).not.toContain(ctx.attacker.peerId)
  })

  it('deep JSON nesting cannot blow the stack: within the size limit it reaches JSON.parse and is rejected', async () => {
    const depth = Math.floor((MAX_ENVELOPE_BYTES - 64) / 2)
    const nested = await signBody(utf8('['.repeat(depth) + ']'.repeat(depth)), ctx.attacker.key)
    await expect(openRecord(nested)).rejects.toMatchObject({ reason: 'malformed' })
    const table = await seededTable()
    expect(await table.acceptEnvelope(nested)).toMatchObject({ accepted: false, reason: 'malformed' })
    // Far deeper input never gets that far: the size check comes first.
    const deeper = utf8('['.repeat(100_000) + ']'.repeat(100_000))
    expect(await table.acceptEnvelope(deeper)).toMatchObject({ accepted: false, reason: 'oversize' })
  })
})
