import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { createLab, skipLab, sleep, waitFor, DAEMON_BIN, type Lab } from './lab.ts'

// Restarts must not drop a packet, and leaving must take effect everywhere at once.

const skip = skipLab()
const NODES = ['s1', 's2', 's3']

describe.skipIf(skip)('restart and leave (3 daemons)', () => {
  let lab: Lab
  let psk: string
  const args = (name: string, bootstrap: boolean): string[] =>
    lab.joinArgs(name, { pskFile: psk, overlayIpv4: '10.223.0.0/16', bootstrap: bootstrap ? [lab.bootstrapAddr('s1')] : [] })
  const fullMesh = async (nodes: string[]): Promise<void> => {
    await waitFor(async () => {
      const counts = await Promise.all(nodes.map(async n => (await lab.wgPeers(n)).filter(p => p.latestHandshake > 0).length))
      return counts.every(c => c === nodes.length - 1) ? true : undefined
    }, { timeoutMs: 30_000, intervalMs: 200 }).catch(err => { throw new Error(`${(err as Error).message}\n${lab.logTails(15)}`) })
  }

  beforeAll(async () => {
    lab = await createLab()
    for (const name of NODES) await lab.addNode(name)
    psk = await lab.genPsk()
    lab.spawnDaemon('s1', args('s1', false))
    for (const name of NODES.slice(1)) lab.spawnDaemon(name, args(name, true))
    await fullMesh(NODES)
  })

  afterAll(async () => {
    await lab?.destroy()
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('loses no ping while a daemon restarts without --bootstrap', async () => {
    const target = await lab.overlayAddresses('s2')
    const keyBefore = (await lab.wgDump('s2'))!.publicKey
    const pinger4 = lab.startPinger('s1', target.ipv4!)
    const pinger6 = lab.startPinger('s3', target.ipv6!)
    await sleep(2000)
    const old = lab.daemons().find(d => d.node === 's2' && d.running())!
    const exit = await old.stop('SIGTERM')
    expect(exit.code).toBe(0)
    expect((await lab.wgPeers('s2')).length).toBe(2) // the interface and its peers stay while no daemon runs
    const restarted = lab.spawnDaemon('s2', args('s2', false))
    await sleep(6000)
    const [stats4, stats6] = await Promise.all([pinger4.stop(), pinger6.stop()])
    console.log(`restart under 10 Hz ping: v4 sent ${stats4.sent} lost ${stats4.lost} longest gap ${stats4.longestGapMs} ms; v6 sent ${stats6.sent} lost ${stats6.lost} longest gap ${stats6.longestGapMs} ms`)
    expect(stats4.sent).toBeGreaterThanOrEqual(70)
    expect(stats4.lost).toBe(0)
    expect(stats6.lost).toBe(0)
    expect(restarted.running()).toBe(true)
    // same identity, same addresses, members restored from the dump, mesh complete again
    expect((await lab.wgDump('s2'))!.publicKey).toBe(keyBefore)
    expect(await lab.overlayAddresses('s2')).toEqual(target)
    expect(restarted.logRecords().some(r => r.msg === 'restored membership from the state dump' && r.members === 2)).toBe(true)
    await waitFor(() => restarted.logRecords().some(r => r.msg === 'member joined') ? true : undefined, { timeoutMs: 10_000 })
    await fullMesh(NODES)
  })

  it('leave removes the node everywhere within 2 s and deletes its interface', async () => {
    const leaverKey = (await lab.wgDump('s3'))!.publicKey
    const started = Date.now()
    const out = execFileSync('ip', ['netns', 'exec', lab.node('s3').ns, process.execPath, DAEMON_BIN, 'leave', '--state-dir', lab.node('s3').stateDir], { encoding: 'utf8' })
    expect(out).toContain('left the mesh')
    await waitFor(async () => {
      const peers = await Promise.all(['s1', 's2'].map(async n => (await lab.wgPeers(n)).map(p => p.publicKey)))
      return peers.every(p => !p.includes(leaverKey)) ? true : undefined
    }, { timeoutMs: 2000, intervalMs: 50 })
    console.log(`leave propagated to all members in ${Date.now() - started} ms`)
    expect(await lab.wgDump('s3')).toBeUndefined()
    const leaver = lab.daemons().find(d => d.node === 's3')!
    expect((await leaver.exited).code).toBe(0)
    // the tombstone keeps the member out: the others still see exactly each other
    await sleep(1000)
    for (const n of ['s1', 's2']) expect((await lab.wgPeers(n)).map(p => p.publicKey)).not.toContain(leaverKey)
  })
})
