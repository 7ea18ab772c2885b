import { describe, it, expect } from 'vitest'
import { createEndpointSelector, DEFAULT_ATTEMPT_MS, type DesiredPeer, type EndpointView } from '../../src/reconciler/endpoint-rotation.ts'
import { endpointCandidates } from '../../src/reconciler/desired.ts'
import { createReconciler } from '../../src/reconciler/reconciler.ts'
import { createMemoryDriver } from '../../src/wireguard/memory.ts'
import { generateWgKeyPair } from '../../src/wireguard/keys.ts'
import type { WgPeerState } from '../../src/wireguard/driver.ts'
import { makeNode } from './fixtures.ts'

const A = '198.18.0.2:10042'
const B = '198.19.0.2:10042'
const C = '203.0.113.5:10042'
const key = generateWgKeyPair().publicKey
const want = (candidates: string[]): DesiredPeer => ({ publicKey: key, endpoint: candidates[0], candidates, allowedIps: ['10.223.0.2/32'], persistentKeepalive: 25 })
const have = (endpoint: string | undefined, latestHandshake = 0): WgPeerState =>
  ({ publicKey: key, endpoint, allowedIps: ['10.223.0.2/32'], persistentKeepalive: 25, latestHandshake, rxBytes: 0, txBytes: 0 })
const T0 = 1_700_000_000_000
const sec = (ms: number): number => Math.floor(ms / 1000)

describe('endpoint rotation', () => {
  it('tries the first candidate, rotates when no handshake follows, and wraps round counting rounds', () => {
    const changes: EndpointView[] = []
    const sel = createEndpointSelector({ onPathChange: (_, v) => changes.push(v) })
    let r = sel.select([want([A, B, C])], [], T0)
    expect(r.peers[0]!.endpoint).toBe(A)
    expect(r.peers[0]).not.toHaveProperty('candidates')
    expect(r.attempts).toEqual([key])
    expect(sel.nextCheckMs(T0)).toBe(DEFAULT_ATTEMPT_MS)
    // before the timeout nothing moves
    r = sel.select([want([A, B, C])], [have(A)], T0 + DEFAULT_ATTEMPT_MS - 1)
    expect(r.peers[0]!.endpoint).toBe(A)
    expect(r.attempts).toEqual([])
    let t = T0 + DEFAULT_ATTEMPT_MS
    r = sel.select([want([A, B, C])], [have(A)], t)
    expect(r.peers[0]!.endpoint).toBe(B)
    expect(r.attempts).toEqual([key])
    t += DEFAULT_ATTEMPT_MS
    expect(sel.select([want([A, B, C])], [have(B)], t).peers[0]!.endpoint).toBe(C)
    expect(sel.describe(key)!.rounds).toBe(0)
    t += DEFAULT_ATTEMPT_MS
    expect(sel.select([want([A, B, C])], [have(C)], t).peers[0]!.endpoint).toBe(A)
    expect(sel.describe(key)).toEqual({ candidates: [A, B, C], current: A, rounds: 1, working: false })
    expect(changes).toHaveLength(1)
    // a handshake on the current attempt stops the rotation for good, and is reported as recovery
    t += 2000
    r = sel.select([want([A, B, C])], [have(A, sec(t))], t)
    expect(r.peers[0]!.endpoint).toBe(A)
    expect(sel.describe(key)!.working).toBe(true)
    expect(sel.nextCheckMs(t)).toBeUndefined()
    expect(changes.map(c => c.working)).toEqual([false, true])
    t += 100 * 60_000 // long after, with regular rekeys
    expect(sel.select([want([A, B, C])], [have(A, sec(t) - 100)], t).peers[0]!.endpoint).toBe(A)
  })

  it('keeps an endpoint WireGuard roamed to while handshakes are recent', () => {
    const sel = createEndpointSelector()
    sel.select([want([A, B])], [], T0)
    const nat = '198.18.0.9:40001' // a NAT mapping, no candidate at all
    const t = T0 + 1500
    const r = sel.select([want([A, B])], [have(nat, sec(t))], t)
    expect(r.peers[0]!.endpoint).toBe(nat)
    expect(sel.select([want([A, B])], [have(nat, sec(t))], t + 60_000).peers[0]!.endpoint).toBe(nat)
    // the member's record changes but still lists nothing of the NAT's: keep the working tunnel
    expect(sel.select([want([C, A, B])], [have(nat, sec(t))], t + 61_000).peers[0]!.endpoint).toBe(nat)
  })

  it('adopts a working endpoint found on the device at start (restart), without an attempt', () => {
    const sel = createEndpointSelector()
    const r = sel.select([want([A, B])], [have(B, sec(T0) - 30)], T0)
    expect(r.peers[0]!.endpoint).toBe(B)
    expect(r.attempts).toEqual([])
    expect(sel.describe(key)!.working).toBe(true)
  })

  it('moves off an endpoint the member withdrew (it roamed), even with a recent handshake', () => {
    const sel = createEndpointSelector()
    sel.select([want([A, B])], [], T0)
    let t = T0 + 1000
    sel.select([want([A, B])], [have(A, sec(t))], t)
    t += 10_000
    const r = sel.select([want([C])], [have(A, sec(T0 + 1000))], t)
    expect(r.peers[0]!.endpoint).toBe(C)
    expect(r.attempts).toEqual([key])
    // a new list that still holds the working endpoint keeps it
    const sel2 = createEndpointSelector()
    sel2.select([want([A])], [have(A, sec(T0))], T0)
    expect(sel2.select([want([C, A])], [have(A, sec(T0))], T0 + 5000).peers[0]!.endpoint).toBe(A)
  })

  it('starts again from the top when the candidates change and nothing works', () => {
    const sel = createEndpointSelector()
    sel.select([want([A, B])], [], T0)
    sel.select([want([A, B])], [have(A)], T0 + DEFAULT_ATTEMPT_MS)
    expect(sel.describe(key)!.current).toBe(B)
    const r = sel.select([want([C, A, B])], [have(B)], T0 + DEFAULT_ATTEMPT_MS + 10)
    expect(r.peers[0]!.endpoint).toBe(C)
    expect(r.attempts).toEqual([key])
  })

  it('restarts rotation when a working tunnel has had no handshake for 3 minutes', () => {
    const sel = createEndpointSelector()
    sel.select([want([A, B])], [have(A, sec(T0))], T0)
    const t = T0 + 181_000
    expect(sel.select([want([A, B])], [have(A, sec(T0))], t).peers[0]!.endpoint).toBe(B)
  })

  it('leaves peers without candidates alone and forgets removed peers', () => {
    const sel = createEndpointSelector()
    expect(sel.select([want([])], [have(A, sec(T0))], T0).peers[0]!.endpoint).toBeUndefined()
    sel.select([want([A])], [], T0)
    sel.select([], [], T0 + 1)
    expect(sel.describe(key)).toBeUndefined()
    // peers without a candidate list pass through untouched
    const plain = { publicKey: key, endpoint: A, allowedIps: [], persistentKeepalive: 0 }
    expect(sel.select([plain], [], T0).peers).toEqual([plain])
  })
})

describe('endpoint candidates', () => {
  it('puts the connection host first when the record vouches for it, last when it does not', async () => {
    const n = await makeNode('n')
    const rec = n.record({ endpoints: [C, A], addrs: ['/ip4/198.18.0.2/tcp/10042', '/ip4/198.19.0.2/tcp/10042'] })
    expect(endpointCandidates(rec, '198.18.0.2')).toEqual([A, C])
    expect(endpointCandidates(rec, '198.19.0.2')).toEqual([B, C, A]) // vouched by its libp2p addrs
    expect(endpointCandidates(rec, '192.0.2.1')).toEqual([C, A, '192.0.2.1:10042']) // roamed away: last
    expect(endpointCandidates(rec, undefined)).toEqual([C, A])
    expect(endpointCandidates(n.record({ endpoints: [], addrs: [] }), 'fd00::1')).toEqual(['[fd00::1]:10042'])
  })
})

describe('reconciler with rotation', () => {
  it('reaches a member whose first candidate is dead by rotating, and pokes each attempt', async () => {
    let nowMs = T0
    const driver = createMemoryDriver({ now: () => Math.floor(nowMs / 1000) })
    const iface = { name: 'wr0', privateKey: generateWgKeyPair().privateKey, listenPort: 10042, mtu: 1420, addresses: ['fd00::1/64'] }
    const sel = createEndpointSelector({ attemptMs: 40 })
    const real = Date.now
    Date.now = () => nowMs
    try {
      const r = createReconciler({ driver, iface: () => iface, desired: () => [want([A, B])], endpoints: sel, log: { debug: () => {}, info: () => {}, warn: () => {} } })
      await r.runNow()
      expect((await driver.read('wr0'))!.peers[0]!.endpoint).toBe(A)
      nowMs += 50
      await r.runNow()
      expect((await driver.read('wr0'))!.peers[0]!.endpoint).toBe(B)
      await new Promise(resolve => setTimeout(resolve, 300)) // staggered pokes land
      // one handshake poke for the new peer, one for the second attempt (whichever key is lower)
      expect(driver.calls.filter(c => c.op === 'triggerHandshake')).toHaveLength(2)
      driver.simulateHandshake('wr0', key)
      nowMs += 500
      await r.runNow()
      expect((await driver.read('wr0'))!.peers[0]!.endpoint).toBe(B)
      expect(sel.describe(key)!.working).toBe(true)
      r.stop()
    } finally {
      Date.now = real
    }
  })
})
