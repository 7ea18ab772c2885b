import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { createLab, skipLab, waitFor, type Lab } from './lab.ts'

// Production runs as an unprivileged user holding only CAP_NET_ADMIN (the systemd unit's
// AmbientCapabilities). Here every daemon runs as `nobody` through setpriv, with exactly
// that capability in its ambient, inheritable and bounding sets.

const skip = skipLab()
const NODES = ['u1', 'u2', 'u3']
const NOBODY = 65534
const SETPRIV = [
  'setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups',
  '--inh-caps=-all,+net_admin', '--ambient-caps=-all,+net_admin', '--bounding-set=-all,+net_admin', '--'
]
// wireguard-go keeps its control socket in /run/wireguard; the systemd unit gives the
// service user its own (RuntimeDirectory=wireguard). Here: make the shared one sticky and
// world-writable for the test, and put it back afterwards.
const SOCKET_DIR = '/run/wireguard'
// wireguard-go opens /dev/net/tun, which udev makes 0666; without udev (containers, minimal
// VMs such as this lab's) the kernel leaves it 0600. The test sets what udev would, and puts
// the old mode back afterwards.
const TUN = '/dev/net/tun'

describe.skipIf(skip)('unprivileged daemons (nobody + ambient CAP_NET_ADMIN)', () => {
  let lab: Lab
  let socketDirMode: number | undefined
  let tunMode: number | undefined

  beforeAll(async () => {
    mkdirSync(SOCKET_DIR, { recursive: true, mode: 0o755 })
    socketDirMode = statSync(SOCKET_DIR).mode & 0o7777
    chmodSync(SOCKET_DIR, 0o1777)
    tunMode = statSync(TUN).mode & 0o7777
    lab = await createLab()
    chmodSync(lab.dir, 0o711) // nobody must traverse the lab's private temp dir
    for (const name of NODES) {
      const node = await lab.addNode(name)
      // the daemon creates its state dir itself; the parent must be writable by its user
      chownSync(node.dir, NOBODY, NOBODY)
      mkdirSync(node.stateDir, { recursive: true })
      chownSync(node.stateDir, NOBODY, NOBODY)
    }
  })

  afterAll(async () => {
    await lab?.destroy()
    if (socketDirMode !== undefined) chmodSync(SOCKET_DIR, socketDirMode)
    if (tunMode !== undefined) chmodSync(TUN, tunMode)
    if (lab !== undefined) expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('says what is missing when it may not open /dev/net/tun', async () => {
    chmodSync(TUN, 0o600)
    const psk = await lab.genPsk()
    chownSync(psk, NOBODY, NOBODY)
    const daemon = lab.spawnDaemon('u1', lab.joinArgs('u1', { pskFile: psk }), { wrap: SETPRIV })
    const exit = await Promise.race([daemon.exited, new Promise<undefined>(resolve => setTimeout(resolve, 20_000))])
    expect(exit?.code, daemon.tail(10)).toBe(1)
    expect(daemon.logs()).toMatch(/Failed to create TUN device: permission denied \(this user needs read and write access to \/dev\/net\/tun/)
  })

  it('forms the mesh, all pairs ping, and state is private', async () => {
    chmodSync(TUN, 0o666)
    const psk = await lab.genPsk()
    chownSync(psk, NOBODY, NOBODY)
    const args = (name: string, bootstrap: boolean): string[] =>
      lab.joinArgs(name, { pskFile: psk, overlayIpv4: '10.223.0.0/16', bootstrap: bootstrap ? [lab.bootstrapAddr('u1')] : [] })
    for (const [i, name] of NODES.entries()) lab.spawnDaemon(name, args(name, i > 0), { wrap: SETPRIV })

    await waitFor(async () => {
      const counts = await Promise.all(NODES.map(async n => (await lab.wgPeers(n)).length))
      return counts.every(c => c === NODES.length - 1) ? true : undefined
    }, { timeoutMs: 40_000, intervalMs: 300 }).catch(err => { throw new Error(`${(err as Error).message}\n${lab.logTails(15)}`) })
    const matrix = await waitFor(async () => {
      const m = await lab.pingMatrix(NODES, { family: 6, count: 1, timeoutMs: 1000 })
      return m.ok ? m : undefined
    }, { timeoutMs: 20_000, intervalMs: 500 })
    expect(matrix.failures).toEqual([])

    for (const name of NODES) {
      const daemon = lab.daemons().find(d => d.node === name && d.running())!
      // the daemon really is nobody, holding CAP_NET_ADMIN (bit 12) and nothing else
      const proc = readFileSyncSafe(`/proc/${daemon.pid}/status`)
      expect(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m.test(proc), proc).toBe(true)
      expect(/^CapEff:\s+0000000000001000$/m.test(proc), proc).toBe(true)
      expect(/^CapBnd:\s+0000000000001000$/m.test(proc), proc).toBe(true)
      const { stateDir } = lab.node(name)
      expect(statSync(stateDir).mode & 0o777).toBe(0o700)
      expect(statSync(stateDir).uid).toBe(NOBODY)
      // the dump follows the first membership change, which may be just after the pings
      await waitFor(() => existsSync(join(stateDir, 'state.json')) ? true : undefined, { timeoutMs: 5_000, intervalMs: 100 })
      const files = readdirSync(stateDir).filter(f => !f.endsWith('.sock') && !f.endsWith('.tmp'))
      expect(files).toEqual(expect.arrayContaining(['libp2p.key', 'wireguard.key', 'state.json']))
      for (const f of files) expect(statSync(join(stateDir, f)).mode & 0o777, f).toBe(0o600)
      expect(statSync(join(stateDir, 'control.sock')).mode & 0o777).toBe(0o600)
    }
  })
})

function readFileSyncSafe (path: string): string {
  try { return readFileSync(path, 'utf8') } catch { return '' }
}
