import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createLab, skipLab, sleep, waitFor, type Lab } from './lab.ts'

// A node cut off for longer than any dial timeout, while another joins: when the link
// returns, the mesh heals by itself — including the pair that has never met.

const skip = skipLab()
const DOWN_MS = 70_000

describe.skipIf(skip)('partition heals by itself', () => {
  let lab: Lab

  beforeAll(async () => {
    lab = await createLab()
    for (const name of ['p1', 'p2', 'p3', 'p4']) await lab.addNode(name)
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('every pair, including two nodes that never met, pings within 30 s of the link returning', async () => {
    const psk = await lab.genPsk()
    const args = (name: string, bootstrap: boolean): string[] =>
      lab.joinArgs(name, { pskFile: psk, overlayIpv4: '10.223.0.0/16', bootstrap: bootstrap ? [lab.bootstrapAddr('p1')] : [] })
    lab.spawnDaemon('p1', args('p1', false))
    lab.spawnDaemon('p2', args('p2', true))
    lab.spawnDaemon('p3', args('p3', true))
    const first = ['p1', 'p2', 'p3']
    await waitFor(async () => {
      const counts = await Promise.all(first.map(async n => (await lab.wgPeers(n)).length))
      return counts.every(c => c === 2) ? true : undefined
    }, { timeoutMs: 30_000 }).catch(err => { throw new Error(`${(err as Error).message}\n${lab.logTails(10)}`) })

    await lab.setLink('p3', false)
    const cut = Date.now()
    lab.spawnDaemon('p4', args('p4', true))
    // p4 joins through p1 and learns p3's record, but cannot reach p3 yet
    await waitFor(async () => (await lab.wgPeers('p4')).length === 3 ? true : undefined, { timeoutMs: 30_000 })
    expect(await lab.ping('p4', (await lab.overlayAddresses('p3')).ipv6!, { count: 1, timeoutMs: 1000 })).toBe(false)
    await sleep(DOWN_MS - (Date.now() - cut))
    await lab.setLink('p3', true)
    const restored = Date.now()

    const nodes = ['p1', 'p2', 'p3', 'p4']
    const matrix = await waitFor(async () => {
      const m = await lab.pingMatrix(nodes, { family: 6, count: 1, timeoutMs: 1000 })
      return m.ok ? m : undefined
    }, { timeoutMs: 30_000, intervalMs: 500 }).catch(async err => {
      const m = await lab.pingMatrix(nodes, { family: 6, count: 1, timeoutMs: 1000 })
      throw new Error(`${(err as Error).message}\n${m.text}\n${lab.logTails(20)}`)
    })
    console.log(`partition of ${DOWN_MS / 1000} s healed: all ${matrix.results.length} ordered pairs ping ${Date.now() - restored} ms after the link returned`)
    for (const n of nodes) expect(await lab.wgPeers(n)).toHaveLength(3)
  }, 180_000)
})
