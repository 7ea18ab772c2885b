// The real WireGuard driver: kernel device (`ip link add ... type wireguard`) when the kernel
// has it, else wireguard-go. wireguard-go's device is read and configured over its control
// socket directly (uapi.ts: no child process per call, which cost ~10 ms CPU each); the
// kernel device through `wg`, which is also the fallback; links, addresses and routes
// through `ip -json`. Every command runs through spawn with an argv (never a shell), with a
// timeout; the private key only ever travels over the control socket or through a FIFO
// (`wg set IF private-key <fifo>`), never argv, never a regular file.
//
// Decisions worth knowing:
// - wireguard-go is started WITHOUT -f and in its own session (detached), so it forks away
//   and outlives this daemon: a restart of w2wesher keeps the tunnel and its peers. Under
//   systemd that also needs KillMode=process (else stopping the unit kills it) and a
//   writable /run/wireguard (RuntimeDirectory=wireguard + RuntimeDirectoryPreserve=yes)
//   when running unprivileged.
// - listenPort 0 in the config means "let WireGuard pick, and keep whatever it has".
// - read() leaves out IPv6 link-local (fe80::/10) addresses; ensureInterface never removes them.
// - Why a FIFO and not `private-key /dev/stdin`: Node gives a child's stdin as a UNIX
//   socketpair, and open("/dev/stdin") on a socket fails (ENXIO), so wg cannot read it.
//   The FIFO lives in a fresh 0700 directory (mkdtemp) and is removed right after.
// - The live key is compared by its public key: the kernel stores the key clamped, so a
//   byte comparison of private keys could re-set (and reset all sessions) on every start.
import { spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { closeSync, constants as fsConstants, existsSync, openSync, readFileSync, writeSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { networkInterfaces, tmpdir, type NetworkInterfaceInfo } from 'node:os'
import { join } from 'node:path'
import { isIP } from 'node:net'
import type { RouteChange, WgDevice, WgDriver, WgImplementation, WgInterfaceConfig, WgPeerConfig } from './driver.ts'
import { wgPublicKeyFromPrivate } from './keys.ts'
import {
  buildWgSetArgv,
  normaliseAllowedIps,
  normaliseCidr,
  isIpv6LinkLocal,
  normaliseInterfaceAddresses,
  normaliseInterfaceConfig,
  parseIpJson,
  parseWgDump,
  validateInterfaceName,
  type IpLinkInfo,
  type WgDump
} from './parse.ts'
import { encodeSetDevice, encodeSetPeers, GET_DEVICE, isLiteralEndpoint, parseGetReply, parseSetReply, uapiRequest, UapiUnavailableError } from './uapi.ts'

/**
 * Routes we install carry this routing protocol number (unassigned in iproute2's rt_protos),
 * so after a restart we still know which routes are ours: `ip route show proto 87`.
 */
export const ROUTE_PROTOCOL = '87'

export type WgLogLevel = 'debug' | 'info' | 'warn'
export type WgLogFn = (level: WgLogLevel, msg: string, fields?: object) => void

export interface SystemDriverOptions {
  /** path of wireguard-go; default 'wireguard-go' (looked up on PATH) */
  wireguardGo?: string
  log?: WgLogFn
  /** 'auto' (default): kernel if `ip link add type wireguard` works, else wireguard-go */
  mode?: 'auto' | 'kernel' | 'userspace'
  /** path of `ip`; default 'ip' */
  ip?: string
  /** path of `wg`; default 'wg' */
  wg?: string
  /** per-command timeout; default 10000 ms */
  commandTimeoutMs?: number
  /** how long to wait for a new wireguard-go interface to appear; default 5000 ms */
  startTimeoutMs?: number
  /** where wireguard-go keeps its control sockets; default '/var/run/wireguard' */
  socketDir?: string
  /** the addresses of interfaces that are up and running; default os.networkInterfaces (tests inject one) */
  interfaceAddresses?: () => NodeJS.Dict<NetworkInterfaceInfo[]>
  /** names of the links in our network namespace, undefined when unknown (then `ip` is asked); default /proc/net/dev (tests inject one) */
  linkNames?: () => Set<string> | undefined
}

/**
 * How long ensureInterface may trust its last full check (`ip addr show`, a child process)
 * while the kernel still lists the interface up with exactly our addresses.
 */
export const FULL_CHECK_MS = 300_000

/** A command that failed: exit code, signal or timeout, with its stderr. */
export class CommandError extends Error {
  readonly command: string
  readonly args: readonly string[]
  readonly exitCode: number | null
  readonly signal: string | null
  readonly stderr: string
  readonly timedOut: boolean

  /** `stdout` explains a failure when stderr does not (wireguard-go logs its errors there). */
  constructor (command: string, args: readonly string[], exitCode: number | null, signal: string | null, stderr: string, timedOut: boolean, cause?: unknown, stdout = '') {
    let argText = args.join(' ')
    if (argText.length > 300) argText = `${argText.slice(0, 300)}… (${args.length} args)`
    const how = timedOut ? 'timed out' : exitCode !== null ? `exit ${exitCode}` : signal !== null ? `signal ${signal}` : 'failed to start'
    const err = cleanStderr(stderr) || (cause instanceof Error ? cause.message : '') || cleanStderr(stdout).slice(0, 500)
    super(`${argText === '' ? command : `${command} ${argText}`} failed (${how})${err === '' ? '' : `: ${err}`}`, cause === undefined ? undefined : { cause })
    this.name = 'CommandError'
    this.command = command
    this.args = args
    this.exitCode = exitCode
    this.signal = signal
    this.stderr = stderr
    this.timedOut = timedOut
  }
}

/** Drop wireguard-go's boxed "kernel has first class support" banner; keep one readable line. */
function cleanStderr(s: string): string {
  return s.split('\n')
    .map((l) => l.trim())
    // the box's corners and sides (┌└│), escaped: one character beyond Latin-1 in a bundle
    // makes V8 hold that whole chunk's source as two bytes per character
    .filter((l) => l !== '' && !/^[\u250c\u2514\u2502]/.test(l))
    .join('; ')
}

interface RunOptions {
  input?: string
  timeoutMs: number
  detached?: boolean
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** a failure's message may quote stdout (wireguard-go logs its errors there); never for
   * commands whose output can hold a key, such as `wg show` */
  stdoutExplains?: boolean
}

/** Run argv (no shell), collect output, reject with CommandError on failure or timeout. */
export function runCommand(command: string, args: readonly string[], opts: RunOptions): Promise<{ stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: opts.detached ?? false,
      env: opts.env ?? process.env,
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd })
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    let timedOut = false
    let settled = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, opts.timeoutMs)
    child.stdout?.on('data', (b: Buffer) => out.push(b))
    child.stderr?.on('data', (b: Buffer) => err.push(b))
    child.on('error', (e) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      reject(new CommandError(command, args, null, null, Buffer.concat(err).toString(), false, e))
    })
    child.on('close', (code, signal) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      const stdout = Buffer.concat(out).toString()
      const stderr = Buffer.concat(err).toString()
      if (code === 0 && !timedOut) resolve({ stdout, stderr })
      else reject(new CommandError(command, args, code, signal, stderr, timedOut, undefined, opts.stdoutExplains === true ? stdout : ''))
    })
    if (opts.input !== undefined && child.stdin !== null) {
      child.stdin.on('error', () => { /* the exit status reports what went wrong */ })
      child.stdin.end(opts.input)
    }
  })
}

/** `ip` and `wg` live in sbin on Debian, which a non-root user's PATH often lacks. */
function withSbinPath(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const parts = (base.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')
  for (const d of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!parts.includes(d)) parts.push(d)
  return { ...base, PATH: parts.join(':') }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const isMissingDevice = (e: unknown): boolean =>
  e instanceof CommandError && /does not exist|Cannot find device|No such device/i.test(e.stderr)

export function createSystemDriver(opts: SystemDriverOptions = {}): WgDriver {
  const wireguardGo = opts.wireguardGo ?? 'wireguard-go'
  const ipCmd = opts.ip ?? 'ip'
  const wgCmd = opts.wg ?? 'wg'
  const mode = opts.mode ?? 'auto'
  const timeoutMs = opts.commandTimeoutMs ?? 10_000
  const startTimeoutMs = opts.startTimeoutMs ?? 5_000
  const socketDir = opts.socketDir ?? '/var/run/wireguard'
  const log: WgLogFn = opts.log ?? (() => {})
  const interfaceAddresses = opts.interfaceAddresses ?? networkInterfaces
  const linkNames = opts.linkNames ?? procNetDevLinks
  let impl: WgImplementation | undefined
  const env = withSbinPath(process.env)

  // One mutation at a time per interface (ensureInterface/setPeers/destroy).
  const locks = new Map<string, Promise<unknown>>()
  function locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = locks.get(name) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    const tail = next.catch(() => {})
    locks.set(name, tail)
    void tail.then(() => { if (locks.get(name) === tail) locks.delete(name) })
    return next
  }

  const ip = (args: string[]) => runCommand(ipCmd, args, { timeoutMs, env })
  const wg = (args: string[]) => runCommand(wgCmd, args, { timeoutMs, env })

  /** Mutating commands are logged at debug (argv only; never a key). */
  async function change(cmd: 'ip' | 'wg', args: string[]): Promise<void> {
    log('debug', `wireguard: ${cmd} ${args.length > 12 ? `${args.slice(0, 12).join(' ')} …` : args.join(' ')}`, { cmd, args: args.length })
    if (cmd === 'ip') await ip(args)
    else await wg(args)
  }

  /**
   * `wg set IF private-key <fifo> [more args]`: the key is written into a FIFO in a private
   * directory once wg opens it for reading. Nothing secret reaches argv or a disk.
   */
  async function setWithPrivateKey(name: string, privateKey: string, more: string[]): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'w2wesher-wg-'))
    try {
      const fifo = join(dir, 'private-key')
      await runCommand('mkfifo', ['-m', '600', fifo], { timeoutMs, env })
      const args = ['set', name, 'private-key', fifo, ...more]
      log('debug', `wireguard: wg ${args.join(' ')}`, { cmd: 'wg', args: args.length })
      let done = false
      const setting = wg(args).finally(() => { done = true })
      setting.catch(() => {}) // awaited below; this only keeps an early throw from leaving it unhandled
      // Open for writing without blocking: ENXIO until wg has opened the read end.
      let fd: number | undefined
      while (fd === undefined && !done) {
        try {
          fd = openSync(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENXIO') throw e
          await sleep(2)
        }
      }
      if (fd !== undefined) {
        try {
          writeSync(fd, `${privateKey}\n`) // 45 bytes < PIPE_BUF: one atomic write
        } finally {
          closeSync(fd)
        }
      }
      await setting
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  async function linkInfo(name: string): Promise<IpLinkInfo | undefined> {
    // A link that is not there needs no `ip` process to say so (each child is a fork of this
    // process: 10-25 ms on a busy start, and a first start asks for a link that is not there yet).
    if (linkNames()?.has(name) === false) return undefined
    try {
      const { stdout } = await ip(['-json', '-d', 'addr', 'show', 'dev', name])
      return parseIpJson(stdout)
    } catch (e) {
      if (isMissingDevice(e)) return undefined
      throw e
    }
  }

  async function dump(name: string): Promise<WgDump> {
    const { stdout } = await wg(['show', name, 'dump'])
    return parseWgDump(stdout)
  }

  const socketPath = (name: string): string => join(socketDir, `${name}.sock`)

  /**
   * One request to wireguard-go's control socket; undefined when there is no userspace
   * device to ask (a kernel interface, or no socket answering: the caller then uses `wg`).
   */
  async function uapi(name: string, request: string): Promise<string | undefined> {
    if (impl === 'kernel') return undefined
    try {
      return await uapiRequest(socketPath(name), request, timeoutMs)
    } catch (e) {
      if (e instanceof UapiUnavailableError) return undefined
      throw e
    }
  }

  /** Key, port and peers of the live device: over the socket when it answers, else `wg show dump`. */
  async function liveDevice(name: string): Promise<WgDump> {
    const reply = await uapi(name, GET_DEVICE)
    return reply === undefined ? await dump(name) : parseGetReply(reply)
  }

  function implFromKind(name: string, kind: string): WgImplementation {
    if (kind === 'wireguard') return 'kernel'
    if (kind === 'tun') return 'userspace'
    throw new Error(`interface ${name} exists but is not a WireGuard interface (kind "${kind || 'unknown'}"); remove it or pick another name`)
  }

  function cleanEnv(): NodeJS.ProcessEnv {
    const goEnv = { ...env }
    // WG_PROCESS_FOREGROUND would keep wireguard-go in the foreground; LOG_LEVEL would
    // hand it our stdout/stderr pipes (so it never looks finished); the fd variables are
    // wireguard-go's own fork protocol.
    for (const k of ['WG_PROCESS_FOREGROUND', 'WG_TUN_FD', 'WG_UAPI_FD', 'LOG_LEVEL']) delete goEnv[k]
    return goEnv
  }

  async function create(name: string): Promise<WgImplementation> {
    let kernelError = ''
    if (mode !== 'userspace') {
      try {
        await change('ip', ['link', 'add', 'dev', name, 'type', 'wireguard'])
        log('info', `wireguard: created kernel interface ${name}`, { name })
        return 'kernel'
      } catch (e) {
        if (mode === 'kernel') throw e
        kernelError = e instanceof CommandError ? cleanStderr(e.stderr) : String(e)
        log('debug', `wireguard: no kernel WireGuard (${kernelError}); starting ${wireguardGo}`, { name })
      }
    }
    const t0 = Date.now()
    try {
      // Without -f wireguard-go creates the tun and its control socket, forks a child that
      // keeps running and exits 0; detached puts it in its own session (no SIGINT/SIGHUP
      // from our terminal or process group); cwd / so the long-lived child pins no mount.
      await runCommand(wireguardGo, [name], { timeoutMs: startTimeoutMs, detached: true, env: cleanEnv(), cwd: '/', stdoutExplains: true })
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e)
      // without udev (containers, minimal VMs) /dev/net/tun is often root's alone (0600)
      const hint = /TUN device: permission denied/i.test(why) ? ' (this user needs read and write access to /dev/net/tun, which udev gives everyone: mode 0666)' : ''
      throw new Error(`cannot create WireGuard interface ${name}: ${kernelError === '' ? '' : `kernel: ${kernelError}; `}userspace: ${why}${hint}`, { cause: e })
    }
    // Normally the tun already exists when the parent exits; wait for it (and for the
    // control socket to answer) to be safe.
    const deadline = Date.now() + startTimeoutMs
    // wireguard-go opens the socket after creating the tun: one answer means both are there.
    for (;;) {
      try {
        parseGetReply(await uapiRequest(socketPath(name), GET_DEVICE, timeoutMs))
        break
      } catch (e) {
        if (Date.now() > deadline) {
          if (await linkInfo(name) === undefined) throw new Error(`${wireguardGo} ${name} exited 0 but interface ${name} did not appear within ${startTimeoutMs} ms`)
          throw e
        }
      }
      await sleep(20)
    }
    log('info', `wireguard: started ${wireguardGo} for ${name} in ${Date.now() - t0} ms`, { name, ms: Date.now() - t0 })
    return 'userspace'
  }

  /**
   * The reconciler re-ensures the interface every 30 s to repair drift. Each full check costs
   * an `ip` process (~9 ms of CPU, most of a quiet daemon's child processes), so between full
   * checks an interface we set up with the same config passes when getifaddrs (no process)
   * lists it up, running and with exactly our addresses; its key and port are still compared.
   * A changed MTU waits for the next full check.
   */
  const verified = new Map<string, { config: string, at: number }>()

  function listsExactly(name: string, addresses: string[]): boolean {
    const entries = interfaceAddresses()[name]
    if (entries === undefined) return false
    let listed: string[]
    try {
      listed = normaliseInterfaceAddresses(entries.filter(e => !isIpv6LinkLocal(e.address)).map(e => e.cidr ?? ''))
    } catch {
      return false
    }
    return listed.join() === addresses.join() // both normalised and sorted
  }

  /** Key and port: one set, only what differs. */
  async function ensureKeyAndPort(name: string, cfg: WgInterfaceConfig): Promise<void> {
    const live = await liveDevice(name)
    const newPort = cfg.listenPort !== 0 && live.listenPort !== cfg.listenPort ? cfg.listenPort : undefined
    const portArgs = newPort === undefined ? [] : ['listen-port', String(newPort)]
    const wantPublic = wgPublicKeyFromPrivate(cfg.privateKey)
    const newKey = live.publicKey !== wantPublic ? cfg.privateKey : undefined
    if (impl === 'userspace') {
      const request = encodeSetDevice({ privateKey: newKey, listenPort: newPort })
      if (request !== undefined) {
        log('debug', `wireguard: uapi set ${name}${newKey === undefined ? '' : ' private-key (hidden)'} ${portArgs.join(' ')}`.trimEnd(), { name })
        parseSetReply(await uapiRequest(socketPath(name), request, timeoutMs))
      }
    } else if (newKey !== undefined) {
      await setWithPrivateKey(name, newKey, portArgs)
    } else if (portArgs.length > 0) {
      await change('wg', ['set', name, ...portArgs])
    }
    if (newKey !== undefined) log('info', `wireguard: set private key of ${name} (public key ${wantPublic})`, { name, publicKey: wantPublic })
  }

  async function ensureInterface(cfgIn: WgInterfaceConfig): Promise<void> {
    const cfg = normaliseInterfaceConfig(cfgIn)
    const name = cfg.name
    const config = JSON.stringify(cfg)
    const last = verified.get(name)
    verified.delete(name)
    if (last !== undefined && last.config === config && Date.now() - last.at < FULL_CHECK_MS && listsExactly(name, cfg.addresses)) {
      await ensureKeyAndPort(name, cfg)
      verified.set(name, last)
      return
    }
    await fullEnsure(name, cfg)
    verified.set(name, { config, at: Date.now() })
  }

  async function fullEnsure(name: string, cfg: WgInterfaceConfig): Promise<void> {
    let link = await linkInfo(name)
    if (link === undefined) {
      impl = await create(name)
      // A new link is down, without addresses, and carries no routes (they go with a link):
      // asking `ip` would only cost two more processes on the way to the first packet.
      link = { name, mtu: 0, up: false, kind: impl === 'kernel' ? 'wireguard' : 'tun', addresses: [] }
      routesClean.add(name)
    } else {
      impl = implFromKind(name, link.kind)
      log('debug', `wireguard: adopting existing ${impl} interface ${name}`, { name, implementation: impl })
    }

    await ensureKeyAndPort(name, cfg)

    // MTU, link state and addresses in one `ip -batch` (each process costs the daemon a fork,
    // tens of ms on a busy start): unwanted addresses go first, so a prefix-length change can re-add.
    const commands: string[][] = []
    const linkArgs: string[] = []
    if (link.mtu !== cfg.mtu) linkArgs.push('mtu', String(cfg.mtu))
    if (!link.up) linkArgs.push('up')
    if (linkArgs.length > 0) commands.push(['link', 'set', 'dev', name, ...linkArgs])
    const want = new Set(cfg.addresses)
    const have = new Set(link.addresses)
    for (const a of link.addresses) if (!want.has(a)) commands.push(['addr', 'del', a, 'dev', name])
    for (const a of cfg.addresses) if (!have.has(a)) commands.push(['addr', 'add', a, 'dev', name])
    if (commands.length === 1) await change('ip', commands[0] as string[])
    else if (commands.length > 1) await ipBatch(commands)
  }

  /** Several `ip` commands in one process; stops at the first failure (its stderr names the line). */
  async function ipBatch(commands: string[][]): Promise<void> {
    for (const c of commands) log('debug', `wireguard: ip ${c.join(' ')}`, { cmd: 'ip', args: c.length })
    await runCommand(ipCmd, ['-batch', '-'], { timeoutMs, env, input: `${commands.map(c => c.join(' ')).join('\n')}\n` })
  }

  // Called every reconcile and every status: no `ip` here, and for wireguard-go no process at all.
  async function read(name: string): Promise<WgDevice | undefined> {
    validateInterfaceName(name)
    let d: WgDump
    try {
      d = await liveDevice(name)
    } catch (e) {
      // wg's words for a missing device vary ("No such device", "Protocol not supported"
      // without the kernel module): ask ip whether it exists before calling this an error.
      if (await linkInfo(name) === undefined) return undefined
      throw e
    }
    return {
      name,
      publicKey: d.publicKey,
      listenPort: d.listenPort,
      peers: d.peers.sort((a, b) => (a.publicKey < b.publicKey ? -1 : a.publicKey > b.publicKey ? 1 : 0))
    }
  }

  async function setPeers(name: string, upserts: WgPeerConfig[], removals: string[]): Promise<void> {
    const argv = buildWgSetArgv(name, upserts, removals)
    if (argv === undefined) return
    // the socket takes only IP endpoints; `wg` resolves host names
    const request = upserts.every((p) => p.endpoint === undefined || isLiteralEndpoint(p.endpoint)) ? encodeSetPeers(upserts, removals) : undefined
    await locked(name, async () => {
      if (request !== undefined) {
        const reply = await uapi(name, request)
        if (reply !== undefined) {
          log('debug', `wireguard: uapi set ${name}: ${upserts.length} upserts, ${removals.length} removals`, {
            name, upserts: upserts.length, removals: removals.length
          })
          parseSetReply(reply)
          return
        }
      }
      log('debug', `wireguard: wg set ${name}: ${upserts.length} upserts, ${removals.length} removals`, {
        name, upserts: upserts.length, removals: removals.length
      })
      try {
        await wg(argv)
      } catch (e) {
        // wg's own message for a missing userspace device is "Protocol not supported".
        if (await linkInfo(name) === undefined) throw new Error(`cannot set peers: interface ${name} does not exist`, { cause: e })
        throw e
      }
    })
  }

  const warnedSkipped = new Map<string, string>()
  /**
   * Interfaces where a setRoutes wanting none has run and nothing was added since: another
   * empty setRoutes (every periodic resync) has nothing to find, so it runs no `ip`. The
   * first call after start-up always looks, to remove what a previous run left.
   */
  const routesClean = new Set<string>()

  /** The routes through `name` that carry our protocol mark, both families. */
  async function ourRoutes(name: string): Promise<string[]> {
    const out: string[] = []
    for (const family of ['-4', '-6']) {
      const { stdout } = await ip(['-json', family, 'route', 'show', 'dev', name, 'proto', ROUTE_PROTOCOL])
      for (const r of routeList(stdout)) {
        try { out.push(normaliseCidr(r)) } catch { /* "default" or other non-prefix entries are not ours */ }
      }
    }
    return normaliseAllowedIps(out)
  }

  async function setRoutes(name: string, routesIn: string[]): Promise<RouteChange> {
    validateInterfaceName(name)
    const want = normaliseAllowedIps(routesIn)
    return await locked(name, async () => {
      if (want.length === 0 && routesClean.has(name)) return { added: [], removed: [], skipped: [] }
      routesClean.delete(name)
      const have = await ourRoutes(name)
      const removed = have.filter((r) => !want.includes(r))
      for (const r of removed) await change('ip', ['route', 'del', r, 'dev', name, 'proto', ROUTE_PROTOCOL])
      const added: string[] = []
      const skipped: string[] = []
      for (const r of want.filter((x) => !have.includes(x))) {
        // `replace` would overwrite a route to the same prefix with the same metric (say, the
        // operator's own): if any exists, it is not ours to change.
        const family = r.includes(':') ? '-6' : '-4'
        const { stdout } = await ip(['-json', family, 'route', 'show', 'exact', r])
        if (routeList(stdout).length > 0) { skipped.push(r); continue }
        await change('ip', ['route', 'replace', r, 'dev', name, 'proto', ROUTE_PROTOCOL])
        added.push(r)
      }
      if (added.length + removed.length > 0) log('info', `wireguard: routes via ${name}: ${added.length} added, ${removed.length} removed`, { name, added, removed })
      // warned when the set changes, not on every periodic resync
      const skippedKey = skipped.join(' ')
      if (skippedKey !== (warnedSkipped.get(name) ?? '')) {
        warnedSkipped.set(name, skippedKey)
        if (skipped.length > 0) log('warn', `wireguard: not routing ${skipped.join(', ')} via ${name}: a route to the same prefix exists that w2wesher did not make`, { name, skipped })
      }
      if (want.length === 0) routesClean.add(name)
      return { added, removed, skipped }
    })
  }

  async function triggerHandshake(name: string, overlayAddress: string): Promise<void> {
    const addr = overlayAddress.split('/')[0]!
    const family = isIP(addr)
    if (family === 0) throw new Error(`triggerHandshake(${name}): "${overlayAddress}" is not an IP address`)
    const sock = createSocket(family === 6 ? 'udp6' : 'udp4')
    try {
      await new Promise<void>((resolve) => {
        sock.once('error', (e) => {
          log('debug', `wireguard: handshake trigger to ${addr} failed: ${e.message}`, { name, address: addr })
          resolve()
        })
        // One byte to the discard port: WireGuard stages it and initiates a handshake now.
        sock.send(Buffer.from([0]), 9, addr, (e) => {
          if (e) log('debug', `wireguard: handshake trigger to ${addr} failed: ${e.message}`, { name, address: addr })
          resolve()
        })
      })
    } finally {
      sock.close()
    }
  }

  async function destroy(name: string): Promise<void> {
    validateInterfaceName(name)
    await locked(name, async () => {
      routesClean.delete(name)
      verified.delete(name)
      const link = await linkInfo(name)
      if (link === undefined) {
        log('debug', `wireguard: ${name} already gone`, { name })
        return
      }
      try {
        await change('ip', ['link', 'del', 'dev', name])
        log('info', `wireguard: deleted interface ${name}`, { name })
      } catch (e) {
        if (!isMissingDevice(e)) throw e
      }
      if (link.kind !== 'tun') return
      // wireguard-go notices its tun is gone, exits and removes its socket (a few ms).
      // Wait for that so an immediate re-create with the same name cannot race it.
      const sock = socketPath(name)
      const deadline = Date.now() + 3000
      while (existsSync(sock) && Date.now() < deadline) await sleep(10)
      if (existsSync(sock)) log('warn', `wireguard: ${sock} still exists 3 s after deleting ${name}`, { name })
    })
  }

  return {
    implementation: () => impl,
    ensureInterface: (cfg) => locked(cfg.name, () => ensureInterface(cfg)),
    read,
    setPeers,
    setRoutes,
    triggerHandshake,
    destroy
  }
}

/** The "dst" of each entry in `ip -json route show` output ("[]" or "" when there is none). */
function routeList(stdout: string): string[] {
  if (stdout.trim() === '') return []
  const parsed = JSON.parse(stdout) as unknown
  if (!Array.isArray(parsed)) throw new Error('ip -json route: expected an array')
  return parsed.map((r) => (r as { dst?: unknown }).dst).filter((d): d is string => typeof d === 'string')
}

/**
 * The links of this process's network namespace: /proc/net/dev lists every one of them (the
 * kernel's view for the reading thread, whatever is mounted at /sys). Undefined when it
 * cannot be read.
 */
export function procNetDevLinks(): Set<string> | undefined {
  try {
    return parseProcNetDev(readFileSync('/proc/net/dev', 'utf8'))
  } catch {
    return undefined
  }
}

/** `  name: counters…` after two header lines; a link name never holds a colon */
export function parseProcNetDev(text: string): Set<string> {
  const names = new Set<string>()
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':')
    if (colon > 0) names.add(line.slice(0, colon).trim())
  }
  return names
}
