import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createLab, skipLab, waitFor, DAEMON_BIN, type Lab } from './lab.ts'
import type { StatusReport } from '../../src/control/status.ts'

// NAT traversal for the WireGuard socket: x and y sit behind their own NAT box (nftables
// masquerade, which keeps the source port when it is free); p is public. x and y learn their
// NATs' public addresses through identify (p observes them), gossip them, and punch through:
// their tunnel is direct, NAT to NAT, never through p.

const skip = skipLab()
const MEMBERS = ['p', 'x', 'y']

describe.skipIf(skip)('NAT traversal (public node + two nodes behind masquerading NATs)', () => {
  let lab: Lab

  beforeAll(async () => {
    lab = await createLab()
    await lab.addNode('p')
    await lab.addNat('natx')
    await lab.addNat('naty')
    await lab.addNode('x', { behindNat: 'natx' })
    await lab.addNode('y', { behindNat: 'naty' })
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('gives the two NATed nodes a direct tunnel between the NATs\' public addresses', async () => {
    // the NATs really are in the way: x cannot reach y's own address
    expect(await lab.ping('x', lab.node('y').underlay, { timeoutMs: 500 })).toBe(false)
    const psk = await lab.genPsk()
    const started = Date.now()
    lab.spawnDaemon('p', lab.joinArgs('p', { pskFile: psk, overlayIpv4: '10.223.0.0/16' }))
    for (const n of ['x', 'y']) lab.spawnDaemon(n, lab.joinArgs(n, { pskFile: psk, overlayIpv4: '10.223.0.0/16', bootstrap: [lab.bootstrapAddr('p')] }))
    let xy = 0
    try {
      await waitFor(async () => {
        const counts = await Promise.all(MEMBERS.map(async n => (await lab.wgPeers(n)).filter(p => p.latestHandshake > 0).length))
        if (xy === 0 && counts[1] === 2) xy = Date.now() - started
        return counts.every(c => c === 2) ? true : undefined
      }, { timeoutMs: 45_000, intervalMs: 200 })
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${lab.logTails(25)}`)
    }
    const all = Date.now() - started
    const [xKey, yKey] = await Promise.all(['x', 'y'].map(async n => (await lab.wgDump(n))!.publicKey))
    const xToY = (await lab.wgPeers('x')).find(p => p.publicKey === yKey)!
    const yToX = (await lab.wgPeers('y')).find(p => p.publicKey === xKey)!
    expect(xToY.endpoint).toBe(`${lab.node('naty').underlay}:10042`)
    expect(yToX.endpoint).toBe(`${lab.node('natx').underlay}:10042`)
    const yAddr = (await lab.overlayAddresses('y')).ipv4!
    const xAddr = (await lab.overlayAddresses('x')).ipv4!
    expect(await lab.ping('x', yAddr, { count: 3, timeoutMs: 2000 })).toBe(true)
    expect(await lab.ping('y', xAddr, { count: 3, timeoutMs: 2000 })).toBe(true)
    const matrix = await lab.pingMatrix(MEMBERS, { family: 6, count: 2, timeoutMs: 2000 })
    expect(matrix.failures, matrix.text).toEqual([])
    // x published its NAT's public address (observed by p) among its candidates
    const status = JSON.parse(await lab.execOk('y', [process.execPath, DAEMON_BIN, 'status', '--json', '--state-dir', lab.node('y').stateDir])) as StatusReport
    const x = status.members.find(m => m.name === 'x')!
    expect(x.candidates).toContain(`${lab.node('natx').underlay}:10042`)
    expect(x.state).toBe('ok')
    console.log(`nat: x<->y direct tunnel (endpoints ${xToY.endpoint} / ${yToX.endpoint}) after ${xy} ms, all tunnels ${all} ms after start`)
  })

  it('says no-direct-path in status when the NAT cannot be punched', async () => {
    // natx now picks a random port for every new mapping (like a symmetric NAT): the port a
    // member behind it advertises is wrong for everyone but the peer it is talking to
    const rules = await lab.execOk('natx', ['nft', '-a', 'list', 'chain', 'ip', 'w2nat', 'postrouting'])
    const handle = /masquerade # handle (\d+)/.exec(rules)?.[1]
    expect(handle).toBeDefined()
    await lab.execOk('natx', ['nft', 'replace', 'rule', 'ip', 'w2nat', 'postrouting', 'handle', handle!, 'oifname', 'eth0', 'masquerade', 'random'])
    await lab.addNode('z', { behindNat: 'natx' })
    const psk = lab.daemons()[0]!.args[lab.daemons()[0]!.args.indexOf('--psk-file') + 1]!
    const started = Date.now()
    lab.spawnDaemon('z', lab.joinArgs('z', { pskFile: psk, overlayIpv4: '10.223.0.0/16', bootstrap: [lab.bootstrapAddr('p')] }))
    const z = await waitFor(async () => {
      const r = await lab.exec('y', [process.execPath, DAEMON_BIN, 'status', '--json', '--state-dir', lab.node('y').stateDir])
      if (r.code !== 0) return undefined
      const member = (JSON.parse(r.stdout) as StatusReport).members.find(m => m.name === 'z')
      return member?.state === 'no-direct-path' ? member : undefined
    }, { timeoutMs: 45_000, intervalMs: 500 }).catch(err => { throw new Error(`${(err as Error).message}\n${lab.logTails(20)}`) })
    console.log(`nat: y reports z as no-direct-path after ${Date.now() - started} ms (candidates ${z.candidates.join(', ')})`)
    expect(z.handshakeAgeSeconds).toBeNull()
    expect(z.candidates).toContain(`${lab.node('natx').underlay}:10042`)
    const y = lab.daemons().find(d => d.node === 'y')!
    expect(y.logRecords().some(r => String(r.msg).startsWith('no direct WireGuard path') && r.name === 'z')).toBe(true)
    // the public node still reaches z (z writes first; p follows the NAT's mapping)
    const zAddr = (await lab.overlayAddresses('z')).ipv4!
    expect(await waitFor(() => lab.ping('p', zAddr, { timeoutMs: 1000 }), { timeoutMs: 15_000, intervalMs: 0 })).toBe(true)
  })
})
