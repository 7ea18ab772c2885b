import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createLab, skipLab, waitFor, DAEMON_BIN, type Lab } from './lab.ts'
import { meshSeed, parsePsk } from '../../src/config/psk.ts'
import { mdnsServiceTag } from '../../src/p2p/host.ts'

// mDNS on one LAN segment: three daemons with the same PSK and no --bootstrap form the full
// mesh by themselves; a fourth with another PSK on the same bridge gets nobody and stays
// quiet. The namespaces get a 224.0.0.0/4 route (lab `multicast`): without one mDNS sends
// nothing, which is why the other e2e suites do not discover each other.

const skip = skipLab()
const NODES = ['m1', 'm2', 'm3']

describe.skipIf(skip)('mDNS discovery (no bootstrap)', () => {
  let lab: Lab
  let psk: string
  let started: number

  beforeAll(async () => {
    lab = await createLab()
    for (const name of [...NODES, 'foreign']) await lab.addNode(name, { multicast: true })
    psk = await lab.genPsk()
    const otherPsk = join(lab.dir, 'other.key')
    writeFileSync(otherPsk, execFileSync(process.execPath, [DAEMON_BIN, 'genpsk']), { mode: 0o600 })
    started = Date.now()
    for (const name of NODES) {
      // m3 also runs the DHT: a mixed mesh works, and the lazily loaded DHT chunk starts
      lab.spawnDaemon(name, lab.joinArgs(name, { pskFile: psk, overlayIpv4: '10.223.0.0/16', extra: name === 'm3' ? ['--dht'] : [] }))
    }
    lab.spawnDaemon('foreign', lab.joinArgs('foreign', { pskFile: otherPsk, overlayIpv4: '10.223.0.0/16' }))
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('three nodes with the same PSK and no bootstrap: all pairs ping within 30 s', async () => {
    const matrix = await waitFor(async () => {
      const m = await lab.pingMatrix(NODES, { family: 6, count: 1, timeoutMs: 1000 })
      return m.ok ? m : undefined
    }, { timeoutMs: 30_000, intervalMs: 500 }).catch(async err => {
      const m = await lab.pingMatrix(NODES, { family: 6, count: 1, timeoutMs: 1000 })
      throw new Error(`${(err as Error).message}\n${m.text}\n${lab.logTails(20)}`)
    })
    console.log(`mDNS: all ${matrix.results.length} ordered pairs ping ${Date.now() - started} ms after the daemons were spawned`)
    const v4 = await lab.pingMatrix(NODES, { family: 4, count: 2, timeoutMs: 2000 })
    expect(v4.failures, v4.text).toEqual([])
    expect(lab.daemons().find(d => d.node === 'm3')!.logRecords().some(r => r.msg === 'libp2p listening' && r.dht === true)).toBe(true)
  }, 60_000)

  it('mDNS answers carry only underlay addresses: never loopback or overlay', async () => {
    const tag = mdnsServiceTag(meshSeed(parsePsk(readFileSync(psk, 'utf8'))))
    // one mDNS query from the foreign namespace, as any host on the LAN could send it
    const script = `
      const mdns = require('multicast-dns')()
      const found = new Set()
      mdns.on('response', r => {
        for (const a of [...r.answers, ...r.additionals]) {
          // only answers for this tag: the foreign daemon's answers to its own queries may pass by
          if (a.type !== 'TXT' || !a.name.endsWith('.' + process.argv[1])) continue
          for (const d of [].concat(a.data)) { const s = d.toString(); if (s.startsWith('dnsaddr=')) found.add(s.slice(8)) }
        }
      })
      mdns.query({ questions: [{ name: process.argv[1], type: 'PTR' }] })
      setTimeout(() => { process.stdout.write(JSON.stringify([...found])); mdns.destroy() }, 2000)`
    const out = await lab.execOk('foreign', [process.execPath, '-e', script, tag])
    const addrs = JSON.parse(out) as string[]
    const peers = new Set(addrs.map(a => a.split('/p2p/')[1]))
    expect(peers.size, out).toBe(NODES.length)
    const underlay = NODES.map(n => lab.node(n).underlay)
    for (const a of addrs) {
      const m = /^\/ip4\/([\d.]+)\/tcp\/10042\/p2p\/\w+$/.exec(a)
      expect(m, a).not.toBeNull()
      expect(underlay).toContain(m![1])
    }
  }, 30_000)

  it('a node with another PSK on the same bridge gets no members and a quiet log', async () => {
    const foreign = lab.daemons().find(d => d.node === 'foreign')!
    const status = await lab.execOk('foreign', [process.execPath, DAEMON_BIN, 'status', '--json', '--state-dir', lab.node('foreign').stateDir])
    expect((JSON.parse(status) as { members: unknown[] }).members).toEqual([])
    expect(await lab.wgPeers('foreign')).toEqual([])
    for (const n of NODES) expect(await lab.wgPeers(n)).toHaveLength(NODES.length - 1)
    const loud = (node: string): number => lab.daemons().find(d => d.node === node)!.logRecords().filter(r => typeof r.level === 'number' && r.level >= 40).length
    const counts = Object.fromEntries([...NODES, 'foreign'].map(n => [n, loud(n)]))
    console.log(`warn/error lines after ${Math.round((Date.now() - started) / 1000)} s: ${JSON.stringify(counts)}`)
    expect(foreign.running()).toBe(true)
    for (const n of Object.values(counts)) expect(n).toBeLessThanOrEqual(1)
  }, 30_000)
})
