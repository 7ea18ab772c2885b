// `npm run bench`: how fast w2wesher forms and grows a mesh, with real daemons in network
// namespaces on this machine. Prints figures (no pass/fail thresholds) and writes them to
// bench/results/join.json. Needs root. Environment knobs: BENCH_ROUNDS (default 5),
// BENCH_NODES (default 10).
//
// (a) join: a mesh of NODES-1 daemons is formed first (tunnels up, and every member
//     connected to every other over libp2p); then, ROUNDS times, one more
//     namespace + daemon (fresh state dir, --bootstrap node1) is started and we time from
//     spawn to the first ping the newcomer gets answered by node1's overlay IPv6 (one ping
//     every 20 ms from a shell in its namespace, see firstReply), then until all members
//     answered it (every 50 ms each). Between rounds the newcomer runs `w2wesher leave`, is
//     stopped, and its namespace (with its interface and wireguard-go) is removed.
// (b) convergence: NODES fresh daemons, node1 spawned first and the rest right after it
//     (same tick, all bootstrapping from node1); timed from node1's spawn until every
//     ordered pair has answered at least one IPv6 ping.
// (c) the static wireguard-go mesh (no control plane) over the same poller, as a floor.

import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  createLab, DAEMON_BIN, DEFAULT_PORT, formatTable, labPrerequisites, sweepStaleLabs, waitFor, type Lab
} from '../test/e2e/lab.ts'
import { firstReply, measureStaticMesh, pollHandshakes, readHandshakes, pollPairs, RESULTS_DIR, stats, type Stats, type StaticMeshResult } from './static-mesh.ts'
import { meshCpuSeconds } from './daemons.ts'

const NODES = Number(process.env.BENCH_NODES ?? 10)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const MESH_TIMEOUT_MS = Number(process.env.BENCH_MESH_TIMEOUT ?? 90) * 1000
const JOIN_TIMEOUT_MS = 40_000
const LOG_LINES = 8 // per node, in error reports


export interface JoinRound { round: number; firstPingMs: number | null; allMembersMs: number | null }

export interface Results {
  date: string
  machine: { cpus: number; node: string; loadavgStart: number[]; loadavgEnd: number[] }
  nodes: number
  join: { meshFormMs: number | null; rounds: JoinRound[]; firstPing: Stats | null; allMembers: Stats | null }
  convergence: { timed: string; allPairsMs: number | null; pairsAnswered: number; pairs: number; lastPair: string | null; allPeersMs: number | null }
  staticMesh: StaticMeshResult | null
  errors: string[]
}

const ms = (t0: number): number => Math.round(performance.now() - t0)

function progress (msg: string): void {
  console.log(`[bench] ${msg}`)
}

async function addNodes (lab: Lab, names: string[]): Promise<void> {
  for (const n of names) await lab.addNode(n)
}

// Every listed node has `want` WireGuard peers, or we throw with the daemons' log tails.
async function waitForPeers (lab: Lab, names: string[], want: number, timeoutMs: number): Promise<void> {
  let counts: number[] = []
  try {
    await waitFor(async () => {
      for (const d of lab.daemons()) if (!d.running()) throw new Error(`daemon on ${d.node} exited`)
      counts = await Promise.all(names.map(async n => (await readHandshakes(lab, n))?.peers.length ?? 0))
      return counts.every(c => c >= want)
    }, { timeoutMs, intervalMs: 250, what: `${names.length} nodes to list ${want} WireGuard peers` })
  } catch (err) {
    throw new Error(`${(err as Error).message}; peers: ${names.map((n, i) => `${n}=${counts[i] ?? '?'}`).join(' ')}`)
  }
}

/**
 * Every listed node has `want` libp2p connections: the members dial each other a few seconds
 * after they learn each other (src/p2p/keeper.ts firstDialDelay), so a mesh whose tunnels are
 * up may still be building its control plane, on the same 2 cores a join is timed on.
 */
async function waitForConnections (lab: Lab, names: string[], want: number, timeoutMs: number): Promise<void> {
  const port = `:${DEFAULT_PORT}`
  await waitFor(async () => {
    const counts = await Promise.all(names.map(async n => {
      const r = await lab.exec(n, ['ss', '-tnH', 'state', 'established'])
      return r.stdout.split('\n').filter(l => l.includes(port)).length
    }))
    return counts.every(c => c >= want)
  }, { timeoutMs, intervalMs: 1000, what: `${names.length} nodes to hold ${want} libp2p connections` })
}

async function overlayV6 (lab: Lab, node: string): Promise<string> {
  return waitFor(async () => (await lab.overlayAddresses(node)).ipv6, { timeoutMs: 30_000, what: `${node}'s overlay IPv6` })
}

// Destroys the lab; keeps its logs when this phase added an error.
async function finish (lab: Lab, res: Results, errorsBefore: number): Promise<void> {
  const failed = res.errors.length > errorsBefore
  await lab.destroy({ keepFiles: failed })
  if (failed) res.errors.push(`daemon logs kept in ${lab.dir}`)
}

export async function benchJoin (res: Results): Promise<void> {
  const errorsBefore = res.errors.length
  const lab = await createLab()
  try {
    const members = Array.from({ length: NODES - 1 }, (_, i) => `node${i + 1}`)
    await addNodes(lab, members)
    const pskFile = await lab.genPsk()
    const bootstrap = [lab.bootstrapAddr('node1')]
    const t0 = performance.now()
    lab.spawnDaemon('node1', lab.joinArgs('node1', { pskFile }))
    for (const n of members.slice(1)) lab.spawnDaemon(n, lab.joinArgs(n, { pskFile, bootstrap }))
    try {
      await waitForPeers(lab, members, members.length - 1, MESH_TIMEOUT_MS)
      res.join.meshFormMs = ms(t0)
      progress(`(a) ${members.length}-node mesh formed in ${res.join.meshFormMs} ms`)
      await waitForConnections(lab, members, members.length - 1, MESH_TIMEOUT_MS)
      progress(`(a) every member connected to every other by ${ms(t0)} ms`)
    } catch (err) {
      // Still time the joins: the newcomer only needs node1 for its first ping.
      res.errors.push(`join: mesh incomplete: ${(err as Error).message}\n${lab.logTails(LOG_LINES)}`)
      progress(`(a) ${members.length}-node mesh NOT complete after ${MESH_TIMEOUT_MS} ms; timing joins anyway`)
    }
    const addrs = new Map<string, string>()
    for (const m of members) addrs.set(m, await overlayV6(lab, m))
    const node1 = addrs.get('node1') ?? ''

    for (let round = 1; round <= ROUNDS; round++) {
      const name = `join${round}` // new name = new namespace, underlay IP, interface and state dir
      await lab.addNode(name)
      const tj = performance.now()
      const d = lab.spawnDaemon(name, lab.joinArgs(name, { pskFile, bootstrap }))
      const firstPingMs = await firstReply(lab, name, node1, tj, JOIN_TIMEOUT_MS)
      let allMembersMs: number | null = null
      if (firstPingMs !== null) {
        const rest = members.slice(1)
        const times = await Promise.all(rest.map(m => firstReply(lab, name, addrs.get(m) ?? '', tj, JOIN_TIMEOUT_MS, 50)))
        allMembersMs = times.some(t => t === null) ? null : Math.max(firstPingMs, ...times as number[])
      } else {
        res.errors.push(`join round ${round}: no ping within ${JOIN_TIMEOUT_MS} ms\n${d.tail(20)}`)
      }
      res.join.rounds.push({ round, firstPingMs, allMembersMs })
      progress(`(a) round ${round}: first ping ${firstPingMs ?? 'TIMEOUT'} ms, all ${members.length} members ${allMembersMs ?? 'TIMEOUT'} ms`)
      // `leave` tombstones the newcomer, so every round joins the same NODES-1 mesh
      // rather than one that keeps redialling the departed newcomers of earlier rounds.
      const left = await lab.exec(name, [process.execPath, DAEMON_BIN, 'leave', '--state-dir', lab.node(name).stateDir], { timeoutMs: 15_000 })
      if (left.code !== 0) res.errors.push(`join round ${round}: leave failed (${left.code}): ${left.stderr.trim()}`)
      await d.stop('SIGTERM', 5000) // no-op when leave already ended it
      await lab.removeNode(name) // deletes its namespace: interface and wireguard-go go too
    }
  } catch (err) {
    res.errors.push(`join: ${(err as Error).message}\n${lab.logTails(LOG_LINES)}`)
  } finally {
    await finish(lab, res, errorsBefore)
  }
  res.join.firstPing = stats(res.join.rounds.map(r => r.firstPingMs))
  res.join.allMembers = stats(res.join.rounds.map(r => r.allMembersMs))
}

/**
 * BENCH_NODE_OPTIONS: Node/V8 flags for the daemons of the convergence, idle and restart parts
 * (e.g. heap sizes); BENCH_DAEMON_WRAP: a command they run under (e.g. `nice -n 10`).
 */
export function daemonEnv (): { env?: NodeJS.ProcessEnv, wrap?: string[] } {
  const flags = process.env.BENCH_NODE_OPTIONS
  const wrap = process.env.BENCH_DAEMON_WRAP?.split(' ').filter(w => w !== '')
  return {
    ...(flags === undefined || flags === '' ? {} : { env: { NODE_OPTIONS: flags } }),
    ...(wrap === undefined || wrap.length === 0 ? {} : { wrap })
  }
}

export interface ConvergenceResult {
  nodes: number
  timed: string
  /** node1's spawn → every node lists a completed handshake with every other (the timed figure) */
  allHandshakesMs: number | null
  /** when the untimed ping check after the handshakes had every pair answering */
  allPairsMs: number | null
  pairsAnswered: number
  pairs: number
  lastPair: string | null
  allPeersMs: number | null
  /** CPU seconds used by all daemons and by all wireguard-go processes by the time all pairs pinged */
  cpuSeconds: { daemons: number, wireguardGo: number } | null
  errors: string[]
}

/** Hook run on the converged mesh before it is torn down (idle and restart benchmarks). */
export type OnConverged = (lab: Lab, names: string[], addrs: Map<string, string>, pskFile: string) => Promise<void>

export async function measureConvergence (n: number, onConverged?: OnConverged): Promise<ConvergenceResult> {
  const res: ConvergenceResult = {
    nodes: n,
    timed: `node1 spawned, then nodes 2-${n} spawned right after it with --bootstrap node1; from node1's spawn until every node lists a completed WireGuard handshake with every other (wg show dump of each node every ~200 ms); then every ordered pair must answer one IPv6 ping (untimed check)`,
    allHandshakesMs: null, allPairsMs: null, pairsAnswered: 0, pairs: n * (n - 1), lastPair: null, allPeersMs: null, cpuSeconds: null, errors: []
  }
  const lab = await createLab()
  let failed = false
  try {
    const names = Array.from({ length: n }, (_, i) => `node${i + 1}`)
    await addNodes(lab, names)
    const pskFile = await lab.genPsk()
    const bootstrap = [lab.bootstrapAddr('node1')]
    // Overlay addresses appear when each daemon has brought its interface up; read them
    // in the background so the pair poller can start at once.
    const addrs = new Map<string, string>()
    const t0 = performance.now()
    lab.spawnDaemon('node1', lab.joinArgs('node1', { pskFile }), daemonEnv())
    for (const name of names.slice(1)) lab.spawnDaemon(name, lab.joinArgs(name, { pskFile, bootstrap }), daemonEnv())
    const addrWatch = Promise.all(names.map(async name => { addrs.set(name, await overlayV6(lab, name)) }))
    addrWatch.catch(() => { /* reported through the pair count */ })
    const peersWatch = waitForPeers(lab, names, n - 1, MESH_TIMEOUT_MS).then(() => { res.allPeersMs = ms(t0) }, () => {})
    // Timed by handshakes (one `wg show` per node per round: a ping poller of N² pairs would
    // load the 2 cores it measures); then every ordered pair must answer a ping, untimed.
    const shaken = await pollHandshakes(lab, names, t0, MESH_TIMEOUT_MS)
    res.cpuSeconds = meshCpuSeconds(lab, names)
    await peersWatch
    const last = [...shaken.entries()].sort((a, b) => b[1] - a[1])[0]
    res.allHandshakesMs = shaken.size === res.pairs && last !== undefined ? Math.round(last[1]) : null
    res.lastPair = last === undefined ? null : last[0].replace('>', ' -> ')
    await addrWatch.catch(() => {})
    const answered = await pollPairs(lab, names, name => addrs.get(name), performance.now(), 20_000)
    res.pairsAnswered = answered.size
    res.allPairsMs = answered.size === res.pairs ? ms(t0) : null
    progress(`(b) N=${n}: all ${shaken.size}/${res.pairs} handshakes by ${res.allHandshakesMs ?? 'TIMEOUT'} ms (last: ${res.lastPair}); all peers listed at ${res.allPeersMs ?? 'TIMEOUT'} ms; then ${answered.size}/${res.pairs} pairs ping; CPU used by then: daemons ${res.cpuSeconds.daemons} s, wireguard-go ${res.cpuSeconds.wireguardGo} s`)
    if (answered.size < res.pairs) {
      failed = true
      res.errors.push(`convergence N=${n}: only ${answered.size}/${res.pairs} pairs\n${lab.logTails(LOG_LINES)}`)
    } else if (onConverged !== undefined) {
      await onConverged(lab, names, addrs, pskFile)
    }
  } catch (err) {
    failed = true
    res.errors.push(`convergence N=${n}: ${(err as Error).message}\n${lab.logTails(LOG_LINES)}`)
  } finally {
    await lab.destroy({ keepFiles: failed })
    if (failed) res.errors.push(`daemon logs kept in ${lab.dir}`)
  }
  return res
}

async function benchConvergence (res: Results): Promise<void> {
  const c = await measureConvergence(NODES)
  res.errors.push(...c.errors)
  res.convergence = { timed: c.timed, allPairsMs: c.allHandshakesMs, pairsAnswered: c.pairsAnswered, pairs: c.pairs, lastPair: c.lastPair, allPeersMs: c.allPeersMs }
}

function printTable (res: Results): void {
  const fmt = (v: number | null | undefined): string => v === null || v === undefined ? '-' : String(v)
  const s = (x: Stats | null): string[] => x === null ? ['0', '-', '-', '-'] : [String(x.n), String(x.medianMs), String(x.minMs), String(x.maxMs)]
  const rows = [
    ['figure (ms)', 'n', 'median', 'min', 'max'],
    [`(a) ${NODES - 1} daemons started together -> all list ${NODES - 2} peers`, '1', fmt(res.join.meshFormMs), '', ''],
    [`(a) ${NODES}th node: spawn -> first ping answered by node1`, ...s(res.join.firstPing)],
    [`(a) ${NODES}th node: spawn -> all ${NODES - 1} members answered`, ...s(res.join.allMembers)],
    [`(b) ${NODES} started together -> all ${res.convergence.pairs} ordered pairs ping`, '1', fmt(res.convergence.allPairsMs), '', ''],
    [`(b) ${NODES} started together -> every node lists ${NODES - 1} peers`, '1', fmt(res.convergence.allPeersMs), '', ''],
    [`(c) static mesh, ${NODES} nodes: wireguard-go start -> all pairs ping`, '1', fmt(res.staticMesh?.allPairsMs), '', '']
  ]
  console.log(`\n${formatTable(rows)}\n`)
  console.log(`(a) rounds: ${res.join.rounds.map(r => `${fmt(r.firstPingMs)}/${fmt(r.allMembersMs)}`).join(', ')} (first ping/all members)`)
  console.log(`(b) timed: ${res.convergence.timed}`)
  const la = (l: number[]): string => l.map(x => x.toFixed(1)).join(' ')
  console.log(`load average at start ${la(res.machine.loadavgStart)}, at end ${la(res.machine.loadavgEnd)} (${res.machine.cpus} CPUs)`)
}

async function main (): Promise<number> {
  const missing = labPrerequisites()
  if (missing.length > 0) {
    console.error(`bench needs: ${missing.join(', ')}`)
    return 2
  }
  sweepStaleLabs()
  const started = performance.now()
  const res: Results = {
    date: new Date().toISOString(),
    // The machine may be shared: the load average puts the figures in context.
    machine: { cpus: cpus().length, node: process.version, loadavgStart: loadavg(), loadavgEnd: [] },
    nodes: NODES,
    join: { meshFormMs: null, rounds: [], firstPing: null, allMembers: null },
    convergence: {
      timed: `node1 spawned, then nodes 2-${NODES} spawned right after it with --bootstrap node1; from node1's spawn until every ordered pair answered one IPv6 ping (ping -c1 -W0.3, pairs re-polled every ~100 ms, 16 in flight)`,
      allPairsMs: null, pairsAnswered: 0, pairs: NODES * (NODES - 1), lastPair: null, allPeersMs: null
    },
    staticMesh: null,
    errors: []
  }
  await benchJoin(res)
  await benchConvergence(res)
  try {
    res.staticMesh = await measureStaticMesh(NODES)
    progress(`(c) static mesh: all pairs after ${res.staticMesh.allPairsMs} ms`)
  } catch (err) {
    res.errors.push(`static mesh: ${(err as Error).message}`)
  }
  res.machine.loadavgEnd = loadavg()
  printTable(res)
  for (const e of res.errors) console.error(`\nERROR ${e}`)
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = join(RESULTS_DIR, 'join.json')
  writeFileSync(file, `${JSON.stringify(res, null, 2)}\n`)
  console.log(`wrote ${file} (bench took ${Math.round((performance.now() - started) / 1000)} s)`)
  return res.errors.length === 0 ? 0 : 1
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) process.exitCode = await main()
