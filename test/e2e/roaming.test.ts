import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createLab, skipLab, sleep, waitFor, type Lab } from './lab.ts'

// Roaming: a node's underlay address changes under a running mesh (a laptop moves to another
// network). It notices within a second, sends into every tunnel (the members' WireGuard follows
// authenticated packets to the new address) and re-announces; every pair pings again in 5 s.

const skip = skipLab()
const NODES = ['a', 'b', 'c']

describe.skipIf(skip)('roaming (3 daemons, one renumbered)', () => {
  let lab: Lab

  beforeAll(async () => {
    lab = await createLab()
    for (const name of NODES) await lab.addNode(name)
    const psk = await lab.genPsk()
    lab.spawnDaemon('a', lab.joinArgs('a', { pskFile: psk, overlayIpv4: '10.223.0.0/16' }))
    for (const name of NODES.slice(1)) lab.spawnDaemon(name, lab.joinArgs(name, { pskFile: psk, overlayIpv4: '10.223.0.0/16', bootstrap: [lab.bootstrapAddr('a')] }))
    await waitFor(async () => {
      const counts = await Promise.all(NODES.map(async n => (await lab.wgPeers(n)).filter(p => p.latestHandshake > 0).length))
      return counts.every(c => c === NODES.length - 1) ? true : undefined
    }, { timeoutMs: 40_000, intervalMs: 200 }).catch(err => { throw new Error(`${(err as Error).message}\n${lab.logTails(15)}`) })
    const matrix = await lab.pingMatrix(NODES, { family: 4, count: 2, timeoutMs: 2000 })
    expect(matrix.failures, matrix.text).toEqual([])
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('all pairs ping again within 5 s of a node changing its underlay address', async () => {
    const cKey = (await lab.wgDump('c'))!.publicKey
    const oldAddress = lab.node('c').underlay
    const newAddress = '198.18.200.3'
    const changed = Date.now()
    await lab.setUnderlayAddress('c', newAddress)
    let rounds = 0
    await waitFor(async () => {
      rounds++
      return (await lab.pingMatrix(NODES, { family: 4, count: 1, timeoutMs: 500 })).ok
    }, { timeoutMs: 5000, intervalMs: 0 }).catch(async err => {
      const m = await lab.pingMatrix(NODES, { family: 4, count: 1, timeoutMs: 500 })
      throw new Error(`${(err as Error).message}\n${m.text}\n${lab.logTails(15)}`)
    })
    const pinged = Date.now() - changed
    console.log(`roaming: all pairs ping again ${pinged} ms after the address change (${rounds} ping rounds)`)
    expect(pinged).toBeLessThan(5000)
    // the members' WireGuard now points at the new address
    for (const n of ['a', 'b']) expect((await lab.wgPeers(n)).find(p => p.publicKey === cKey)!.endpoint).toBe(`${newAddress}:10042`)
    // and c re-announced: its record lists the new address, not the old one
    const c = lab.daemons().find(d => d.node === 'c')!
    expect(c.logRecords().some(r => r.msg === 'underlay addresses changed: re-announcing')).toBe(true)
    await sleep(3000) // the members reconcile from c's new record: they must keep the new endpoint
    for (const n of ['a', 'b']) {
      const peer = (await lab.wgPeers(n)).find(p => p.publicKey === cKey)!
      expect(peer.endpoint).toBe(`${newAddress}:10042`)
      expect(peer.endpoint).not.toContain(oldAddress)
    }
    const matrix = await lab.pingMatrix(NODES, { family: 6, count: 1, timeoutMs: 1000 })
    expect(matrix.failures, matrix.text).toEqual([])
  })
})
