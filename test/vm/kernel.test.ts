import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { createLab, execCmd, labPrerequisites, pidAlive, sleep, waitFor, type DaemonHandle, type Lab } from '../e2e/lab.ts'

// The kernel WireGuard path, end to end: real daemons in network namespaces with
// `ip link add ... type wireguard` devices, then kernel and wireguard-go nodes in one mesh.
// These machines' kernel has no WireGuard, so this runs inside a VM with a Debian kernel:
// `bash vm/test-kernel.sh` (vm/run.sh sets W2W_VM=1). Elsewhere it is skipped, unless
// W2W_KERNEL_WG=1 says this kernel has WireGuard. When it runs and the kernel has no
// WireGuard it fails; it never passes without having used the kernel path.
// Timeouts are generous: under TCG emulation Node runs 3-5 times slower than on the host.

const RUN = process.env.W2W_VM === '1' || process.env.W2W_KERNEL_WG === '1'
const KERNEL_NODES = ['k1', 'k2', 'k3', 'k4']
// One wireguard-go node is enough to prove kernel <-> userspace in both directions (it
// handshakes with all 4 kernel nodes); userspace <-> userspace is the host e2e suite's job,
// and each extra daemon costs ~40 s under emulation.
const USER_NODES = ['u1']
const OVERLAY_V4 = '198.19.0.0/16' // benchmark range, like the underlay (198.18.0.0/16)
const MESH_TIMEOUT_MS = 300_000
const T0 = Date.now()
const progress = (msg: string): void => { console.log(`[kernel-vm +${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}`) }

/** Every live wireguard-go process on the machine, by pid (not only the lab's; no zombies). */
function allWireguardGoPids (): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const argv0 = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')[0] ?? ''
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim()
      if ((basename(argv0) === 'wireguard-go' || comm === 'wireguard-go') && pidAlive(Number(entry))) pids.push(Number(entry))
    } catch { /* exited meanwhile */ }
  }
  return pids
}

describe.runIf(RUN)('kernel WireGuard (VM): 4 kernel nodes, restart, mixed mesh', () => {
  let lab: Lab
  let psk: string
  const args = (name: string, bootstrap: boolean): string[] =>
    lab.joinArgs(name, { pskFile: psk, overlayIpv4: OVERLAY_V4, bootstrap: bootstrap ? [lab.bootstrapAddr('k1')] : [] })

  /**
   * Every node has a handshake with every other node. Polled gently, one node at a time and
   * only the ones not yet complete: every `ip netns exec wg` costs ~0.3 s of emulated CPU,
   * which the daemons need more.
   */
  const fullMesh = async (nodes: string[]): Promise<void> => {
    const t0 = Date.now()
    const done = new Set<string>()
    await waitFor(async () => {
      for (const n of nodes) {
        if (done.has(n)) continue
        const peers = (await lab.wgPeers(n)).filter(p => p.latestHandshake > 0).length
        if (peers === nodes.length - 1) done.add(n)
      }
      return done.size === nodes.length ? true : undefined
    }, { timeoutMs: MESH_TIMEOUT_MS, intervalMs: 3000, what: `a full mesh of ${nodes.join(', ')}` })
      .catch(err => { throw new Error(`${(err as Error).message}; complete: ${[...done].join(', ') || 'none'}\n${lab.logTails(25)}`) })
    progress(`full mesh of ${nodes.length} nodes after ${Date.now() - t0} ms`)
  }

  /** The implementation the daemon logged with "wireguard interface ready". */
  const readyImplementation = async (d: DaemonHandle): Promise<unknown> =>
    (await d.waitForLog(r => r.msg === 'wireguard interface ready', MESH_TIMEOUT_MS)).implementation

  const linkKind = async (node: string): Promise<string> => {
    const out = await lab.execOk(node, ['ip', '-d', 'link', 'show', 'dev', lab.node(node).wgIf])
    // `ip -d link` prints the kind as the first word of the line after link/...
    return /\n\s+(wireguard|tun)\b/.exec(out)?.[1] ?? out
  }

  const pingAll = async (nodes: string[]): Promise<void> => {
    for (const family of [4, 6] as const) {
      // A lost first packet (neighbour discovery, a handshake in flight) is not a failure:
      // retry the matrix until it is clean.
      let last = ''
      await waitFor(async () => {
        const m = await lab.pingMatrix(nodes, { family, count: 2, timeoutMs: 3000, concurrency: 6 })
        last = m.text
        return m.ok ? true : undefined
      }, { timeoutMs: 90_000, intervalMs: 1000, what: `all pairs to ping over IPv${family}` })
        .catch(err => { throw new Error(`${(err as Error).message}\n${last}\n${lab.logTails(10)}`) })
      progress(`all pairs ping over IPv${family}\n${last}`)
    }
  }

  beforeAll(async () => {
    const missing = labPrerequisites()
    if (missing.length > 0) throw new Error(`the VM lacks lab prerequisites: ${missing.join(', ')}`)
    const probe = await execCmd(['modprobe', 'wireguard'])
    if (probe.code !== 0 || !existsSync('/sys/module/wireguard')) {
      throw new Error(`this kernel (${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}) has no WireGuard module: ${probe.stderr.trim()}`)
    }
    lab = await createLab({ prefix: 'w2vm' })
    for (const name of KERNEL_NODES) await lab.addNode(name)
    psk = await lab.genPsk()
  }, MESH_TIMEOUT_MS)

  afterAll(async () => {
    if (lab === undefined) return
    await lab.destroy()
    expect(lab.leftovers()).toEqual({ namespaces: [], pids: [], sockets: [], rootLinks: [] })
  })

  it('4 daemons on kernel devices: full mesh, all pairs ping, 3 peers each, no wireguard-go', async () => {
    const t0 = Date.now()
    // Staggered: each daemon starts once the previous one listens. Under emulation four
    // Node start-ups at once on 2 vCPUs only make every one of them slower.
    const daemons: DaemonHandle[] = []
    for (const name of KERNEL_NODES) {
      const d = lab.spawnDaemon(name, args(name, name !== 'k1'))
      daemons.push(d)
      await d.waitForLog(r => r.msg === 'libp2p listening', MESH_TIMEOUT_MS)
      progress(`${name} listening`)
    }
    for (const d of daemons) expect(await readyImplementation(d), `${d.node} implementation`).toBe('kernel')
    progress('all 4 interfaces ready (kernel)')
    await fullMesh(KERNEL_NODES)
    await pingAll(KERNEL_NODES)
    for (const name of KERNEL_NODES) {
      const peers = await lab.wgPeers(name)
      expect(peers.length, `wg show on ${name}`).toBe(3)
      expect(await linkKind(name), `ip -d link show on ${name}`).toBe('wireguard')
      const show = await lab.execOk(name, ['wg', 'show', lab.node(name).wgIf])
      expect(show.match(/^peer: /gm)?.length, `wg show ${lab.node(name).wgIf} on ${name}`).toBe(3)
    }
    // The proof that nothing fell back to userspace: no wireguard-go anywhere, no UAPI socket.
    expect(allWireguardGoPids()).toEqual([])
    const sockets = existsSync('/run/wireguard') ? readdirSync('/run/wireguard') : []
    expect(sockets).toEqual([])
    progress(`kernel mesh of 4 up and verified in ${Date.now() - t0} ms`)
  }, 2 * MESH_TIMEOUT_MS)

  it('a daemon restart under a 10 Hz ping loses nothing: the kernel device stays up', async () => {
    const target = await lab.overlayAddresses('k2')
    expect(target.ipv4).toBeDefined()
    expect(target.ipv6).toBeDefined()
    const keyBefore = (await lab.wgDump('k2'))!.publicKey
    const pinger4 = lab.startPinger('k1', target.ipv4!)
    const pinger6 = lab.startPinger('k3', target.ipv6!)
    await sleep(2000)
    const old = lab.daemons().find(d => d.node === 'k2' && d.running())!
    const t0 = Date.now()
    expect((await old.stop('SIGTERM', 20_000)).code).toBe(0)
    // No daemon runs now: the kernel device and its peers carry the traffic on their own.
    expect(await linkKind('k2')).toBe('wireguard')
    expect((await lab.wgPeers('k2')).length).toBe(3)
    const restarted = lab.spawnDaemon('k2', args('k2', true))
    expect(await readyImplementation(restarted)).toBe('kernel')
    const readyMs = Date.now() - t0
    await sleep(3000)
    const [stats4, stats6] = await Promise.all([pinger4.stop(), pinger6.stop()])
    progress(`kernel restart under 10 Hz ping (ready again ${readyMs} ms after SIGTERM): ` +
      `v4 sent ${stats4.sent} lost ${stats4.lost} longest gap ${stats4.longestGapMs} ms; ` +
      `v6 sent ${stats6.sent} lost ${stats6.lost} longest gap ${stats6.longestGapMs} ms`)
    expect(stats4.sent).toBeGreaterThanOrEqual(40)
    expect(stats6.sent).toBeGreaterThanOrEqual(40)
    expect(stats4.lost).toBe(0)
    expect(stats6.lost).toBe(0)
    expect(restarted.running()).toBe(true)
    expect((await lab.wgDump('k2'))!.publicKey).toBe(keyBefore)
    expect(await lab.overlayAddresses('k2')).toEqual(target)
    expect(allWireguardGoPids()).toEqual([])
    await fullMesh(KERNEL_NODES)
  }, 2 * MESH_TIMEOUT_MS)

  it('mixed mesh: a wireguard-go node joins the 4 kernel nodes and they interoperate', async () => {
    // The CLI has no flag to force userspace: pre-create a wireguard-go interface with the
    // node's name, which the daemon adopts (and logs as implementation "userspace").
    for (const name of USER_NODES) {
      await lab.addNode(name)
      await lab.execOk(name, ['wireguard-go', lab.node(name).wgIf])
      expect(await linkKind(name)).toBe('tun')
    }
    const t0 = Date.now()
    const daemons: DaemonHandle[] = []
    for (const name of USER_NODES) {
      const d = lab.spawnDaemon(name, args(name, true))
      daemons.push(d)
      await d.waitForLog(r => r.msg === 'libp2p listening', MESH_TIMEOUT_MS)
    }
    for (const d of daemons) expect(await readyImplementation(d), `${d.node} implementation`).toBe('userspace')
    progress(`userspace node(s) ${USER_NODES.join(', ')} ready (adopted wireguard-go interfaces)`)
    const all = [...KERNEL_NODES, ...USER_NODES]
    await fullMesh(all)
    // Kernel <-> kernel pairs were proven above: ping every pair with a userspace end, both
    // directions, IPv4 and IPv6.
    const addrs = new Map(await Promise.all(all.map(async n => [n, await lab.overlayAddresses(n)] as const)))
    const pairs = USER_NODES.flatMap(u => all.filter(n => n !== u).flatMap(n => [[u, n], [n, u]] as const))
      .filter(([a, b], i, list) => list.findIndex(([c, d]) => c === a && d === b) === i)
    for (const family of [4, 6] as const) {
      for (const [from, to] of pairs) {
        const addr = family === 4 ? addrs.get(to)?.ipv4 : addrs.get(to)?.ipv6
        expect(addr, `IPv${family} address of ${to}`).toBeDefined()
        await waitFor(async () => await lab.ping(from, addr!, { timeoutMs: 3000 }), { timeoutMs: 60_000, intervalMs: 1000, what: `${from} -> ${to} (${addr}) to ping` })
          .catch(err => { throw new Error(`${(err as Error).message}\n${lab.logTails(10)}`) })
      }
      progress(`IPv${family}: ${pairs.map(([a, b]) => `${a}->${b}`).join(' ')} ok`)
    }
    for (const name of all) {
      expect((await lab.wgPeers(name)).length, `wg show on ${name}`).toBe(all.length - 1)
      expect(await linkKind(name), `ip -d link show on ${name}`).toBe(KERNEL_NODES.includes(name) ? 'wireguard' : 'tun')
    }
    // Exactly the userspace nodes run wireguard-go.
    expect(allWireguardGoPids().length).toBe(USER_NODES.length)
    progress(`mixed mesh of ${all.length} (${KERNEL_NODES.length} kernel, ${USER_NODES.length} wireguard-go) verified in ${Date.now() - t0} ms`)
  }, 2 * MESH_TIMEOUT_MS)
})
