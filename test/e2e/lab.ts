// End-to-end lab: one network namespace per node, joined by veth pairs to a bridge that
// lives in its own "hub" namespace, so the root namespace never gets a new interface.
// Used by the e2e tests, scripts/demo.ts and the benchmarks. Needs root (CAP_NET_ADMIN +
// CAP_SYS_ADMIN for `ip netns`), iproute2, iputils ping, wireguard-tools, wireguard-go.
//
// Naming (all derived from a random lab id, so concurrent or stale labs never clash):
//   namespaces   <prefix>-<id>-hub, <prefix>-<id>-<node>
//   WireGuard    w<id><index>  (machine-unique: wireguard-go's control socket
//                /var/run/wireguard/<if>.sock is shared by every namespace)
//   veth         v<index> in the hub (bridge port), eth0 in the node
//   underlay     198.18.x.y/16 (RFC 2544 benchmark range), index 1 -> 198.18.0.1
// A manifest per lab (/run/w2wesher-lab/<id>.json) lists everything the lab made and the
// owner process, so sweepStaleLabs() can clean up after a run that was SIGKILLed.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import {
  accessSync, closeSync, constants as fsConstants, existsSync, mkdirSync, mkdtempSync, openSync,
  readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { randomBytes } from 'node:crypto'

export const DEFAULT_PREFIX = 'w2lab'
export const DEFAULT_PORT = 10042
export const UNDERLAY_PREFIX_LEN = 16
export const WG_SOCKET_DIR = '/var/run/wireguard'
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const DAEMON_BIN = resolve(REPO_ROOT, 'dist', 'w2wesher.mjs')

// Spawned tools (ip, wg, wireguard-go) live in sbin on Debian; non-login shells may lack it.
const CHILD_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: [process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', '/usr/local/sbin', '/usr/sbin', '/sbin'].join(':')
}

// ---------------------------------------------------------------------------------------
// Public types

export interface ExecResult {
  code: number // -1 when killed by a signal or the timeout
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  timedOut: boolean
}

export interface ExecOptions {
  input?: string
  timeoutMs?: number
  env?: NodeJS.ProcessEnv
}

export interface LabNode {
  name: string
  ns: string
  index: number
  underlay: string // bare IPv4 address, e.g. 198.18.0.3
  underlayCidr: string // e.g. 198.18.0.3/16
  wgIf: string // machine-unique WireGuard interface name reserved for this node
  hubIf: string // bridge port in the hub namespace (setLink toggles it)
  dir: string // per-node temp dir: logs, keys
  stateDir: string // suggested --state-dir
}

export interface AddNodeOptions {
  // Route 224.0.0.0/4 over the underlay so mDNS can send; off by default so tests of
  // explicit bootstrap are not short-circuited by discovery.
  multicast?: boolean
  // Put the node behind this NAT box (made by addNat) instead of on the bridge: its underlay
  // is then 198.19.<nat index>.<n>/24 with the NAT's inner side as default gateway.
  behindNat?: string
}

export interface UnderlayLink {
  ifname: string // inside the node, e.g. eth1
  address: string // bare IPv4 address
  cidr: string
}

export interface OverlayAddress {
  family: 4 | 6
  address: string
  prefixlen: number
}

export interface OverlayAddresses {
  ipv4?: string // first global IPv4 address (no prefix length)
  ipv6?: string // first global IPv6 address (no prefix length)
  all: OverlayAddress[]
}

export interface WgPeer {
  publicKey: string
  presharedKey: string | null
  endpoint: string | null
  allowedIps: string[]
  latestHandshake: number // unix seconds, 0 = never
  rxBytes: number
  txBytes: number
  persistentKeepalive: number | null
}

export interface WgDump {
  publicKey: string
  listenPort: number
  fwmark: string | null
  peers: WgPeer[]
}

export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
  forced: boolean // stop() had to fall back to SIGKILL
}

export interface DaemonHandle {
  readonly node: string
  readonly pid: number
  readonly args: readonly string[]
  readonly logFile: string
  readonly exited: Promise<ExitInfo>
  running(): boolean
  // Sends `signal` and waits for the exit; SIGKILL after timeoutMs (then forced = true).
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitInfo>
  kill9(): Promise<ExitInfo>
  logs(): string
  tail(lines?: number): string
  // stdout lines that parse as JSON (pino records); other lines are skipped.
  logRecords(): Array<Record<string, unknown>>
  waitForLog(pred: (rec: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>
}

export interface SpawnDaemonOptions {
  bin?: string // defaults to dist/w2wesher.mjs
  env?: NodeJS.ProcessEnv
  // argv placed before `node` inside the namespace, e.g. setpriv … -- (must exec, not fork)
  wrap?: string[]
}

export interface JoinArgsOptions {
  pskFile: string
  bootstrap?: string[] // IP:port entries
  overlayIpv4?: string
  logLevel?: string
  extra?: string[]
}

export interface PingOptions {
  count?: number
  timeoutMs?: number // per-reply wait (ping -W)
}

export interface PingResult {
  from: string
  to: string
  addr: string | undefined
  ok: boolean
}

export interface PingMatrix {
  family: 4 | 6
  nodes: string[]
  results: PingResult[]
  ok: boolean
  failures: PingResult[]
  text: string // human-readable matrix
}

export interface PingMatrixOptions {
  family?: 4 | 6
  ifname?: (node: LabNode) => string
  concurrency?: number
  timeoutMs?: number
  count?: number
}

export interface PingerStats {
  addr: string
  sent: number
  received: number
  lost: number
  longestGapMs: number // longest stretch without a reply, start and stop included
  durationMs: number
  stderr: string
}

export interface PingerOptions {
  /**
   * `ping` (iputils, `-i 0.1`; its period is the interval plus the kernel's timer rounding: 104 ms
   * on these machines) or `fping` (`-l -p 100`: sends on a fixed 100 ms schedule, a true 10 Hz).
   */
  tool?: 'ping' | 'fping'
  /**
   * Run the pinger at real-time priority (SCHED_FIFO, chrt), so its own wake-ups on a busy machine
   * do not show as gaps: what remains is the delay of the replies themselves (benchmarks).
   */
  realtime?: boolean
}

export interface Pinger {
  readonly node: string
  readonly addr: string
  stop(): Promise<PingerStats>
}

export interface Leftovers {
  namespaces: string[]
  pids: number[]
  sockets: string[]
  rootLinks: string[]
}

export interface DestroyOptions {
  keepFiles?: boolean // keep the lab's temp dir (logs) for inspection
  stopTimeoutMs?: number
}

export interface LabOptions {
  prefix?: string
  handleSignals?: boolean // default true: clean up on exit/SIGINT/SIGTERM/SIGHUP
}

export interface Lab {
  readonly id: string
  readonly prefix: string
  readonly hubNs: string
  readonly dir: string
  addNode(name: string, opts?: AddNodeOptions): Promise<LabNode>
  removeNode(name: string): Promise<void>
  node(name: string): LabNode
  nodeNames(): string[]
  exec(node: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>
  execOk(node: string, argv: readonly string[], opts?: ExecOptions): Promise<string>
  spawnDaemon(node: string, args: readonly string[], opts?: SpawnDaemonOptions): DaemonHandle
  daemons(): DaemonHandle[]
  joinArgs(node: string, opts: JoinArgsOptions): string[]
  bootstrapAddr(node: string, port?: number): string
  genPsk(bin?: string): Promise<string>
  overlayAddresses(node: string, ifname?: string): Promise<OverlayAddresses>
  wgDump(node: string, ifname?: string): Promise<WgDump | undefined>
  wgPeers(node: string, ifname?: string): Promise<WgPeer[]>
  ping(node: string, addr: string, opts?: PingOptions): Promise<boolean>
  pingMatrix(nodes?: string[], opts?: PingMatrixOptions): Promise<PingMatrix>
  startPinger(node: string, addr: string, opts?: PingerOptions): Pinger
  setLink(node: string, up: boolean): Promise<void>
  // Splits the underlay into groups that cannot reach each other (nodes in no group keep
  // reaching everyone); null heals. Bridge-level nftables in the hub, so nodes see nothing.
  partition(groups: string[][] | null): Promise<void>
  // A second (third, ...) underlay network: bridge `net` in the hub, created on first use,
  // subnet 198.19.<100 + network number>.0/24, host part = node index.
  addUnderlay(node: string, net: string): Promise<UnderlayLink>
  // A NAT box on the bridge (nftables masquerade, forwarding on, unsolicited inbound dropped
  // like a home router); nodes go behind it with addNode(name, { behindNat }).
  addNat(name: string): Promise<LabNode>
  // Renumber the node's eth0 (old address removed, new one added), as when a laptop roams.
  setUnderlayAddress(node: string, address: string): Promise<void>
  logTails(lines?: number): string
  leftovers(): Leftovers
  destroy(opts?: DestroyOptions): Promise<void>
}

// ---------------------------------------------------------------------------------------
// Small process helpers

export function sleep (ms: number): Promise<void> {
  return new Promise(res => setTimeout(res, ms))
}

// Used only on the synchronous cleanup path (exit handler), where no event loop runs.
function sleepSync (ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

export function execCmd (argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [cmd, ...args] = argv
  if (cmd === undefined) throw new Error('execCmd: empty argv')
  return new Promise(res => {
    const child = spawn(cmd, args, { env: opts.env ?? CHILD_ENV, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, opts.timeoutMs ?? 30_000)
    child.on('error', err => {
      clearTimeout(timer)
      res({ code: -1, signal: null, stdout, stderr: stderr + String(err), timedOut })
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      res({ code: code ?? -1, signal, stdout, stderr, timedOut })
    })
    child.stdin.on('error', () => { /* child may exit before reading its input */ })
    child.stdin.end(opts.input ?? '')
  })
}

async function run (argv: readonly string[], opts?: ExecOptions): Promise<string> {
  const r = await execCmd(argv, opts)
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}${r.timedOut ? ', timeout' : ''}): ${r.stderr.trim()}`)
  return r.stdout
}

// Synchronous variant for cleanup; never throws.
function runSync (argv: readonly string[], timeoutMs = 10_000): { code: number; stdout: string; stderr: string } {
  const [cmd, ...args] = argv
  const r = spawnSync(cmd ?? 'false', args, { env: CHILD_ENV, encoding: 'utf8', timeout: timeoutMs })
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') }
}

// /proc/<pid>/stat field 22 (start time in clock ticks) guards against PID reuse.
export function procStartTime (pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

// Alive = exists and is not a zombie (orphans reparented to PID 1 linger as zombies briefly).
export function pidAlive (pid: number, startTime?: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields[0] === 'Z' || fields[0] === 'X') return false
    return startTime === undefined || fields[19] === startTime
  } catch {
    return false
  }
}

function killPid (pid: number, signal: NodeJS.Signals): void {
  try { process.kill(pid, signal) } catch { /* already gone */ }
}

// PIDs of wireguard-go processes serving exactly these interface names. Interface names
// carry the random lab id, so this matches only our own processes.
export function wireguardGoPids (ifnames: Iterable<string>): number[] {
  const wanted = new Set(ifnames)
  if (wanted.size === 0) return []
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let argv: string[]
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(a => a !== '')
    } catch {
      continue
    }
    if (argv[0] === undefined || basename(argv[0]) !== 'wireguard-go') continue
    if (argv.slice(1).some(a => wanted.has(a)) && pidAlive(Number(entry))) pids.push(Number(entry))
  }
  return pids
}

function netnsList (): string[] {
  const r = runSync(['ip', '-json', 'netns', 'list'])
  if (r.code !== 0 || r.stdout.trim() === '') return []
  try {
    return (JSON.parse(r.stdout) as Array<{ name: string }>).map(n => n.name)
  } catch {
    return []
  }
}

function netnsPids (ns: string): number[] {
  const r = runSync(['ip', 'netns', 'pids', ns])
  if (r.code !== 0) return []
  return r.stdout.split(/\s+/).filter(s => /^\d+$/.test(s)).map(Number)
}

// SIGTERM, wait up to graceMs, then SIGKILL whatever is left. Synchronous.
function terminateSync (pids: number[], graceMs = 1500): void {
  const live = pids.filter(p => pidAlive(p) && p !== process.pid)
  for (const p of live) killPid(p, 'SIGTERM')
  const deadline = Date.now() + graceMs
  while (live.some(p => pidAlive(p)) && Date.now() < deadline) sleepSync(25)
  for (const p of live) if (pidAlive(p)) killPid(p, 'SIGKILL')
  const hard = Date.now() + 2000
  while (live.some(p => pidAlive(p)) && Date.now() < hard) sleepSync(25)
}

// ---------------------------------------------------------------------------------------
// waitFor

export interface WaitForOptions {
  timeoutMs?: number
  intervalMs?: number
  what?: string
}

// Polls fn until it returns a truthy value (returned) or the timeout (throws, with the
// last error fn threw, if any). fn may throw: that counts as "not yet".
export async function waitFor<T> (fn: () => T | Promise<T>, opts: WaitForOptions = {}): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  const intervalMs = opts.intervalMs ?? 100
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined && v !== null && v !== false) return v as NonNullable<T>
    } catch (err) {
      lastErr = err
    }
    if (Date.now() >= deadline) {
      const why = lastErr === undefined ? '' : ` (last error: ${lastErr instanceof Error ? lastErr.message : String(lastErr)})`
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'condition'}${why}`)
    }
    await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())))
  }
}

// ---------------------------------------------------------------------------------------
// Parsers (exported for reuse and unit testing)

interface IpAddrInfo { family: string; local: string; prefixlen: number; scope: string }

export function parseIpAddrJson (json: string): OverlayAddresses {
  const out: OverlayAddresses = { all: [] }
  let links: Array<{ addr_info?: IpAddrInfo[] }>
  try {
    links = JSON.parse(json) as Array<{ addr_info?: IpAddrInfo[] }>
  } catch {
    return out
  }
  for (const link of links) {
    for (const a of link.addr_info ?? []) {
      if (a.scope !== 'global') continue
      const family = a.family === 'inet6' ? 6 : 4
      out.all.push({ family, address: a.local, prefixlen: a.prefixlen })
      if (family === 4 && out.ipv4 === undefined) out.ipv4 = a.local
      if (family === 6 && out.ipv6 === undefined) out.ipv6 = a.local
    }
  }
  return out
}

// `wg show IF dump`: first line the interface, then one tab-separated line per peer.
export function parseWgDump (text: string): WgDump | undefined {
  const lines = text.split('\n').filter(l => l.trim() !== '')
  const head = lines[0]?.split('\t')
  if (head === undefined || head.length < 4) return undefined
  const none = (s: string | undefined): string | null => (s === undefined || s === '(none)' || s === 'off') ? null : s
  const peers = lines.slice(1).map(line => {
    const f = line.split('\t')
    return {
      publicKey: f[0] ?? '',
      presharedKey: none(f[1]),
      endpoint: none(f[2]),
      allowedIps: none(f[3])?.split(',').filter(s => s !== '') ?? [],
      latestHandshake: Number(f[4] ?? 0),
      rxBytes: Number(f[5] ?? 0),
      txBytes: Number(f[6] ?? 0),
      persistentKeepalive: none(f[7]) === null ? null : Number(f[7])
    }
  })
  return { publicKey: head[1] ?? '', listenPort: Number(head[2]), fwmark: none(head[3]), peers }
}

// Parses `ping -D -O` output. "no answer yet for icmp_seq=N" appears when packet N+1 is
// sent while N is unanswered; the very last packet may still be in flight at stop and is
// then not counted as sent, so a clean run reports 0 lost.
export function parsePingerOutput (stdout: string, startMs: number, stopMs: number): Omit<PingerStats, 'addr' | 'stderr'> {
  const replies = new Map<number, number>() // seq -> first reply time (ms)
  const unanswered = new Set<number>()
  let maxSeq = 0
  let transmitted: number | undefined
  for (const line of stdout.split('\n')) {
    const reply = /^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/.exec(line)
    if (reply !== null) {
      const seq = Number(reply[2])
      if (!replies.has(seq)) replies.set(seq, Number(reply[1]) * 1000)
      maxSeq = Math.max(maxSeq, seq)
      continue
    }
    const miss = /^\[\d+\.\d+\] no answer yet for icmp_seq=(\d+)/.exec(line)
    if (miss !== null) {
      unanswered.add(Number(miss[1]))
      maxSeq = Math.max(maxSeq, Number(miss[1]))
      continue
    }
    const summary = /^(\d+) packets transmitted/.exec(line)
    if (summary !== null) transmitted = Number(summary[1])
  }
  let sent = maxSeq
  if (transmitted !== undefined) {
    const inFlight = !replies.has(transmitted) && !unanswered.has(transmitted)
    sent = Math.max(maxSeq, inFlight ? transmitted - 1 : transmitted)
  }
  const received = [...replies.keys()].filter(s => s <= sent).length
  return { sent, received, lost: sent - received, longestGapMs: longestGap([...replies.values()], startMs, stopMs), durationMs: Math.round(stopMs - startMs) }
}

/**
 * `fping -l -D` output: one line per reply on stdout (`[time] addr : [seq], 64 bytes, …`, seq
 * from 0), and on SIGINT the summary on stderr (`addr : xmt/rcv/%loss = 50/49/2%, …`).
 */
export function parseFpingOutput (stdout: string, stderr: string, startMs: number, stopMs: number): Omit<PingerStats, 'addr' | 'stderr'> {
  const replies = new Map<number, number>() // seq -> first reply time (ms)
  for (const line of stdout.split('\n')) {
    const reply = /^\[(\d+\.\d+)\] \S+ : \[(\d+)\], \d+ bytes/.exec(line)
    if (reply !== null && !replies.has(Number(reply[2]))) replies.set(Number(reply[2]), Number(reply[1]) * 1000)
  }
  const xmt = /xmt\/rcv\/%loss = (\d+)\//.exec(stderr)
  const maxSeq = Math.max(-1, ...replies.keys())
  // the last request may still have been on its way when the pinger stopped: not a loss
  const transmitted = xmt === null ? maxSeq + 1 : Number(xmt[1])
  const sent = Math.max(maxSeq + 1, replies.has(transmitted - 1) ? transmitted : transmitted - 1)
  const received = [...replies.keys()].filter(s => s < sent).length
  return { sent, received, lost: sent - received, longestGapMs: longestGap([...replies.values()], startMs, stopMs), durationMs: Math.round(stopMs - startMs) }
}

/** The longest stretch without a reply, from the pinger's start to its stop. */
function longestGap (replyTimes: number[], startMs: number, stopMs: number): number {
  let longest = 0
  let prev = startMs
  for (const t of [...[...replyTimes].sort((a, b) => a - b), stopMs]) {
    longest = Math.max(longest, t - prev)
    prev = t
  }
  return Math.round(longest)
}

// ---------------------------------------------------------------------------------------
// Manifest: what a lab made, for cleanup by the same process or a later sweep.

interface LabRecord {
  id: string
  prefix: string
  ownerPid: number
  ownerStart: string | undefined
  hubNs: string
  namespaces: string[] // node namespaces (hub excluded)
  ifnames: string[] // WireGuard interface names handed out
  pids: Array<{ pid: number; start: string | undefined }> // processes we spawned
  dir: string
}

function manifestDir (): string {
  for (const d of ['/run/w2wesher-lab', join(tmpdir(), 'w2wesher-lab')]) {
    try {
      mkdirSync(d, { recursive: true, mode: 0o700 })
      accessSync(d, fsConstants.W_OK)
      return d
    } catch { /* try the next */ }
  }
  throw new Error('no writable directory for lab manifests')
}

function writeManifest (rec: LabRecord): void {
  const file = join(manifestDir(), `${rec.id}.json`)
  writeFileSync(`${file}.tmp`, JSON.stringify(rec, null, 2), { mode: 0o600 })
  // rename keeps a concurrent sweep from reading half a file
  renameSync(`${file}.tmp`, file)
}

function removeManifest (id: string): void {
  try { unlinkSync(join(manifestDir(), `${id}.json`)) } catch { /* gone */ }
}

function readManifests (): LabRecord[] {
  const dir = manifestDir()
  const out: LabRecord[] = []
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.json')) continue
    try {
      out.push(JSON.parse(readFileSync(join(dir, f), 'utf8')) as LabRecord)
    } catch { /* half-written or foreign: ignore */ }
  }
  return out
}

// Everything still present that this lab record made.
export function leftoversOf (rec: Pick<LabRecord, 'id' | 'prefix' | 'ifnames' | 'pids'>): Leftovers {
  const nsPrefix = `${rec.prefix}-${rec.id}-`
  const namespaces = netnsList().filter(n => n.startsWith(nsPrefix))
  const pids = new Set<number>()
  for (const p of rec.pids) if (pidAlive(p.pid, p.start)) pids.add(p.pid)
  for (const p of wireguardGoPids(rec.ifnames)) pids.add(p)
  for (const ns of namespaces) for (const p of netnsPids(ns)) if (pidAlive(p)) pids.add(p)
  const sockets = rec.ifnames.map(i => join(WG_SOCKET_DIR, `${i}.sock`)).filter(s => existsSync(s))
  const r = runSync(['ip', '-json', 'link', 'show'])
  let rootLinks: string[] = []
  try {
    rootLinks = (JSON.parse(r.stdout) as Array<{ ifname: string }>).map(l => l.ifname)
      .filter(n => n.includes(rec.id) || rec.ifnames.includes(n))
  } catch { /* no ip -json: nothing to report */ }
  return { namespaces, pids: [...pids], sockets, rootLinks }
}

// Synchronous, best-effort, idempotent: safe from an exit handler and on partial failure.
function cleanupRecord (rec: LabRecord, extraPids: number[] = []): void {
  const nsPrefix = `${rec.prefix}-${rec.id}-`
  const present = new Set(netnsList().filter(n => n.startsWith(nsPrefix)))
  const nodeNs = [...new Set([...rec.namespaces, ...[...present].filter(n => n !== rec.hubNs)])]
  // 1. Our own children first, so a daemon cannot re-create an interface we delete.
  terminateSync([...extraPids, ...rec.pids.filter(p => pidAlive(p.pid, p.start)).map(p => p.pid)], 500)
  // 2. Everything running in our namespaces (daemonised wireguard-go, pingers, ...), and
  //    wireguard-go serving our interface names wherever it runs: its tun keeps an
  //    otherwise deleted namespace alive, so deleting the namespace alone is not enough.
  const inNs = nodeNs.filter(n => present.has(n)).flatMap(n => netnsPids(n))
  terminateSync([...inNs, ...wireguardGoPids(rec.ifnames)])
  // 3. Namespaces (their veths and tuns go with them), hub last.
  for (const ns of nodeNs) if (present.has(ns)) runSync(['ip', 'netns', 'del', ns])
  if (present.has(rec.hubNs)) {
    terminateSync(netnsPids(rec.hubNs))
    runSync(['ip', 'netns', 'del', rec.hubNs])
  }
  // 4. Sockets of a SIGKILLed wireguard-go would block a later `wg` on the same name.
  for (const i of rec.ifnames) {
    try { unlinkSync(join(WG_SOCKET_DIR, `${i}.sock`)) } catch { /* not there */ }
  }
}

export interface SweepReport {
  labs: string[]
  namespaces: string[]
}

// Removes what earlier runs with this prefix left behind: labs whose owner process is gone
// (per manifest) and namespaces <prefix>-<id>-* with no live manifest. Live labs of other
// processes are left alone.
export function sweepStaleLabs (prefix: string = DEFAULT_PREFIX): SweepReport {
  assertPrefix(prefix)
  const report: SweepReport = { labs: [], namespaces: [] }
  const live = new Set<string>()
  for (const rec of readManifests()) {
    if (rec.prefix !== prefix) continue
    if (pidAlive(rec.ownerPid, rec.ownerStart)) { live.add(rec.id); continue }
    cleanupRecord(rec)
    try { rmSync(rec.dir, { recursive: true, force: true }) } catch { /* keep going */ }
    removeManifest(rec.id)
    report.labs.push(rec.id)
  }
  for (const ns of netnsList()) {
    const m = new RegExp(`^${prefix}-([0-9a-z]+)-`).exec(ns)
    if (m === null || live.has(m[1] ?? '')) continue
    terminateSync(netnsPids(ns))
    runSync(['ip', 'netns', 'del', ns])
    report.namespaces.push(ns)
  }
  return report
}

function assertPrefix (prefix: string): void {
  if (!/^[a-z][a-z0-9]{0,7}$/.test(prefix)) throw new Error(`lab prefix must be 1-8 lowercase alphanumerics, got ${JSON.stringify(prefix)}`)
}

// ---------------------------------------------------------------------------------------
// Exit handlers: an aborted run (Ctrl-C, SIGTERM from a test runner, uncaught error) still
// removes its namespaces and processes. SIGKILL cannot be caught: sweepStaleLabs() is for that.

const liveLabs = new Set<LabImpl>()
let handlersInstalled = false

function installExitHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', () => { for (const lab of liveLabs) lab.cleanupSync() })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (liveLabs.size > 0) process.stderr.write(`\n[lab] ${sig}: cleaning up ${liveLabs.size} lab(s)\n`)
      for (const lab of liveLabs) lab.cleanupSync()
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1))
    })
  }
}

// ---------------------------------------------------------------------------------------
// Lab implementation

function underlayFor (index: number): string {
  if (index < 1 || index > 65_000) throw new Error(`node index out of range: ${index}`)
  return `198.18.${Math.floor(index / 256)}.${index % 256}`
}

function readTail (file: string, lines: number): string {
  try {
    const text = readFileSync(file, 'utf8')
    return text.split('\n').slice(-lines - 1).join('\n').trimEnd()
  } catch {
    return ''
  }
}

class Daemon implements DaemonHandle {
  readonly pid: number
  readonly exited: Promise<ExitInfo>
  private exit: ExitInfo | undefined
  private forced = false

  constructor (readonly node: string, readonly args: readonly string[], readonly logFile: string, private readonly child: ChildProcess) {
    if (child.pid === undefined) throw new Error(`failed to spawn daemon on ${node}`)
    this.pid = child.pid
    this.exited = new Promise(res => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal, forced: this.forced }
        res(this.exit)
      })
    })
  }

  running (): boolean { return this.exit === undefined }

  async stop (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<ExitInfo> {
    if (this.exit !== undefined) return this.exit
    this.child.kill(signal)
    const timer = setTimeout(() => { this.forced = true; this.child.kill('SIGKILL') }, timeoutMs)
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
    }
  }

  kill9 (): Promise<ExitInfo> {
    if (this.exit === undefined) this.child.kill('SIGKILL')
    return this.exited
  }

  logs (): string {
    try { return readFileSync(this.logFile, 'utf8') } catch { return '' }
  }

  tail (lines = 40): string { return readTail(this.logFile, lines) }

  logRecords (): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = []
    for (const line of this.logs().split('\n')) {
      if (!line.startsWith('{')) continue
      try { out.push(JSON.parse(line) as Record<string, unknown>) } catch { /* partial line */ }
    }
    return out
  }

  waitForLog (pred: (rec: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return waitFor(() => this.logRecords().find(pred), { timeoutMs, intervalMs: 100, what: `a matching log record from ${this.node}` })
  }
}

class LabImpl implements Lab {
  readonly hubNs: string
  private readonly nodes = new Map<string, LabNode>()
  private readonly daemonList: Daemon[] = []
  private readonly pingers = new Set<ChildProcess>()
  private readonly rec: LabRecord
  private nextIndex = 1
  private readonly nets = new Map<string, { number: number, links: number }>()
  private readonly natHosts = new Map<string, number>() // NAT name -> inner hosts handed out
  private daemonRuns = 0
  private destroyed = false

  constructor (readonly id: string, readonly prefix: string, readonly dir: string) {
    this.hubNs = `${prefix}-${id}-hub`
    this.rec = {
      id, prefix, ownerPid: process.pid, ownerStart: procStartTime(process.pid),
      hubNs: this.hubNs, namespaces: [], ifnames: [], pids: [], dir
    }
  }

  async init (): Promise<void> {
    writeManifest(this.rec) // before anything exists, so a crash at any point is sweepable
    await run(['ip', 'netns', 'add', this.hubNs])
    await run(['ip', '-n', this.hubNs, 'link', 'set', 'lo', 'up'])
    await run(['ip', '-n', this.hubNs, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0'])
    await run(['ip', '-n', this.hubNs, 'link', 'set', 'br0', 'up'])
  }

  node (name: string): LabNode {
    const n = this.nodes.get(name)
    if (n === undefined) throw new Error(`no lab node named ${JSON.stringify(name)}`)
    return n
  }

  nodeNames (): string[] { return [...this.nodes.keys()] }

  async addNode (name: string, opts: AddNodeOptions = {}): Promise<LabNode> {
    if (this.destroyed) throw new Error('lab destroyed')
    if (!/^[a-z0-9][a-z0-9_-]{0,31}$/i.test(name)) throw new Error(`bad node name ${JSON.stringify(name)}`)
    if (this.nodes.has(name)) throw new Error(`node ${name} exists`)
    // Indexes are never reused: a re-added node gets a fresh underlay IP, MAC and
    // interface name, so stale neighbour entries on other nodes cannot delay it.
    const index = this.nextIndex++
    const underlay = underlayFor(index)
    const dir = join(this.dir, name)
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(join(dir, 'state'), { recursive: true, mode: 0o700 })
    const node: LabNode = {
      name, ns: `${this.prefix}-${this.id}-${name}`, index, underlay,
      underlayCidr: `${underlay}/${UNDERLAY_PREFIX_LEN}`, wgIf: `w${this.id}${index}`,
      hubIf: `v${index}`, dir, stateDir: join(dir, 'state')
    }
    this.nodes.set(name, node)
    this.rec.namespaces.push(node.ns)
    this.rec.ifnames.push(node.wgIf)
    writeManifest(this.rec)
    const { ns, hubIf } = node
    await run(['ip', 'netns', 'add', ns])
    if (opts.behindNat !== undefined) {
      await this.attachBehindNat(node, opts.behindNat)
      return node
    }
    await run(['ip', '-n', this.hubNs, 'link', 'add', hubIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    await run(['ip', '-n', this.hubNs, 'link', 'set', hubIf, 'master', 'br0', 'up'])
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
    await run(['ip', '-n', ns, 'addr', 'add', node.underlayCidr, 'dev', 'eth0'])
    await run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
    if (opts.multicast === true) await run(['ip', '-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0'])
    return node
  }

  async removeNode (name: string): Promise<void> {
    const node = this.node(name)
    await Promise.all(this.daemonList.filter(d => d.node === name && d.running()).map(d => d.stop('SIGTERM', 5000)))
    terminateSync([...netnsPids(node.ns), ...wireguardGoPids([node.wgIf])])
    await execCmd(['ip', 'netns', 'del', node.ns])
    try { unlinkSync(join(WG_SOCKET_DIR, `${node.wgIf}.sock`)) } catch { /* not there */ }
    this.nodes.delete(name)
  }

  exec (node: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return execCmd(['ip', 'netns', 'exec', this.node(node).ns, ...argv], opts)
  }

  async execOk (node: string, argv: readonly string[], opts?: ExecOptions): Promise<string> {
    const r = await this.exec(node, argv, opts)
    if (r.code !== 0) throw new Error(`[${node}] ${argv.join(' ')} failed (${r.code}${r.timedOut ? ', timeout' : ''}): ${r.stderr.trim()}`)
    return r.stdout
  }

  spawnDaemon (node: string, args: readonly string[], opts: SpawnDaemonOptions = {}): DaemonHandle {
    if (this.destroyed) throw new Error('lab destroyed')
    const n = this.node(node)
    const bin = opts.bin ?? DAEMON_BIN
    const logFile = join(n.dir, `daemon-${++this.daemonRuns}.log`)
    const fd = openSync(logFile, 'a', 0o600)
    // A file, not a pipe: the log survives us, and a slow reader can never block the daemon.
    // `ip netns exec` execs (no fork), so child.pid is the daemon itself.
    const child = spawn('ip', ['netns', 'exec', n.ns, ...(opts.wrap ?? []), process.execPath, bin, ...args], {
      stdio: ['ignore', fd, fd], env: { ...CHILD_ENV, ...opts.env }
    })
    closeSync(fd)
    const d = new Daemon(node, [...args], logFile, child)
    this.daemonList.push(d)
    this.rec.pids.push({ pid: d.pid, start: procStartTime(d.pid) })
    writeManifest(this.rec)
    return d
  }

  daemons (): DaemonHandle[] { return [...this.daemonList] }

  joinArgs (node: string, opts: JoinArgsOptions): string[] {
    const n = this.node(node)
    return [
      'join', '--psk-file', opts.pskFile,
      ...(opts.bootstrap ?? []).flatMap(b => ['--bootstrap', b]),
      '--state-dir', n.stateDir, '--interface', n.wgIf, '--name', n.name,
      ...(opts.overlayIpv4 === undefined ? [] : ['--overlay-ipv4', opts.overlayIpv4]),
      ...(opts.logLevel === undefined ? [] : ['--log-level', opts.logLevel]),
      ...(opts.extra ?? [])
    ]
  }

  bootstrapAddr (node: string, port = DEFAULT_PORT): string {
    return `${this.node(node).underlay}:${port}`
  }

  async genPsk (bin = DAEMON_BIN): Promise<string> {
    const psk = await run([process.execPath, bin, 'genpsk'])
    const file = join(this.dir, 'swarm.key')
    writeFileSync(file, psk, { mode: 0o600 })
    return file
  }

  async overlayAddresses (node: string, ifname?: string): Promise<OverlayAddresses> {
    const r = await this.exec(node, ['ip', '-json', 'addr', 'show', 'dev', ifname ?? this.node(node).wgIf])
    return r.code === 0 ? parseIpAddrJson(r.stdout) : { all: [] }
  }

  async wgDump (node: string, ifname?: string): Promise<WgDump | undefined> {
    const r = await this.exec(node, ['wg', 'show', ifname ?? this.node(node).wgIf, 'dump'])
    return r.code === 0 ? parseWgDump(r.stdout) : undefined
  }

  async wgPeers (node: string, ifname?: string): Promise<WgPeer[]> {
    return (await this.wgDump(node, ifname))?.peers ?? []
  }

  async ping (node: string, addr: string, opts: PingOptions = {}): Promise<boolean> {
    const count = opts.count ?? 1
    const waitS = ((opts.timeoutMs ?? 1000) / 1000).toFixed(3)
    const argv = ['ping', '-n', '-q', '-c', String(count), '-W', waitS]
    if (count > 1) argv.push('-i', '0.2')
    const r = await this.exec(node, [...argv, addr], { timeoutMs: 5_000 + count * 1_500 })
    return r.code === 0
  }

  async pingMatrix (nodes: string[] = this.nodeNames(), opts: PingMatrixOptions = {}): Promise<PingMatrix> {
    const family = opts.family ?? 6
    const addrs = new Map<string, string | undefined>()
    await Promise.all(nodes.map(async n => {
      const a = await this.overlayAddresses(n, opts.ifname?.(this.node(n)))
      addrs.set(n, family === 4 ? a.ipv4 : a.ipv6)
    }))
    const pairs = nodes.flatMap(from => nodes.filter(to => to !== from).map(to => ({ from, to, addr: addrs.get(to) })))
    const results = await mapBounded(pairs, opts.concurrency ?? 12, async p => ({
      ...p,
      ok: p.addr !== undefined && await this.ping(p.from, p.addr, { count: opts.count ?? 1, timeoutMs: opts.timeoutMs ?? 1000 })
    }))
    const failures = results.filter(r => !r.ok)
    return { family, nodes, results, ok: failures.length === 0, failures, text: formatPingMatrix(nodes, results, family) }
  }

  startPinger (node: string, addr: string, opts: PingerOptions = {}): Pinger {
    const n = this.node(node)
    const startMs = Date.now()
    const priority = opts.realtime === true ? ['chrt', '--fifo', '10'] : []
    const fping = opts.tool === 'fping'
    const argv = fping ? ['fping', '-l', '-p', '100', '-D', addr] : ['ping', '-n', '-i', '0.1', '-D', '-O', addr]
    const child = spawn('ip', ['netns', 'exec', n.ns, ...priority, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'], env: CHILD_ENV
    })
    this.pingers.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const closed = new Promise<void>(res => child.on('close', () => res()))
    const stop = async (): Promise<PingerStats> => {
      const stopMs = Date.now()
      // SIGINT makes ping print its summary; ip netns exec (and chrt) exec'd it, so this is ping.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT')
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
      await closed
      clearTimeout(timer)
      this.pingers.delete(child)
      const stats = fping ? parseFpingOutput(stdout, stderr, startMs, stopMs) : parsePingerOutput(stdout, startMs, stopMs)
      return { addr, ...stats, stderr: stderr.trim() }
    }
    return { node, addr, stop }
  }

  async setLink (node: string, up: boolean): Promise<void> {
    // Toggle the bridge port, not the node's eth0: like pulling the cable at the switch,
    // the node keeps its address and routes and only loses carrier.
    await run(['ip', '-n', this.hubNs, 'link', 'set', this.node(node).hubIf, up ? 'up' : 'down'])
  }

  async partition (groups: string[][] | null): Promise<void> {
    const hubNft = (args: string[], input?: string): Promise<ExecResult> =>
      execCmd(['ip', 'netns', 'exec', this.hubNs, 'nft', ...args], { input })
    await hubNft(['delete', 'table', 'bridge', 'w2lab']) // absent on the first call: ignore
    if (groups === null) return
    const rules: string[] = []
    groups.forEach((ga, i) => groups.forEach((gb, j) => {
      if (i === j) return
      for (const a of ga) for (const b of gb) rules.push(`iifname "${this.node(a).hubIf}" oifname "${this.node(b).hubIf}" drop`)
    }))
    const script = [
      'table bridge w2lab {',
      '  chain forward {',
      '    type filter hook forward priority 0; policy accept;',
      ...rules.map(r => `    ${r}`),
      '  }',
      '}',
      ''
    ].join('\n')
    const r = await hubNft(['-f', '-'], script)
    if (r.code !== 0) throw new Error(`partition: nft failed (${r.code}): ${r.stderr.trim()}`)
  }

  async addUnderlay (node: string, net: string): Promise<UnderlayLink> {
    if (!/^[a-z][a-z0-9]{0,5}$/.test(net)) throw new Error(`bad network name ${JSON.stringify(net)}`)
    const n = this.node(node)
    let info = this.nets.get(net)
    if (info === undefined) {
      info = { number: this.nets.size + 1, links: 0 }
      this.nets.set(net, info)
      await run(['ip', '-n', this.hubNs, 'link', 'add', `br${net}`, 'type', 'bridge', 'mcast_snooping', '0'])
      await run(['ip', '-n', this.hubNs, 'link', 'set', `br${net}`, 'up'])
    }
    info.links++
    const existing = (await run(['ip', '-n', n.ns, '-o', 'link', 'show'])).split('\n').filter(l => /: eth\d+[@:]/.test(l)).length
    const ifname = `eth${existing}`
    const hubSide = `${net}${n.index}`
    if (n.index > 254) throw new Error('addUnderlay: node index above 254')
    const address = `198.19.${100 + info.number}.${n.index}`
    await run(['ip', '-n', this.hubNs, 'link', 'add', hubSide, 'type', 'veth', 'peer', 'name', ifname, 'netns', n.ns])
    await run(['ip', '-n', this.hubNs, 'link', 'set', hubSide, 'master', `br${net}`, 'up'])
    await run(['ip', '-n', n.ns, 'addr', 'add', `${address}/24`, 'dev', ifname])
    await run(['ip', '-n', n.ns, 'link', 'set', ifname, 'up'])
    return { ifname, address, cidr: `${address}/24` }
  }

  async addNat (name: string): Promise<LabNode> {
    const nat = await this.addNode(name)
    if (nat.index > 99) throw new Error('addNat: NAT index above 99')
    this.natHosts.set(name, 0)
    await run(['ip', 'netns', 'exec', nat.ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'])
    // Masquerade keeps the source port when it is free (what hole punching relies on). Inbound
    // is filtered like a home router's: only replies pass. (Without that, an unsolicited packet
    // to the NAT's own address leaves a conntrack entry that, in theory, makes the next
    // outbound mapping to that peer pick another port; not measured here.)
    const script = [
      'table ip w2nat {',
      '  chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "eth0" masquerade; }',
      '  chain input { type filter hook input priority filter; policy accept; iifname "eth0" ct state established,related accept; iifname "eth0" drop; }',
      '  chain forward { type filter hook forward priority filter; policy accept; iifname "eth0" ct state established,related accept; iifname "eth0" drop; }',
      '}',
      ''
    ].join('\n')
    await run(['ip', 'netns', 'exec', nat.ns, 'nft', '-f', '-'], { input: script })
    return nat
  }

  private async attachBehindNat (node: LabNode, natName: string): Promise<void> {
    const nat = this.node(natName)
    const hosts = this.natHosts.get(natName)
    if (hosts === undefined) throw new Error(`${natName} is not a NAT (use addNat)`)
    this.natHosts.set(natName, hosts + 1)
    const inner = `198.19.${nat.index}`
    const natSide = `in${node.index}`
    if (hosts === 0) {
      // the NAT's inner bridge, made with its first host
      await run(['ip', '-n', nat.ns, 'link', 'add', 'brin', 'type', 'bridge'])
      await run(['ip', '-n', nat.ns, 'addr', 'add', `${inner}.1/24`, 'dev', 'brin'])
      await run(['ip', '-n', nat.ns, 'link', 'set', 'brin', 'up'])
    }
    node.underlay = `${inner}.${hosts + 2}`
    node.underlayCidr = `${node.underlay}/24`
    node.hubIf = natSide
    await run(['ip', '-n', nat.ns, 'link', 'add', natSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', node.ns])
    await run(['ip', '-n', nat.ns, 'link', 'set', natSide, 'master', 'brin', 'up'])
    await run(['ip', '-n', node.ns, 'link', 'set', 'lo', 'up'])
    await run(['ip', '-n', node.ns, 'addr', 'add', node.underlayCidr, 'dev', 'eth0'])
    await run(['ip', '-n', node.ns, 'link', 'set', 'eth0', 'up'])
    await run(['ip', '-n', node.ns, 'route', 'add', 'default', 'via', `${inner}.1`])
  }

  async setUnderlayAddress (node: string, address: string): Promise<void> {
    const n = this.node(node)
    const prefix = n.underlayCidr.split('/')[1] ?? String(UNDERLAY_PREFIX_LEN)
    await run(['ip', '-n', n.ns, 'addr', 'del', n.underlayCidr, 'dev', 'eth0'])
    await run(['ip', '-n', n.ns, 'addr', 'add', `${address}/${prefix}`, 'dev', 'eth0'])
    n.underlay = address
    n.underlayCidr = `${address}/${prefix}`
  }

  logTails (lines = 30): string {
    const seen = new Set<string>()
    const parts: string[] = []
    for (const d of [...this.daemonList].reverse()) {
      if (seen.has(d.node)) continue // latest run per node is the interesting one
      seen.add(d.node)
      const state = d.running() ? 'running' : 'exited'
      parts.push(`----- ${d.node} (pid ${d.pid}, ${state}) ${d.logFile} -----\n${d.tail(lines)}`)
    }
    return parts.reverse().join('\n')
  }

  leftovers (): Leftovers { return leftoversOf(this.rec) }

  // Sync core of destroy(); also what the exit/signal handlers run.
  cleanupSync (keepFiles = false): void {
    cleanupRecord(this.rec, [...this.pingers].flatMap(p => p.pid === undefined ? [] : [p.pid]))
    this.pingers.clear()
    if (!keepFiles) {
      try { rmSync(this.dir, { recursive: true, force: true }) } catch { /* best effort */ }
    }
    removeManifest(this.id)
    liveLabs.delete(this)
    this.destroyed = true
  }

  async destroy (opts: DestroyOptions = {}): Promise<void> {
    // Graceful first: SIGTERM lets daemons flush state and logs; cleanupSync then
    // SIGKILLs anything that did not go.
    const timeout = opts.stopTimeoutMs ?? 5000
    await Promise.all(this.daemonList.filter(d => d.running()).map(d => d.stop('SIGTERM', timeout)))
    for (const p of this.pingers) p.kill('SIGINT')
    this.cleanupSync(opts.keepFiles ?? false)
  }
}

// Runs fn over items with at most `limit` in flight (process-spawning helpers on 2 cores).
export async function mapBounded<T, R> (items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

export function labPrerequisites (): string[] {
  const missing: string[] = []
  if (process.getuid?.() !== 0) missing.push('root (uid 0)')
  for (const bin of ['ip', 'ping', 'wg', 'wireguard-go']) {
    if (runSync(['sh', '-c', `command -v ${bin}`]).code !== 0) missing.push(bin)
  }
  return missing
}

export async function createLab (opts: LabOptions = {}): Promise<Lab> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX
  assertPrefix(prefix)
  const id = randomBytes(4).readUInt32BE(0).toString(36).padStart(5, '0').slice(-5)
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-${id}-`))
  const lab = new LabImpl(id, prefix, dir)
  if (opts.handleSignals !== false) installExitHandlers()
  liveLabs.add(lab)
  try {
    await lab.init()
  } catch (err) {
    lab.cleanupSync()
    throw err
  }
  return lab
}

// ---------------------------------------------------------------------------------------
// Static WireGuard full mesh without any control plane: the lab's self-test and the lower
// bound for benchmarks. Runs wireguard-go exactly as the daemon does (daemonised).

export interface StaticMeshMember {
  node: string
  ifname: string
  publicKey: string
  port: number
  ipv4: string
  ipv6: string
}

export interface StaticMeshOptions {
  port?: number
  /**
   * How every pair gets its first handshake once all nodes hold all peers, always from the
   * lower to the higher index only: when both ends of a fresh pair send at once, WireGuard's
   * two initiations cross, each side drops the other's response, and no session exists until
   * the 5 s REKEY_TIMEOUT retry (seen here in about 1 of 12 fresh pairs).
   * - 'ping' (default): ping each pair, return when all answered;
   * - 'start': give the lower end a persistent keepalive, which WireGuard sends at once, and
   *   return without waiting: one `wg` per node instead of one ping per pair, so a bench can
   *   time the handshakes without a poller that loads the cores it measures;
   * - 'none': no handshake.
   */
  handshake?: 'ping' | 'start' | 'none'
  /** runs for each node before its wireguard-go starts (the bench: a bare Node start) */
  beforeWireGuard?: (node: string) => Promise<void>
  /** keys made beforehand (makeWgKey), by node; the others are made here */
  keys?: ReadonlyMap<string, WgKeyFile>
}

export const STATIC_MESH_V4 = (index: number): string => `198.19.${Math.floor(index / 256)}.${index % 256}`
export const STATIC_MESH_V6 = (index: number): string => `fd5c:6c61:6200::${index.toString(16)}`

/** A WireGuard key for a static (daemon-less) node: its private key in a 0600 file in the node's dir. */
export interface WgKeyFile { keyFile: string, publicKey: string }

export async function makeWgKey (lab: Lab, name: string): Promise<WgKeyFile> {
  const key = (await lab.execOk(name, ['wg', 'genkey'])).trim()
  const publicKey = (await lab.execOk(name, ['wg', 'pubkey'], { input: `${key}\n` })).trim()
  const keyFile = join(lab.node(name).dir, 'wg.key')
  writeFileSync(keyFile, `${key}\n`, { mode: 0o600 })
  return { keyFile, publicKey }
}

export async function setupStaticMesh (lab: Lab, names: string[], opts: StaticMeshOptions = {}): Promise<StaticMeshMember[]> {
  const port = opts.port ?? 51820
  const members = await Promise.all(names.map(async name => {
    const n = lab.node(name)
    const { keyFile, publicKey } = opts.keys?.get(name) ?? await makeWgKey(lab, name)
    await opts.beforeWireGuard?.(name)
    await lab.execOk(name, ['wireguard-go', n.wgIf])
    await lab.execOk(name, ['wg', 'set', n.wgIf, 'private-key', keyFile, 'listen-port', String(port)])
    const ipv4 = STATIC_MESH_V4(n.index)
    const ipv6 = STATIC_MESH_V6(n.index)
    await lab.execOk(name, ['ip', 'addr', 'add', `${ipv4}/16`, 'dev', n.wgIf])
    await lab.execOk(name, ['ip', 'addr', 'add', `${ipv6}/64`, 'dev', n.wgIf])
    await lab.execOk(name, ['ip', 'link', 'set', n.wgIf, 'up'])
    return { node: name, ifname: n.wgIf, publicKey, port, ipv4, ipv6 }
  }))
  await Promise.all(members.map(async self => {
    const peerArgs = members.filter(m => m !== self).flatMap(m => [
      'peer', m.publicKey, 'endpoint', `${lab.node(m.node).underlay}:${m.port}`, 'allowed-ips', `${m.ipv4}/32,${m.ipv6}/128`
    ])
    await lab.execOk(self.node, ['wg', 'set', self.ifname, ...peerArgs])
  }))
  const handshake = opts.handshake ?? 'ping'
  if (handshake === 'start') {
    await Promise.all(members.slice(0, -1).map(async (self, i) => {
      const higher = members.slice(i + 1).flatMap(m => ['peer', m.publicKey, 'persistent-keepalive', '25'])
      await lab.execOk(self.node, ['wg', 'set', self.ifname, ...higher])
    }))
  } else if (handshake === 'ping') {
    const pairs = members.flatMap((a, i) => members.slice(i + 1).map(b => ({ a, b })))
    await mapBounded(pairs, 16, async ({ a, b }) => {
      const ok = await waitFor(() => lab.ping(a.node, b.ipv6, { timeoutMs: 2000 }), { timeoutMs: 20_000, intervalMs: 0 })
        .catch(() => false)
      if (!ok) throw new Error(`static mesh: no handshake between ${a.node} and ${b.node} within 20 s`)
    })
  }
  return members
}

// ---------------------------------------------------------------------------------------
// Formatting

export function formatTable (rows: string[][]): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, c.length) })
  return rows.map(row => row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}

export function formatPingMatrix (nodes: string[], results: PingResult[], family: 4 | 6): string {
  const ok = new Map(results.map(r => [`${r.from}>${r.to}`, r.ok]))
  const rows = [[`IPv${family} from\\to`, ...nodes]]
  for (const from of nodes) {
    rows.push([from, ...nodes.map(to => from === to ? '-' : ok.get(`${from}>${to}`) === true ? 'ok' : 'FAIL')])
  }
  return formatTable(rows)
}

// ---------------------------------------------------------------------------------------
// CLI: `node --import tsx test/e2e/lab.ts sweep [prefix]` removes stale labs by hand;
// `hold <prefix> <n>` builds an n-node static mesh, prints its record, and waits to be
// killed (lab.test.ts uses it to prove signal and crash cleanup).

async function cli (argv: string[]): Promise<void> {
  const [cmd, arg1, arg2] = argv
  if (cmd === 'sweep') {
    console.log(JSON.stringify(sweepStaleLabs(arg1 ?? DEFAULT_PREFIX)))
    return
  }
  if (cmd === 'hold') {
    const lab = await createLab({ prefix: arg1 ?? DEFAULT_PREFIX })
    const names = Array.from({ length: Number(arg2 ?? 2) }, (_, i) => `n${i + 1}`)
    for (const n of names) await lab.addNode(n)
    await setupStaticMesh(lab, names)
    const ifnames = names.map(n => lab.node(n).wgIf)
    console.log(JSON.stringify({ ready: true, id: lab.id, prefix: lab.prefix, ifnames, namespaces: names.map(n => lab.node(n).ns) }))
    setInterval(() => { /* wait for a signal */ }, 60_000)
    return
  }
  console.error('usage: lab.ts sweep [prefix] | hold <prefix> <nodes>')
  process.exitCode = 2
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  cli(process.argv.slice(2)).catch(err => { console.error(err); process.exit(1) })
}

/**
 * Whether end-to-end suites should skip: only on a developer machine that lacks root or the
 * tools. In CI (CI=true) they always run, so a missing prerequisite fails loudly.
 */
export function skipLab (): boolean {
  const missing = labPrerequisites()
  if (missing.length > 0 && process.env.CI !== 'true') {
    console.warn(`skipping end-to-end tests: needs ${missing.join(', ')}`)
    return true
  }
  return false
}
