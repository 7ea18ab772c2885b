import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createLab, skipLab, waitFor, type Lab } from './lab.ts'
import { requestControl } from '../../src/control/socket.ts'
import type { StatusReport } from '../../src/control/status.ts'

// Five nodes in a /29 (six usable addresses): hash collisions are all but certain. Every
// node must end on a distinct address, all nodes must agree, and the first holder keeps its.

const skip = skipLab()
const NODES = ['c1', 'c2', 'c3', 'c4', 'c5']
const RANGE = '10.223.7.0/29'

describe.skipIf(skip)('address collisions in a /29', () => {
  let lab: Lab

  beforeAll(async () => {
    lab = await createLab()
    for (const name of NODES) await lab.addNode(name)
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  // the control socket is a path in the state dir: reachable from the test's namespace
  const status = async (node: string): Promise<StatusReport> => await requestControl(lab.node(node).stateDir, { cmd: 'status' }) as StatusReport

  /** peerId → IPv4 as one node sees the mesh (itself included), or undefined if incomplete. */
  const view = async (node: string): Promise<Map<string, string> | undefined> => {
    const report = await status(node)
    if (report.members.length !== NODES.length - 1) return undefined
    return new Map([[report.self.peerId, report.self.ipv4!], ...report.members.map(m => [m.peerId, m.ipv4!] as [string, string])])
  }

  it('settles on distinct addresses that every node agrees on, and the first holder keeps its', async () => {
    const psk = await lab.genPsk()
    const args = (name: string, bootstrap: boolean): string[] =>
      lab.joinArgs(name, { pskFile: psk, overlayIpv4: RANGE, bootstrap: bootstrap ? [lab.bootstrapAddr('c1')] : [] })
    lab.spawnDaemon('c1', args('c1', false))
    const firstAddress = await waitFor(async () => (await lab.overlayAddresses('c1')).ipv4, { timeoutMs: 20_000 })
    for (const name of NODES.slice(1)) lab.spawnDaemon(name, args(name, true))

    let last = ''
    const agreed = await waitFor(async () => {
      const interfaces = await Promise.all(NODES.map(async n => (await lab.overlayAddresses(n)).ipv4))
      const views = await Promise.all(NODES.map(view))
      last = `interfaces ${JSON.stringify(interfaces)}\nviews:\n${views.map((v, i) => `  ${NODES[i]!}: ${v === undefined ? 'incomplete' : JSON.stringify([...v].sort())}`).join('\n')}`
      if (new Set(interfaces).size !== NODES.length) return undefined
      if (views.some(v => v === undefined)) return undefined
      const texts = views.map(v => JSON.stringify([...v!].sort()))
      if (new Set(texts).size !== 1) return undefined
      const addresses = [...views[0]!.values()]
      return new Set(addresses).size === NODES.length && addresses.every(a => interfaces.includes(a)) ? views[0] : undefined
    }, { timeoutMs: 45_000, intervalMs: 500 }).catch(err => { throw new Error(`${(err as Error).message}\n${last}\n${lab.logTails(12)}`) })

    const moved = lab.daemons().filter(d => d.logRecords().some(r => typeof r.msg === 'string' && r.msg.startsWith('address collision lost'))).length
    console.log(`/29 settled: ${[...agreed.values()].sort().join(' ')}; ${moved} node(s) moved after losing a collision`)
    expect((await lab.overlayAddresses('c1')).ipv4).toBe(firstAddress)
    for (const address of agreed.values()) expect(address.startsWith('10.223.7.')).toBe(true)
    expect([...agreed.values()]).not.toContain('10.223.7.0')
    expect([...agreed.values()]).not.toContain('10.223.7.7')

    const matrix = await waitFor(async () => {
      const m = await lab.pingMatrix(NODES, { family: 4, count: 1, timeoutMs: 1000 })
      return m.ok ? m : undefined
    }, { timeoutMs: 20_000, intervalMs: 500 })
    expect(matrix.failures).toEqual([])
  })
})
