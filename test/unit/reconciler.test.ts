import { describe, it, expect } from 'vitest'
import { diffPeers, desiredPeers } from '../../src/reconciler/desired.ts'
import { createReconciler } from '../../src/reconciler/reconciler.ts'
import { createMemoryDriver } from '../../src/wireguard/memory.ts'
import { generateWgKeyPair } from '../../src/wireguard/keys.ts'
import type { WgPeerConfig, WgPeerState } from '../../src/wireguard/driver.ts'
import { makeNode, membershipFor } from './fixtures.ts'

const key = (): string => generateWgKeyPair().publicKey
const peer = (overrides: Partial<WgPeerConfig> = {}): WgPeerConfig => ({
  publicKey: key(), endpoint: '198.18.0.2:10042', allowedIps: ['10.223.0.2/32'], persistentKeepalive: 25, ...overrides
})
const state = (p: WgPeerConfig, overrides: Partial<WgPeerState> = {}): WgPeerState => ({ ...p, latestHandshake: 0, rxBytes: 0, txBytes: 0, ...overrides })
const silent = { debug: () => {}, info: () => {}, warn: () => {} }

describe('diffPeers', () => {
  it('adds, updates and removes, and leaves correct peers untouched', () => {
    const same = peer()
    const changedIps = peer()
    const gone = peer()
    const fresh = peer()
    const desired = [same, { ...changedIps, allowedIps: ['10.223.0.9/32'] }, fresh]
    const actual = [state(same), state(changedIps), state(gone)]
    const diff = diffPeers(desired, actual)
    expect(diff.upserts.map(p => p.publicKey).sort()).toEqual([changedIps.publicKey, fresh.publicKey].sort())
    expect(diff.removals).toEqual([gone.publicKey])
  })

  it('applies a chosen endpoint, and an undefined one keeps what the device has', () => {
    const want = peer({ endpoint: '198.18.0.2:10042' })
    const roamed = state(want, { endpoint: '203.0.113.9:4000', latestHandshake: 990 })
    expect(diffPeers([want], [state(want)]).upserts).toHaveLength(0)
    expect(diffPeers([want], [roamed]).upserts).toHaveLength(1)
    expect(diffPeers([{ ...want, endpoint: undefined }], [roamed]).upserts).toHaveLength(0)
    expect(diffPeers([{ ...want, endpoint: undefined, persistentKeepalive: 0 }], [roamed]).upserts).toHaveLength(1)
  })
})

describe('desiredPeers', () => {
  it('gives each member its winning addresses and prefers the connected host', async () => {
    const [me, a, b] = await Promise.all([makeNode('me'), makeNode('a'), makeNode('b')])
    const table = membershipFor(me)
    table.accept(await a.sign({ endpoints: ['198.18.0.1:10042', '[fd00::9]:10042'] }))
    table.accept(await b.sign({ endpoints: ['198.18.0.7:10042'] }))
    const peers = desiredPeers({
      members: table.members().map(e => e.record),
      owners: { 4: table.owners(4), 6: table.owners(6) },
      connectedHost: id => id === a.peerId ? 'fd00::9' : undefined,
      persistentKeepalive: 25
    })
    const byKey = new Map(peers.map(p => [p.publicKey, p]))
    const pa = byKey.get(a.wgPublicKey)!
    expect(pa.endpoint).toBe('[fd00::9]:10042')
    expect(pa.candidates).toEqual(['[fd00::9]:10042', '198.18.0.1:10042'])
    expect(pa.allowedIps).toEqual([`${a.record().ipv4!.address}/32`, `${a.record().ipv6.address}/128`])
    expect(byKey.get(b.wgPublicKey)!.endpoint).toBe('198.18.0.7:10042')
  })
})

describe('reconciler', () => {
  const iface = { name: 'wt0', privateKey: generateWgKeyPair().privateKey, listenPort: 10042, mtu: 1420, addresses: ['fd00::1/64'] }

  it('applies only the difference, coalesces bursts, and pokes new peers', async () => {
    const driver = createMemoryDriver()
    let desired = [peer(), peer()]
    const runs: number[] = []
    const r = createReconciler({ driver, iface: () => iface, desired: () => desired, log: silent, coalesceMs: 5, onApplied: () => runs.push(1) })
    await r.runNow()
    expect((await driver.read('wt0'))!.peers).toHaveLength(2)
    await new Promise(resolve => setTimeout(resolve, 1300)) // staggered pokes, then the keepalive pass
    expect(driver.calls.filter(c => c.op === 'triggerHandshake')).toHaveLength(2)
    driver.clearCalls()
    runs.length = 0
    const keep = desired[0]!
    desired = [keep, peer()]
    for (let i = 0; i < 20; i++) r.schedule()
    await new Promise(resolve => setTimeout(resolve, 60))
    expect(runs).toHaveLength(1) // twenty schedules, one run
    expect(driver.touchedPeers('wt0').has(keep.publicKey)).toBe(false)
    const device = (await driver.read('wt0'))!
    expect(device.peers.map(p => p.publicKey).sort()).toEqual(desired.map(p => p.publicKey).sort())
    r.stop()
  })

  it('adds new peers without keepalive, pokes only from one side, then turns keepalive on', async () => {
    const driver = createMemoryDriver()
    const ownKey = (await import('../../src/wireguard/keys.ts')).wgPublicKeyFromPrivate(iface.privateKey)
    // one key on each side of ours: 40 random keys all fell on one side in 2 runs of 41 on
    // average (our key is random too), which CI met once
    const find = (side: (k: string) => boolean): string => {
      for (let i = 0; i < 100_000; i++) { const k = key(); if (side(k)) return k }
      throw new Error('no key on that side of ours in 100000 tries')
    }
    const lower = peer({ publicKey: find(k => k < ownKey), allowedIps: ['10.223.0.3/32'] })
    const higher = peer({ publicKey: find(k => k > ownKey), allowedIps: ['10.223.0.4/32'] })
    expect(lower.publicKey < ownKey && ownKey < higher.publicKey).toBe(true)
    const r = createReconciler({ driver, iface: () => iface, desired: () => [lower, higher], log: silent })
    await r.runNow()
    // `lower` pokes us and its handshake arrives within the 200 ms stagger (simulated at once,
    // so a slow machine cannot let the stagger run out first)
    driver.simulateHandshake('wt0', lower.publicKey)
    const added = (await driver.read('wt0'))!.peers
    expect(added.map(p => p.persistentKeepalive)).toEqual([0, 0])
    await new Promise(resolve => setTimeout(resolve, 20))
    // we hold the lower key than `higher`: we poke it at once; `lower` pokes us, so we wait
    expect(driver.calls.filter(c => c.op === 'triggerHandshake').map(c => (c as { address: string }).address)).toEqual(['10.223.0.4'])
    // passes within the grace period (a joining node's connections coming up) leave keepalive
    // off, also when they update the peer: turning it on would send a handshake at once
    const keepalives = async (): Promise<number[]> => (await driver.read('wt0'))!.peers.map(p => p.persistentKeepalive ?? 0)
    higher.endpoint = '198.18.0.9:10042'
    await r.runNow()
    expect((await driver.read('wt0'))!.peers.find(p => p.publicKey === higher.publicKey)?.endpoint).toBe('198.18.0.9:10042')
    expect(await keepalives()).toEqual([0, 0])
    // the keepalive pass runs about 1 s later; polled, so a loaded machine cannot fail it
    for (let waited = 0; waited < 5000 && (await keepalives()).some(k => k === 0); waited += 50) {
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    expect(await keepalives()).toEqual([25, 25])
    expect(driver.calls.filter(c => c.op === 'triggerHandshake')).toHaveLength(1)
    r.stop()
  })

  it('waits only briefly for a peer known to have added us, before or during its stagger, whatever the key order', async () => {
    const driver = createMemoryDriver()
    let own = generateWgKeyPair()
    while (own.publicKey[0]! < 'a') own = generateWgKeyPair()
    const iface = { name: 'wt0', privateKey: own.privateKey, listenPort: 10042, mtu: 1420, addresses: ['fd00::1/64'] }
    const lowerKey = (): string => { for (;;) { const k = key(); if (k < own.publicKey) return k } }
    // peers holding lower keys than ours: without a hint we would wait out the 200 ms stagger
    const early = peer({ publicKey: lowerKey(), allowedIps: ['10.223.0.5/32'] }) // hinted before the add
    const arrived = peer({ publicKey: lowerKey(), allowedIps: ['10.223.0.8/32'] }) // hinted; its handshake comes in time
    const during = peer({ publicKey: lowerKey(), allowedIps: ['10.223.0.6/32'] }) // hinted in the stagger
    const plain = peer({ publicKey: lowerKey(), allowedIps: ['10.223.0.7/32'] }) // never hinted
    const desired = [early, arrived]
    const r = createReconciler({ driver, iface: () => iface, desired: () => desired, log: silent })
    const poked = (): string[] => driver.calls.filter(c => c.op === 'triggerHandshake').map(c => (c as { address: string }).address)
    const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
    r.peerAddedUs(early.publicKey)
    r.peerAddedUs(arrived.publicKey)
    await r.runNow()
    driver.simulateHandshake('wt0', arrived.publicKey) // its own start, still on the way at the add
    expect(poked()).toEqual([]) // a brief wait first: a start of theirs may still be on the way
    await sleep(120)
    expect(poked()).toEqual(['10.223.0.5'])
    desired.push(during, plain)
    await r.runNow()
    r.peerAddedUs(during.publicKey)
    await sleep(120)
    expect(poked()).toEqual(['10.223.0.5', '10.223.0.6']) // `plain` still waits out its 200 ms
    await sleep(300)
    // the one never hinted after its stagger; the hinted ones once only
    expect(poked()).toEqual(['10.223.0.5', '10.223.0.6', '10.223.0.7'])
    r.stop()
  })

  it('checks the peers it waits for with one device read, however many (a newcomer to a large mesh)', async () => {
    const driver = createMemoryDriver()
    // a key of ours in the upper part of the order, so that 40 lower ones are quick to find
    let own = generateWgKeyPair()
    while (own.publicKey[0]! < 'a') own = generateWgKeyPair()
    const ownKey = own.publicKey
    const iface = { name: 'wt0', privateKey: own.privateKey, listenPort: 10042, mtu: 1420, addresses: ['fd00::1/64'] }
    // peers holding a lower key than ours: they poke first, we check after the stagger
    const lower: WgPeerConfig[] = []
    for (let i = 0; lower.length < 40 && i < 100_000; i++) {
      const k = key()
      if (k < ownKey) lower.push(peer({ publicKey: k, allowedIps: [`10.223.1.${lower.length + 1}/32`] }))
    }
    expect(lower).toHaveLength(40)
    let reads = 0
    const read = driver.read.bind(driver)
    driver.read = async name => { reads++; return await read(name) }
    const r = createReconciler({ driver, iface: () => iface, desired: () => lower, log: silent })
    await r.runNow()
    const readsByApply = reads
    // one of them handshook with us during the stagger: only the other 39 are poked
    driver.simulateHandshake('wt0', lower[7]!.publicKey)
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(reads - readsByApply).toBe(1)
    const poked = driver.calls.filter(c => c.op === 'triggerHandshake').map(c => (c as { address: string }).address)
    expect(poked).toHaveLength(39)
    expect(poked).not.toContain('10.223.1.8')
    r.stop()
  })

  it('retries after a failure', async () => {
    const driver = createMemoryDriver()
    driver.failNext('setPeers', new Error('boom'))
    const failures: unknown[] = []
    const r = createReconciler({ driver, iface: () => iface, desired: () => [peer()], log: silent, onFailed: err => failures.push(err) })
    await expect(r.runNow()).rejects.toThrow('boom')
    expect(failures).toHaveLength(1)
    await new Promise(resolve => setTimeout(resolve, 700))
    expect((await driver.read('wt0'))!.peers).toHaveLength(1)
    r.stop()
  })
})
