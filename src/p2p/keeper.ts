import { connect } from 'node:net'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { tcpTarget, type Host } from './host.ts'
import type { Logger } from '../log.ts'

// Keeps every known member connected. Bootstrap addresses are dialled until we know somebody;
// members are redialled forever with capped, jittered backoff, so a partition heals by itself.
// Ties: after a disconnect only the lower peer id redials at once; the higher one waits a
// little longer and dials only if the connection has not come back by then.

export interface KeeperOptions {
  host: Host
  self: string
  bootstrap: string[]
  log: Logger
  /** first retry delay; doubles per failure up to maxBackoffMs */
  baseBackoffMs?: number
  maxBackoffMs?: number
}

export interface Keeper {
  /** Members to keep connected, with the addresses their records announce. */
  setTargets: (targets: Map<string, string[]>) => void
  stop: () => void
}

interface TargetState {
  addrs: Multiaddr[]
  failures: number
  timer?: NodeJS.Timeout
  dialing: boolean
  everConnected: boolean
}

const TIE_YIELD_MS = 750
/** bootstrap retries at the base backoff before it starts doubling */
const BOOTSTRAP_EAGER_TRIES = 10
/** how long a bootstrap connection may go without teaching us a member before we redial */
const BOOTSTRAP_SYNC_GRACE_MS = 15_000

export function createKeeper (opts: KeeperOptions): Keeper {
  const { host, log } = opts
  const base = opts.baseBackoffMs ?? 500
  // 15 s: after a partition the first redial comes within ~19 s (with jitter), cheap enough idle
  const cap = opts.maxBackoffMs ?? 15_000
  const targets = new Map<string, TargetState>()
  /** per address: protected handshakes failed in a row although TCP answers */
  const pskSuspects = new Map<string, { count: number, warnedAt: number }>()
  let stopped = false
  let bootstrapFailures = 0
  let bootstrapTimer: NodeJS.Timeout | undefined

  const backoff = (failures: number): number => {
    const delay = Math.min(cap, base * 2 ** Math.min(failures, 16))
    return delay * (0.75 + Math.random() * 0.5)
  }
  const connected = (peerId: string): boolean => host.getConnections(peerIdFromString(peerId)).length > 0

  function schedule (peerId: string, delay: number): void {
    const state = targets.get(peerId)
    if (stopped || state === undefined || state.dialing) return
    if (state.timer !== undefined) clearTimeout(state.timer)
    state.timer = setTimeout(() => { state.timer = undefined; void dial(peerId) }, delay)
  }

  async function dial (peerId: string): Promise<void> {
    const state = targets.get(peerId)
    if (stopped || state === undefined || state.dialing || connected(peerId)) return
    state.dialing = true
    const id = peerIdFromString(peerId)
    try {
      await host.peerStore.merge(id, { multiaddrs: state.addrs })
      await host.dial(id, { signal: AbortSignal.timeout(10_000) })
      state.failures = 0
      for (const ma of state.addrs) { const t = tcpTarget(ma); if (t !== undefined) pskSuspects.delete(`${t.host}:${t.port}`) }
    } catch (err) {
      state.failures++
      const retryMs = backoff(state.failures)
      log.debug({ peer: peerId, err: errText(err), retryMs: Math.round(retryMs) }, 'dial failed; will retry')
      void hintPsk(state.addrs, err)
      state.dialing = false
      schedule(peerId, retryMs)
      return
    }
    state.dialing = false
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
        log.warn({ bootstrap: opts.bootstrap }, 'connected to bootstrap but learned no member yet; reconnecting')
        void Promise.allSettled(connections.map(async c => { await c.close() })).then(async () => { await dialBootstrap() })
      }, BOOTSTRAP_SYNC_GRACE_MS)
      return
    }
    bootstrapFailures++
    // A bootstrap that refuses is usually still starting (a fleet booting together): retry
    // every second for a while before backing off.
    const retryMs = backoff(Math.max(0, bootstrapFailures - BOOTSTRAP_EAGER_TRIES) + 1)
    for (const r of results) if (r.status === 'rejected') log.debug({ err: errText(r.reason) }, 'bootstrap dial failed')
    if (bootstrapFailures === 1 || bootstrapFailures % 5 === 0) log.warn({ bootstrap: opts.bootstrap, attempts: bootstrapFailures, retryMs: Math.round(retryMs) }, 'cannot reach any bootstrap address yet; retrying')
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
    if (!targets.has(peerId)) return
    const first = backoff(0) + (opts.self < peerId ? 0 : TIE_YIELD_MS)
    schedule(peerId, first)
  })
  host.addEventListener('peer:connect', evt => {
    const state = targets.get(evt.detail.toString())
    if (state !== undefined) { state.everConnected = true; state.failures = 0 }
  })

  if (opts.bootstrap.length > 0) bootstrapTimer = setTimeout(() => { void dialBootstrap() }, 0)

  return {
    setTargets (next) {
      for (const [peerId, state] of targets) {
        if (!next.has(peerId)) {
          if (state.timer !== undefined) clearTimeout(state.timer)
          targets.delete(peerId)
        }
      }
      for (const [peerId, addrs] of next) {
        const parsed = addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
        const state = targets.get(peerId)
        if (state !== undefined) { state.addrs = parsed; continue }
        targets.set(peerId, { addrs: parsed, failures: 0, dialing: false, everConnected: false })
        // A member we have never been connected to may not know us yet: dial at once.
        if (!connected(peerId)) schedule(peerId, 0)
      }
    },
    stop () {
      stopped = true
      if (bootstrapTimer !== undefined) clearTimeout(bootstrapTimer)
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

function errText (err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`
  return String(err)
}
