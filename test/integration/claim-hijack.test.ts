import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { lpStream } from '@libp2p/utils'
import { RECORD_TOPIC, SYNC_PROTOCOL } from '../../src/gossip/gossip.ts'
import { addressFor, MAX_COUNTER } from '../../src/membership/ipam.ts'
import { desiredPeers } from '../../src/reconciler/desired.ts'
import type { NodeRecord } from '../../src/gossip/record.ts'
import { ranges } from '../unit/fixtures.ts'
import { createRng, fuzzSeed, seededNode } from '../unit/hostile.ts'
import { digestFrames, END, readPhase, recordFrame, rejectedSince, startMeshNode, testPsk, waitFor, type MeshNode } from './harness.ts'

// Issue 4, item 6: a member announces another member's overlay address or WireGuard key,
// validly signed by itself, and everyone else rejects it. Three in-process nodes wired like
// the daemon: victim A, attacker M, observer O (built with the real createHost). M sends its
// claims every way records travel: gossip, a sync she starts, and a sync the others start.

const SEED = fuzzSeed(0xc1a1_3a11)
const psk = testPsk(0x17)

let a: MeshNode, m: MeshNode, o: MeshNode
const all = (): MeshNode[] => [a, m, o]
const ids = (node: MeshNode): string[] => node.membership.members().map(e => e.record.peerId).sort()

beforeAll(async () => {
  console.log(`claim hijack test: seed ${SEED}`)
  const rng = createRng(SEED)
  const observer = await seededNode('observer', rng)
  const alice = await seededNode('alice', rng)
  // Of two peers, the lower id starts the sync when the other's subscription arrives: mallory
  // gets the highest, so that both others come to her when she resubscribes.
  let mallory = await seededNode('mallory', rng)
  while (mallory.peerId < observer.peerId || mallory.peerId < alice.peerId) mallory = await seededNode('mallory', rng)
  o = await startMeshNode(observer, psk, { real: true })
  a = await startMeshNode(alice, psk, { real: false })
  m = await startMeshNode(mallory, psk, { real: false })
  await a.host.dial(o.addr)
  await m.host.dial(o.addr)
  await m.host.dial(a.addr)
  for (const node of all()) {
    const others = all().filter(n => n !== node).map(n => n.node.peerId).sort()
    await waitFor(`${node.node.peerId} to hold both others`, () => JSON.stringify(ids(node)) === JSON.stringify(others))
  }
  // gossip reaches a peer once its subscription is known
  await waitFor('mallory to see both subscribed', () => m.host.services.pubsub.getSubscribers(RECORD_TOPIC).length === 2)
}, 30_000)

afterAll(async () => {
  await Promise.all([a, m, o].filter(n => n !== undefined).map(async n => await n.stop()))
})

describe('a member claiming another member\'s address or WireGuard key', () => {
  it('is rejected by every other node, over gossip and sync, and the victim keeps what is hers', async () => {
    const victim = a.node.record()
    const aliceRecord = o.membership.get(a.node.peerId)!.record
    const malloryBefore = o.membership.get(m.node.peerId)!
    const counted = { a: { ...a.gossip.stats.rejected }, o: { ...o.gossip.stats.rejected } }
    const received = { a: a.gossip.stats.received, o: o.gossip.stats.received }

    // Each is mallory's own record, correctly signed with her own key, newer than what the
    // others hold; only the stolen part is wrong.
    const claims: Array<{ what: string, reason: 'bad-claim' | 'key-taken', overrides: Partial<NodeRecord> }> = []
    for (const counter of [0, 1, 2, 17, MAX_COUNTER]) {
      claims.push({ what: `alice's IPv6 as counter ${counter}`, reason: 'bad-claim', overrides: { ipv6: { address: victim.ipv6.address, counter, since: 0 } } })
      claims.push({ what: `alice's IPv4 as counter ${counter}`, reason: 'bad-claim', overrides: { ipv4: { address: victim.ipv4!.address, counter, since: 0 } } })
    }
    // alice's next addresses, should she ever lose a collision
    claims.push({ what: 'alice\'s IPv6 under her counter 1', reason: 'bad-claim', overrides: { ipv6: { address: addressFor(ranges.ipv6, a.node.peerId, 1), counter: 1, since: 0 } } })
    claims.push({ what: 'alice\'s IPv4 under her counter 3', reason: 'bad-claim', overrides: { ipv4: { address: addressFor(ranges.ipv4, a.node.peerId, 3), counter: 3, since: 0 } } })
    claims.push({ what: 'alice\'s WireGuard key', reason: 'key-taken', overrides: { wgPublicKey: a.node.wgPublicKey } })
    claims.push({ what: 'alice\'s WireGuard key and both addresses', reason: 'bad-claim', overrides: { wgPublicKey: a.node.wgPublicKey, ipv4: victim.ipv4, ipv6: victim.ipv6 } })
    claims.push({ what: 'the observer\'s WireGuard key', reason: 'key-taken', overrides: { wgPublicKey: o.node.wgPublicKey } })
    claims.push({ what: 'a tombstone with alice\'s key', reason: 'key-taken', overrides: { wgPublicKey: a.node.wgPublicKey, leaving: true } })

    let seq = malloryBefore.record.seq
    const gossiped: Uint8Array[] = []
    for (const claim of claims) {
      const signed = await m.node.sign({ ...claim.overrides, seq: ++seq })
      gossiped.push(signed.envelope)
      await m.gossip.publish(signed.envelope)
    }
    // The same claims again (newer seqs), through a sync mallory starts. The responder takes
    // only the records it WANTs, so her digest announces her own id and made-up ones, all newer
    // than anything held: each target wants as many records as she has claims. One more record
    // than that is refused, unjudged.
    const initiated: Uint8Array[] = []
    for (const claim of claims) initiated.push((await m.node.sign({ ...claim.overrides, seq: ++seq })).envelope)
    const surplus = (await m.node.sign({ ...claims[0]!.overrides, seq: ++seq })).envelope
    const announced: Array<[string, number]> = [[m.node.peerId, Number.MAX_SAFE_INTEGER]]
    for (let i = 1; i < claims.length; i++) announced.push([`12D3KooWdecoy${i}`, 1 + i])
    for (const target of [a, o]) {
      const stream = await m.host.dialProtocol(target.addr, SYNC_PROTOCOL)
      const lp = lpStream(stream)
      await lp.writeV([...digestFrames(announced), END])
      const reply = await readPhase(lp)
      expect(reply.wants.sort()).toEqual(announced.map(([id]) => id).sort())
      // It sends what mallory's digest lacks: its own record and the third node's.
      expect(reply.records).toHaveLength(2)
      await lp.writeV([...[...initiated, surplus].map(recordFrame), END]).catch(() => {})
      await waitFor('the target to drop the stream at the surplus record', () => stream.status !== 'open')
    }

    // And once more (newer seqs still), answering syncs the others start: mallory swaps in her
    // own sync handler and resubscribes to the topic, which makes both (lower ids) sync with her.
    const answered: Uint8Array[] = []
    for (const claim of claims) answered.push((await m.node.sign({ ...claim.overrides, seq: ++seq })).envelope)
    const servedTo: string[] = []
    await m.host.unhandle(SYNC_PROTOCOL)
    await m.host.handle(SYNC_PROTOCOL, async (stream, connection) => {
      const lp = lpStream(stream)
      try {
        const digest = await readPhase(lp)
        expect(digest.digest.map(([id]) => id)).toContain(m.node.peerId)
        await lp.writeV([...answered.map(recordFrame), END])
        await readPhase(lp) // it wants nothing: an empty phase
        await stream.close()
        servedTo.push(connection.remotePeer.toString())
      } catch (err) {
        stream.abort(err as Error)
      }
    })
    const pubsub = m.host.services.pubsub
    pubsub.unsubscribe(RECORD_TOPIC)
    pubsub.subscribe(RECORD_TOPIC)
    await waitFor('alice and the observer to sync with mallory', () => servedTo.length === 2)
    expect(servedTo.sort()).toEqual([a.node.peerId, o.node.peerId].sort())

    await waitFor('alice to judge every claim', () => a.gossip.stats.received >= received.a + 3 * claims.length)
    await waitFor('the observer to judge every claim', () => o.gossip.stats.received >= received.o + 3 * claims.length)
    // (a background sync may add an honest duplicate under load: the exact check is below,
    // on what was rejected and why)

    // Both rejected every claim, each for the stated reason (alice sees her own key as "ours").
    const want: Record<string, number> = {}
    for (const claim of claims) want[claim.reason] = (want[claim.reason] ?? 0) + 3
    expect(rejectedSince(o.gossip, counted.o)).toEqual(want)
    expect(rejectedSince(a.gossip, counted.a)).toEqual(want)
    for (const claim of claims) {
      const result = await o.membership.acceptEnvelope((await m.node.sign({ ...claim.overrides, seq: seq + 1 })).envelope, m.node.peerId)
      expect(result, claim.what).toMatchObject({ accepted: false, reason: claim.reason })
    }

    // Nothing moved: mallory is still known by her last honest record, alice by hers.
    for (const node of [a, o]) {
      expect(node.membership.get(m.node.peerId)!.envelope).toEqual(malloryBefore.envelope)
    }
    expect(o.membership.get(a.node.peerId)!.record).toEqual(aliceRecord)
    expect(ids(o)).toEqual([a.node.peerId, m.node.peerId].sort())
    const owners6 = o.membership.owners(6)
    const owners4 = o.membership.owners(4)
    expect(owners6.get(victim.ipv6.address)?.peerId).toBe(a.node.peerId)
    expect(owners4.get(victim.ipv4!.address)?.peerId).toBe(a.node.peerId)

    // And what the observer would program into WireGuard: alice's addresses go to alice's key.
    const peers = desiredPeers({
      members: o.membership.members().map(e => e.record),
      owners: { 4: owners4, 6: owners6 },
      connectedHost: () => undefined,
      persistentKeepalive: 25
    })
    const alicePeer = peers.find(p => p.publicKey === a.node.wgPublicKey)
    const malloryPeer = peers.find(p => p.publicKey === m.node.wgPublicKey)
    expect(alicePeer?.allowedIps.sort()).toEqual([`${victim.ipv4!.address}/32`, `${victim.ipv6.address}/128`].sort())
    expect(malloryPeer?.allowedIps).not.toContain(`${victim.ipv6.address}/128`)
    expect(malloryPeer?.allowedIps).not.toContain(`${victim.ipv4!.address}/32`)
    expect(peers.filter(p => p.publicKey === a.node.wgPublicKey)).toHaveLength(1)
    console.log(`claim hijack: ${claims.length} claims x 3 paths rejected by alice and the observer:`, want)
  })

  it('an honest update from the same member still gets through afterwards', async () => {
    const seq = o.membership.get(m.node.peerId)!.record.seq + 1000
    await m.announce({ seq, endpoints: ['198.18.0.9:10042'] })
    for (const node of [a, o]) {
      await waitFor('the honest update', () => node.membership.get(m.node.peerId)?.record.seq === seq)
    }
  })
})
