import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { createLab, skipLab, waitFor, DAEMON_BIN, type Lab } from './lab.ts'

// Routed subnets: r2 announces a subnet that lives behind it (a veth in its namespace holding
// 10.77.0.1/24 and fd77:77::1/64); r3 announces an overlapping 10.77.0.128/25 later, which every
// node must refuse (not in anybody's AllowedIPs, a log line on both sides). When r2 leaves, r3's
// route is the only claim left and takes over.

const skip = skipLab()
const NODES = ['r1', 'r2', 'r3']
const SUBNET4 = '10.77.0.0/24'
const SUBNET6 = 'fd77:77::/64'
const OVERLAP = '10.77.0.128/25'

describe.skipIf(skip)('routed subnets (3 daemons)', () => {
  let lab: Lab
  let psk: string
  const args = (name: string, routes: string[]): string[] => lab.joinArgs(name, {
    pskFile: psk,
    overlayIpv4: '10.223.0.0/16',
    bootstrap: name === 'r1' ? [] : [lab.bootstrapAddr('r1')],
    extra: routes.length === 0 ? [] : ['--route', routes.join(',')]
  })
  const daemon = (name: string) => lab.daemons().find(d => d.node === name && d.running())!
  const peerOf = async (on: string, of: string) => {
    const key = (await lab.wgDump(of))!.publicKey
    return (await lab.wgPeers(on)).find(p => p.publicKey === key)
  }
  /** Kernel routes w2wesher installed through the node's interface. */
  const kernelRoutes = async (node: string): Promise<string[]> => {
    const out: string[] = []
    for (const family of ['-4', '-6']) {
      const text = await lab.execOk(node, ['ip', '-json', family, 'route', 'show', 'dev', lab.node(node).wgIf, 'proto', '87'])
      out.push(...(JSON.parse(text.trim() || '[]') as Array<{ dst: string }>).map(r => r.dst))
    }
    return out.sort()
  }
  const status = (node: string): { self: { routes: unknown[] }, members: Array<{ name: string, routes: Array<{ cidr: string, accepted: boolean, reason: string | null }> }> } =>
    JSON.parse(execFileSync('ip', ['netns', 'exec', lab.node(node).ns, process.execPath, DAEMON_BIN, 'status', '--json', '--state-dir', lab.node(node).stateDir], { encoding: 'utf8' }))

  beforeAll(async () => {
    lab = await createLab()
    for (const name of NODES) await lab.addNode(name)
    // the subnet behind r2
    await lab.execOk('r2', ['ip', 'link', 'add', 'sub0', 'type', 'veth', 'peer', 'name', 'sub1'])
    await lab.execOk('r2', ['ip', 'addr', 'add', '10.77.0.1/24', 'dev', 'sub1'])
    await lab.execOk('r2', ['ip', 'addr', 'add', 'fd77:77::1/64', 'dev', 'sub1', 'nodad'])
    for (const dev of ['sub0', 'sub1']) await lab.execOk('r2', ['ip', 'link', 'set', dev, 'up'])
    psk = await lab.genPsk()
    lab.spawnDaemon('r1', args('r1', []))
    const r2 = lab.spawnDaemon('r2', args('r2', [SUBNET4, SUBNET6]))
    // r3 joins after r2 holds its place in the mesh: r2 is the senior claim everywhere
    await r2.waitForLog(r => r.msg === 'overlay addresses', 10_000)
    lab.spawnDaemon('r3', args('r3', [OVERLAP]))
    await waitFor(async () => {
      const counts = await Promise.all(NODES.map(async n => (await lab.wgPeers(n)).filter(p => p.latestHandshake > 0).length))
      return counts.every(c => c === NODES.length - 1) ? true : undefined
    }, { timeoutMs: 30_000, intervalMs: 200 }).catch(err => { throw new Error(`${(err as Error).message}\n${lab.logTails(15)}`) })
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('puts the subnet into r2\'s AllowedIPs and a kernel route on the others; r3 reaches it through the tunnel', async () => {
    for (const n of ['r1', 'r3']) {
      await waitFor(async () => (await peerOf(n, 'r2'))?.allowedIps.includes(SUBNET4) === true ? true : undefined, { timeoutMs: 10_000 })
      expect((await peerOf(n, 'r2'))!.allowedIps).toEqual(expect.arrayContaining([SUBNET4, SUBNET6]))
      await waitFor(async () => (await kernelRoutes(n)).length === 2 ? true : undefined, { timeoutMs: 5000 })
      expect(await kernelRoutes(n)).toEqual([SUBNET4, SUBNET6].sort())
    }
    expect(await kernelRoutes('r2')).toEqual([]) // its own subnet is not routed into the tunnel
    expect(await lab.ping('r3', '10.77.0.1'), 'r3 → 10.77.0.1 behind r2').toBe(true)
    expect(await lab.ping('r3', 'fd77:77::1'), 'r3 → fd77:77::1 behind r2').toBe(true)
    expect(await lab.ping('r1', '10.77.0.1'), 'r1 → 10.77.0.1 behind r2').toBe(true)
    // and it really went through WireGuard: r2's counters for r3 moved
    const before = (await peerOf('r2', 'r3'))!.rxBytes
    expect(await lab.ping('r3', '10.77.0.1')).toBe(true)
    expect((await peerOf('r2', 'r3'))!.rxBytes).toBeGreaterThan(before)
  })

  it('refuses the overlapping announcement everywhere, with a log line on both sides', async () => {
    for (const n of ['r1', 'r2']) {
      const peer = (await peerOf(n, 'r3'))!
      expect(peer.allowedIps.some(a => a.startsWith('10.77.'))).toBe(false)
      const line = await daemon(n).waitForLog(r => typeof r.msg === 'string' && r.msg.startsWith(`rejected route ${OVERLAP} of member r3`), 5000)
      expect(line.msg).toMatch(new RegExp(`overlaps ${SUBNET4} of r2`))
    }
    const own = await daemon('r3').waitForLog(r => typeof r.msg === 'string' && r.msg.startsWith(`our route ${OVERLAP} is refused`), 5000)
    expect(own.msg).toMatch(/overlaps 10\.77\.0\.0\/24 of r2/)
    expect(await kernelRoutes('r1')).not.toContain(OVERLAP)
    // status shows it, on the receiving side and the announcing side
    const s1 = status('r1')
    expect(s1.members.find(m => m.name === 'r3')!.routes).toEqual([{ cidr: OVERLAP, accepted: false, reason: expect.stringMatching(/overlaps 10\.77\.0\.0\/24 of r2/) }])
    expect(s1.members.find(m => m.name === 'r2')!.routes.map(r => [r.cidr, r.accepted])).toEqual([[SUBNET4, true], [SUBNET6, true]])
    expect(status('r3').self.routes).toEqual([{ cidr: OVERLAP, accepted: false, reason: expect.stringMatching(/of r2/) }])
  })

  it('a restart keeps the installed routes: the first apply neither removes nor re-adds them', async () => {
    expect((await daemon('r3').stop('SIGTERM')).code).toBe(0)
    expect(await kernelRoutes('r3')).toEqual([SUBNET4, SUBNET6].sort()) // no daemon: routes stay with the interface
    const again = lab.spawnDaemon('r3', args('r3', [OVERLAP]))
    await again.waitForLog(r => r.msg === 'wireguard interface ready', 10_000)
    expect(await kernelRoutes('r3')).toEqual([SUBNET4, SUBNET6].sort())
    expect(again.logRecords().filter(r => typeof r.msg === 'string' && r.msg.includes('routes via'))).toEqual([])
    expect(await lab.ping('r3', '10.77.0.1')).toBe(true)
    // still the junior claim after the restart (its address claim, and so its seniority, is kept)
    await again.waitForLog(r => typeof r.msg === 'string' && r.msg.startsWith(`our route ${OVERLAP} is refused`), 5000)
  })

  it('when r2 leaves, its routes go and r3\'s claim takes over', async () => {
    execFileSync('ip', ['netns', 'exec', lab.node('r2').ns, process.execPath, DAEMON_BIN, 'leave', '--state-dir', lab.node('r2').stateDir], { encoding: 'utf8' })
    await waitFor(async () => (await peerOf('r1', 'r3'))?.allowedIps.includes(OVERLAP) === true ? true : undefined, { timeoutMs: 10_000 })
    await waitFor(async () => (await kernelRoutes('r1')).join() === OVERLAP ? true : undefined, { timeoutMs: 5000 })
    // r3 hears of r2's departure on its own, maybe a moment after r1
    await waitFor(async () => (await kernelRoutes('r3')).length === 0 ? true : undefined, { timeoutMs: 5000 })
    expect(await kernelRoutes('r3')).toEqual([])
    await daemon('r3').waitForLog(r => r.msg === `our route ${OVERLAP} is accepted now`, 5000)
  })
})
