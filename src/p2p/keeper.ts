import { createHash } from 'node:crypto'
import { connect } from 'node:net'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId, PeerInfo } from '@libp2p/interface'
import { isPrivate } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { tcpTarget, type Host } from './host.ts'
import { createTokenBucket } from '../util/rate.ts'
import type { Logger } from '../log.ts'

// Keeps members connected. Bootstrap addresses are dialled until we know somebody; kept
// members are redialled forever with capped, jittered backoff, so a partition heals by itself.
// A small mesh (up to fullMeshUpTo members) keeps every member connected. A larger one keeps
// only `keep` members per node, chosen by a hash of the pair (every node its own random
// choice: a random k-out graph, connected with high probability for k >= 3): gossip and the
// digest sync only need a connected overlay, and each connection costs a handshake, pings
// and gossipsub state. Members whose dials keep failing do not count towards `keep`, so
// reachable ones stand in for them while they are still retried; a few dials run at once,
// the rest queue. WireGuard tunnels stay a full mesh: they come from the records, not from
// these connections.
// Ties: after a disconnect only the lower peer id redials at once; the higher one waits a
// little longer and dials only if the connection has not come back by then.
// A new member, learned while we are connected to somebody, is dialled a few seconds after
// membership has gone quiet (see queueFirstDial): gossip already reaches us, and tunnels do
// not wait for these dials.
// Strangers found on the LAN (mDNS) are dialled once; a stranger that fails (another mesh,
// a stale announcement) is retried with a long backoff and logged at debug only. With the
// DHT on, a member whose record brought no address, or whose addresses fail, is looked up
// there before the next dial.

export interface KeeperOptions {
  host: Host
  self: string
  bootstrap: string[]
  log: Logger
  /** first retry delay; doubles per failure up to maxBackoffMs */
  baseBackoffMs?: number
  maxBackoffMs?: number
  /** cap of the retry delay for strangers found on the LAN that failed */
  maxStrangerBackoffMs?: number
  /** up to this many members, keep all of them connected (default FULL_MESH_UP_TO) */
  fullMeshUpTo?: number
  /** in a larger mesh, keep this many members connected (default KEEP) */
  keep?: number
  /** ask the LAN (mDNS) for members while we know nobody: after lonelyQueryMs, then doubling */
  queryLan?: () => void
  lonelyQueryMs?: number
  /** how often connections neither side keeps are looked for, and how old they must be (tests) */
  pruneMs?: number
  pruneAfterMs?: number
  /** while we are connected to anybody, new members are dialled once no new member has come for this long, then within as long again (default SPREAD_DIALS_MS) */
  spreadDialsMs?: number
  /** ... but no later than this after the first of them was learned (default FIRST_DIAL_MAX_WAIT_MS) */
  firstDialMaxWaitMs?: number
  /** a stranger found on the LAN while we have a bootstrap or members is dialled after this (default STRANGER_GRACE_MS; connected: STRANGER_GRACE_CONNECTED times it) */
  strangerGraceMs?: number
}

export interface Keeper {
  /** Members to keep connected, with the addresses their records announce. */
  setTargets: (targets: Map<string, string[]>) => void
  /** A peer found by local discovery (mDNS); the keeper subscribes to the host's mDNS itself. */
  discovered: (peer: PeerInfo) => void
  stop: () => void
}

interface TargetState {
  addrs: Multiaddr[]
  /** the addresses as the record lists them */
  raw: string
  failures: number
  timer?: NodeJS.Timeout
  dialing: boolean
  everConnected: boolean
  /** when the DHT was last asked for this member's addresses */
  lookedUpAt: number
  /** this node's rank key for the member (lower: kept first) */
  score: string
  /** we dial and redial it (see the top of the file) */
  kept: boolean
}

interface StrangerState {
  failures: number
  /** no new dial before this time (ms) */
  notBefore: number
  dialing: boolean
  timer?: NodeJS.Timeout
}

const TIE_YIELD_MS = 750
/**
 * A bootstrap that refuses is retried every half base backoff (250 ms) this many times (~10 s)
 * before backing off: it is still starting, and a refused dial costs next to nothing.
 */
const BOOTSTRAP_EAGER_TRIES = 40
/** how long a bootstrap connection may go without teaching us a member before we redial */
const BOOTSTRAP_SYNC_GRACE_MS = 15_000
const MAX_BOOTSTRAP_SYNC_GRACE_MS = 120_000
/** strangers remembered at most (mDNS answers are network input: bounded) */
const MAX_STRANGERS = 256
/** new strangers dialled: a burst of this many, then one a second (a flood of answers is not a flood of dials) */
const STRANGER_BURST = 10
/** at most one DHT lookup per member in this time */
const DHT_LOOKUP_INTERVAL_MS = 10_000
/** meshes up to this many members (besides us) stay fully connected */
export const FULL_MESH_UP_TO = 16
/** members each node keeps connected in a larger mesh */
export const KEEP = 8
/** dials failed in a row after which a member no longer counts towards `keep` */
const FAILING_AFTER = 3
/** a stranger found on the LAN while we know members: give gossip this long to make it one */
const STRANGER_GRACE_MS = 10_000
/**
 * ... and this many times as long while we are connected to somebody: gossip reaches us, and
 * a stranger of our mesh (the mDNS tag is the mesh's) is then one of another island, which is
 * rare. 250 daemons booting on one segment dialled each other at ~1 a second each after 10 s,
 * while their bootstrap connections still waited for CPU (docs/benchmarks.md, round 8).
 */
const STRANGER_GRACE_CONNECTED = 6
/** while we know nobody, ask the LAN after this long, then doubling (the host's own queries are rare) */
const LONELY_QUERY_MS = 10_000
/** a connection neither side keeps is closed once it is this old (checked every PRUNE_MS) */
const PRUNE_AFTER_MS = 60_000
const PRUNE_MS = 30_000
/**
 * Dials to new members wait while gossip reaches us. A 10-node fleet started together on 2
 * cores: every pair handshaken after 8.4–9.9 s (14–16.5 CPU-s) with dials at once, 5.7–5.9 s
 * (8.8–9.3 CPU-s) with a spread of this (docs/benchmarks.md, round 7). Since round 15 they also
 * wait until membership has been quiet this long: a fleet forming spent much of its CPU on these
 * dials while the records still spread through the bootstrap (100 nodes: median 17.8 -> 15.4
 * CPU-s to full membership; 25 nodes: 10.5-16.3 -> 9.3-10.0 CPU-s).
 */
export const SPREAD_DIALS_MS = 4_000
/** however long membership keeps changing (a 250-node fleet forms for minutes), first dials go out after this */
export const FIRST_DIAL_MAX_WAIT_MS = 30_000
/**
 * Member dials under way at once. A handshake takes milliseconds on an idle machine, so this
 * costs nothing there; on a starved one (250 daemons on 2 cores) every dial timed out, each
 * failure made a stand-in kept, and each node ended up dialling all its members at once.
 */
const MAX_DIALS_IN_FLIGHT = 4
/** TCP probes for the PSK hint: at most one per address in this time */
const PSK_PROBE_INTERVAL_MS = 5_000
/** ... and a burst of this many, then one a second, over all addresses */
const PSK_PROBE_BURST = 5

export function createKeeper (opts: KeeperOptions): Keeper {
  const { host, log } = opts
  const base = opts.baseBackoffMs ?? 500
  // 15 s: after a partition the first redial comes within ~19 s (with jitter), cheap enough idle
  const cap = opts.maxBackoffMs ?? 15_000
  const fullMeshUpTo = opts.fullMeshUpTo ?? FULL_MESH_UP_TO
  const keep = opts.keep ?? KEEP
  const spreadMs = opts.spreadDialsMs ?? SPREAD_DIALS_MS
  const firstDialMaxWaitMs = opts.firstDialMaxWaitMs ?? FIRST_DIAL_MAX_WAIT_MS
  const strangerCap = opts.maxStrangerBackoffMs ?? 300_000
  const targets = new Map<string, TargetState>()
  const strangers = new Map<string, StrangerState>()
  const strangerDials = createTokenBucket(STRANGER_BURST)
  /** a dial to a stranger is under way */
  let strangerDialing = false
  /** member dials under way, and the members waiting for one of them to end */
  let dialsInFlight = 0
  const waitingDials = new Set<string>()
  /** per address: protected handshakes failed in a row although TCP answers */
  const pskSuspects = new Map<string, { count: number, warnedAt: number }>()
  /** per address: when plain TCP was last probed for the PSK hint */
  const pskProbedAt = new Map<string, number>()
  const pskProbes = createTokenBucket(PSK_PROBE_BURST)
  let stopped = false
  let bootstrapFailures = 0
  let bootstrapTimer: NodeJS.Timeout | undefined
  let bootstrapGraceMs = BOOTSTRAP_SYNC_GRACE_MS
  /** kept members never dialled yet, waiting for membership to go quiet (queueFirstDial) */
  const firstDials = new Set<string>()
  let firstDialTimer: NodeJS.Timeout | undefined
  /** when the waiting first dials go out at the latest */
  let firstDialDeadline = 0

  const backoff = (failures: number): number => {
    const delay = Math.min(cap, base * 2 ** Math.min(failures, 16))
    return delay * (0.75 + Math.random() * 0.5)
  }
  const connected = (peerId: string): boolean => host.getConnections(peerIdFromString(peerId)).length > 0

  function schedule (peerId: string, delay: number): void {
    const state = targets.get(peerId)
    if (stopped || state === undefined || state.dialing || !state.kept) return
    if (state.timer !== undefined) clearTimeout(state.timer)
    state.timer = setTimeout(() => { state.timer = undefined; void dial(peerId) }, delay)
  }

  async function dial (peerId: string): Promise<void> {
    const state = targets.get(peerId)
    if (stopped || state === undefined || state.dialing || !state.kept || connected(peerId)) return
    if (dialsInFlight >= MAX_DIALS_IN_FLIGHT) { waitingDials.add(peerId); return }
    dialsInFlight++
    state.dialing = true
    const id = peerIdFromString(peerId)
    try {
      await host.peerStore.merge(id, { multiaddrs: state.addrs })
      await lookUp(id, state)
      await host.dial(id, { signal: AbortSignal.timeout(10_000) })
      state.failures = 0
      for (const ma of state.addrs) { const t = tcpTarget(ma); if (t !== undefined) pskSuspects.delete(`${t.host}:${t.port}`) }
      state.dialing = false
    } catch (err) {
      state.failures++
      const retryMs = backoff(state.failures)
      log.debug({ peer: peerId, err: errText(err), retryMs: Math.round(retryMs) }, 'dial failed; will retry')
      void hintPsk(state.addrs, err)
      state.dialing = false
      // failing now: somebody reachable stands in for it in `keep`
      if (state.failures === FAILING_AFTER) choose()
      schedule(peerId, retryMs)
    } finally {
      dialsInFlight--
      for (const next of waitingDials) {
        if (dialsInFlight >= MAX_DIALS_IN_FLIGHT) break
        waitingDials.delete(next)
        void dial(next)
      }
    }
  }

  /**
   * Which members we keep connected: all in a small mesh; else the `keep` lowest-ranked
   * members that are not failing, plus the failing ones ranked before them (still retried).
   * Newly kept members are dialled; dropped ones are no longer redialled (their connections
   * stay until they close).
   */
  function choose (): void {
    const ranked = [...targets.entries()].sort((a, b) => a[1].score < b[1].score ? -1 : a[1].score > b[1].score ? 1 : 0)
    let healthy = 0
    for (const [peerId, state] of ranked) {
      const kept = targets.size <= fullMeshUpTo || healthy < keep
      if (kept && (state.failures < FAILING_AFTER || connected(peerId))) healthy++
      if (kept === state.kept) continue
      state.kept = kept
      if (!kept) {
        if (state.timer !== undefined) { clearTimeout(state.timer); state.timer = undefined }
        firstDials.delete(peerId)
      } else if (!connected(peerId)) {
        queueFirstDial(peerId)
      }
    }
  }

  /**
   * A member we are not connected to may not know us yet: dial it. At once while we are
   * connected to nobody (a restart, a lost bootstrap). Otherwise that connection already
   * brings us gossip, and WireGuard tunnels come from the records, not from these
   * connections: wait until no new member has come for a spread (at most firstDialMaxWaitMs; a
   * forming fleet learned members in bursts up to ~2 s apart, docs/benchmarks.md round 15),
   * then dial within another spread. A newcomer learning every member at once thus spends its
   * first seconds on WireGuard and the sync, and a fleet starting together on the records
   * spreading, instead of on a storm of Noise handshakes. The higher peer id waits one spread
   * longer: the lower one's dial usually lands first and ours is skipped (when both ends dial,
   * libp2p keeps both connections, each with its own pings and gossipsub state for good).
   */
  function queueFirstDial (peerId: string): void {
    if (host.getConnections().length === 0) { schedule(peerId, 0); return }
    if (firstDials.size === 0) firstDialDeadline = Date.now() + firstDialMaxWaitMs
    firstDials.add(peerId)
    if (firstDialTimer === undefined) waitForQuiet()
  }

  /** (re)starts the wait for a time without new members */
  function waitForQuiet (): void {
    if (firstDialTimer !== undefined) clearTimeout(firstDialTimer)
    firstDialTimer = setTimeout(() => { releaseFirstDials(false) }, Math.max(0, Math.min(spreadMs, firstDialDeadline - Date.now())))
  }

  function releaseFirstDials (now: boolean): void {
    if (firstDialTimer !== undefined) clearTimeout(firstDialTimer)
    firstDialTimer = undefined
    for (const peerId of firstDials) schedule(peerId, now ? 0 : spreadMs * Math.random() + (opts.self < peerId ? 0 : spreadMs))
    firstDials.clear()
  }

  /**
   * A large mesh: close connections that neither side keeps (left over from while the mesh
   * was small, from the bootstrap, from LAN discovery), so each node holds about 2 × keep.
   * Only the dialling side closes, and only after a while (a sync over it may still run).
   * Whether the other side keeps us is its own ranking, computed from the members we know.
   */
  function prune (): void {
    if (stopped || targets.size <= fullMeshUpTo) return
    for (const connection of host.getConnections()) {
      const peerId = connection.remotePeer.toString()
      const state = targets.get(peerId)
      if (state === undefined || state.kept || connection.direction !== 'outbound' || connection.status !== 'open') continue
      if (Date.now() - connection.timeline.open < (opts.pruneAfterMs ?? PRUNE_AFTER_MS) || keepsUs(peerId)) continue
      log.debug({ peer: peerId }, 'closing a connection neither side keeps')
      void connection.close().catch(err => { connection.abort(err as Error) })
    }
  }

  /** whether `peerId` ranks us among its `keep` members (as `choose` does there) */
  function keepsUs (peerId: string): boolean {
    const ours = pairRank(peerId, opts.self)
    let before = 0
    for (const other of targets.keys()) {
      if (other !== peerId && pairRank(peerId, other) < ours && ++before >= keep) return false
    }
    return true
  }

  /**
   * Gossip brought no address for this member, or its addresses failed: ask the DHT (when
   * on) for the addresses the member's peers know now. What it finds lands in the peer
   * store, which the dial that follows uses.
   */
  async function lookUp (id: PeerId, state: TargetState): Promise<void> {
    if (host.services.dht === undefined || (state.addrs.length > 0 && state.failures === 0)) return
    if (Date.now() - state.lookedUpAt < DHT_LOOKUP_INTERVAL_MS) return
    state.lookedUpAt = Date.now()
    try {
      const found = await host.peerRouting.findPeer(id, { useCache: false, signal: AbortSignal.timeout(10_000) })
      log.debug({ peer: id.toString(), addrs: found.multiaddrs.map(String) }, 'DHT found member addresses')
    } catch (err) {
      log.debug({ peer: id.toString(), err: errText(err) }, 'DHT lookup found nothing')
    }
  }

  /**
   * A stranger from mDNS: dial unless connected, a member (the member logic covers it) or
   * backing off after a failure. Both sides hear each other: the lower peer id dials first.
   * Failures stay at debug and never trigger the PSK hint: a node of another mesh on the
   * same LAN is normal, not a misconfiguration.
   */
  function discovered (peer: PeerInfo): void {
    const peerId = peer.id.toString()
    if (stopped || peerId === opts.self || targets.has(peerId) || connected(peerId)) return
    // mDNS is for the local segment (our answers list only private addresses): an answer
    // must not make us dial the internet
    const addrs = peer.multiaddrs.filter(ma => isPrivate(ma))
    if (addrs.length === 0) return
    let state = strangers.get(peerId)
    if (state === undefined) {
      if (strangers.size >= MAX_STRANGERS) forgetStranger(strangers.keys().next().value!)
      state = { failures: 0, notBefore: 0, dialing: false }
      strangers.set(peerId, state)
    }
    if (state.dialing || state.timer !== undefined || Date.now() < state.notBefore) return
    if (!strangerDials.take()) return // it answers again at the next mDNS round
    const s = state
    // Knowing members (or a bootstrap to learn them from), a stranger of our mesh usually
    // becomes a member by gossip within seconds, and then the member logic decides: dial
    // only one that stays a stranger (an island of the mesh that formed apart). Else a fleet
    // starting together would dial every pair at once. Connected to somebody, gossip already
    // flows: wait longer. Knowing nobody, dial at once.
    const graceMs = opts.strangerGraceMs ?? STRANGER_GRACE_MS
    const grace = host.getConnections().length > 0 ? graceMs * STRANGER_GRACE_CONNECTED : targets.size > 0 || opts.bootstrap.length > 0 ? graceMs : 0
    s.timer = setTimeout(() => { s.timer = undefined; void dialStranger(peer.id, addrs, s) }, grace + (opts.self < peerId ? 0 : TIE_YIELD_MS * 2))
  }

  async function dialStranger (id: PeerId, addrs: Multiaddr[], state: StrangerState): Promise<void> {
    const peerId = id.toString()
    if (stopped || targets.has(peerId) || connected(peerId)) return
    // One at a time: one stranger that answers is enough (its sync teaches us the rest), and
    // a fleet booting on one segment hears hundreds; the others wait for their next answer.
    if (strangerDialing) return
    strangerDialing = true
    state.dialing = true
    try {
      await host.dial(addrs.map(ma => ma.decapsulateCode(421).encapsulate(`/p2p/${peerId}`)), { signal: AbortSignal.timeout(10_000) })
      log.debug({ peer: peerId }, 'connected to a peer found on the LAN')
      strangers.delete(peerId)
    } catch (err) {
      state.failures++
      // 8 s, 16 s, ... up to the cap: a foreign node on the LAN is not hammered
      const retryMs = Math.min(strangerCap, base * 2 ** Math.min(state.failures + 3, 20)) * (0.75 + Math.random() * 0.5)
      state.notBefore = Date.now() + retryMs
      log.debug({ peer: peerId, err: errText(err), retryMs: Math.round(retryMs) }, 'dial to a peer found on the LAN failed (another mesh?)')
    } finally {
      state.dialing = false
      strangerDialing = false
    }
  }

  function forgetStranger (peerId: string): void {
    const state = strangers.get(peerId)
    if (state?.timer !== undefined) clearTimeout(state.timer)
    strangers.delete(peerId)
  }

  /**
   * Bootstrap addresses matter until we know a member. A connection alone is not enough: if
   * the first sync over it never completed, we still know nobody, so after a grace period
   * the bootstrap connections are closed and dialled afresh (a new connection syncs again).
   */
  async function dialBootstrap (): Promise<void> {
    bootstrapTimer = undefined
    if (stopped || opts.bootstrap.length === 0 || targets.size > 0) return
    const addrs = opts.bootstrap.map(a => multiaddr(a))
    const results = await Promise.allSettled(addrs.map(async a => await host.dial(a, { signal: AbortSignal.timeout(10_000) })))
    const connections = results.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
    if (connections.length > 0) {
      log.info({ bootstrap: opts.bootstrap }, 'connected to bootstrap')
      bootstrapFailures = 0
      bootstrapTimer = setTimeout(() => {
        bootstrapTimer = undefined
        if (stopped || targets.size > 0) return
        log.warn({ bootstrap: opts.bootstrap, graceMs: bootstrapGraceMs }, 'connected to bootstrap but learned no member yet; reconnecting')
        // an overloaded bootstrap (a fleet joining through it) is slow to sync: a new
        // connection throws its work away, so wait longer each time
        bootstrapGraceMs = Math.min(bootstrapGraceMs * 2, MAX_BOOTSTRAP_SYNC_GRACE_MS)
        void Promise.allSettled(connections.map(async c => { await c.close() })).then(async () => { await dialBootstrap() })
      }, bootstrapGraceMs)
      return
    }
    bootstrapFailures++
    // A bootstrap that refuses is usually still starting (a fleet booting together): retry
    // often for a while (every second until round 13 of docs/benchmarks.md: a node up before its
    // bootstrap waited up to that second more) before backing off. One that times out or resets
    // is busy (or on another key): back off at once, or a fleet joining through it keeps it saturated.
    const refused = results.every(r => r.status === 'rejected' && isRefused(r.reason))
    const eager = refused && bootstrapFailures <= BOOTSTRAP_EAGER_TRIES
    const retryMs = eager ? backoff(0) / 2 : backoff(refused ? bootstrapFailures - BOOTSTRAP_EAGER_TRIES : bootstrapFailures + 1)
    for (const r of results) if (r.status === 'rejected') log.debug({ err: errText(r.reason) }, 'bootstrap dial failed')
    // the first failure, then about every 5 s while eager (less often after)
    if (bootstrapFailures === 1 || bootstrapFailures % 20 === 0) log.warn({ bootstrap: opts.bootstrap, attempts: bootstrapFailures, retryMs: Math.round(retryMs) }, 'cannot reach any bootstrap address yet; retrying')
    await hintPsk(addrs, results.find(r => r.status === 'rejected')?.reason)
    if (!stopped) bootstrapTimer = setTimeout(() => { void dialBootstrap() }, retryMs)
  }

  /**
   * pnet has no MAC: a wrong PSK looks like a stalled or reset connection. If plain TCP to
   * the same address works, the failure happened in the protected handshake. One such
   * failure can be load; two in a row are worth a warning (at most once a minute).
   */
  async function hintPsk (addrs: Multiaddr[], err: unknown): Promise<void> {
    for (const ma of addrs) {
      const target = tcpTarget(ma)
      if (target === undefined) continue
      const key = `${target.host}:${target.port}`
      // one probe per address per interval: a crowd of failed dials (a fleet starting, a
      // loaded machine) must not double as a crowd of TCP probes
      const now = Date.now()
      if (now - (pskProbedAt.get(key) ?? 0) < PSK_PROBE_INTERVAL_MS) continue
      if (!pskProbes.take()) continue
      if (pskProbedAt.size >= MAX_STRANGERS * 4) pskProbedAt.clear()
      pskProbedAt.set(key, now)
      if (!await tcpReachable(target.host, target.port)) { pskSuspects.delete(key); continue }
      const suspect = pskSuspects.get(key) ?? { count: 0, warnedAt: 0 }
      suspect.count++
      pskSuspects.set(key, suspect)
      if (suspect.count >= 2 && Date.now() - suspect.warnedAt > 60_000) {
        suspect.warnedAt = Date.now()
        log.warn({ address: key, failures: suspect.count, err: errText(err) }, 'possible PSK mismatch: the TCP port answers but the protected handshake fails; check that both nodes use the same network key')
      }
    }
  }

  host.addEventListener('peer:disconnect', evt => {
    const peerId = evt.detail.toString()
    // lost the bootstrap before learning anybody: start over
    if (targets.size === 0 && bootstrapTimer === undefined && host.getConnections().length === 0) {
      bootstrapTimer = setTimeout(() => { void dialBootstrap() }, backoff(0))
    }
    // our last connection is gone: members waiting for their first dial are all we have left
    if (firstDials.size > 0 && host.getConnections().length === 0) releaseFirstDials(true)
    if (!targets.has(peerId)) return
    const first = backoff(0) + (opts.self < peerId ? 0 : TIE_YIELD_MS)
    schedule(peerId, first)
  })
  host.addEventListener('peer:connect', evt => {
    const state = targets.get(evt.detail.toString())
    if (state === undefined) return
    const wasFailing = state.failures >= FAILING_AFTER
    state.everConnected = true
    state.failures = 0
    // back from failing: it counts towards `keep` again, a stand-in is no longer needed
    if (wasFailing) choose()
  })

  const onLanPeer = (evt: CustomEvent<PeerInfo>): void => { discovered(evt.detail) }
  host.services.mdns?.addEventListener('peer', onLanPeer)

  if (opts.bootstrap.length > 0) bootstrapTimer = setTimeout(() => { void dialBootstrap() }, 0)
  // The host queried once at start; a node alone asks again (a lost answer), less and less
  // often: whoever starts later finds it by its own first query anyway.
  let lanTimer: NodeJS.Timeout | undefined
  const lonelyMs = opts.lonelyQueryMs ?? LONELY_QUERY_MS
  const askLan = (delay: number): void => {
    lanTimer = setTimeout(() => {
      if (stopped) return
      if (targets.size === 0) opts.queryLan?.()
      askLan(targets.size === 0 ? Math.min(delay * 2, lonelyMs * 30) : lonelyMs)
    }, delay * (0.75 + Math.random() * 0.5))
    lanTimer.unref()
  }
  if (opts.queryLan !== undefined) askLan(lonelyMs)
  const pruneTimer = setInterval(prune, opts.pruneMs ?? PRUNE_MS)
  pruneTimer.unref()

  return {
    setTargets (next) {
      for (const [peerId, state] of targets) {
        if (!next.has(peerId)) {
          if (state.timer !== undefined) clearTimeout(state.timer)
          targets.delete(peerId)
          firstDials.delete(peerId)
        }
      }
      let joined = false
      for (const [peerId, addrs] of next) {
        const state = targets.get(peerId)
        // called on every membership change: parse only addresses that changed
        const raw = addrs.join(' ')
        if (state !== undefined && state.raw === raw) continue
        const parsed = addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
        if (state !== undefined) { state.addrs = parsed; state.raw = raw; continue }
        forgetStranger(peerId)
        targets.set(peerId, { addrs: parsed, raw, failures: 0, dialing: false, everConnected: false, lookedUpAt: 0, score: pairRank(opts.self, peerId), kept: false })
        joined = true
      }
      choose()
      // membership is still changing (a fleet forming): the first dials wait on
      if (joined && firstDialTimer !== undefined) waitForQuiet()
    },
    discovered,
    stop () {
      stopped = true
      host.services.mdns?.removeEventListener('peer', onLanPeer)
      for (const peerId of [...strangers.keys()]) forgetStranger(peerId)
      if (bootstrapTimer !== undefined) clearTimeout(bootstrapTimer)
      if (lanTimer !== undefined) clearTimeout(lanTimer)
      if (firstDialTimer !== undefined) clearTimeout(firstDialTimer)
      clearInterval(pruneTimer)
      waitingDials.clear()
      for (const state of targets.values()) if (state.timer !== undefined) clearTimeout(state.timer)
    }
  }
}

async function tcpReachable (host: string, port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = connect({ host, port, timeout: 1000 })
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok) }
    socket.once('connect', () => done(true))
    socket.once('timeout', () => done(false))
    socket.once('error', () => done(false))
  })
}

/** `from`'s rank key for `to`: the lower, the earlier `from` keeps `to` (each node its own random order) */
function pairRank (from: string, to: string): string {
  return createHash('sha256').update(`${from}/${to}`).digest('hex')
}

/** a connection refused (nothing listens yet), also inside an AggregateError of several addresses */
function isRefused (err: unknown, depth = 0): boolean {
  if (err === null || typeof err !== 'object' || depth > 3) return false
  const e = err as { code?: unknown, message?: unknown, errors?: unknown[], cause?: unknown }
  if (e.code === 'ECONNREFUSED' || (typeof e.message === 'string' && e.message.includes('ECONNREFUSED'))) return true
  return (e.errors ?? []).some(inner => isRefused(inner, depth + 1)) || isRefused(e.cause, depth + 1)
}

function errText (err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`
  return String(err)
}
