// In-memory twin of the WireGuard driver for unit tests and many-node control-plane
// benchmarks. Same semantics as the system driver (validation, normalisation, upsert and
// remove, "undefined endpoint = leave as is", deep copies out of read), and it records
// every mutating call so a test can assert what was (and was not) touched.
import { isIP } from 'node:net'
import type { RouteChange, WgDevice, WgDriver, WgImplementation, WgInterfaceConfig, WgPeerConfig, WgPeerState } from './driver.ts'
import { wgPublicKeyFromPrivate } from './keys.ts'
import { cidrContains, normaliseAllowedIps, normaliseInterfaceConfig, normalisePeerBatch, validateInterfaceName } from './parse.ts'

export interface MemoryDevice {
  name: string
  privateKey: string
  publicKey: string
  listenPort: number
  mtu: number
  up: boolean
  /** normalised, sorted */
  addresses: string[]
  /** by public key */
  peers: Map<string, WgPeerState>
  /** kernel routes through this interface that the driver installed (normalised, sorted) */
  routes: string[]
}

export type MemoryInterfaceChange = 'created' | 'privateKey' | 'listenPort' | 'mtu' | 'up' | 'addresses'

export type MemoryCall =
  /** `changed` is empty when the call was a no-op (the idempotent case). */
  | { op: 'ensureInterface', name: string, changed: MemoryInterfaceChange[] }
  /** Only non-empty batches are recorded (the system driver runs nothing for an empty one). */
  | { op: 'setPeers', name: string, upserts: WgPeerConfig[], removals: string[] }
  /** Only calls that changed or skipped something are recorded. */
  | { op: 'setRoutes', name: string, added: string[], removed: string[], skipped: string[] }
  | { op: 'triggerHandshake', name: string, address: string }
  | { op: 'destroy', name: string, existed: boolean }

export type MemoryOp = 'ensureInterface' | 'read' | 'setPeers' | 'setRoutes' | 'triggerHandshake' | 'destroy'

export interface MemoryDriverOptions {
  /** unix seconds; default Date.now()/1000 */
  now?: () => number
  /**
   * When true, triggerHandshake (and adding a peer with a keepalive, as real WireGuard
   * does) marks the matching peer as handshaken at now(), if it has an endpoint.
   */
  autoHandshake?: boolean
  /** Record mutating calls in `calls` (default true). Benchmarks running hundreds of daemons turn it off: the log only grows. */
  recordCalls?: boolean
}

export interface MemoryDriver extends WgDriver {
  /** Live state (not copies): tests may inspect or poke it. */
  readonly devices: Map<string, MemoryDevice>
  /** Routes someone else made (the machine's own table): setRoutes must leave them alone. */
  readonly foreignRoutes: Set<string>
  /** Every mutating call, in order. */
  readonly calls: MemoryCall[]
  /** Forget recorded calls. */
  clearCalls(): void
  /** Public keys upserted or removed by setPeers (optionally on one interface) since the last clearCalls. */
  touchedPeers(name?: string): Set<string>
  /** Pretend a handshake with `publicKey` completed at `at` (unix seconds, default now()). */
  simulateHandshake(name: string, publicKey: string, at?: number): void
  /** Make the next call of `op` reject with `error` (default a generic Error); for failure-path tests. */
  failNext(op: MemoryOp, error?: Error): void
}

const copyPeer = (p: WgPeerState): WgPeerState => ({ ...p, allowedIps: [...p.allowedIps] })

export function createMemoryDriver(opts: MemoryDriverOptions = {}): MemoryDriver {
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000))
  const devices = new Map<string, MemoryDevice>()
  const calls: MemoryCall[] = []
  const record = (call: MemoryCall): void => { if (opts.recordCalls !== false) calls.push(call) }
  const foreignRoutes = new Set<string>()
  const failures = new Map<MemoryOp, Error[]>()
  let nextPort = 40000

  function maybeFail(op: MemoryOp): void {
    const queue = failures.get(op)
    const e = queue?.shift()
    if (e !== undefined) throw e
  }

  function device(name: string): MemoryDevice {
    const d = devices.get(name)
    // Same wording as the system driver's underlying `ip` error.
    if (d === undefined) throw new Error(`Device "${name}" does not exist.`)
    return d
  }

  function handshake(peer: WgPeerState): void {
    if (opts.autoHandshake === true && peer.endpoint !== undefined) peer.latestHandshake = now()
  }

  const driver: MemoryDriver = {
    devices,
    calls,
    foreignRoutes,

    implementation: (): WgImplementation => 'memory',

    async ensureInterface(cfgIn: WgInterfaceConfig): Promise<void> {
      maybeFail('ensureInterface')
      const cfg = normaliseInterfaceConfig(cfgIn)
      const publicKey = wgPublicKeyFromPrivate(cfg.privateKey)
      const changed: MemoryInterfaceChange[] = []
      let d = devices.get(cfg.name)
      if (d === undefined) {
        d = { name: cfg.name, privateKey: '', publicKey: '', listenPort: 0, mtu: 1420, up: false, addresses: [], peers: new Map(), routes: [] }
        devices.set(cfg.name, d)
        changed.push('created')
      }
      if (d.publicKey !== publicKey) {
        d.privateKey = cfg.privateKey
        d.publicKey = publicKey
        // A new key invalidates every session, as on a real device.
        for (const p of d.peers.values()) p.latestHandshake = 0
        changed.push('privateKey')
      }
      if (cfg.listenPort !== 0 && d.listenPort !== cfg.listenPort) {
        d.listenPort = cfg.listenPort
        changed.push('listenPort')
      } else if (d.listenPort === 0) {
        d.listenPort = nextPort++
        changed.push('listenPort')
      }
      if (d.mtu !== cfg.mtu) { d.mtu = cfg.mtu; changed.push('mtu') }
      if (!d.up) { d.up = true; changed.push('up') }
      if (d.addresses.join(',') !== cfg.addresses.join(',')) { d.addresses = [...cfg.addresses]; changed.push('addresses') }
      record({ op: 'ensureInterface', name: cfg.name, changed })
    },

    async read(name: string): Promise<WgDevice | undefined> {
      maybeFail('read')
      validateInterfaceName(name)
      const d = devices.get(name)
      if (d === undefined) return undefined
      return {
        name: d.name,
        publicKey: d.publicKey,
        listenPort: d.listenPort,
        peers: [...d.peers.values()].map(copyPeer).sort((a, b) => (a.publicKey < b.publicKey ? -1 : a.publicKey > b.publicKey ? 1 : 0))
      }
    },

    async setPeers(name: string, upserts: WgPeerConfig[], removals: string[]): Promise<void> {
      maybeFail('setPeers')
      validateInterfaceName(name)
      const b = normalisePeerBatch(upserts, removals)
      if (b.upserts.length === 0 && b.removals.length === 0) return
      const d = device(name)
      for (const u of b.upserts) {
        const old = d.peers.get(u.publicKey)
        if (old === undefined) {
          const p: WgPeerState = { ...u, allowedIps: [...u.allowedIps], latestHandshake: 0, rxBytes: 0, txBytes: 0 }
          d.peers.set(u.publicKey, p)
          if (p.persistentKeepalive > 0) handshake(p)
          continue
        }
        if (u.endpoint !== undefined) old.endpoint = u.endpoint
        old.allowedIps = [...u.allowedIps]
        if (old.persistentKeepalive === 0 && u.persistentKeepalive > 0) handshake(old)
        old.persistentKeepalive = u.persistentKeepalive
      }
      for (const k of b.removals) d.peers.delete(k)
      record({ op: 'setPeers', name, upserts: b.upserts.map((u) => ({ ...u, allowedIps: [...u.allowedIps] })), removals: b.removals })
    },

    async setRoutes(name: string, routesIn: string[]): Promise<RouteChange> {
      maybeFail('setRoutes')
      validateInterfaceName(name)
      const want = normaliseAllowedIps(routesIn)
      const d = device(name)
      const have = new Set(d.routes)
      const removed = d.routes.filter((r) => !want.includes(r))
      const missing = want.filter((r) => !have.has(r))
      const normForeign = new Set([...foreignRoutes].map((r) => normaliseAllowedIps([r])[0]!))
      const skipped = missing.filter((r) => normForeign.has(r))
      const added = missing.filter((r) => !normForeign.has(r))
      d.routes = normaliseAllowedIps([...d.routes.filter((r) => want.includes(r)), ...added])
      if (added.length + removed.length + skipped.length > 0) record({ op: 'setRoutes', name, added, removed, skipped })
      return { added, removed, skipped }
    },

    async triggerHandshake(name: string, overlayAddress: string): Promise<void> {
      maybeFail('triggerHandshake')
      if (isIP(overlayAddress.split('/')[0]!) === 0) throw new Error(`triggerHandshake(${name}): "${overlayAddress}" is not an IP address`)
      record({ op: 'triggerHandshake', name, address: overlayAddress })
      const d = devices.get(name)
      if (d === undefined || !d.up) return
      const addr = overlayAddress.split('/')[0]!
      // the usual target is a peer's own overlay address: match it as a string first
      // (parsing every peer's CIDRs per poke is O(N) parses, which a 250-node bench pays N times)
      const host = normaliseAllowedIps([`${addr}/${isIP(addr) === 4 ? 32 : 128}`])[0]!
      const peers = [...d.peers.values()]
      const peer = peers.find((p) => p.allowedIps.includes(host)) ?? peers.find((p) => p.allowedIps.some((c) => cidrContains(c, addr)))
      if (peer !== undefined) handshake(peer)
    },

    async destroy(name: string): Promise<void> {
      maybeFail('destroy')
      validateInterfaceName(name)
      const existed = devices.delete(name)
      record({ op: 'destroy', name, existed })
    },

    clearCalls(): void {
      calls.length = 0
    },

    touchedPeers(name?: string): Set<string> {
      const out = new Set<string>()
      for (const c of calls) {
        if (c.op !== 'setPeers' || (name !== undefined && c.name !== name)) continue
        for (const u of c.upserts) out.add(u.publicKey)
        for (const k of c.removals) out.add(k)
      }
      return out
    },

    simulateHandshake(name: string, publicKey: string, at?: number): void {
      const p = device(name).peers.get(publicKey)
      if (p === undefined) throw new Error(`${name}: no peer ${publicKey}`)
      p.latestHandshake = at ?? now()
    },

    failNext(op: MemoryOp, error?: Error): void {
      const queue = failures.get(op) ?? []
      queue.push(error ?? new Error(`memory driver: injected ${op} failure`))
      failures.set(op, queue)
    }
  }
  return driver
}
