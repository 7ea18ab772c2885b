import { describe, it, expect, afterEach } from 'vitest'
import { createHash } from 'node:crypto'
import { createServer, type AddressInfo } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerInfo } from '@libp2p/interface'
import { pino } from 'pino'
import { createKeeper, type Keeper } from '../../src/p2p/keeper.ts'
import type { Host } from '../../src/p2p/host.ts'
import { makeNode } from '../unit/fixtures.ts'
import { startMeshNode, testHost, testPsk, waitFor, type MeshNode } from './harness.ts'

// The keeper's two extra sources of addresses: peers found on the LAN (mDNS hands them to
// keeper.discovered; the e2e test drives the real multicast path) and the DHT, asked for a
// member whose record brought no address.

const psk = testPsk(0x3d)

interface Line { level: number, msg: string, [key: string]: unknown }
function captureLog (): { log: pino.Logger, lines: Line[] } {
  const lines: Line[] = []
  const log = pino({ level: 'debug' }, { write: (text: string) => { lines.push(JSON.parse(text) as Line) } })
  return { log, lines }
}
const WARN = 40

const cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

function keeperFor (host: Host, log: pino.Logger, bootstrap: string[] = [], spreadDialsMs?: number): Keeper {
  const keeper = createKeeper({ host, self: host.peerId.toString(), bootstrap, log, spreadDialsMs })
  cleanup.push(() => keeper.stop())
  return keeper
}

/** Keep the keeper's targets in step with membership, as src/daemon.ts does. */
function follow (node: MeshNode, keeper: Keeper): void {
  const update = (): void => keeper.setTargets(new Map(node.membership.members().map(e => [e.record.peerId, e.record.addrs])))
  node.membership.onChange(update)
  update()
}

async function started (node: Promise<MeshNode>): Promise<MeshNode> {
  const n = await node
  cleanup.push(async () => { await n.stop() })
  return n
}

const infoOf = (node: MeshNode): PeerInfo => ({ id: peerIdFromString(node.node.peerId), multiaddrs: [node.addr.decapsulateCode(421)] })
/** longer than the keeper's yield to a lower peer id */
const TIE_WAIT_MS = 2000
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('peers found on the LAN', () => {
  it('a node of another mesh is dialled once, then left alone for seconds, quietly and with no PSK hint', async () => {
    const foreign = await started(startMeshNode(await makeNode('foreign'), testPsk(0x99), { real: true }))
    const host = await testHost(await generateKeyPair('Ed25519'), psk, ['/ip4/127.0.0.1/tcp/0'])
    await host.start()
    cleanup.push(async () => { await host.stop() })
    const { log, lines } = captureLog()
    const keeper = keeperFor(host, log)
    const failures = (): Line[] => lines.filter(l => l.msg.startsWith('dial to a peer found on the LAN failed'))
    let dials = 0
    const dial = host.dial.bind(host)
    host.dial = async (...args: Parameters<Host['dial']>) => { dials++; return await dial(...args) }

    // a LAN that answers far more often than mDNS does (every 10 s): every 100 ms
    const t0 = Date.now()
    await waitFor('the first failed dial', () => { keeper.discovered(infoOf(foreign)); return failures().length > 0 }, 15_000)
    const firstFailureMs = Date.now() - t0
    for (let i = 0; i < 40; i++) { keeper.discovered(infoOf(foreign)); await sleep(100) }

    expect(dials).toBe(1)
    expect(failures()).toHaveLength(1)
    expect(failures()[0]!.retryMs).toBeGreaterThanOrEqual(6000)
    expect(lines.filter(l => l.level >= WARN)).toEqual([])
    expect(lines.some(l => /PSK/.test(l.msg))).toBe(false)
    expect(host.getConnections(peerIdFromString(foreign.node.peerId))).toHaveLength(0)
    console.log(`wrong-PSK dial failed after ${firstFailureMs} ms; no second dial in the 4 s that followed`)
  }, 40_000)

  it('dials only private addresses from an answer, and a flood of strangers only at a bounded rate', async () => {
    const host = await testHost(await generateKeyPair('Ed25519'), psk, ['/ip4/127.0.0.1/tcp/0'])
    cleanup.push(async () => { await host.stop() })
    const dialled: string[][] = []
    // nothing leaves the process: the dial is recorded and fails at once
    host.dial = async (target: Parameters<Host['dial']>[0]) => {
      dialled.push((Array.isArray(target) ? target : [target]).map(String))
      throw new Error('refused')
    }
    const keeper = keeperFor(host, captureLog().log)
    const stranger = async (...addrs: string[]): Promise<PeerInfo> => ({ id: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), multiaddrs: addrs.map(a => multiaddr(a)) })

    keeper.discovered(await stranger('/dns4/example.com/tcp/10042'))
    keeper.discovered(await stranger('/ip4/192.168.7.3/tcp/10042', '/dns4/example.com/tcp/10042'))
    const flood = await Promise.all(Array.from({ length: 40 }, async (_, i) => await stranger(`/ip4/10.9.0.${i + 1}/tcp/10042`)))
    for (const peer of flood) keeper.discovered(peer)
    await sleep(TIE_WAIT_MS)

    expect(dialled.some(addrs => addrs.some(a => a.includes('example.com')))).toBe(false)
    expect(dialled.some(addrs => addrs.length === 1 && addrs[0]!.startsWith('/ip4/192.168.7.3/tcp/10042/p2p/'))).toBe(true)
    // a burst of 10 at most (plus what one second refills), not 41
    expect(dialled.length).toBeLessThanOrEqual(12)
    expect(dialled.length).toBeGreaterThanOrEqual(10)
  }, 20_000)

  it('a node of our mesh found on the LAN becomes a member with no bootstrap', async () => {
    const other = await started(startMeshNode(await makeNode('other'), psk, { real: true }))
    const self = await started(startMeshNode(await makeNode('self'), psk, { real: false }))
    const { log, lines } = captureLog()
    const keeper = keeperFor(self.host, log)
    follow(self, keeper)
    // both ids may be the higher one: the lower dials at once, the higher after a short yield
    keeper.discovered(infoOf(other))
    await waitFor('the LAN peer to become a member', () => self.membership.get(other.node.peerId) !== undefined, 10_000)
    expect(lines.filter(l => l.level >= WARN)).toEqual([])
  }, 30_000)
})

describe('how many members the keeper keeps connected', () => {
  /** a host that dials nothing: each dial is recorded and fails, or succeeds without a connection */
  async function recordingHost (fails: (peer: string) => boolean): Promise<{ host: Host, dialled: string[] }> {
    const host = await testHost(await generateKeyPair('Ed25519'), psk, ['/ip4/127.0.0.1/tcp/0'])
    cleanup.push(async () => { await host.stop() })
    const dialled: string[] = []
    host.dial = (async (target: Parameters<Host['dial']>[0]) => {
      const peer = String(target)
      dialled.push(peer)
      if (fails(peer)) throw new Error('refused')
      return undefined as never
    }) as Host['dial']
    return { host, dialled }
  }
  const members = async (n: number): Promise<Map<string, string[]>> => new Map(await Promise.all(Array.from({ length: n }, async (_, i) =>
    [peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString(), [`/ip4/127.0.0.1/tcp/${9 + i}`]] as [string, string[]])))

  it('a small mesh: every member; a large one: a bounded set, the same on every update', async () => {
    const small = await recordingHost(() => false)
    const k1 = createKeeper({ host: small.host, self: small.host.peerId.toString(), bootstrap: [], log: captureLog().log, fullMeshUpTo: 16, keep: 8 })
    cleanup.push(() => k1.stop())
    k1.setTargets(await members(16))
    await sleep(300)
    expect(new Set(small.dialled).size).toBe(16)

    const large = await recordingHost(() => false)
    const k2 = createKeeper({ host: large.host, self: large.host.peerId.toString(), bootstrap: [], log: captureLog().log, fullMeshUpTo: 16, keep: 8 })
    cleanup.push(() => k2.stop())
    const forty = await members(40)
    k2.setTargets(forty)
    await sleep(300)
    const first = new Set(large.dialled)
    expect(first.size).toBe(8)
    // a membership update (one more member) does not reshuffle the choice: at most one swap
    const more = new Map([...forty, ...(await members(1))])
    k2.setTargets(more)
    await sleep(300)
    expect(new Set(large.dialled).size).toBeLessThanOrEqual(9)
  }, 20_000)

  /** a host connected to somebody (a bootstrap) but to none of the members; `alone()` drops that connection */
  async function connectedElsewhere (): Promise<{ host: Host, dialled: string[], alone: () => void }> {
    const { host, dialled } = await recordingHost(() => false)
    const self = host.peerId.toString()
    let connections = [{ remotePeer: peerIdFromString(self), status: 'open' } as unknown as ReturnType<Host['getConnections']>[number]]
    host.getConnections = ((peer?: unknown) => peer === undefined ? connections : []) as Host['getConnections']
    const alone = (): void => {
      connections = []
      host.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peerIdFromString(self) }))
    }
    return { host, dialled, alone }
  }
  /** when each peer was first dialled, ms after the call */
  function dialTimes (dialled: string[]): Map<string, number> {
    const t0 = Date.now()
    const at = new Map<string, number>()
    const record = setInterval(() => { for (const d of dialled) if (!at.has(d)) at.set(d, Date.now() - t0) }, 5)
    cleanup.push(() => { clearInterval(record) })
    return at
  }

  /** hands the keeper one more member every 150 ms, `count` in all (a fleet forming); `check` after each */
  async function arriveOneByOne (keeper: Keeper, count: number, check: () => void = () => {}): Promise<void> {
    const known = new Map<string, string[]>()
    for (const [peerId, addrs] of await members(count)) {
      known.set(peerId, addrs)
      keeper.setTargets(new Map(known))
      await sleep(150)
      check()
    }
  }

  it('connected to somebody, new members are dialled once membership has been quiet for a spread, within one more; the higher peer id waits one spread longer', async () => {
    const { host, dialled } = await connectedElsewhere()
    const self = host.peerId.toString()
    let lower: string | undefined
    let higher: string | undefined
    while (lower === undefined || higher === undefined) {
      const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
      if (id < self) higher ??= id // we are the higher id towards it: we wait longer
      else lower ??= id
    }
    const keeper = createKeeper({ host, self, bootstrap: [], log: captureLog().log, spreadDialsMs: 400 })
    cleanup.push(() => keeper.stop())
    const at = dialTimes(dialled)
    keeper.setTargets(new Map([[lower, ['/ip4/127.0.0.1/tcp/9']], [higher, ['/ip4/127.0.0.1/tcp/10']]]))
    await sleep(350)
    expect(dialled).toEqual([])
    await waitFor('both members to be dialled', () => at.has(lower!) && at.has(higher!), 5000)
    // quiet for 400 ms, then lower: 400–800 ms; higher: 800–1200 ms (plus timer slack)
    expect(at.get(lower)).toBeGreaterThanOrEqual(390)
    expect(at.get(lower)).toBeLessThan(1000)
    expect(at.get(higher)).toBeGreaterThanOrEqual(790)
  }, 20_000)

  it('while new members keep coming (a fleet forming), first dials wait, for at most firstDialMaxWaitMs', async () => {
    const { host, dialled } = await connectedElsewhere()
    const keeper = createKeeper({ host, self: host.peerId.toString(), bootstrap: [], log: captureLog().log, spreadDialsMs: 1000 })
    cleanup.push(() => keeper.stop())
    // never a second without a new member (slack for a loaded machine)
    await arriveOneByOne(keeper, 10, () => { expect(dialled).toEqual([]) })
    await waitFor('every member to be dialled', () => new Set(dialled).size === 10, 5000)

    // membership that never goes quiet: the first dials go out at the cap all the same
    const busy = await connectedElsewhere()
    const capped = createKeeper({ host: busy.host, self: busy.host.peerId.toString(), bootstrap: [], log: captureLog().log, spreadDialsMs: 1000, firstDialMaxWaitMs: 600 })
    cleanup.push(() => capped.stop())
    const at = dialTimes(busy.dialled)
    await arriveOneByOne(capped, 16)
    // cap 600 ms, then a lower peer id within one spread: before the last of 16 members at ~2.4 s
    const first = Math.min(...at.values())
    expect(first).toBeGreaterThanOrEqual(590)
    expect(first).toBeLessThan(2300)
  }, 20_000)

  it('losing the last connection sends the members waiting for their first dial at once', async () => {
    const { host, dialled, alone } = await connectedElsewhere()
    const keeper = createKeeper({ host, self: host.peerId.toString(), bootstrap: [], log: captureLog().log, spreadDialsMs: 5000 })
    cleanup.push(() => keeper.stop())
    keeper.setTargets(await members(3))
    await sleep(200)
    expect(dialled).toEqual([])
    const at = dialTimes(dialled)
    alone()
    await waitFor('the waiting members to be dialled', () => new Set(dialled).size === 3, 2000)
    expect(Math.max(...at.values())).toBeLessThan(500)
  }, 20_000)

  it('members that keep failing get stand-ins and are still retried; when all fail, all are tried', async () => {
    const forty = await members(40)
    let failing = new Set<string>()
    const { host, dialled } = await recordingHost(peer => failing.has(peer) || failing.has('*'))
    const keeper = createKeeper({ host, self: host.peerId.toString(), bootstrap: [], log: captureLog().log, fullMeshUpTo: 16, keep: 8, baseBackoffMs: 20, maxBackoffMs: 200 })
    cleanup.push(() => keeper.stop())
    failing = new Set(['*'])
    keeper.setTargets(forty)
    // each failing member is dropped from the count after 3 failures: stand-ins follow until
    // every member is being tried (a partition: nobody is given up)
    await waitFor('every member to be dialled', () => new Set(dialled).size === 40, 10_000)
    const counts = new Map<string, number>()
    for (const p of dialled) counts.set(p, (counts.get(p) ?? 0) + 1)
    expect([...counts.values()].filter(c => c >= 3).length).toBeGreaterThanOrEqual(8)
  }, 20_000)

  it('runs at most 4 member dials at once; the others queue, and every member is dialled', async () => {
    const host = await testHost(await generateKeyPair('Ed25519'), psk, ['/ip4/127.0.0.1/tcp/0'])
    cleanup.push(async () => { await host.stop() })
    let inFlight = 0
    let most = 0
    const dialled = new Set<string>()
    // a starved machine: each dial takes 100 ms, then times out
    host.dial = (async (target: Parameters<Host['dial']>[0]) => {
      dialled.add(String(target))
      most = Math.max(most, ++inFlight)
      await sleep(100)
      inFlight--
      throw new Error('TimeoutError')
    }) as Host['dial']
    const keeper = createKeeper({ host, self: host.peerId.toString(), bootstrap: [], log: captureLog().log, fullMeshUpTo: 16, keep: 8, baseBackoffMs: 5000 })
    cleanup.push(() => keeper.stop())
    keeper.setTargets(await members(12))
    await waitFor('all 12 members dialled', () => dialled.size === 12, 5000)
    expect(most).toBe(4)
  }, 20_000)

  it('asks the LAN again only while it knows nobody, less and less often', async () => {
    const { host } = await recordingHost(() => true)
    let queries = 0
    const keeper = createKeeper({ host, self: host.peerId.toString(), bootstrap: [], log: captureLog().log, queryLan: () => { queries++ }, lonelyQueryMs: 100 })
    cleanup.push(() => keeper.stop())
    // after 100 ms, then doubling (±25 %): 3 to 4 queries in 1.2 s, not 12
    await sleep(1200)
    expect(queries).toBeGreaterThanOrEqual(3)
    expect(queries).toBeLessThanOrEqual(4)
    keeper.setTargets(await members(1))
    const before = queries
    await sleep(1000)
    expect(queries).toBe(before)
  }, 20_000)

  it('failed dials probe an address for the PSK hint at most once per interval', async () => {
    let probes = 0
    const server = createServer(socket => { probes++; socket.destroy() })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    cleanup.push(async () => { await new Promise(resolve => server.close(resolve)) })
    const port = (server.address() as AddressInfo).port
    const { host, dialled } = await recordingHost(() => true)
    const keeper = createKeeper({ host, self: host.peerId.toString(), bootstrap: [], log: captureLog().log, baseBackoffMs: 20, maxBackoffMs: 50 })
    cleanup.push(() => keeper.stop())
    // 12 members behind one address (one NAT, a loaded host): every dial fails at once
    const members = new Map(await Promise.all(Array.from({ length: 12 }, async () =>
      [peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString(), [`/ip4/127.0.0.1/tcp/${port}`]] as [string, string[]])))
    keeper.setTargets(members)
    await sleep(1500)
    expect(dialled.length).toBeGreaterThan(50)
    expect(probes).toBe(1)
  }, 20_000)

  it.each([false, true])('a large mesh closes connections neither side keeps, and only those (other side keeps us: %s)', async (theyKeepUs) => {
    const rank = (from: string, to: string): string => createHash('sha256').update(`${from}/${to}`).digest('hex')
    // A keeps one of B, C (keep = 1); find ids where the other one (Y) does not keep A either
    let a, x, y
    for (;;) {
      const keys = await Promise.all([0, 1, 2].map(async () => await generateKeyPair('Ed25519')))
      const [ka, kb, kc] = keys.map(k => ({ key: k, id: peerIdFromPrivateKey(k).toString() }))
      const [kx, ky] = rank(ka!.id, kb!.id) < rank(ka!.id, kc!.id) ? [kb!, kc!] : [kc!, kb!]
      if ((rank(ky.id, kx.id) > rank(ky.id, ka!.id)) === theyKeepUs) { a = ka!; x = kx; y = ky; break }
    }
    const hosts = await Promise.all([a, x, y].map(async k => await testHost(k.key, psk, ['/ip4/127.0.0.1/tcp/0'])))
    for (const h of hosts) { await h.start(); cleanup.push(async () => { await h.stop() }) }
    const [ha, hx, hy] = hosts as [Host, Host, Host]
    const keeper = createKeeper({ host: ha, self: a.id, bootstrap: [], log: captureLog().log, fullMeshUpTo: 1, keep: 1, pruneMs: 100, pruneAfterMs: 0, spreadDialsMs: 0 })
    cleanup.push(() => keeper.stop())
    await ha.dial(hy.getMultiaddrs()[0]!)
    keeper.setTargets(new Map([[x.id, hx.getMultiaddrs().map(m => m.decapsulateCode(421).toString())], [y.id, hy.getMultiaddrs().map(m => m.decapsulateCode(421).toString())]]))
    await waitFor('A to connect to the member it keeps', () => ha.getConnections(peerIdFromString(x.id)).length > 0)
    if (!theyKeepUs) await waitFor('the connection to the member neither side keeps to close', () => ha.getConnections(peerIdFromString(y.id)).length === 0, 5000)
    await sleep(500)
    expect(ha.getConnections(peerIdFromString(x.id))).toHaveLength(1)
    expect(ha.getConnections(peerIdFromString(y.id))).toHaveLength(theyKeepUs ? 1 : 0)
  }, 20_000)

  it('a bootstrap that refuses is retried eagerly; one that times out, with backoff from the start', async () => {
    const attempts = async (err: Error): Promise<number> => {
      const { host, dialled } = await recordingHost(() => true)
      host.dial = (async (target: Parameters<Host['dial']>[0]) => { dialled.push(String(target)); throw err }) as Host['dial']
      const keeper = createKeeper({ host, self: host.peerId.toString(), bootstrap: ['/ip4/127.0.0.1/tcp/9'], log: captureLog().log, baseBackoffMs: 50 })
      cleanup.push(() => keeper.stop())
      await sleep(1000)
      keeper.stop()
      return dialled.length
    }
    const refused = await attempts(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }))
    const busy = await attempts(new Error('The operation was aborted due to timeout'))
    // refused: every ~25 ms (half the base backoff; 40 eager tries); busy: after ~200, ~400, ~800 ms
    expect(refused).toBeGreaterThanOrEqual(20)
    expect(busy).toBeLessThanOrEqual(4)
  }, 20_000)

  it('with a bootstrap to learn members from, a stranger on the LAN is not dialled at once', async () => {
    const { host, dialled } = await recordingHost(() => true)
    const keeper = keeperFor(host, captureLog().log, ['/ip4/127.0.0.1/tcp/9'])
    keeper.discovered({ id: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), multiaddrs: [multiaddr('/ip4/10.9.2.2/tcp/10042')] })
    await sleep(TIE_WAIT_MS)
    expect(dialled.filter(d => d.includes('10.9.2.2'))).toEqual([])
    expect(dialled.some(d => d.includes('127.0.0.1/tcp/9'))).toBe(true)
  }, 20_000)
})

describe('strangers on the LAN while gossip flows', () => {
  it('connected to somebody, a stranger is dialled only after six times the grace; connected to nobody, after the grace', async () => {
    const graceMs = 200
    const run = async (connected: boolean): Promise<number[]> => {
      const host = await testHost(await generateKeyPair('Ed25519'), psk, ['/ip4/127.0.0.1/tcp/0'])
      cleanup.push(async () => { await host.stop() })
      const dialledAt: number[] = []
      host.dial = (async (target: Parameters<Host['dial']>[0]) => {
        if (String(target).includes('10.9.3.3')) dialledAt.push(Date.now())
        throw new Error('refused')
      }) as Host['dial']
      // connected to somebody, not to the stranger
      if (connected) host.getConnections = ((peer?: unknown) => peer === undefined ? [{}] : []) as unknown as Host['getConnections']
      const keeper = createKeeper({ host, self: '0', bootstrap: ['/ip4/127.0.0.1/tcp/9'], log: captureLog().log, strangerGraceMs: graceMs })
      cleanup.push(() => keeper.stop())
      // self '0' sorts below every peer id: no tie wait on top of the grace
      const t0 = Date.now()
      keeper.discovered({ id: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), multiaddrs: [multiaddr('/ip4/10.9.3.3/tcp/10042')] })
      await sleep(graceMs * 8)
      return dialledAt.map(t => t - t0)
    }
    const [alone, busy] = await Promise.all([run(false), run(true)])
    expect(alone).toHaveLength(1)
    expect(alone[0]).toBeLessThan(graceMs * 3)
    expect(busy).toHaveLength(1)
    expect(busy[0]).toBeGreaterThanOrEqual(graceMs * 6 - 20)
  }, 20_000)
})

describe('DHT peer routing', () => {
  /**
   * A joins through B. C is connected to B only, and C's record lists no address, so gossip
   * teaches A that C exists but not where: only a DHT lookup can connect A to C.
   */
  async function scenario (dht: boolean): Promise<{ a: MeshNode, c: MeshNode, lines: Line[] }> {
    const b = await started(startMeshNode(await makeNode('b'), psk, { real: false, dht }))
    const c = await started(startMeshNode(await makeNode('c'), psk, { real: false, dht, record: { addrs: [] } }))
    await c.host.dial(b.addr)
    await waitFor('B to learn C', () => b.membership.get(c.node.peerId) !== undefined)
    const a = await started(startMeshNode(await makeNode('a'), psk, { real: false, dht }))
    const { log, lines } = captureLog()
    // dial new members at once (no spread): else the DHT's own queries may reach C first
    follow(a, keeperFor(a.host, log, [b.addr.toString()], 0))
    await waitFor('A to learn C from B', () => a.membership.get(c.node.peerId) !== undefined, 10_000)
    expect(a.membership.get(c.node.peerId)!.record.addrs).toEqual([])
    return { a, c, lines }
  }
  const connected = (a: MeshNode, c: MeshNode): boolean => a.host.getConnections(peerIdFromString(c.node.peerId)).length > 0

  it('without the DHT, a member whose record has no address stays out of reach', async () => {
    const { a, c } = await scenario(false)
    await sleep(4000)
    expect(connected(a, c)).toBe(false)
  }, 40_000)

  it('with the DHT, the keeper looks the member up by its peer id, finds its address and connects', async () => {
    const { a, c, lines } = await scenario(true)
    const since = Date.now()
    await waitFor('A to connect to C', () => connected(a, c), 20_000)
    const connectedMs = Date.now() - since
    // the connection may come from the lookup's own query (it contacts C on the way) before
    // findPeer returns: either way the keeper's lookup is what ran, and it found C's address
    await waitFor('the keeper\'s lookup', () => lines.some(l => /^DHT /.test(l.msg)), 20_000)
    const found = lines.find(l => l.msg === 'DHT found member addresses' && l.peer === c.node.peerId)
    expect(found?.addrs).toContain(c.addr.decapsulateCode(421).toString())
    console.log(`A connected to C through the DHT ${connectedMs} ms after learning C's record`)
    expect(lines.filter(l => l.level >= WARN)).toEqual([])
  }, 40_000)
})
