import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createLab, skipLab, waitFor, DAEMON_BIN, type Lab } from './lab.ts'

// The core promise: five real daemons in five network namespaces, real wireguard-go, and
// every node reaches every other over the overlay. A sixth node with another PSK stays out.

const skip = skipLab()
const NODES = ['n1', 'n2', 'n3', 'n4', 'n5']

describe.skipIf(skip)('core mesh (5 daemons, real WireGuard)', () => {
  let lab: Lab
  let psk: string

  beforeAll(async () => {
    lab = await createLab()
    for (const name of [...NODES, 'outsider']) await lab.addNode(name)
    psk = await lab.genPsk()
    lab.spawnDaemon('n1', lab.joinArgs('n1', { pskFile: psk, overlayIpv4: '10.223.0.0/16' }))
    for (const name of NODES.slice(1)) {
      lab.spawnDaemon(name, lab.joinArgs(name, { pskFile: psk, overlayIpv4: '10.223.0.0/16', bootstrap: [lab.bootstrapAddr('n1')] }))
    }
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('configures exactly N-1 WireGuard peers on every node', async () => {
    try {
      await waitFor(async () => {
        const counts = await Promise.all(NODES.map(async n => (await lab.wgPeers(n)).length))
        return counts.every(c => c === NODES.length - 1) ? counts : undefined
      }, { timeoutMs: 30_000, intervalMs: 200 })
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${lab.logTails(15)}`)
    }
    const keys = await Promise.all(NODES.map(async n => (await lab.wgDump(n))!.publicKey))
    for (const [i, n] of NODES.entries()) {
      const peers = (await lab.wgPeers(n)).map(p => p.publicKey).sort()
      expect(peers).toEqual(keys.filter((_, j) => j !== i).sort())
    }
  })

  it('every node pings every other over overlay IPv6 and IPv4', async () => {
    for (const family of [6, 4] as const) {
      const matrix = await lab.pingMatrix(NODES, { family, count: 1, timeoutMs: 2000 })
      if (!matrix.ok) {
        // a tunnel may still be handshaking: one retry for the failures only
        const retry = await lab.pingMatrix(NODES, { family, count: 3, timeoutMs: 2000 })
        expect(retry.failures, retry.text).toEqual([])
      }
      expect(matrix.results).toHaveLength(NODES.length * (NODES.length - 1))
    }
  })

  it('each node holds distinct overlay addresses inside the shared prefixes', async () => {
    const addrs = await Promise.all(NODES.map(async n => await lab.overlayAddresses(n)))
    expect(new Set(addrs.map(a => a.ipv6)).size).toBe(NODES.length)
    expect(new Set(addrs.map(a => a.ipv4)).size).toBe(NODES.length)
    const prefix = addrs[0]!.ipv6!.split(':').slice(0, 4).join(':')
    for (const a of addrs) {
      expect(a.ipv6!.startsWith(`${prefix}:`)).toBe(true)
      expect(a.ipv4).toMatch(/^10\.223\./)
    }
  })

  it('keeps a node with another PSK out, and it logs a PSK-mismatch hint', async () => {
    const otherPsk = join(lab.dir, 'other.key')
    writeFileSync(otherPsk, execFileSync(process.execPath, [DAEMON_BIN, 'genpsk']), { mode: 0o600 })
    const outsider = lab.spawnDaemon('outsider', lab.joinArgs('outsider', { pskFile: otherPsk, overlayIpv4: '10.223.0.0/16', bootstrap: [lab.bootstrapAddr('n1')] }))
    await outsider.waitForLog(r => typeof r.msg === 'string' && r.msg.startsWith('possible PSK mismatch'), 40_000)
    expect(await lab.wgPeers('outsider')).toEqual([])
    const outsiderKey = (await lab.wgDump('outsider'))!.publicKey
    for (const n of NODES) {
      const peers = await lab.wgPeers(n)
      expect(peers).toHaveLength(NODES.length - 1)
      expect(peers.map(p => p.publicKey)).not.toContain(outsiderKey)
    }
  })

  it('answers status over the control socket, as JSON and as a table', async () => {
    const status = (...extra: string[]): string => execFileSync('ip', ['netns', 'exec', lab.node('n2').ns, process.execPath, DAEMON_BIN, 'status', '--state-dir', lab.node('n2').stateDir, ...extra], { encoding: 'utf8' })
    type Report = { self: { name: string }, members: Array<{ name: string, state: string, handshakeAgeSeconds: number | null, connected: boolean }> }
    // tunnels come first; the libp2p connections to members follow once membership has been
    // quiet for a few seconds (src/p2p/keeper.ts)
    const report = await waitFor(() => {
      const r = JSON.parse(status('--json')) as Report
      return r.members.length === 4 && r.members.every(m => m.connected) ? r : undefined
    }, { timeoutMs: 30_000, intervalMs: 500 })
    expect(report.self.name).toBe('n2')
    expect(report.members.map(m => m.name).sort()).toEqual(['n1', 'n3', 'n4', 'n5'])
    for (const m of report.members) {
      expect(m.handshakeAgeSeconds, m.name).not.toBeNull()
      expect(m.handshakeAgeSeconds!).toBeLessThan(180)
      expect(m.state).toBe('ok')
      expect(m.connected).toBe(true)
    }
    const table = status()
    for (const name of ['n1', 'n3', 'n4', 'n5']) expect(table).toMatch(new RegExp(`^${name}\\s.*\\sok$`, 'm'))
    // progress the operator sees while joining
    const n2 = lab.daemons().find(d => d.node === 'n2')!
    expect(n2.logRecords().some(r => r.msg === '4/4 tunnels up')).toBe(true)
  })

  it('says clearly when no daemon runs, with exit code 3', () => {
    let failure: { status: number, stderr: string } | undefined
    try {
      execFileSync(process.execPath, [DAEMON_BIN, 'status', '--state-dir', join(lab.dir, 'nowhere')], { encoding: 'utf8', stdio: 'pipe' })
    } catch (err) {
      failure = err as { status: number, stderr: string }
    }
    expect(failure?.status).toBe(3)
    expect(failure?.stderr).toMatch(/^w2wesher: no w2wesher daemon is running for state dir .*nowhere/)
  })
})
