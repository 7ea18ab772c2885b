import type { WgDriver, WgInterfaceConfig, WgPeerConfig } from '../wireguard/driver.ts'
import { diffPeers } from './desired.ts'

// Drives the device towards the desired state: bursts of changes are coalesced into one
// apply, a periodic resync repairs drift made by others, and a failure retries with backoff.

export interface ReconcilerOptions {
  driver: WgDriver
  iface: () => WgInterfaceConfig
  desired: () => WgPeerConfig[]
  log: { debug: (o: object, m: string) => void, info: (o: object, m: string) => void, warn: (o: object, m: string) => void }
  /** delay that gathers a burst of changes into one apply */
  coalesceMs?: number
  resyncMs?: number
  onApplied?: (result: ReconcileResult) => void
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
      const retryMs = Math.min(30_000, 250 * 2 ** Math.min(failures, 7))
      opts.log.warn({ err: String(err), retryMs }, 'reconcile failed; will retry')
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
      await opts.driver.ensureInterface(iface)
      appliedIface = ifaceKey
    }
    const device = await opts.driver.read(iface.name)
    if (device === undefined) { appliedIface = undefined; throw new Error(`interface ${iface.name} disappeared`) }
    const desired = opts.desired()
    const { upserts, removals } = diffPeers(desired, device.peers, Math.floor(Date.now() / 1000))
    if (upserts.length > 0 || removals.length > 0) await opts.driver.setPeers(iface.name, upserts, removals)
    const known = new Set(device.peers.map(p => p.publicKey))
    const added = upserts.filter(p => !known.has(p.publicKey))
    // A new peer would otherwise wait for traffic (or WireGuard's 5 s retry) before its first
    // handshake; poking it now lets whichever side configures last complete the handshake at once.
    await Promise.all(added.map(async p => {
      const target = p.allowedIps[0]?.split('/')[0]
      if (target !== undefined) await opts.driver.triggerHandshake(iface.name, target)
    }))
    const result = { added: added.length, updated: upserts.length - added.length, removed: removals.length, durationMs: performance.now() - started }
    if (upserts.length > 0 || removals.length > 0) opts.log.info(result, 'wireguard peers reconciled')
    opts.onApplied?.(result)
    return result
  }

  return {
    schedule: () => schedule(),
    runNow: run,
    stop: () => {
      stopped = true
      clearInterval(resync)
      if (timer !== undefined) clearTimeout(timer)
    }
  }
}
