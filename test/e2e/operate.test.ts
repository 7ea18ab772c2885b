import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { createLab, skipLab, waitFor, DAEMON_BIN, type Lab, type OverlayAddresses } from './lab.ts'

// Operating surfaces: the Prometheus endpoint (only on its configured address) and the
// managed hosts-file block (names resolve to overlay addresses, nothing else touched,
// gone after leave).

const skip = skipLab()
const NODES = ['m1', 'm2', 'm3']
const METRICS = '127.0.0.1:9586'
const ORIGINAL = '127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n# a comment the daemon must keep  \n192.0.2.10 printer.lan\n'

/** Managed block lines of one hosts file: name → addresses. */
function blockOf (text: string, iface: string): Map<string, string[]> | undefined {
  const begin = text.indexOf(`# BEGIN w2wesher ${iface}\n`)
  const end = text.indexOf(`# END w2wesher ${iface}\n`)
  if (begin < 0 || end < begin) return undefined
  const names = new Map<string, string[]>()
  for (const line of text.slice(begin, end).split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const [addr, name] = line.split(' ')
    names.set(name!, [...(names.get(name!) ?? []), addr!])
  }
  return names
}

/** Prometheus text → "name{labels}" → value; throws on any line that is not exposition format. */
function parseExposition (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('#')) {
      expect(line).toMatch(/^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* /)
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line)
    if (m === null) throw new Error(`not Prometheus exposition: ${line}`)
    out.set(m[1]!, Number(m[2]))
  }
  return out
}

describe.skipIf(skip)('metrics and hosts file (3 daemons)', () => {
  let lab: Lab
  let psk: string
  const hostsFile = (n: string): string => join(lab.node(n).dir, 'hosts')
  const addrs = new Map<string, OverlayAddresses>()

  /** GET a URL from inside a node's namespace with Node's fetch (curl may be missing). */
  const fetchIn = async (node: string, url: string): Promise<{ status: number, body: string } | { error: string }> => {
    const script = `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(3000) }).then(async r => { process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })) }, e => { process.stdout.write(JSON.stringify({ error: String(e.cause?.code ?? e) })) })`
    const r = await lab.execOk(node, [process.execPath, '-e', script], { timeoutMs: 10_000 })
    return JSON.parse(r) as { status: number, body: string } | { error: string }
  }

  beforeAll(async () => {
    lab = await createLab()
    for (const name of NODES) await lab.addNode(name)
    psk = await lab.genPsk()
    for (const [i, name] of NODES.entries()) {
      writeFileSync(hostsFile(name), ORIGINAL, { mode: 0o644 })
      lab.spawnDaemon(name, lab.joinArgs(name, {
        pskFile: psk,
        overlayIpv4: '10.223.0.0/16',
        bootstrap: i === 0 ? [] : [lab.bootstrapAddr('m1')],
        extra: ['--metrics-listen', METRICS, '--hosts-file', hostsFile(name), '--hosts-domain', 'wesh']
      }))
    }
    await waitFor(async () => {
      const counts = await Promise.all(NODES.map(async n => (await lab.wgPeers(n)).filter(p => p.latestHandshake > 0).length))
      return counts.every(c => c === NODES.length - 1) ? true : undefined
    }, { timeoutMs: 30_000, intervalMs: 200 }).catch(err => { throw new Error(`${(err as Error).message}\n${lab.logTails(15)}`) })
    for (const n of NODES) addrs.set(n, await lab.overlayAddresses(n))
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('serves valid Prometheus text with every series and sane values', async () => {
    for (const n of NODES) {
      // handshakes and connections are already up; wait for the scrape to agree
      const series = await waitFor(async () => {
        const r = await fetchIn(n, `http://${METRICS}/metrics`)
        if (!('status' in r) || r.status !== 200) return undefined
        const v = parseExposition(r.body)
        return v.get('w2wesher_members_connected') === 2 && v.get('w2wesher_tunnels_recent_handshake') === 2 ? v : undefined
      }, { timeoutMs: 15_000, intervalMs: 300 })
      expect(series.get('w2wesher_members_known')).toBe(NODES.length - 1)
      expect(series.get('w2wesher_members_stale')).toBe(0)
      const ages = [...series.entries()].filter(([k]) => k.startsWith('w2wesher_handshake_age_seconds{'))
      expect(ages).toHaveLength(2)
      for (const other of NODES.filter(o => o !== n)) expect(ages.some(([k]) => k.includes(`name="${other}"`) && k.includes('peer="12D3KooW'))).toBe(true)
      for (const [, age] of ages) expect(age).toBeGreaterThanOrEqual(0)
      for (const [, age] of ages) expect(age).toBeLessThan(180)
      expect(series.get('w2wesher_reconcile_runs_total')).toBeGreaterThan(0)
      expect(series.get('w2wesher_reconcile_errors_total')).toBe(0)
      expect(series.get('w2wesher_reconcile_duration_seconds_count')).toBeGreaterThan(0)
      expect(series.get('w2wesher_gossip_messages_received_total')).toBeGreaterThan(0)
      expect(series.get('w2wesher_gossip_messages_published_total')).toBeGreaterThanOrEqual(0)
      expect(series.get('w2wesher_membership_change_age_seconds')).toBeGreaterThanOrEqual(0)
      expect(series.get('w2wesher_membership_change_age_seconds')).toBeLessThan(120)
      expect(series.has('process_resident_memory_bytes')).toBe(true)
    }
    const r = await fetchIn('m1', `http://${METRICS}/`)
    expect(r).toMatchObject({ status: 404 })
  })

  it('listens only on the configured address', async () => {
    const m1 = lab.node('m1')
    // from inside the node, on its underlay and overlay addresses
    for (const host of [m1.underlay, addrs.get('m1')!.ipv4!, `[${addrs.get('m1')!.ipv6!}]`]) {
      expect(await fetchIn('m1', `http://${host}:9586/metrics`)).toEqual({ error: 'ECONNREFUSED' })
    }
    // from another node, over the underlay and through the tunnel
    expect(await fetchIn('m2', `http://${m1.underlay}:9586/metrics`)).toEqual({ error: 'ECONNREFUSED' })
    expect(await fetchIn('m2', `http://${addrs.get('m1')!.ipv4!}:9586/metrics`)).toEqual({ error: 'ECONNREFUSED' })
    const listening = await lab.execOk('m1', ['ss', '-Htln', 'sport = :9586'])
    expect(listening.trim().split('\n').map(l => l.trim().split(/\s+/)[3])).toEqual([METRICS])
  })

  it('writes every member into the managed block, and names reach the right node', async () => {
    for (const n of NODES) {
      const block = await waitFor(() => {
        const b = blockOf(readFileSync(hostsFile(n), 'utf8'), lab.node(n).wgIf)
        return b !== undefined && b.size === NODES.length ? b : undefined
      }, { timeoutMs: 10_000, intervalMs: 200 })
      for (const other of NODES) {
        const a = addrs.get(other)!
        expect(block.get(`${other}.wesh`)?.sort()).toEqual([a.ipv4!, a.ipv6!].sort())
      }
      const text = readFileSync(hostsFile(n), 'utf8')
      expect(text.startsWith(ORIGINAL)).toBe(true) // the original lines, byte for byte
      expect(text.endsWith(`# END w2wesher ${lab.node(n).wgIf}\n`)).toBe(true)
      expect(statSync(hostsFile(n)).mode & 0o777).toBe(0o644)
    }
    // "resolve" m2.wesh and m1.wesh through the block and ping what it names
    for (const [from, to] of [['m1', 'm2'], ['m2', 'm1'], ['m3', 'm1']] as const) {
      const block = blockOf(readFileSync(hostsFile(from), 'utf8'), lab.node(from).wgIf)!
      for (const addr of block.get(`${to}.wesh`)!) expect(await lab.ping(from, addr), `${from} → ${to}.wesh (${addr})`).toBe(true)
    }
  })

  it('after leave the entry is gone from the others and the leaver removes its block', async () => {
    execFileSync('ip', ['netns', 'exec', lab.node('m3').ns, process.execPath, DAEMON_BIN, 'leave', '--state-dir', lab.node('m3').stateDir], { encoding: 'utf8' })
    expect(readFileSync(hostsFile('m3'), 'utf8')).toBe(ORIGINAL)
    for (const n of ['m1', 'm2']) {
      await waitFor(() => {
        const b = blockOf(readFileSync(hostsFile(n), 'utf8'), lab.node(n).wgIf)
        return b !== undefined && !b.has('m3.wesh') && b.size === 2 ? true : undefined
      }, { timeoutMs: 5000, intervalMs: 100 })
      expect(readFileSync(hostsFile(n), 'utf8').startsWith(ORIGINAL)).toBe(true)
    }
    const r = await waitFor(async () => {
      const x = await fetchIn('m1', `http://${METRICS}/metrics`)
      return 'status' in x && parseExposition(x.body).get('w2wesher_members_known') === 1 ? x : undefined
    }, { timeoutMs: 5000, intervalMs: 200 })
    expect(parseExposition(r.body).get('w2wesher_membership_change_age_seconds')).toBeLessThan(10)
  })
})
