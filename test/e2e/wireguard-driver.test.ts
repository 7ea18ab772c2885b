// The real WireGuard driver against real devices: two network namespaces joined by a veth
// pair, one driver-managed interface in each, peers of each other, pings across the tunnel.
// Needs root, iproute2, wireguard-tools, wireguard-go (or kernel WireGuard) and ping;
// skipped otherwise. The driver runs inside each namespace in a small child process
// (`ip netns exec NS node …`) that answers driver calls as JSON lines.
//
// Cleanup: every namespace (w2wt-drv-<id>-*) and interface this file made is deleted in
// afterAll, even after a failure; deleting an interface ends its wireguard-go. Interface
// names carry a random id because wireguard-go's control socket directory
// (/var/run/wireguard) is shared by every namespace.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RouteChange, WgDevice, WgImplementation, WgInterfaceConfig, WgPeerConfig } from '../../src/wireguard/driver.ts'
import { generateWgKeyPair } from '../../src/wireguard/keys.ts'
import { parseIpJson, type IpLinkInfo } from '../../src/wireguard/parse.ts'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const DRIVER_URL = pathToFileURL(resolve(REPO, 'src/wireguard/system.ts')).href
const ENV = { ...process.env, PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/local/sbin:/usr/sbin:/sbin` }

function sh (cmd: string, args: string[], input?: string): { code: number, stdout: string, stderr: string } {
  const r = spawnSync(cmd, args, { env: ENV, timeout: 20_000, encoding: 'utf8', ...(input === undefined ? {} : { input }) })
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' }
}
function must (cmd: string, args: string[]): string {
  const r = sh(cmd, args)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}

const canRun = process.platform === 'linux' && process.getuid?.() === 0 &&
  ['ip', 'wg', 'wireguard-go', 'ping'].every((c) => sh('which', [c]).code === 0)

// ---------------------------------------------------------------------------------------
// A driver living in a namespace, driven over JSON lines.

const CHILD_CODE = `
import { createInterface } from 'node:readline'
const { createSystemDriver } = await import(process.env.W2WT_DRIVER_URL)
const logs = []
const d = createSystemDriver({ log: (level, msg) => logs.push({ level, msg }) })
for await (const line of createInterface({ input: process.stdin })) {
  const { id, op, args } = JSON.parse(line)
  let reply
  try {
    const result = op === 'logs' ? logs.splice(0) : op === 'implementation' ? d.implementation() : await d[op](...args)
    reply = { id, ok: true, result: result ?? null }
  } catch (e) {
    reply = { id, ok: false, error: String(e && e.message ? e.message : e) }
  }
  process.stdout.write(JSON.stringify(reply) + '\\n')
}
`

interface RemoteDriver {
  child: ChildProcess
  ensureInterface (cfg: WgInterfaceConfig): Promise<void>
  read (name: string): Promise<WgDevice | undefined>
  setPeers (name: string, upserts: WgPeerConfig[], removals: string[]): Promise<void>
  triggerHandshake (name: string, address: string): Promise<void>
  setRoutes (name: string, routes: string[]): Promise<RouteChange>
  destroy (name: string): Promise<void>
  implementation (): Promise<WgImplementation | undefined>
  /** log lines since the last call */
  logs (): Promise<Array<{ level: string, msg: string }>>
  stop (): Promise<void>
}

function startRemote (ns: string): RemoteDriver {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', '--input-type=module', '-e', CHILD_CODE], {
    cwd: REPO,
    env: { ...ENV, W2WT_DRIVER_URL: DRIVER_URL },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  let stderr = ''
  child.stderr!.on('data', (b: Buffer) => { stderr += b.toString() })
  const waiting = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  let nextId = 1
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const r = JSON.parse(line) as { id: number, ok: boolean, result?: unknown, error?: string }
    const w = waiting.get(r.id)
    waiting.delete(r.id)
    if (r.ok) w?.resolve(r.result)
    else w?.reject(new Error(r.error))
  })
  child.on('exit', () => {
    for (const w of waiting.values()) w.reject(new Error(`driver child in ${ns} exited: ${stderr.trim()}`))
    waiting.clear()
  })
  const call = (op: string, ...args: unknown[]): Promise<unknown> => new Promise((resolve, reject) => {
    const id = nextId++
    waiting.set(id, { resolve, reject })
    child.stdin!.write(`${JSON.stringify({ id, op, args })}\n`)
  })
  return {
    child,
    ensureInterface: async (cfg) => { await call('ensureInterface', cfg) },
    read: async (name) => ((await call('read', name)) ?? undefined) as WgDevice | undefined,
    setPeers: async (name, u, r) => { await call('setPeers', name, u, r) },
    triggerHandshake: async (name, a) => { await call('triggerHandshake', name, a) },
    setRoutes: async (name, routes) => (await call('setRoutes', name, routes)) as RouteChange,
    destroy: async (name) => { await call('destroy', name) },
    implementation: async () => ((await call('implementation')) ?? undefined) as WgImplementation | undefined,
    logs: async () => (await call('logs')) as Array<{ level: string, msg: string }>,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill('SIGTERM') // by the pid we started, nothing else
    })
  }
}

/** Mutating commands the driver ran (it logs each one at debug as "wireguard: ip …" / "wireguard: wg …" / "wireguard: uapi …"). */
const mutations = (logs: Array<{ msg: string }>): string[] =>
  logs.map((l) => l.msg).filter((m) => /^wireguard: (ip|wg|uapi) /.test(m))

/** pid of the wireguard-go serving `ifname` (exact argv match, read-only). */
function wireguardGoPid (ifname: string): number | undefined {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').filter((a) => a !== '')
      if (argv.length === 2 && argv[0]!.endsWith('wireguard-go') && argv[1] === ifname) return Number(e)
    } catch { /* gone */ }
  }
  return undefined
}

/** Running, i.e. exists and is not a zombie waiting for init to reap it. */
const alive = (pid: number): boolean => {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))
  } catch {
    return false
  }
}

async function until<T> (what: string, fn: () => Promise<T | undefined | false>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

// ---------------------------------------------------------------------------------------

describe.skipIf(!canRun)('system WireGuard driver (real devices in network namespaces)', () => {
  const id = randomBytes(3).toString('hex')
  const nsA = `w2wt-drv-${id}-a`
  const nsB = `w2wt-drv-${id}-b`
  const ifA = `w2wd${id}a`
  const ifB = `w2wd${id}b`
  const keyA = generateWgKeyPair()
  const keyB = generateWgKeyPair()
  const keyC = generateWgKeyPair()
  const cfgA: WgInterfaceConfig = { name: ifA, privateKey: keyA.privateKey, listenPort: 10042, mtu: 1380, addresses: ['fd00:1::1/64', '198.18.200.1/24'] }
  const cfgB: WgInterfaceConfig = { name: ifB, privateKey: keyB.privateKey, listenPort: 10043, mtu: 1380, addresses: ['fd00:1::2/64', '198.18.200.2/24'] }
  const peerBonA: WgPeerConfig = { publicKey: keyB.publicKey, endpoint: '198.18.201.2:10043', allowedIps: ['fd00:1::2/128', '198.18.200.2/32'], persistentKeepalive: 0 }
  const peerAonB: WgPeerConfig = { publicKey: keyA.publicKey, endpoint: '198.18.201.1:10042', allowedIps: ['fd00:1::1/128', '198.18.200.1/32'], persistentKeepalive: 0 }
  const peerConA: WgPeerConfig = { publicKey: keyC.publicKey, endpoint: '198.18.201.99:10044', allowedIps: ['198.18.200.99/32'], persistentKeepalive: 0 }
  const remotes: RemoteDriver[] = []
  let a: RemoteDriver
  let b: RemoteDriver

  const ping = (ns: string, addr: string) => sh('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '2', addr])
  const peerOf = (dev: WgDevice | undefined, key: string) => dev?.peers.find((p) => p.publicKey === key)
  /** MTU, state and addresses as `ip` sees them (read() reports the WireGuard side only) */
  const link = (ns: string, ifname: string): IpLinkInfo => parseIpJson(must('ip', ['-n', ns, '-json', '-d', 'addr', 'show', 'dev', ifname]))

  beforeAll(() => {
    for (const ifname of [ifA, ifB]) {
      if (existsSync(`/var/run/wireguard/${ifname}.sock`)) throw new Error(`/var/run/wireguard/${ifname}.sock already exists`)
    }
    must('ip', ['netns', 'add', nsA])
    must('ip', ['netns', 'add', nsB])
    must('ip', ['-n', nsA, 'link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth0', 'netns', nsB])
    must('ip', ['-n', nsA, 'addr', 'add', '198.18.201.1/24', 'dev', 'veth0'])
    must('ip', ['-n', nsB, 'addr', 'add', '198.18.201.2/24', 'dev', 'veth0'])
    for (const ns of [nsA, nsB]) {
      must('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      must('ip', ['-n', ns, 'link', 'set', 'veth0', 'up'])
    }
    a = startRemote(nsA)
    b = startRemote(nsB)
    remotes.push(a, b)
  })

  afterAll(async () => {
    const errors: string[] = []
    try {
      for (const r of remotes) await r.stop()
    } finally {
      for (const [ns, ifname] of [[nsA, ifA], [nsB, ifB]] as const) {
        sh('ip', ['-n', ns, 'link', 'del', 'dev', ifname]) // ends its wireguard-go
        const r = sh('ip', ['netns', 'del', ns])
        if (r.code !== 0 && !/No such file/.test(r.stderr)) errors.push(`ip netns del ${ns}: ${r.stderr.trim()}`)
      }
      for (const ifname of [ifA, ifB]) {
        const deadline = Date.now() + 3000
        while (wireguardGoPid(ifname) !== undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
        if (wireguardGoPid(ifname) !== undefined) errors.push(`wireguard-go for ${ifname} still running`)
      }
    }
    if (errors.length > 0) throw new Error(errors.join('; '))
  })

  it('creates and configures both interfaces', async () => {
    await a.implementation() // the child is up (node + tsx start-up is not the driver's time)
    await b.implementation()
    const t0 = Date.now()
    await a.ensureInterface(cfgA)
    const ms = Date.now() - t0
    await b.ensureInterface(cfgB)
    const impl = await a.implementation()
    expect(['kernel', 'userspace']).toContain(impl)
    const logs = await a.logs()
    console.info(`ensureInterface (create, ${impl}) took ${ms} ms; ${logs.find((l) => /started|created/.test(l.msg))?.msg ?? ''}`)
    // wireguard-go gets its key and port over its control socket (the key never in a log)
    if (impl === 'userspace') expect(mutations(logs)).toContain(`wireguard: uapi set ${ifA} private-key (hidden) listen-port 10042`)
    expect(JSON.stringify(logs)).not.toContain(keyA.privateKey)

    expect(await a.read(ifA)).toEqual({ name: ifA, publicKey: keyA.publicKey, listenPort: 10042, peers: [] })
    expect(link(nsA, ifA)).toMatchObject({ mtu: 1380, up: true, addresses: ['198.18.200.1/24', 'fd00:1::1/64'] })
    expect((await b.read(ifB))!.publicKey).toBe(keyB.publicKey)
    if (impl === 'userspace') expect(wireguardGoPid(ifA)).toBeGreaterThan(0)
  })

  it('a second ensureInterface with the same config runs no mutating command', async () => {
    await a.logs()
    await a.ensureInterface({ ...cfgA, addresses: ['198.18.200.1/24', 'FD00:1:0::1/64'] })
    expect(mutations(await a.logs())).toEqual([])
  })

  it('sets peers in one batch; a trigger handshakes; pings cross the tunnel', async () => {
    await a.logs()
    await a.setPeers(ifA, [peerBonA, peerConA], [])
    await b.setPeers(ifB, [peerAonB], [])
    if (await a.implementation() === 'userspace') expect(mutations(await a.logs())).toEqual([`wireguard: uapi set ${ifA}: 2 upserts, 0 removals`])
    const devA = (await a.read(ifA))!
    expect(devA.peers.map((p) => p.publicKey).sort()).toEqual([keyB.publicKey, keyC.publicKey].sort())
    expect(peerOf(devA, keyB.publicKey)).toMatchObject({
      endpoint: '198.18.201.2:10043', allowedIps: ['198.18.200.2/32', 'fd00:1::2/128'], persistentKeepalive: 0
    })
    // without keepalive nothing is sent until there is traffic
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(peerOf(await a.read(ifA), keyB.publicKey)!.latestHandshake).toBe(0)

    const t0 = Date.now()
    await a.triggerHandshake(ifA, 'fd00:1::2')
    const hs = await until('handshake after trigger', async () => {
      const h = peerOf(await a.read(ifA), keyB.publicKey)!.latestHandshake
      return h > 0 ? h : undefined
    })
    console.info(`handshake ${Date.now() - t0} ms after triggerHandshake`)
    expect(hs).toBeGreaterThan(0)
    expect(ping(nsA, '198.18.200.2').code).toBe(0)
    expect(ping(nsA, 'fd00:1::2').code).toBe(0)
    expect(ping(nsB, '198.18.200.1').code).toBe(0)
  })

  it('re-applying the same interface and peer config resets no session', async () => {
    const before = (await a.read(ifA))!
    const hs = peerOf(before, keyB.publicKey)!.latestHandshake
    await new Promise((resolve) => setTimeout(resolve, 1100)) // a reset would show a newer second
    await a.logs()
    await a.ensureInterface(cfgA)
    expect(mutations(await a.logs())).toEqual([])
    await a.setPeers(ifA, [peerBonA, peerConA], [])
    const after = (await a.read(ifA))!
    expect(peerOf(after, keyB.publicKey)!.latestHandshake).toBe(hs)
    expect({ ...after, peers: after.peers.map(({ rxBytes, txBytes, ...p }) => p) })
      .toEqual({ ...before, peers: before.peers.map(({ rxBytes, txBytes, ...p }) => p) })
    expect(ping(nsA, 'fd00:1::2').code).toBe(0)
  })

  it('removes one peer without touching the other', async () => {
    const hs = peerOf(await a.read(ifA), keyB.publicKey)!.latestHandshake
    await a.setPeers(ifA, [], [keyC.publicKey])
    const dev = (await a.read(ifA))!
    expect(dev.peers.map((p) => p.publicKey)).toEqual([keyB.publicKey])
    expect(peerOf(dev, keyB.publicKey)!.latestHandshake).toBe(hs)
    await a.setPeers(ifA, [], [keyC.publicKey]) // absent: no error
  })

  it('persistent keepalive on a newly added peer handshakes at once (no trigger)', async () => {
    await a.setPeers(ifA, [], [keyB.publicKey])
    await b.setPeers(ifB, [], [keyA.publicKey])
    await a.setPeers(ifA, [peerBonA], [])
    const t0 = Date.now()
    await b.setPeers(ifB, [{ ...peerAonB, persistentKeepalive: 25 }], [])
    await until('handshake from keepalive', async () => peerOf(await b.read(ifB), keyA.publicKey)!.latestHandshake > 0, 3000)
    console.info(`handshake ${Date.now() - t0} ms after adding a peer with persistent-keepalive 25`)
    await b.setPeers(ifB, [peerAonB], [])
    expect(peerOf(await b.read(ifB), keyA.publicKey)!.persistentKeepalive).toBe(0)
  })

  it('makes addresses and MTU match: removes foreign global addresses, keeps link-local', async () => {
    must('ip', ['-n', nsA, 'addr', 'add', '198.18.200.77/24', 'dev', ifA])
    must('ip', ['-n', nsA, 'addr', 'add', 'fe80::77/64', 'dev', ifA])
    await a.ensureInterface({ ...cfgA, mtu: 1300, addresses: ['fd00:1::1/80', '198.18.200.1/24'] })
    expect(link(nsA, ifA)).toMatchObject({ mtu: 1300, addresses: ['198.18.200.1/24', 'fd00:1::1/80'] })
    expect(must('ip', ['-n', nsA, '-json', 'addr', 'show', 'dev', ifA])).toContain('fe80::77')
    await a.ensureInterface(cfgA)
    expect(link(nsA, ifA)).toMatchObject({ mtu: 1380, addresses: ['198.18.200.1/24', 'fd00:1::1/64'] })
    expect((await a.read(ifA))!.peers).toHaveLength(1) // never touched
    expect(ping(nsA, 'fd00:1::2').code).toBe(0)
  })

  it('reads: undefined for a missing interface, an error for a non-WireGuard one', async () => {
    expect(await a.read(`w2wd${id}x`)).toBeUndefined()
    await expect(a.read('lo')).rejects.toThrow(/wg show lo dump failed/)
    await expect(a.ensureInterface({ ...cfgA, name: 'veth0' })).rejects.toThrow(/not a WireGuard interface/)
    await expect(a.setPeers(`w2wd${id}x`, [peerBonA], [])).rejects.toThrow(/interface w2wd\w+x does not exist/)
  })

  it('routes: adds and removes only its own (proto 87), both families; leaves a foreign route alone', async () => {
    must('ip', ['-n', nsA, 'route', 'add', '10.88.0.0/24', 'dev', ifA]) // the operator's, not ours
    const ours = (): string[] => ['-4', '-6'].flatMap((f) => (JSON.parse(must('ip', ['-n', nsA, '-json', f, 'route', 'show', 'dev', ifA, 'proto', '87']) || '[]') as Array<{ dst: string }>).map((r) => r.dst))
    const foreign = (): string => must('ip', ['-n', nsA, '-json', 'route', 'show', 'exact', '10.88.0.0/24'])
    expect(await a.setRoutes(ifA, ['10.66.0.0/24', 'fd66::/48', '10.88.0.0/24', '10.67.0.1/32'])).toEqual({ added: ['10.66.0.0/24', '10.67.0.1/32', 'fd66::/48'], removed: [], skipped: ['10.88.0.0/24'] })
    expect(ours().sort()).toEqual(['10.66.0.0/24', '10.67.0.1', 'fd66::/48'])
    expect((await a.logs()).some((l) => l.level === 'warn' && l.msg.includes('not routing 10.88.0.0/24'))).toBe(true)
    // the same set again: nothing to do, and no second warning
    expect(await a.setRoutes(ifA, ['10.88.0.0/24', 'fd66::/48', '10.67.0.1/32', '10.66.0.0/24'])).toEqual({ added: [], removed: [], skipped: ['10.88.0.0/24'] })
    expect((await a.logs()).filter((l) => l.level === 'warn')).toEqual([])
    expect(await a.setRoutes(ifA, ['10.66.0.0/24'])).toEqual({ added: [], removed: ['10.67.0.1/32', 'fd66::/48'], skipped: [] })
    expect(ours()).toEqual(['10.66.0.0/24'])
    expect(await a.setRoutes(ifA, [])).toEqual({ added: [], removed: ['10.66.0.0/24'], skipped: [] })
    expect(ours()).toEqual([])
    expect(foreign()).toContain('10.88.0.0/24') // never removed
    must('ip', ['-n', nsA, 'route', 'del', '10.88.0.0/24', 'dev', ifA])
  })

  it('survives a daemon restart: a new driver adopts the device as is', async () => {
    const impl = await a.implementation()
    const pid = wireguardGoPid(ifA)
    const hs = peerOf(await a.read(ifA), keyB.publicKey)!.latestHandshake
    await a.stop()
    if (impl === 'userspace') expect(alive(pid!)).toBe(true)
    expect(ping(nsA, 'fd00:1::2').code).toBe(0) // traffic flows with no daemon

    a = startRemote(nsA)
    remotes.push(a)
    await a.ensureInterface(cfgA)
    expect(await a.implementation()).toBe(impl)
    expect(mutations(await a.logs())).toEqual([])
    expect(peerOf(await a.read(ifA), keyB.publicKey)!.latestHandshake).toBe(hs)
  })

  it('the new driver\'s first setRoutes removes routes a previous run left; then none wanted means no lookups', async () => {
    const ours = (): string => must('ip', ['-n', nsA, '-json', '-4', 'route', 'show', 'dev', ifA, 'proto', '87'])
    must('ip', ['-n', nsA, 'route', 'add', '10.77.0.0/24', 'dev', ifA, 'proto', '87']) // left by the run before the restart
    expect(await a.setRoutes(ifA, [])).toEqual({ added: [], removed: ['10.77.0.0/24'], skipped: [] })
    expect(ours()).not.toContain('10.77.0.0')
    // nothing wanted and nothing added since: the resync no longer asks ip (so this one stays)
    must('ip', ['-n', nsA, 'route', 'add', '10.77.0.0/24', 'dev', ifA, 'proto', '87'])
    expect(await a.setRoutes(ifA, [])).toEqual({ added: [], removed: [], skipped: [] })
    expect(ours()).toContain('10.77.0.0')
    must('ip', ['-n', nsA, 'route', 'del', '10.77.0.0/24', 'dev', ifA, 'proto', '87'])
  })

  it('destroy deletes the interface and ends wireguard-go; twice is fine', async () => {
    const impl = await a.implementation()
    const pid = wireguardGoPid(ifA)
    const t0 = Date.now()
    await a.destroy(ifA)
    const tDestroy = Date.now() - t0
    expect(await a.read(ifA)).toBeUndefined()
    if (impl === 'userspace') {
      expect(existsSync(`/var/run/wireguard/${ifA}.sock`)).toBe(false)
      await until('wireguard-go to exit', async () => !alive(pid!), 3000)
    }
    console.info(`destroy took ${tDestroy} ms; wireguard-go gone ${Date.now() - t0} ms after destroy started`)
    await a.destroy(ifA)
    await b.destroy(ifB)
    expect(await b.read(ifB)).toBeUndefined()
  })
})
