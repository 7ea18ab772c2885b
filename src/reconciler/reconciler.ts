import type { WgDriver, WgInterfaceConfig, WgPeerConfig } from '../wireguard/driver.ts'
import { diffPeers } from './desired.ts'
import type { DesiredPeer, EndpointSelector } from './endpoint-rotation.ts'

// Drives the device towards the desired state: bursts of changes are coalesced into one
// apply, a periodic resync repairs drift made by others, and a failure retries with backoff.

/** how long the higher key waits for the lower one's handshake before poking itself */
const HANDSHAKE_STAGGER_MS = 200
/**
 * how long we wait instead for a peer known to have added us (peerAddedUs): its handshake
 * start, if still on its way, lands first (two crossing starts stall for 5 s; one did in ten
 * joins when we poked at once)
 */
const ADDED_US_STAGGER_MS = 40
/** when the pass that switches keepalive on for new peers runs */
const HANDSHAKE_GRACE_MS = 1000
/** how long a peerAddedUs hint waits for the peer's add (WireGuard's own retry comes after 5 s) */
const ADDED_US_MS = 5000

export interface ReconcilerOptions {
  driver: WgDriver
  iface: () => WgInterfaceConfig
  desired: () => DesiredPeer[]
  /** picks one endpoint per peer from its candidates (rotation); without it `endpoint` is used */
  endpoints?: EndpointSelector
  /** kernel routes into the interface (other members' routed subnets); none when absent */
  routes?: () => string[]
  log: { debug: (o: object, m: string) => void, info: (o: object, m: string) => void, warn: (o: object, m: string) => void }
  /** delay that gathers a burst of changes into one apply */
  coalesceMs?: number
  resyncMs?: number
  onApplied?: (result: ReconcileResult) => void
  onFailed?: (err: unknown) => void
}

export interface ReconcileResult {
  added: number
  updated: number
  removed: number
  durationMs: number
}

export interface Reconciler {
  /** Ask for a reconcile soon; many calls within the coalescing window make one run. */
  schedule: () => void
  /** Run now (waits for a run in progress first). */
  runNow: () => Promise<ReconcileResult>
  /**
   * Send one packet into every tunnel now. After our own underlay address changed this makes
   * every member's WireGuard roam to our new address at once (it follows authenticated packets).
   */
  pokeAll: () => Promise<void>
  /**
   * The peer with this WireGuard key has certainly added us already (it started a sync with us
   * and had our record before we had its). Its handshake start, if it made one, most likely
   * came before we knew it: WireGuard dropped it and starts no other for 5 s. So we start ours
   * soon after we add it (or now, if it is waiting out the stagger), whichever key is lower:
   * after a short wait for a start of its still on the way.
   */
  peerAddedUs: (publicKey: string) => void
  stop: () => void
}

export function createReconciler (opts: ReconcilerOptions): Reconciler {
  const coalesceMs = opts.coalesceMs ?? 15
  const resyncMs = opts.resyncMs ?? 30_000
  let timer: NodeJS.Timeout | undefined
  let running: Promise<ReconcileResult> | undefined
  let again = false
  let failures = 0
  let stopped = false
  // the interface config last applied; any difference (say, a new address) re-applies it
  let appliedIface: string | undefined
  // the routes last applied; re-applied when they change and with every interface (re)apply
  let appliedRoutes: string | undefined
  /** wakes the reconciler when an endpoint attempt times out */
  let rotateTimer: NodeJS.Timeout | undefined
  let rotateAt = Infinity
  /** peers added within HANDSHAKE_GRACE_MS: public key → end of their grace (keepalive off) */
  const inGrace = new Map<string, number>()
  /** peerAddedUs hints for peers not added yet: public key → when the hint lapses */
  const addedUs = new Map<string, number>()
  /** peers in their stagger: public key → its waits (one per pass; a hint takes them over) */
  const staggered = new Map<string, Set<{ target: string, takenOver: boolean }>>()

  const resync = setInterval(() => { appliedIface = undefined; schedule() }, resyncMs)
  resync.unref()

  function schedule (delay = coalesceMs): void {
    if (stopped) return
    if (running !== undefined) { again = true; return }
    if (timer !== undefined) return
    timer = setTimeout(() => { timer = undefined; void run().catch(() => {}) }, delay)
  }

  async function run (): Promise<ReconcileResult> {
    if (running !== undefined) { await running.catch(() => {}); return await run() }
    running = apply()
    try {
      const result = await running
      failures = 0
      return result
    } catch (err) {
      failures++
      appliedIface = undefined
      appliedRoutes = undefined
      const retryMs = Math.min(30_000, 250 * 2 ** Math.min(failures, 7))
      opts.log.warn({ err: String(err), retryMs }, 'reconcile failed; will retry')
      opts.onFailed?.(err)
      setTimeout(() => schedule(0), retryMs).unref()
      throw err
    } finally {
      running = undefined
      if (again) { again = false; schedule() }
    }
  }

  async function apply (): Promise<ReconcileResult> {
    const started = performance.now()
    const iface = opts.iface()
    const ifaceKey = JSON.stringify(iface)
    if (ifaceKey !== appliedIface) {
      appliedRoutes = undefined
      await opts.driver.ensureInterface(iface)
      appliedIface = ifaceKey
    }
    const device = await opts.driver.read(iface.name)
    if (device === undefined) { appliedIface = undefined; throw new Error(`interface ${iface.name} disappeared`) }
    const nowMs = Date.now()
    const selected = opts.endpoints?.select(opts.desired(), device.peers, nowMs)
    const desired: WgPeerConfig[] = selected?.peers ?? opts.desired().map(({ candidates: _, ...p }) => p)
    // A new peer starts without keepalive: turning keepalive on sends a packet at once, so
    // both sides would initiate together and their crossed handshakes stall for WireGuard's
    // 5 s retry. It stays off through the grace period, however many passes run in it (a
    // joining node reconciles again within milliseconds as its connections come up); the pass
    // scheduled at its end switches keepalive on.
    for (const [key, until] of inGrace) if (until <= nowMs) inGrace.delete(key)
    const known = new Set(device.peers.map(p => p.publicKey))
    const inHandshakeGrace = (p: WgPeerConfig): WgPeerConfig =>
      known.has(p.publicKey) && !inGrace.has(p.publicKey) ? p : { ...p, persistentKeepalive: 0 }
    const { upserts: batch, removals } = diffPeers(desired.map(inHandshakeGrace), device.peers)
    const added = batch.filter(p => !known.has(p.publicKey))
    for (const p of added) inGrace.set(p.publicKey, nowMs + HANDSHAKE_GRACE_MS)
    if (batch.length > 0 || removals.length > 0) await opts.driver.setPeers(iface.name, batch, removals)
    // after the peers: a route into the tunnel is useless until some peer's AllowedIPs take it
    const routes = opts.routes?.() ?? []
    const routesKey = JSON.stringify([...routes].sort())
    if (routesKey !== appliedRoutes) {
      await opts.driver.setRoutes(iface.name, routes)
      appliedRoutes = routesKey
    }
    if (added.length > 0) {
      startHandshakes(iface.name, device.publicKey, added, 0)
      setTimeout(() => schedule(0), HANDSHAKE_GRACE_MS).unref()
    }
    // A new endpoint attempt on a peer we already had: handshake now, not at the next retry.
    const attempts = new Set(selected?.attempts ?? [])
    const retried = desired.filter(p => known.has(p.publicKey) && attempts.has(p.publicKey))
    if (retried.length > 0) startHandshakes(iface.name, device.publicKey, retried, Math.floor(nowMs / 1000))
    const nextCheck = opts.endpoints?.nextCheckMs(Date.now())
    if (nextCheck !== undefined) wakeAt(Date.now() + nextCheck + 50)
    const result = { added: added.length, updated: batch.length - added.length, removed: removals.length, durationMs: performance.now() - started }
    if (batch.length > 0 || removals.length > 0) opts.log.info(result, 'wireguard peers reconciled')
    opts.onApplied?.(result)
    return result
  }

  function wakeAt (at: number): void {
    if (stopped || at >= rotateAt) return
    if (rotateTimer !== undefined) clearTimeout(rotateTimer)
    rotateAt = at
    rotateTimer = setTimeout(() => { rotateTimer = undefined; rotateAt = Infinity; schedule(0) }, Math.max(0, at - Date.now()))
    rotateTimer.unref()
  }

  /**
   * Make new peers handshake now instead of on first traffic. Exactly one side should start
   * (two crossed starts stall for WireGuard's 5 s retry): the lower public key pokes at once;
   * the higher waits a moment and pokes only if no handshake came (the other side may not have
   * known us yet when it poked), unless the peer is known to have added us (peerAddedUs).
   * `after`: a handshake at or after this unix second counts as done (0 = any handshake).
   */
  function startHandshakes (name: string, ownKey: string, peers: WgPeerConfig[], after: number): void {
    const now = Date.now()
    for (const [k, until] of addedUs) if (until <= now) addedUs.delete(k)
    const waiting: Array<[publicKey: string, target: string]> = []
    const hinted: Array<[publicKey: string, target: string]> = []
    for (const peer of peers) {
      const target = peer.allowedIps[0]?.split('/')[0]
      if (target === undefined) continue
      if (addedUs.delete(peer.publicKey)) hinted.push([peer.publicKey, target])
      else if (ownKey < peer.publicKey) poke(name, target)
      else waiting.push([peer.publicKey, target])
    }
    pokeUnlessHandshaken(name, hinted, ADDED_US_STAGGER_MS, after)
    pokeUnlessHandshaken(name, waiting, HANDSHAKE_STAGGER_MS, after)
  }

  /** After `delayMs`, poke those of `peers` with no handshake (at or after `after`) yet. */
  function pokeUnlessHandshaken (name: string, peers: Array<[publicKey: string, target: string]>, delayMs: number, after: number): void {
    if (peers.length === 0) return
    const waits = peers.map(([publicKey, target]) => {
      const wait = { target, takenOver: false }
      const forKey = staggered.get(publicKey) ?? new Set()
      staggered.set(publicKey, forKey.add(wait))
      return [publicKey, wait] as const
    })
    // one read for all of them: a newcomer to a large mesh waits on hundreds of peers
    setTimeout(() => {
      if (stopped) return
      void opts.driver.read(name).then(device => {
        const latest = new Map(device?.peers.map(p => [p.publicKey, p.latestHandshake]))
        for (const [publicKey, wait] of waits) {
          const forKey = staggered.get(publicKey)
          forKey?.delete(wait)
          if (forKey?.size === 0) staggered.delete(publicKey)
          if (wait.takenOver) continue // a hint poked it after a shorter wait
          const at = latest.get(publicKey) ?? 0
          if (at === 0 || at < after) poke(name, wait.target)
        }
      }, () => {})
    }, delayMs).unref()
  }

  function poke (name: string, target: string): void {
    void opts.driver.triggerHandshake(name, target).catch(() => {})
  }

  return {
    schedule: () => schedule(),
    runNow: run,
    pokeAll: async () => {
      const name = opts.iface().name
      const targets = opts.desired().map(p => p.allowedIps[0]?.split('/')[0]).filter((t): t is string => t !== undefined)
      await Promise.all(targets.map(async t => { await opts.driver.triggerHandshake(name, t).catch(() => {}) }))
    },
    peerAddedUs: publicKey => {
      const waits = [...staggered.get(publicKey) ?? []]
      const target = waits[0]?.target
      if (target === undefined) { addedUs.set(publicKey, Date.now() + ADDED_US_MS); return }
      // in its 200 ms stagger: a short wait instead
      for (const wait of waits) wait.takenOver = true
      pokeUnlessHandshaken(opts.iface().name, [[publicKey, target]], ADDED_US_STAGGER_MS, 0)
    },
    stop: () => {
      stopped = true
      clearInterval(resync)
      if (timer !== undefined) clearTimeout(timer)
      if (rotateTimer !== undefined) clearTimeout(rotateTimer)
    }
  }
}
