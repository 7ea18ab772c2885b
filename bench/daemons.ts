// Benchmarks on a converged mesh of real daemons (bench/join.ts measureConvergence hands the
// lab over before tearing it down):
// - idle: after SETTLE s with nothing happening, each daemon's CPU time (utime+stime from
//   /proc/<pid>/stat) over IDLE s, as CPU-s per minute, and its RSS (VmRSS) at the end;
//   wireguard-go's figures beside them, as the floor a static mesh costs.
// - restart: 10 Hz pings from node1 to node2's overlay IPv6 while node2's daemon is stopped
//   (SIGTERM) and started again (same state dir, no --bootstrap); lost pings and the longest
//   reply gap, over ROUNDS restarts. Two pingers side by side: an exact 10 Hz one (fping at
//   real-time priority) and iputils `ping -i 0.1`, whose period is 104 ms on these machines.

import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { sleep, waitFor, wireguardGoPids, type Lab } from '../test/e2e/lab.ts'
import { daemonEnv } from './join.ts'

/** rssFileMiB: pages of files (the `node` binary: 34 MiB for an empty Node process here, shared by every Node process); the rest is anonymous memory, heap and stacks */
export interface ProcFigures { node: string, pid: number, cpuSPerMin: number, rssMiB: number, rssFileMiB: number }

export interface IdleResult {
  nodes: number
  settleSeconds: number
  idleSeconds: number
  daemons: ProcFigures[]
  wireguardGo: ProcFigures[]
  daemonCpuSPerMin: { median: number, max: number }
  daemonRssMiB: { median: number, max: number }
  /** the part of daemonRssMiB that is file pages (see ProcFigures); absent in summaries before round 10 */
  daemonRssFileMiB?: { median: number, max: number }
  wireguardGoCpuSPerMin: { median: number, max: number }
  wireguardGoRssMiB: { median: number, max: number }
}

export interface GapFigures { sent: number, lost: number, longestGapMs: number }
/**
 * Each figure twice: `ping -i 0.1` (iputils), whose period here is 104 ms (the interval plus
 * the kernel's timer rounding), and beside it `exact`, a true 10 Hz (fping on a fixed 100 ms
 * schedule at real-time priority, since round 13), which the target is read against.
 */
export interface RestartRound extends GapFigures { round: number, restartMs: number, exact?: GapFigures }
export interface RestartResult {
  rounds: RestartRound[]
  lostTotal: number
  longestGapMs: number
  /** the same pingers on the same mesh with no restart: the gap the machine itself shows */
  control: GapFigures & { exact?: GapFigures }
  /** the exact 10 Hz pinger over all rounds; absent in summaries before round 13 */
  exact?: { lostTotal: number, longestGapMs: number }
}

const TICK = 100 // USER_HZ on Linux

export function cpuTicks (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // fields after "(comm)": state is field 3; utime and stime are fields 14 and 15
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(rest[11]) + Number(rest[12])
}

function rss (pid: number): { rssMiB: number, rssFileMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const mib = (field: string): number => {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)
    return m === null ? 0 : Math.round(Number(m[1]) / 1024 * 10) / 10
  }
  return { rssMiB: mib('VmRSS'), rssFileMiB: mib('RssFile') }
}

export const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length === 0 ? 0 : s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}
const r3 = (x: number): number => Math.round(x * 1000) / 1000
const summary = (v: number[]): { median: number, max: number } => ({ median: r3(median(v)), max: r3(Math.max(...v)) })

/**
 * CPU seconds the mesh's processes have used so far (daemons and wireguard-go): divided by
 * the cores, a floor under any wall time that needs all of that work done.
 */
export function meshCpuSeconds (lab: Lab, names: string[]): { daemons: number, wireguardGo: number } {
  const sum = (pids: number[]): number => pids.reduce((s, pid) => { try { return s + cpuTicks(pid) } catch { return s } }, 0) / TICK
  const daemons = lab.daemons().filter(d => names.includes(d.node) && d.running()).map(d => d.pid)
  const wg = wireguardGoPids(names.map(n => lab.node(n).wgIf))
  return { daemons: r3(sum(daemons)), wireguardGo: r3(sum(wg)) }
}

export async function measureIdle (lab: Lab, names: string[], settleSeconds: number, idleSeconds: number): Promise<IdleResult> {
  await sleep(settleSeconds * 1000)
  const daemonPids = names.map(node => {
    const d = lab.daemons().find(x => x.node === node && x.running())
    if (d === undefined) throw new Error(`idle: no running daemon on ${node}`)
    return { node, pid: d.pid }
  })
  const wgPids = names.flatMap(node => wireguardGoPids([lab.node(node).wgIf]).map(pid => ({ node, pid })))
  const all = [...daemonPids, ...wgPids]
  const start = all.map(p => cpuTicks(p.pid))
  const t0 = performance.now()
  await sleep(idleSeconds * 1000)
  const seconds = (performance.now() - t0) / 1000
  const figures = all.map((p, i) => ({
    ...p,
    cpuSPerMin: r3((cpuTicks(p.pid) - (start[i] as number)) / TICK / seconds * 60),
    ...rss(p.pid)
  }))
  const daemons = figures.slice(0, daemonPids.length)
  const wireguardGo = figures.slice(daemonPids.length)
  return {
    nodes: names.length,
    settleSeconds,
    idleSeconds: Math.round(seconds),
    daemons,
    wireguardGo,
    daemonCpuSPerMin: summary(daemons.map(d => d.cpuSPerMin)),
    daemonRssMiB: summary(daemons.map(d => d.rssMiB)),
    daemonRssFileMiB: summary(daemons.map(d => d.rssFileMiB)),
    wireguardGoCpuSPerMin: summary(wireguardGo.map(d => d.cpuSPerMin)),
    wireguardGoRssMiB: summary(wireguardGo.map(d => d.rssMiB))
  }
}

export async function measureRestart (lab: Lab, addrs: Map<string, string>, pskFile: string, rounds: number): Promise<RestartResult> {
  const target = 'node2'
  const addr = addrs.get(target)
  if (addr === undefined) throw new Error('restart: no overlay address for node2')
  if (spawnSync('sh', ['-c', 'command -v fping && command -v chrt']).status !== 0) throw new Error('restart: fping or chrt is missing (apt-get install fping; bash scripts/install-deps.sh installs it)')
  const gaps = ({ sent, lost, longestGapMs }: GapFigures): GapFigures => ({ sent, lost, longestGapMs })
  // two pingers side by side: iputils ping as in every round before, and the exact 10 Hz one
  const startPingers = (): { stop: () => Promise<[GapFigures, GapFigures]> } => {
    const plain = lab.startPinger('node1', addr)
    const exact = lab.startPinger('node1', addr, { tool: 'fping', realtime: true })
    return { stop: async () => await Promise.all([plain.stop(), exact.stop()]).then(([p, e]) => [gaps(p), gaps(e)]) }
  }
  const said = (g: GapFigures): string => `sent ${g.sent}, lost ${g.lost}, longest gap ${g.longestGapMs} ms`
  const controlPingers = startPingers()
  await sleep(5000)
  const [c, cExact] = await controlPingers.stop()
  console.log(`[bench] restart control (no restart): ping ${said(c)}; exact 10 Hz: ${said(cExact)}`)
  const out: RestartRound[] = []
  for (let round = 1; round <= rounds; round++) {
    const pingers = startPingers()
    await sleep(2000)
    const old = lab.daemons().find(d => d.node === target && d.running())
    if (old === undefined) throw new Error('restart: node2 has no running daemon')
    const t0 = performance.now()
    await old.stop('SIGTERM')
    const d = lab.spawnDaemon(target, lab.joinArgs(target, { pskFile }), daemonEnv())
    // back when it says its interface is ready and it has rejoined a member
    await d.waitForLog(r => r.msg === 'member joined', 30_000)
    const restartMs = Math.round(performance.now() - t0)
    await sleep(3000)
    const [stats, exact] = await pingers.stop()
    out.push({ round, ...stats, restartMs, exact })
    console.log(`[bench] restart round ${round}: ping ${said(stats)}; exact 10 Hz: ${said(exact)}; daemon back in ${restartMs} ms`)
    await waitFor(() => d.running() ? true : undefined, { timeoutMs: 1000 })
  }
  const exactRounds = out.map(r => r.exact as GapFigures)
  return {
    rounds: out,
    lostTotal: out.reduce((s, r) => s + r.lost, 0),
    longestGapMs: Math.max(...out.map(r => r.longestGapMs)),
    control: { ...c, exact: cExact },
    exact: { lostTotal: exactRounds.reduce((s, r) => s + r.lost, 0), longestGapMs: Math.max(...exactRounds.map(r => r.longestGapMs)) }
  }
}
