import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { RECORD_TOPIC, SYNC_PROTOCOL } from '../../src/gossip/gossip.ts'
import { openRecord, MAX_ENVELOPE_BYTES } from '../../src/gossip/record.ts'
import { Membership, type RejectReason } from '../../src/membership/table.ts'
import { addressFor } from '../../src/membership/ipam.ts'
import { ranges } from '../unit/fixtures.ts'
import { createRng, fuzzSeed, hostileContext, hostileInput, generators, seededNode, type Hostile, type HostileContext, type Rng } from '../unit/hostile.ts'
import { rejectedSince, rejectedTotal, startMeshNode, testHost, testPsk, waitFor, type MeshNode } from './harness.ts'
import type { Host } from '../../src/p2p/host.ts'

// A member turned hostile (same PSK, so it gets through pnet and Noise) attacks a real node's
// sync protocol and gossip topic. The victim must stay up and responsive, accept nothing
// hostile, and count what it rejects.

const SEED = fuzzSeed(0x5_1ac_0de)
const psk = testPsk(0x42)

let rng: Rng
let ctx: HostileContext & { held: Uint8Array[] }
let victim: MeshNode
let attacker: Host
/** the victim's table as it must stay, computed offline: the oracle for every reason */
let shadow: Membership

const legitSnapshot = (table: Membership): string[] =>
  table.all().map(e => `${e.record.peerId}:${e.record.seq}:${Buffer.from(e.envelope).toString('base64')}`).sort()
let before: string[]

/** What the victim should count for these inputs (judge() skips duplicate, stale and self). */
async function expectedRejections (inputs: Hostile[], author?: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const input of inputs) {
    const result = await shadow.acceptEnvelope(input.bytes, author)
    if (result.accepted) throw new Error(`generator bug: ${input.kind} input is acceptable`)
    if (['duplicate', 'stale', 'self'].includes(result.reason)) continue
    out[result.reason] = (out[result.reason] ?? 0) + 1
  }
  return out
}

async function openSync (): Promise<Stream> {
  return await attacker.dialProtocol(victim.addr, SYNC_PROTOCOL, { signal: AbortSignal.timeout(5000) })
}

/** Resolves once the victim has given up on (reset) or finished with the stream. */
async function ended (stream: Stream, timeoutMs = 5000): Promise<string> {
  await waitFor(`stream ${stream.id} to end`, () => stream.status !== 'open', timeoutMs)
  return stream.status
}

function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80) }
  out.push(n)
  return Uint8Array.from(out)
}

async function send (stream: Stream, bytes: Uint8Array): Promise<void> {
  if (!stream.send(bytes)) await stream.onDrain({ signal: AbortSignal.timeout(5000) })
}

beforeAll(async () => {
  console.log(`sync/gossip hostile test: seed ${SEED} (FUZZ_SEED=${SEED} reproduces)`)
  rng = createRng(SEED)
  ctx = await hostileContext(rng)
  // The victim is the "observer" of the hostile context: every generated record targets its table.
  victim = await startMeshNode(ctx.observer, psk, { real: true })
  shadow = new Membership({ self: ctx.observer.peerId, selfWgPublicKey: ctx.observer.wgPublicKey, ipv6Range: ranges.ipv6, ipv4Range: ranges.ipv4 })
  for (const envelope of ctx.held) {
    expect((await victim.membership.acceptEnvelope(envelope)).accepted).toBe(true)
    expect((await shadow.acceptEnvelope(envelope)).accepted).toBe(true)
  }
  before = legitSnapshot(victim.membership)
  attacker = await testHost(ctx.attacker.key, psk, ['/ip4/127.0.0.1/tcp/0'])
  await attacker.dial(victim.addr)
}, 30_000)

afterAll(async () => {
  await attacker?.stop()
  await victim?.stop()
})

describe('hostile sync peer', () => {
  it('judges hostile records sent as sync frames, accepts none, and still answers', async () => {
    // Everything from the fuzz generators that fits in a frame. Without a gossip author a
    // genuine record is just a relayed record, so the "wrong-author" kind is for gossip only.
    const kinds = Object.keys(generators).filter(k => k !== 'wrong-author')
    const inputs: Hostile[] = []
    while (inputs.length < 600) {
      const input = await hostileInput(rng, ctx, kinds)
      if (input.bytes.length > 0 && input.bytes.length <= MAX_ENVELOPE_BYTES) inputs.push(input)
    }
    const expected = await expectedRejections(inputs)
    const counted = { ...victim.gossip.stats.rejected }

    const stream = await openSync()
    const lp = lpStream(stream)
    await lp.writeV([...inputs.map(i => i.bytes), new Uint8Array(0)])
    // The victim answers with everything it holds, then an empty frame.
    const reply: Uint8Array[] = []
    for (;;) {
      const frame = (await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray()
      if (frame.length === 0) break
      reply.push(frame)
    }
    await stream.close()

    const held = await Promise.all(reply.map(async f => (await openRecord(f)).record.peerId))
    expect(held).toHaveLength(4)
    expect(new Set(held)).toEqual(new Set([ctx.observer.peerId, ...ctx.members.map(m => m.peerId), ctx.attacker.peerId]))
    expect(rejectedSince(victim.gossip, counted)).toEqual(expected)
    expect(legitSnapshot(victim.membership)).toEqual(before)
    console.log(`sync: ${inputs.length} hostile frames, victim counted`, expected)
  })

  it('survives garbage, oversize and endless frames, huge length prefixes and torn-down streams', async () => {
    const counted = { ...victim.gossip.stats.rejected }
    const statuses: Record<string, string> = {}

    // 1. A frame over 4096 bytes: the victim drops the stream at the length prefix.
    let stream = await openSync()
    await lpStream(stream).write(rng.bytes(MAX_ENVELOPE_BYTES + 1 + rng.int(60_000))).catch(() => {})
    statuses.oversize = await ended(stream)

    // 2. A length prefix announcing 2 GiB, then nothing.
    stream = await openSync()
    await send(stream, varint(2 ** 31))
    statuses.hugePrefix = await ended(stream)

    // 3. A length prefix that never ends (continuation bits forever): refused at once, not
    // read byte by byte at full CPU until the sync timeout.
    stream = await openSync()
    await send(stream, new Uint8Array(64).fill(0xff))
    statuses.endlessVarint = await ended(stream, 2000)

    // 4. More than 10,000 frames (garbage, each judged and rejected) without an end marker.
    stream = await openSync()
    const flood = Array.from({ length: 10_050 }, () => rng.bytes(65 + rng.int(40)))
    await lpStream(stream).writeV(flood).catch(() => {})
    statuses.flood = await ended(stream, 20_000)
    const afterFlood = rejectedSince(victim.gossip, counted)
    expect(afterFlood).toEqual({ malformed: 10_000 })

    // 5. Streams torn down midway: half a frame then reset; a few frames then close; close at once.
    stream = await openSync()
    await send(stream, varint(1000))
    await send(stream, rng.bytes(300))
    stream.abort(new Error('attacker resets'))
    stream = await openSync()
    await lpStream(stream).writeV([rng.bytes(200), rng.bytes(100)])
    await stream.close().catch(() => {})
    statuses.closedEarly = await ended(stream)
    stream = await openSync()
    await stream.close().catch(() => {})
    stream = await openSync()
    stream.abort(new Error('attacker resets at once'))

    // 6. Streams that announce a frame and then hang: they tie up nothing but themselves.
    const hanging: Stream[] = []
    for (let i = 0; i < 8; i++) {
      const s = await openSync()
      await send(s, varint(4000))
      await send(s, rng.bytes(10))
      hanging.push(s)
    }

    // The victim is still there and answers, while those streams hang.
    expect(victim.host.status).toBe('started')
    const rtt = await attacker.services.ping.ping(victim.addr, { signal: AbortSignal.timeout(5000) })
    expect(rtt).toBeGreaterThanOrEqual(0)
    stream = await openSync()
    const lp = lpStream(stream)
    await lp.write(new Uint8Array(0))
    let answered = 0
    for (;;) {
      const frame = (await lp.read({ signal: AbortSignal.timeout(5000) })).subarray()
      if (frame.length === 0) break
      await openRecord(frame)
      answered++
    }
    await stream.close()
    expect(answered).toBe(4)
    for (const s of hanging) s.abort(new Error('done'))

    // The two torn-down streams that carried garbage frames: 2 more malformed (the half frame is never judged).
    await waitFor('torn-down frames to be judged', () => (rejectedSince(victim.gossip, counted).malformed ?? 0) >= 10_002)
    expect(rejectedSince(victim.gossip, counted)).toEqual({ malformed: 10_002 })
    expect(legitSnapshot(victim.membership)).toEqual(before)
    console.log('sync abuse: stream outcomes', statuses, 'victim counted', rejectedSince(victim.gossip, counted))
  })
})

describe('hostile gossip publisher', () => {
  it('rejects hostile records on the topic, including somebody else\'s record under its signature', async () => {
    const pubsub = attacker.services.pubsub
    await waitFor('the victim to be a topic subscriber', () => pubsub.getSubscribers(RECORD_TOPIC).some(p => p.equals(victim.host.peerId)))
    const [alice] = ctx.members
    // "Wrong author": genuine, correctly signed records of others (a third node never seen by the
    // victim, alice's newer one), published under the attacker's gossip signature.
    const wrongAuthor: Hostile[] = ctx.fresh
      .filter(e => !Buffer.from(e).includes(ctx.attacker.peerId))
      .map(bytes => ({ kind: 'wrong-author', bytes }))
    // Its own record, signed correctly, claiming alice's address or WireGuard key.
    const hijacks: Hostile[] = [
      { kind: 'address-hijack', bytes: (await ctx.attacker.sign({ seq: ctx.nextSeq(), ipv6: { address: addressFor(ranges.ipv6, alice!.peerId, 0), counter: 0, since: 0 } })).envelope },
      { kind: 'address-hijack', bytes: (await ctx.attacker.sign({ seq: ctx.nextSeq(), ipv4: { address: addressFor(ranges.ipv4, alice!.peerId, 0), counter: 3, since: 0 } })).envelope },
      { kind: 'key-hijack', bytes: (await ctx.attacker.sign({ seq: ctx.nextSeq(), wgPublicKey: alice!.wgPublicKey })).envelope }
    ]
    const kinds = Object.keys(generators).filter(k => k !== 'wrong-author')
    const fuzz: Hostile[] = []
    while (fuzz.length < 200) {
      const input = await hostileInput(rng, ctx, kinds)
      // gossipsub carries up to 1 MiB; keep an empty message out (nothing to judge)
      if (input.bytes.length > 0 && input.bytes.length < 1 << 20) fuzz.push(input)
    }
    const inputs = [...wrongAuthor, ...hijacks, ...fuzz]
    const expected = await expectedRejections(inputs, ctx.attacker.peerId)
    expect(expected['wrong-author']).toBeGreaterThanOrEqual(wrongAuthor.length)
    const counted = { ...victim.gossip.stats.rejected }
    const received = victim.gossip.stats.received

    for (const input of inputs) await pubsub.publish(RECORD_TOPIC, input.bytes)
    await waitFor('the victim to judge every message', () => victim.gossip.stats.received >= received + inputs.length, 15_000)

    expect(rejectedSince(victim.gossip, counted)).toEqual(expected)
    expect(victim.membership.get(ctx.outsider.peerId)).toBeUndefined()
    expect(legitSnapshot(victim.membership)).toEqual(before)
    console.log(`gossip: ${inputs.length} hostile messages, victim counted`, expected)
  })
})

describe('after the attack', () => {
  it('a legitimate node still syncs with the victim and gets its record accepted', async () => {
    const dave = await seededNode('dave', createRng(SEED + 7))
    const honest = await startMeshNode(dave, psk, { real: false })
    try {
      await honest.host.dial(victim.addr)
      await waitFor('the victim to accept dave', () => victim.membership.get(dave.peerId) !== undefined)
      await waitFor('dave to learn the mesh', () => honest.membership.members().length === 4)
      expect(honest.membership.members().map(e => e.record.peerId).sort()).toEqual([ctx.observer.peerId, ...ctx.members.map(m => m.peerId), ctx.attacker.peerId].sort())
      expect(victim.membership.members().map(e => e.record.peerId).sort()).toEqual([dave.peerId, ...ctx.members.map(m => m.peerId), ctx.attacker.peerId].sort())
      // and nothing hostile got in on the way
      for (const m of victim.membership.members()) {
        if (m.record.peerId !== dave.peerId) expect(before).toContain(`${m.record.peerId}:${m.record.seq}:${Buffer.from(m.envelope).toString('base64')}`)
      }
      const reasons = victim.gossip.stats.rejected as Record<RejectReason, number>
      console.log('victim totals: received', victim.gossip.stats.received, 'rejected', rejectedTotal(victim.gossip), reasons)
    } finally {
      await honest.stop()
    }
  })
})
