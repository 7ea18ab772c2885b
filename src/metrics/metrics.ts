import { createServer, type Server } from 'node:http'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { formatListenAddress, type ListenAddress } from './listen.ts'

// Prometheus metrics, opt-in. The daemon hands us a snapshot function; everything is read
// at scrape time so no counter here can drift from the state it describes. This module
// knows nothing of libp2p or WireGuard: only the small MetricsSnapshot shape below.

/** A handshake younger than this counts as a working tunnel (WireGuard rekeys every 120 s). */
export const RECENT_HANDSHAKE_SECONDS = 180

export interface MetricsSnapshot {
  /** live members other than us */
  members: Array<{
    peerId: string
    name: string
    /** a libp2p connection is open */
    connected: boolean
    /** no record refresh for several periods */
    stale: boolean
    /** null = no handshake yet */
    handshakeAgeSeconds: number | null
  }>
  gossip: {
    received: number
    published: number
    rejected: Partial<Record<string, number>>
  }
  /** ms epoch of the last change to the member set, names or addresses */
  lastMembershipChangeMs: number
}

export interface Metrics {
  registry: Registry
  /** Take a fresh snapshot and render the exposition text. */
  render: () => Promise<{ contentType: string, text: string }>
  /** Reconciler hooks: a finished run (with its duration) and a failed one. */
  reconcileApplied: (result: { durationMs: number }) => void
  reconcileFailed: () => void
}

export function createMetrics (snapshot: () => Promise<MetricsSnapshot>, opts: { defaultMetrics?: boolean } = {}): Metrics {
  // Our own registry: the global default one would mix in anything a dependency registers.
  const registry = new Registry()
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry })
  // Filled right before each render; the collect() callbacks only read it.
  let current: MetricsSnapshot | undefined
  const registers = [registry]

  new Gauge({
    name: 'w2wesher_members_known',
    help: 'Live members known, not counting this node',
    registers,
    collect () { this.set(current?.members.length ?? 0) }
  })
  new Gauge({
    name: 'w2wesher_members_connected',
    help: 'Members with an open libp2p connection',
    registers,
    collect () { this.set(current?.members.filter(m => m.connected).length ?? 0) }
  })
  new Gauge({
    name: 'w2wesher_members_stale',
    help: 'Members whose record has not been refreshed for three refresh periods',
    registers,
    collect () { this.set(current?.members.filter(m => m.stale).length ?? 0) }
  })
  new Gauge({
    name: 'w2wesher_tunnels_recent_handshake',
    help: `WireGuard peers with a handshake in the last ${RECENT_HANDSHAKE_SECONDS} seconds`,
    registers,
    collect () {
      this.set(current?.members.filter(m => m.handshakeAgeSeconds !== null && m.handshakeAgeSeconds < RECENT_HANDSHAKE_SECONDS).length ?? 0)
    }
  })
  new Gauge({
    name: 'w2wesher_handshake_age_seconds',
    help: 'Seconds since the last WireGuard handshake with each member (absent: never)',
    labelNames: ['peer', 'name'] as const,
    registers,
    collect () {
      // reset first: members that left must not linger as old series
      this.reset()
      for (const m of current?.members ?? []) {
        if (m.handshakeAgeSeconds !== null) this.set({ peer: m.peerId, name: m.name }, m.handshakeAgeSeconds)
      }
    }
  })
  new Gauge({
    name: 'w2wesher_membership_change_age_seconds',
    help: 'Seconds since the member set, a name or an address last changed',
    registers,
    collect () { this.set(current === undefined ? 0 : Math.max(0, (Date.now() - current.lastMembershipChangeMs) / 1000)) }
  })
  // Gossip counters live in the gossip layer; mirror them at scrape time instead of counting twice.
  new Counter({
    name: 'w2wesher_gossip_messages_received_total',
    help: 'Node records received (gossip and sync), before validation',
    registers,
    collect () { this.reset(); this.inc(current?.gossip.received ?? 0) }
  })
  new Counter({
    name: 'w2wesher_gossip_messages_published_total',
    help: 'Own node records published on the gossip topic',
    registers,
    collect () { this.reset(); this.inc(current?.gossip.published ?? 0) }
  })
  new Counter({
    name: 'w2wesher_gossip_messages_rejected_total',
    help: 'Node records rejected by validation, by reason',
    labelNames: ['reason'] as const,
    registers,
    collect () {
      this.reset()
      for (const [reason, n] of Object.entries(current?.gossip.rejected ?? {})) this.inc({ reason }, n ?? 0)
    }
  })
  const runs = new Counter({ name: 'w2wesher_reconcile_runs_total', help: 'WireGuard reconcile runs, failed ones included', registers })
  const errors = new Counter({ name: 'w2wesher_reconcile_errors_total', help: 'WireGuard reconcile runs that failed', registers })
  const duration = new Histogram({
    name: 'w2wesher_reconcile_duration_seconds',
    help: 'Duration of successful WireGuard reconcile runs',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers
  })

  return {
    registry,
    async render () {
      current = await snapshot()
      return { contentType: registry.contentType, text: await registry.metrics() }
    },
    reconcileApplied (result) {
      runs.inc()
      duration.observe(result.durationMs / 1000)
    },
    reconcileFailed () {
      runs.inc()
      errors.inc()
    }
  }
}

export interface MetricsServer {
  /** the bound address, e.g. 127.0.0.1:9586 */
  address: string
  close: () => Promise<void>
}

/** Serve GET /metrics on exactly `listen`; everything else is 404. */
export async function serveMetrics (metrics: Metrics, listen: ListenAddress, onError: (err: unknown) => void = () => {}): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
      return
    }
    metrics.render().then(({ contentType, text }) => {
      res.writeHead(200, { 'content-type': contentType }).end(req.method === 'HEAD' ? undefined : text)
    }, err => {
      onError(err)
      res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n')
    })
  })
  // A scrape must never keep the daemon from exiting.
  server.unref()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listen.port, listen.host, () => { server.off('error', reject); resolve() })
  }).catch(err => {
    throw new Error(`cannot serve metrics on ${formatListenAddress(listen)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
  })
  const bound = server.address()
  return {
    // the port actually bound (differs from `listen` only for port 0, in tests)
    address: formatListenAddress({ host: listen.host, port: typeof bound === 'object' && bound !== null ? bound.port : listen.port }),
    close: async () => await new Promise<void>(resolve => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
