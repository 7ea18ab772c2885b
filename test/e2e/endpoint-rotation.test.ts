import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createLab, skipLab, waitFor, DAEMON_BIN, type Lab } from './lab.ts'
import type { StatusReport } from '../../src/control/status.ts'

// Endpoint rotation: node r has two underlay interfaces. Its first candidate (eth0, which its
// libp2p connections use too) drops WireGuard's UDP, as a firewall that passes TCP only would.
// The others start with that address, get no handshake, and rotate to r's second interface.

const skip = skipLab()
const NODES = ['a', 'b', 'r']

describe.skipIf(skip)('endpoint rotation (3 daemons, two underlays)', () => {
  let lab: Lab
  const second = new Map<string, string>()

  beforeAll(async () => {
    lab = await createLab()
    for (const name of NODES) await lab.addNode(name)
    for (const name of NODES) second.set(name, (await lab.addUnderlay(name, 'b')).address)
    await lab.execOk('r', ['nft', '-f', '-'], {
      input: 'table inet w2fw {\n  chain input { type filter hook input priority filter; policy accept; iifname "eth0" udp dport 10042 drop; }\n}\n'
    })
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('gets a working tunnel from every member to r through its second interface', async () => {
    const psk = await lab.genPsk()
    const started = Date.now()
    lab.spawnDaemon('a', lab.joinArgs('a', { pskFile: psk, overlayIpv4: '10.223.0.0/16' }))
    for (const name of ['b', 'r']) lab.spawnDaemon(name, lab.joinArgs(name, { pskFile: psk, overlayIpv4: '10.223.0.0/16', bootstrap: [lab.bootstrapAddr('a')] }))
    try {
      const seen = new Map<string, number>()
      await waitFor(async () => {
        const counts = await Promise.all(NODES.map(async n => {
          const peers = await lab.wgPeers(n)
          for (const p of peers) if (p.latestHandshake > 0 && !seen.has(`${n}>${p.publicKey}`)) seen.set(`${n}>${p.publicKey}`, Date.now() - started)
          return peers.filter(p => p.latestHandshake > 0).length
        }))
        return counts.every(c => c === NODES.length - 1) ? true : undefined
      }, { timeoutMs: 40_000, intervalMs: 200 })
      const names = new Map(await Promise.all(NODES.map(async n => [(await lab.wgDump(n))!.publicKey, n] as const)))
      const pairs = [...seen].map(([k, t]) => `${k.split('>')[0]!}>${names.get(k.split('>')[1]!) ?? '?'} ${t}`)
      console.log(`endpoint rotation: first handshake seen, ms after start: ${pairs.join(', ')}`)
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${lab.logTails(20)}`)
    }
    const handshakes = Date.now() - started
    const rKey = (await lab.wgDump('r'))!.publicKey
    const matrix = await lab.pingMatrix(NODES, { family: 4, count: 3, timeoutMs: 2000 })
    expect(matrix.failures, matrix.text).toEqual([])
    const all = Date.now() - started
    console.log(`endpoint rotation: all ${NODES.length * (NODES.length - 1) / 2} tunnels handshaken ${handshakes} ms after start, full ping matrix at ${all} ms`)
    // the members reach r at its second address: the first one (eth0) never carried WireGuard
    for (const n of ['a', 'b']) {
      const toR = (await lab.wgPeers(n)).find(p => p.publicKey === rKey)!
      expect(toR.endpoint).toBe(`${second.get('r')!}:10042`)
    }
    // and eth0 (the libp2p connection's host) was their first candidate
    const status = JSON.parse(await lab.execOk('a', [process.execPath, DAEMON_BIN, 'status', '--json', '--state-dir', lab.node('a').stateDir])) as StatusReport
    const r = status.members.find(m => m.name === 'r')!
    expect(r.candidates).toEqual([`${lab.node('r').underlay}:10042`, `${second.get('r')!}:10042`])
    expect(r.state).toBe('ok')
  })
})
