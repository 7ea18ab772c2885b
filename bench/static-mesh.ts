// Lower bound with no control plane: N namespaces, keys made beforehand, wireguard-go started
// as the daemon starts it and every peer configured statically with `wg set`; then the
// lower end of each pair starts its handshake. Timed: from the first node's setup to every
// node listing a completed handshake with every other (the daemons' poller); every ordered
// pair must then answer a ping. A second floor adds what any Node.js daemon pays first: each
// node starts a bare `node -e 0` before its wireguard-go.
// `tsx bench/static-mesh.ts [nodes]` prints it and writes bench/results/static-mesh.json;
// bench/join.ts imports measureStaticMesh() to print it next to the daemon's figures.

import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import {
  createLab, formatTable, labPrerequisites, makeWgKey, mapBounded, setupStaticMesh, STATIC_MESH_V4, STATIC_MESH_V6, WG_SOCKET_DIR, type Lab, type StaticMeshMember
} from '../test/e2e/lab.ts'
import { GET_DEVICE, parseGetReply, uapiRequest, UapiUnavailableError } from '../src/wireguard/uapi.ts'

export const RESULTS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), 'results')

export interface StaticMeshResult {
  nodes: number
  namespacesMs: number // creating the N namespaces, veths, addresses
  setupMs: number // wireguard-go start + wg set + addresses, all nodes in parallel, then the handshake starts
  allPairsMs: number // from setup start until every ordered pair answered one ping (polled after the handshakes)
  /** from setup start until every node lists a completed handshake with every other */
  allHandshakesMs: number
  /** pre-provisioned join (only at the size the join benchmark uses) */
  join?: StaticJoinResult
  /** the same mesh when each node first starts a bare Node process (`node -e 0`) */
  withNodeStart?: { setupMs: number, allHandshakesMs: number }
}

/**
 * The floor of "join → first ping": a newcomer whose key node1 already has (pre-provisioned,
 * as nebula and tinc are), timed from its `wireguard-go` start (then keys, peer, addresses,
 * link up) to the first ping node1 answers, with the same poller as the daemon's join.
 */
export interface StaticJoinResult extends Stats {
  rounds: number[] // ms per round
}

export interface Stats { n: number, medianMs: number, minMs: number, maxMs: number }

/** Median and spread of the values that are there (null = a round that timed out). */
export function stats (values: Array<number | null>): Stats | null {
  const v = values.filter((x): x is number => x !== null).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = Math.floor(v.length / 2)
  const median = v.length % 2 === 1 ? v[mid] ?? 0 : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2
  return { n: v.length, medianMs: Math.round(median), minMs: v[0] ?? 0, maxMs: v[v.length - 1] ?? 0 }
}

// Polls the ordered pairs that have not answered yet until all have (or timeoutMs).
// Returns the elapsed ms at which each pair first answered, keyed "from>to".
export async function pollPairs (
  lab: Lab, nodes: string[], addrOf: (node: string) => string | undefined, t0: number, timeoutMs: number
): Promise<Map<string, number>> {
  const answered = new Map<string, number>()
  const pending = nodes.flatMap(from => nodes.filter(to => to !== from).map(to => ({ from, to })))
  const deadline = t0 + timeoutMs
  while (pending.length > 0 && performance.now() < deadline) {
    const batch = [...pending]
    const ok = await mapBounded(batch, 16, async p => {
      const addr = addrOf(p.to)
      return addr !== undefined && await lab.ping(p.from, addr, { timeoutMs: 300 })
    })
    batch.forEach((p, i) => {
      if (ok[i] !== true) return
      answered.set(`${p.from}>${p.to}`, performance.now() - t0)
      pending.splice(pending.indexOf(p), 1)
    })
    if (pending.length > 0) await new Promise(res => setTimeout(res, 100))
  }
  return answered
}

/** What the pollers need of a node's WireGuard device. */
export interface WgHandshakes { publicKey: string, peers: Array<{ publicKey: string, latestHandshake: number, latestHandshakeNsec?: number }> }

/** daemons pick the kernel's WireGuard when it has one; only those devices need `wg show` */
const KERNEL_WIREGUARD = existsSync('/sys/module/wireguard')

/**
 * A node's WireGuard key and its peers' latest handshakes, read by this process from
 * wireguard-go's control socket (its directory is the same inside the namespaces); only
 * a kernel device goes through `ip netns exec … wg show`. That process costs ~12 ms of CPU,
 * and the pollers of a forming 10-node mesh ran ~75 a second on the 2 cores they timed.
 */
export async function readHandshakes (lab: Lab, node: string): Promise<WgHandshakes | undefined> {
  try {
    const reply = await uapiRequest(join(WG_SOCKET_DIR, `${lab.node(node).wgIf}.sock`), GET_DEVICE, 2000)
    return parseGetReply(reply)
  } catch (err) {
    // no socket: not up yet, or a kernel device
    if (!(err instanceof UapiUnavailableError) || !KERNEL_WIREGUARD) return undefined
    return await lab.wgDump(node)
  }
}

/**
 * Reads every node's device (readHandshakes) every `intervalMs` until every node lists a
 * completed handshake with every other. Returns, per ordered pair "from>to", the elapsed ms at
 * which that handshake happened by WireGuard's own clock (seconds and nanoseconds, since round
 * 13; a kernel device's dump has only seconds, so there it is the poll that first saw it, a
 * grain of `intervalMs`). A handshake needs both ends configured with each other's key and
 * endpoint; traffic then flows.
 */
export async function pollHandshakes (lab: Lab, nodes: string[], t0: number, timeoutMs: number, intervalMs = 200): Promise<Map<string, number>> {
  const done = new Map<string, number>()
  const keys = new Map<string, string>() // public key -> node
  const deadline = t0 + timeoutMs
  const want = nodes.length * (nodes.length - 1)
  const t0Unix = Date.now() - (performance.now() - t0)
  while (done.size < want && performance.now() < deadline) {
    const dumps = await mapBounded(nodes, 8, async n => await readHandshakes(lab, n))
    const now = performance.now() - t0
    dumps.forEach((d, i) => { if (d !== undefined && d.publicKey !== '') keys.set(d.publicKey, nodes[i] as string) })
    dumps.forEach((d, i) => {
      for (const p of d?.peers ?? []) {
        const to = keys.get(p.publicKey)
        const key = `${nodes[i] as string}>${to ?? ''}`
        if (to === undefined || p.latestHandshake === 0 || done.has(key)) continue
        const at = p.latestHandshakeNsec === undefined ? now : p.latestHandshake * 1000 + p.latestHandshakeNsec / 1e6 - t0Unix
        done.set(key, Math.min(now, at))
      }
    })
    if (done.size < want) await new Promise(res => setTimeout(res, intervalMs))
  }
  return done
}

/**
 * Waits until `node` gets its first ping answered by `addr`: ms since t0, or null when
 * timeoutMs (counted from t0) runs out. One shell in the namespace pings every `intervalMs`
 * until a reply (ping -c1 -w), and starts ping again at once while there is no route yet:
 * a grain of one interval at a small CPU cost. (One `ip netns exec ping -W0.2` per try, 50 ms
 * apart, had a grain of ~280 ms and took a share of the cores the joining daemon needs.)
 */
export async function firstReply (lab: Lab, node: string, addr: string, t0: number, timeoutMs: number, intervalMs = 20): Promise<number | null> {
  const left = Math.ceil((timeoutMs - (performance.now() - t0)) / 1000)
  if (left <= 0) return null
  const interval = (intervalMs / 1000).toFixed(3)
  const script = `until ping -n -q -c 1 -i ${interval} -w ${left} ${addr} >/dev/null 2>&1; do sleep ${interval}; done`
  // `timeout` ends the loop and its ping (its process group) when the time is up
  const r = await lab.exec(node, ['timeout', String(left), 'sh', '-c', script], { timeoutMs: left * 1000 + 5000 })
  return r.code === 0 ? Math.round(performance.now() - t0) : null
}

/** Times `rounds` pre-provisioned joins to the mesh's first member (see StaticJoinResult). */
async function measureStaticJoin (lab: Lab, first: StaticMeshMember, rounds: number): Promise<StaticJoinResult> {
  const times: number[] = []
  for (let r = 1; r <= rounds; r++) {
    const name = `sj${r}`
    const n = await lab.addNode(name)
    const { keyFile, publicKey } = await makeWgKey(lab, name)
    const port = 51820
    const v6 = STATIC_MESH_V6(n.index)
    // provisioned beforehand: node1 already knows the newcomer
    await lab.execOk(first.node, ['wg', 'set', first.ifname, 'peer', publicKey, 'endpoint', `${n.underlay}:${port}`, 'allowed-ips', `${STATIC_MESH_V4(n.index)}/32,${v6}/128`])
    const t0 = performance.now()
    await lab.execOk(name, ['wireguard-go', n.wgIf])
    await lab.execOk(name, ['wg', 'set', n.wgIf, 'private-key', keyFile, 'listen-port', String(port),
      'peer', first.publicKey, 'endpoint', `${lab.node(first.node).underlay}:${first.port}`, 'allowed-ips', `${first.ipv4}/32,${first.ipv6}/128`])
    await lab.execOk(name, ['ip', 'addr', 'add', `${v6}/64`, 'dev', n.wgIf])
    await lab.execOk(name, ['ip', 'link', 'set', n.wgIf, 'up'])
    const ms = await firstReply(lab, name, first.ipv6, t0, 30_000)
    await lab.execOk(first.node, ['wg', 'set', first.ifname, 'peer', publicKey, 'remove'])
    await lab.removeNode(name)
    if (ms === null) throw new Error(`static join round ${r}: no ping within 30 s`)
    times.push(ms)
  }
  return { rounds: times, ...stats(times) as Stats }
}

/** Sets up the mesh in `lab`, starts every pair's handshake, and times it from the setup's start. */
async function timeStaticMesh (lab: Lab, names: string[], beforeWireGuard?: (node: string) => Promise<void>): Promise<{ members: StaticMeshMember[], setupMs: number, allHandshakesMs: number, t0: number }> {
  // statically configured: the keys exist before anything starts
  const keys = new Map(await Promise.all(names.map(async name => [name, await makeWgKey(lab, name)] as const)))
  const t0 = performance.now()
  const members = await setupStaticMesh(lab, names, { handshake: 'start', beforeWireGuard, keys })
  const setupMs = performance.now() - t0
  const shaken = await pollHandshakes(lab, names, t0, 30_000)
  const pairs = names.length * (names.length - 1)
  if (shaken.size < pairs) throw new Error(`static mesh: only ${shaken.size}/${pairs} handshakes`)
  return { members, setupMs: Math.round(setupMs), allHandshakesMs: Math.round(Math.max(...shaken.values())), t0 }
}

async function withNodes<T> (n: number, fn: (lab: Lab, names: string[], namespacesMs: number) => Promise<T>): Promise<T> {
  const lab = await createLab()
  try {
    const names = Array.from({ length: n }, (_, i) => `s${i + 1}`)
    const tNs = performance.now()
    for (const name of names) await lab.addNode(name)
    return await fn(lab, names, Math.round(performance.now() - tNs))
  } finally {
    await lab.destroy()
  }
}

export async function measureStaticMesh (n = 10, joinRounds = 0, opts: { nodeStart?: boolean } = {}): Promise<StaticMeshResult> {
  const result = await withNodes(n, async (lab, names, namespacesMs) => {
    const { members, setupMs, allHandshakesMs, t0 } = await timeStaticMesh(lab, names)
    const v6 = new Map(members.map(m => [m.node, m.ipv6]))
    const answered = await pollPairs(lab, names, node => v6.get(node), t0, 30_000)
    const pairs = n * (n - 1)
    if (answered.size < pairs) throw new Error(`static mesh: only ${answered.size}/${pairs} pairs answered`)
    const first = members[0]
    return {
      nodes: n, namespacesMs, setupMs, allHandshakesMs, allPairsMs: Math.round(Math.max(...answered.values())),
      ...(joinRounds > 0 && first !== undefined ? { join: await measureStaticJoin(lab, first, joinRounds) } : {})
    }
  })
  if (opts.nodeStart !== true) return result
  // Node's own start: the least a Node.js daemon does before it can set up its interface
  const withNodeStart = await withNodes(n, async (lab, names) => {
    const { setupMs, allHandshakesMs } = await timeStaticMesh(lab, names, async node => { await lab.execOk(node, [process.execPath, '-e', '0']) })
    return { setupMs, allHandshakesMs }
  })
  return { ...result, withNodeStart }
}

async function main (): Promise<void> {
  const missing = labPrerequisites()
  if (missing.length > 0) throw new Error(`needs: ${missing.join(', ')}`)
  const n = Number(process.argv[2] ?? 10)
  const r = await measureStaticMesh(n, 0, { nodeStart: true })
  console.log(formatTable([
    ['static mesh', 'nodes', 'namespaces ms', 'setup ms', 'all handshakes ms', 'all pairs ping ms'],
    ['wireguard-go + wg set', String(r.nodes), String(r.namespacesMs), String(r.setupMs), String(r.allHandshakesMs), String(r.allPairsMs)],
    ['the same, each node first starting `node -e 0`', String(r.nodes), '', String(r.withNodeStart?.setupMs), String(r.withNodeStart?.allHandshakesMs), '']
  ]))
  mkdirSync(RESULTS_DIR, { recursive: true })
  writeFileSync(join(RESULTS_DIR, 'static-mesh.json'), `${JSON.stringify({ date: new Date().toISOString(), ...r }, null, 2)}\n`)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch(err => { console.error(err); process.exit(1) })
}
