import { describe, it, expect, afterEach } from 'vitest'
import { createMetrics, serveMetrics, type MetricsServer, type MetricsSnapshot } from '../../src/metrics/metrics.ts'
import { parseListenAddress } from '../../src/metrics/listen.ts'
import { resolveConfig } from '../../src/config/config.ts'

const PSK = 'a'.repeat(64)

function snapshot (over: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  return {
    members: [
      { peerId: 'P1', name: 'one', connected: true, stale: false, handshakeAgeSeconds: 5 },
      { peerId: 'P2', name: 'two', connected: false, stale: true, handshakeAgeSeconds: 400 },
      { peerId: 'P3', name: 'three', connected: true, stale: false, handshakeAgeSeconds: null }
    ],
    gossip: { received: 7, published: 3, rejected: { signature: 2, schema: 1 } },
    lastMembershipChangeMs: Date.now() - 10_000,
    ...over
  }
}

/** Minimal Prometheus text parser: name{labels} value, with # HELP / # TYPE lines. */
function parse (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line)
    if (m === null) throw new Error(`bad exposition line: ${line}`)
    out.set(m[1]!, Number(m[2]))
  }
  return out
}

describe('metrics', () => {
  let server: MetricsServer | undefined
  afterEach(async () => { await server?.close(); server = undefined })

  it('computes every series from the snapshot at scrape time', async () => {
    let snap = snapshot()
    const metrics = createMetrics(async () => snap, { defaultMetrics: false })
    metrics.reconcileApplied({ durationMs: 12 })
    metrics.reconcileApplied({ durationMs: 30 })
    metrics.reconcileFailed()
    const v = parse((await metrics.render()).text)
    expect(v.get('w2wesher_members_known')).toBe(3)
    expect(v.get('w2wesher_members_connected')).toBe(2)
    expect(v.get('w2wesher_members_stale')).toBe(1)
    expect(v.get('w2wesher_tunnels_recent_handshake')).toBe(1)
    expect(v.get('w2wesher_handshake_age_seconds{peer="P1",name="one"}')).toBe(5)
    expect(v.get('w2wesher_handshake_age_seconds{peer="P2",name="two"}')).toBe(400)
    expect([...v.keys()].some(k => k.includes('P3'))).toBe(false)
    expect(v.get('w2wesher_gossip_messages_received_total')).toBe(7)
    expect(v.get('w2wesher_gossip_messages_published_total')).toBe(3)
    expect(v.get('w2wesher_gossip_messages_rejected_total{reason="signature"}')).toBe(2)
    expect(v.get('w2wesher_reconcile_runs_total')).toBe(3)
    expect(v.get('w2wesher_reconcile_errors_total')).toBe(1)
    expect(v.get('w2wesher_reconcile_duration_seconds_count')).toBe(2)
    expect(v.get('w2wesher_reconcile_duration_seconds_sum')).toBeCloseTo(0.042)
    expect(v.get('w2wesher_membership_change_age_seconds')).toBeGreaterThanOrEqual(10)
    // a member that left disappears from the per-peer series; counters follow the source
    snap = snapshot({ members: snapshot().members.slice(0, 1), gossip: { received: 9, published: 3, rejected: {} } })
    const w = parse((await metrics.render()).text)
    expect(w.get('w2wesher_members_known')).toBe(1)
    expect([...w.keys()].some(k => k.includes('P2'))).toBe(false)
    expect(w.get('w2wesher_gossip_messages_received_total')).toBe(9)
  })

  it('serves /metrics only, on the given address', async () => {
    const metrics = createMetrics(async () => snapshot())
    server = await serveMetrics(metrics, { host: '127.0.0.1', port: 0 })
    // port 0 is for the test only; the config never allows it
    const base = `http://${server.address}`
    const ok = await fetch(`${base}/metrics`)
    expect(ok.status).toBe(200)
    expect(ok.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await ok.text()
    expect(parse(text).get('w2wesher_members_known')).toBe(3)
    expect(text).toContain('process_cpu_user_seconds_total')
    expect((await fetch(`${base}/`)).status).toBe(404)
    expect((await fetch(`${base}/metrics/x`)).status).toBe(404)
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(404)
  })

  it('parses and validates the listen address', async () => {
    expect(parseListenAddress('127.0.0.1:9586')).toEqual({ host: '127.0.0.1', port: 9586 })
    expect(parseListenAddress('[::1]:9586')).toEqual({ host: '::1', port: 9586 })
    expect(parseListenAddress('localhost:1')).toEqual({ host: 'localhost', port: 1 })
    for (const bad of ['9586', '127.0.0.1', '::1:9586', '[nope]:1', '1.2.3.4:0', '1.2.3.4:70000', 'a b:1']) {
      expect(() => parseListenAddress(bad), bad).toThrow()
    }
    const config = await resolveConfig({ psk: PSK, metricsListen: '127.0.0.1:9586', hostsFile: '/tmp/h' })
    expect(config.metricsListen).toEqual({ host: '127.0.0.1', port: 9586 })
    expect(config.hostsDomain).toBe('wesh')
    expect((await resolveConfig({ psk: PSK })).metricsListen).toBeUndefined()
    await expect(resolveConfig({ psk: PSK, metricsListen: 'nope' })).rejects.toThrow(/^invalid metricsListen: .*--metrics-listen/)
    await expect(resolveConfig({ psk: PSK, hostsDomain: 'bad_domain' })).rejects.toThrow(/^invalid hostsDomain: .*--hosts-domain/)
  })
})
