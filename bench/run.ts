// `npm run bench`: the whole suite. Prints a table (each figure next to the static wireguard-go
// mesh floor and the target of issue #7), writes bench/results/summary.json (plus one JSON per
// part), renders docs/convergence.svg and refreshes the results table in docs/benchmarks.md.
//
// BENCH_ONLY=join,conv10,conv25,idle,restart,static,cp,ipam runs a subset (BENCH_ONLY=report: none); figures of parts
// not run are kept from the previous summary.json (each part carries its date and load).
// Real-daemon parts need root, ip, wg, wireguard-go (and fping for restart); run the suite under the shared lock:
//   flock /tmp/w2w-e2e.lock npm run bench
// Other knobs: BENCH_ROUNDS (joins, default 5), BENCH_IDLE (s, default 60), BENCH_SETTLE (s,
// default 60), BENCH_RESTARTS (default 3), BENCH_CP (control-plane sizes, default 50,100,250),
// BENCH_CP_IDLE / BENCH_CP_SETTLE / BENCH_CP_TIMEOUT (s, default 420), BENCH_IPAM_NODES (default 10000),
// BENCH_NODE_OPTIONS (Node/V8 flags for the conv10/conv25/idle/restart daemons, e.g. --max-semi-space-size=1),
// BENCH_DAEMON_WRAP (a command those daemons run under, e.g. "nice -n 10"),
// BENCH_MESH_TIMEOUT (s, default 90: how long a convergence may take), BENCH_REPEATS (default 3:
// simultaneous starts per convergence size, and runs of the control plane up to N=100; the
// figure is their median, as single runs of one code spread widely).

import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { formatTable, labPrerequisites, sweepStaleLabs } from '../test/e2e/lab.ts'
import { benchJoin, measureConvergence, type ConvergenceResult, type Results as JoinResults } from './join.ts'
import { measureStaticMesh, RESULTS_DIR, stats, type StaticMeshResult } from './static-mesh.ts'
import { measureIdle, measureRestart, median, type IdleResult, type RestartResult } from './daemons.ts'
import { benchRepeats, runControlPlane, type ControlPlaneResult } from './control-plane.ts'
import { runIpamSim, type SimResult } from './ipam-sim.ts'
import { renderChart } from './chart.ts'

const DOCS = resolve(import.meta.dirname, '..', 'docs')
const SUMMARY = join(RESULTS_DIR, 'summary.json')
const PARTS = ['join', 'conv10', 'conv25', 'idle', 'restart', 'static', 'cp', 'ipam'] as const
type Part = typeof PARTS[number]

/** when a part ran: date, load, and the machine's speed then (nodeStartCpuMs) */
interface Stamp { date: string, loadavg: number[], nodeStartCpuMs?: number }
type Stamped<T> = T & Stamp
/** one simultaneous start: its figure and CPU */
type ConvergenceRun = Pick<ConvergenceResult, 'allHandshakesMs' | 'cpuSeconds'>
/** a convergence size: the first start's full result, and every start's figure (the first included) */
type Convergence = ConvergenceResult & { runs?: ConvergenceRun[] }

const REPEATS = benchRepeats(3)

export interface Summary {
  machine: { cpus: number, node: string }
  join?: Stamped<Pick<JoinResults, 'nodes' | 'join'>>
  convergence: Record<string, Stamped<Convergence>>
  idle?: Stamped<IdleResult>
  restart?: Stamped<RestartResult>
  staticMesh: Record<string, Stamped<StaticMeshResult>>
  controlPlane?: Stamped<{ results: ControlPlaneResult[] }>
  ipam?: Stamped<{ results: SimResult[] }>
  errors: string[]
}

let nodeStartCpu: number | undefined // measured once per suite run
const stamp = (): Stamp => ({
  date: new Date().toISOString(), loadavg: loadavg().map(x => Math.round(x * 100) / 100), ...(nodeStartCpu === undefined ? {} : { nodeStartCpuMs: nodeStartCpu })
})

/**
 * The machine's speed on the day: the CPU of a bare Node start (ms, its own count just before
 * it exits), median of `runs`. The same code's figures moved by a third between days here (the
 * shared machine, not the load average), and this says by how much.
 */
export function nodeStartCpuMs (runs = 15): number {
  return Math.round(median(Array.from({ length: runs }, () => Number(execFileSync(process.execPath,
    ['-e', 'const u = process.cpuUsage(); process.stdout.write(String((u.user + u.system) / 1000))'], { encoding: 'utf8' })))))
}
const progress = (msg: string): void => { console.log(`[bench] ${msg}`) }

function loadSummary (): Summary {
  const fresh: Summary = { machine: { cpus: cpus().length, node: process.version }, convergence: {}, staticMesh: {}, errors: [] }
  if (!existsSync(SUMMARY)) return fresh
  try {
    const old = JSON.parse(readFileSync(SUMMARY, 'utf8')) as Summary
    return { ...fresh, ...old, machine: fresh.machine, errors: [] }
  } catch {
    return fresh
  }
}

export async function runSuite (parts: Set<Part>): Promise<Summary> {
  const s = loadSummary()
  if (parts.size > 0) {
    nodeStartCpu = nodeStartCpuMs()
    progress(`machine speed: a bare Node start takes ${nodeStartCpu} ms of CPU (median of 15)`)
  }
  const real = [...parts].some(p => p !== 'cp' && p !== 'ipam')
  if (real) {
    const missing = labPrerequisites()
    if (missing.length > 0) throw new Error(`real-daemon benchmarks need: ${missing.join(', ')} (BENCH_ONLY=cp,ipam runs the others)`)
    sweepStaleLabs()
  }
  if (parts.has('join')) {
    const res: JoinResults = {
      date: '', machine: { cpus: 0, node: '', loadavgStart: [], loadavgEnd: [] }, nodes: 10,
      join: { meshFormMs: null, rounds: [], firstPing: null, allMembers: null },
      convergence: { timed: '', allPairsMs: null, pairsAnswered: 0, pairs: 0, lastPair: null, allPeersMs: null },
      staticMesh: null, errors: []
    }
    await benchJoin(res)
    s.join = { nodes: res.nodes, join: res.join, ...stamp() }
    s.errors.push(...res.errors)
  }
  if (parts.has('conv10') || parts.has('idle') || parts.has('restart')) {
    // the idle and restart benchmarks run on the converged 10-node mesh
    const c = await measureConvergence(10, async (lab, names, addrs, pskFile) => {
      if (parts.has('idle')) {
        // Issue #7 asks for idle "after 60 s of idle". A shorter settle also times V8's memory
        // reducer: two or three mark-compacts 25-50 s after a daemon's start (--trace-gc),
        // ~25 ms of a daemon's CPU that a minute of idle never spends again.
        const settle = Number(process.env.BENCH_SETTLE ?? 60)
        const idle = Number(process.env.BENCH_IDLE ?? 60)
        progress(`idle: ${settle} s settle, then ${idle} s of CPU time per daemon`)
        s.idle = { ...await measureIdle(lab, names, settle, idle), ...stamp() }
        progress(`idle: daemon CPU median ${s.idle.daemonCpuSPerMin.median} CPU-s/min (max ${s.idle.daemonCpuSPerMin.max}), RSS median ${s.idle.daemonRssMiB.median} MiB (files ${s.idle.daemonRssFileMiB?.median} MiB)`)
      }
      if (parts.has('restart')) s.restart = { ...await measureRestart(lab, addrs, pskFile, Number(process.env.BENCH_RESTARTS ?? 3)), ...stamp() }
    })
    s.errors.push(...c.errors)
    if (parts.has('conv10')) s.convergence['10'] = { ...await withRepeats(10, c, s.errors), ...stamp() }
  }
  if (parts.has('conv25')) {
    const c = await measureConvergence(25)
    s.errors.push(...c.errors)
    s.convergence['25'] = { ...await withRepeats(25, c, s.errors), ...stamp() }
  }
  if (parts.has('static')) {
    for (const n of [10, 25]) {
      try {
        s.staticMesh[String(n)] = { ...await measureStaticMesh(n, n === 10 ? 5 : 0, { nodeStart: true }), ...stamp() }
        const st = s.staticMesh[String(n)]
        progress(`static mesh N=${n}: all handshakes after ${st?.allHandshakesMs} ms (${st?.withNodeStart?.allHandshakesMs} ms when each node first starts Node), all pairs ping after ${st?.allPairsMs} ms${st?.join === undefined ? '' : `; pre-provisioned join → first ping ${st.join.rounds.join(', ')} ms`}`)
      } catch (err) {
        s.errors.push(`static mesh N=${n}: ${(err as Error).message}`)
      }
    }
  }
  if (parts.has('cp')) {
    const ns = (process.env.BENCH_CP ?? '50,100,250').split(',').map(Number)
    s.controlPlane = { results: await runControlPlane(ns, REPEATS), ...stamp() }
  }
  if (parts.has('ipam')) {
    progress('IP allocation simulation')
    s.ipam = { results: runIpamSim(Number(process.env.BENCH_IPAM_NODES ?? 10_000)), ...stamp() }
  }
  return s
}

/** `first` and REPEATS - 1 more simultaneous starts of n daemons */
async function withRepeats (n: number, first: ConvergenceResult, errors: string[]): Promise<Convergence> {
  if (REPEATS === 1) return first
  const runs: ConvergenceRun[] = [first]
  for (let i = 1; i < REPEATS; i++) {
    const again = await measureConvergence(n)
    errors.push(...again.errors)
    runs.push(again)
  }
  return { ...first, runs: runs.map(r => ({ allHandshakesMs: r.allHandshakesMs, cpuSeconds: r.cpuSeconds })) }
}

// ---------------------------------------------------------------------------------------
// Report

interface Spread { median: number, min: number, max: number, n: number, failed: number }
/** median and range of the runs that finished (and how many did not); undefined for one run */
export function spreadOf (values: Array<number | null> | undefined): Spread | undefined {
  if (values === undefined || values.length < 2) return undefined
  const s = stats(values)
  return s === null ? undefined : { median: s.medianMs, min: s.minMs, max: s.maxMs, n: values.length, failed: values.length - s.n }
}
const spreadText = (sp: Spread): string => `${sp.median} ms (${sp.min}–${sp.max}${sp.failed > 0 ? `; ${sp.failed} of ${sp.n} never got there` : ''})`
/** a convergence size's figure: the median of its starts (or its one start) */
export const convergenceMs = (c: Convergence): number | null => spreadOf(c.runs?.map(r => r.allHandshakesMs))?.median ?? c.allHandshakesMs
/** a control-plane size's figure: the median of its runs (or its one run) */
export const fullMembershipMs = (r: ControlPlaneResult): number | null => spreadOf(r.runs?.map(x => x.fullMembershipMs))?.median ?? r.fullMembershipMs
const r2 = (x: number): number => Math.round(x * 100) / 100

interface Row { figure: string, ours: string, floor: string, ratio: string, target: string, load: string }

const ms = (v: number | null | undefined): string => v === null || v === undefined ? '-' : `${v} ms`
const ratio = (a: number | null | undefined, b: number | null | undefined): string =>
  a === null || a === undefined || b === null || b === undefined || b === 0 ? '-' : `${(a / b).toFixed(1)}×`
const load = (st?: Stamp): string => st === undefined ? '-' : st.loadavg[0]?.toFixed(1) ?? '-'

export function rows (s: Summary): Row[] {
  const out: Row[] = []
  const st10 = s.staticMesh['10']
  const st25 = s.staticMesh['25']
  const j = s.join?.join
  if (j !== undefined) {
    out.push({
      figure: `join → first ping, N=10 (median of ${j.firstPing?.n ?? 0}; min–max)`,
      ours: j.firstPing === null ? '-' : `${j.firstPing.medianMs} ms (${j.firstPing.minMs}–${j.firstPing.maxMs})`,
      floor: st10?.join === undefined ? '-' : `${st10.join.medianMs} ms (${st10.join.minMs}–${st10.join.maxMs}), pre-provisioned`,
      ratio: ratio(j.firstPing?.medianMs, st10?.join?.medianMs), target: '≤ 500 ms', load: load(s.join)
    })
  }
  for (const [n, target, st] of [['10', '≤ 1.0 s', st10], ['25', '≤ 2.0 s', st25]] as const) {
    const c = s.convergence[n]
    if (c === undefined) continue
    const spread = spreadOf(c.runs?.map(r => r.allHandshakesMs))
    const cpus = (c.runs ?? [c]).flatMap(r => r.cpuSeconds === null ? [] : [r.cpuSeconds])
    const cpu = cpus.length === 0 ? '' : `; CPU used${cpus.length > 1 ? ' (medians)' : ''}: daemons ${r2(median(cpus.map(x => x.daemons)))} s, wireguard-go ${r2(median(cpus.map(x => x.wireguardGo)))} s`
    out.push({
      figure: `all-pairs convergence, N=${n} (every pair handshaken${c.pairsAnswered === c.pairs ? ', all pairs then ping' : `; only ${c.pairsAnswered}/${c.pairs} pairs ping`}${spread === undefined ? '' : `; median of ${spread.n} starts, min–max`})`,
      ours: `${spread === undefined ? ms(c.allHandshakesMs) : spreadText(spread)}${cpu}`,
      floor: `${ms(st?.allHandshakesMs)}${st?.withNodeStart === undefined ? '' : `; ${st.withNodeStart.allHandshakesMs} ms with a bare Node start per node`}`,
      ratio: ratio(convergenceMs(c), st?.allHandshakesMs), target, load: load(c)
    })
  }
  if (s.restart !== undefined) {
    // the floor is the same pingers on the same mesh without a restart (older results lack it);
    // since round 13 an exact 10 Hz pinger runs beside iputils ping, whose period here is 104 ms
    const r = s.restart
    const c = r.control as RestartResult['control'] | undefined
    const exact = r.exact
    const plain = `${r.lostTotal} lost / ${r.longestGapMs} ms`
    const plainFloor = c === undefined ? '-' : `${c.lost} lost / ${c.longestGapMs} ms`
    out.push({
      figure: `restart under 10 Hz ping (${r.rounds.length} restarts): lost / longest gap${exact === undefined ? '' : '; exact 10 Hz (fping), and beside it iputils ping -i 0.1 (a 104 ms period here)'}`,
      ours: exact === undefined ? plain : `${exact.lostTotal} lost / ${exact.longestGapMs} ms; ping: ${plain}`,
      floor: c?.exact === undefined ? `${plainFloor}, no restart` : `${c.exact.lost} lost / ${c.exact.longestGapMs} ms; ping: ${plainFloor}, no restart`,
      ratio: exact === undefined ? ratio(r.longestGapMs, c?.longestGapMs) : ratio(exact.longestGapMs, c?.exact?.longestGapMs),
      target: '0 / ≤ 110 ms',
      load: load(r)
    })
  }
  if (s.idle !== undefined) {
    const i = s.idle
    out.push({ figure: `idle CPU per daemon, N=10 (median, max), CPU-s/min, ${i.settleSeconds} s after convergence`, ours: `${i.daemonCpuSPerMin.median} (${i.daemonCpuSPerMin.max})`, floor: `${i.wireguardGoCpuSPerMin.median} (wireguard-go)`, ratio: '-', target: '≤ 0.10', load: load(i) })
    out.push({ figure: `RSS per daemon, N=10 (median, max)`, ours: `${i.daemonRssMiB.median} MiB (${i.daemonRssMiB.max})${i.daemonRssFileMiB === undefined ? '' : `; of it files (the node binary) ${i.daemonRssFileMiB.median} MiB`}`, floor: `${i.wireguardGoRssMiB.median} MiB (wireguard-go)`, ratio: ratio(i.daemonRssMiB.median, i.wireguardGoRssMiB.median), target: '≤ 64 MiB', load: load(i) })
  }
  for (const r of s.controlPlane?.results ?? []) {
    const target = r.nodes === 100 ? '≤ 5 s; ≤ 1 KiB/s' : r.nodes === 250 ? 'runs' : ''
    const spread = spreadOf(r.runs?.map(x => x.fullMembershipMs))
    const full = spread === undefined ? ms(r.fullMembershipMs) : spreadText(spread)
    out.push({
      figure: `control plane (memory twin), N=${r.nodes}: full membership${spread === undefined ? '' : ` (median of ${spread.n} runs, min–max)`}; idle B/s, CPU-s/min per node`,
      ours: r.error !== undefined && r.fullMembershipMs === null ? `FAILED: ${r.error}` : `${full}; ${r.idleBytesPerSecPerNode ?? '-'} B/s; ${r.idleCpuSPerMinPerNode ?? '-'}`,
      floor: '', ratio: '', target, load: r.loadavg[0]?.toFixed(1) ?? '-'
    })
  }
  for (const r of s.ipam?.results ?? []) {
    out.push({
      figure: `IP allocation, ${r.nodes} nodes in ${r.range}: duplicates; counters`,
      ours: `${r.duplicates}; ${Object.entries(r.counters).map(([c, k]) => `${c}:${k}`).join(' ')}`, floor: '', ratio: '', target: '0 duplicates', load: load(s.ipam)
    })
  }
  return out
}

export function markdownTable (s: Summary): string {
  const head = '| figure | w2wesher | static wireguard-go floor | ratio | target | load (1 min) |\n|---|---|---|---|---|---|'
  return `${head}\n${rows(s).map(r => `| ${r.figure} | ${r.ours} | ${r.floor} | ${r.ratio} | ${r.target} | ${r.load} |`).join('\n')}`
}

export function convergenceChart (s: Summary): string {
  const sec = (v: number | null | undefined): number | undefined => v === null || v === undefined ? undefined : v / 1000
  const pts = (entries: Array<[number, number | undefined]>): Array<{ x: number, y: number }> =>
    entries.flatMap(([x, y]) => y === undefined ? [] : [{ x, y }])
  return renderChart({
    title: 'Convergence time vs mesh size (2 cores, shared)',
    xLabel: 'nodes (N)',
    yLabel: 'seconds',
    series: [
      { name: 'w2wesher: all handshaken', color: '#d62728', points: pts(Object.entries(s.convergence).map(([n, c]) => [Number(n), sec(convergenceMs(c))])) },
      { name: 'static wireguard-go', color: '#2ca02c', dashed: true, points: pts(Object.entries(s.staticMesh).map(([n, c]) => [Number(n), sec(c.allHandshakesMs)])) },
      { name: 'static + a Node start per node', color: '#9467bd', dashed: true, points: pts(Object.entries(s.staticMesh).map(([n, c]) => [Number(n), sec(c.withNodeStart?.allHandshakesMs)])) },
      { name: 'control plane (twin)', color: '#1f77b4', points: pts((s.controlPlane?.results ?? []).map(r => [r.nodes, sec(fullMembershipMs(r))])) }
    ]
  })
}

/** the machine speed(s) the parts were measured at, from their stamps */
export function speedText (s: Summary): string {
  const parts: Array<Stamp | undefined> = [s.join, s.idle, s.restart, s.controlPlane, s.ipam, ...Object.values(s.convergence), ...Object.values(s.staticMesh)]
  const speeds = [...new Set(parts.flatMap(p => p?.nodeStartCpuMs === undefined ? [] : [p.nodeStartCpuMs]))].sort((a, b) => a - b)
  return speeds.length === 0 ? '' : `; a bare Node start took ${speeds.join(', ')} ms of CPU when the figures were taken (\`node -e 0\`, median of 15; the same code's figures move with it)`
}

/** Replace the generated block of docs/benchmarks.md (between the markers) with the table. */
function updateDocs (s: Summary): void {
  const file = join(DOCS, 'benchmarks.md')
  if (!existsSync(file)) return
  const text = readFileSync(file, 'utf8')
  const start = '<!-- bench:results -->'
  const end = '<!-- /bench:results -->'
  const a = text.indexOf(start)
  const b = text.indexOf(end)
  if (a < 0 || b < a) return
  const block = `${start}\n${markdownTable(s)}\n\nMachine: ${s.machine.cpus} CPUs, Node ${s.machine.node}${speedText(s)}. Load is the 1-minute load average when the figure was taken (other work shared the machine: figures are upper bounds).\n${end}`
  writeFileSync(file, text.slice(0, a) + block + text.slice(b + end.length))
}

async function main (): Promise<number> {
  const only = process.env.BENCH_ONLY
  // BENCH_ONLY=report: run nothing, re-render the table, chart and docs from summary.json
  const parts = new Set<Part>(only === 'report' ? [] : only === undefined || only === '' ? PARTS : only.split(',').map(p => {
    if (!(PARTS as readonly string[]).includes(p)) throw new Error(`BENCH_ONLY: unknown part "${p}" (parts: ${PARTS.join(', ')})`)
    return p as Part
  }))
  const started = performance.now()
  const s = await runSuite(parts)
  mkdirSync(RESULTS_DIR, { recursive: true })
  writeFileSync(SUMMARY, `${JSON.stringify(s, null, 2)}\n`)
  mkdirSync(DOCS, { recursive: true })
  writeFileSync(join(DOCS, 'convergence.svg'), convergenceChart(s))
  updateDocs(s)
  const r = rows(s)
  console.log(`\n${formatTable([['figure', 'w2wesher', 'static floor', 'ratio', 'target', 'load'], ...r.map(x => [x.figure, x.ours, x.floor, x.ratio, x.target, x.load])])}\n`)
  for (const e of s.errors) console.error(`ERROR ${e}`)
  console.log(`wrote ${SUMMARY}, docs/convergence.svg (suite took ${Math.round((performance.now() - started) / 1000)} s)`)
  return s.errors.length === 0 ? 0 : 1
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) process.exitCode = await main()
