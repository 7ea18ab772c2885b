// `npm run demo`: a 4-node w2wesher mesh in network namespaces on this machine.
// node1 starts a new mesh, node2-4 bootstrap from node1's underlay address. Prints each
// node's overlay addresses and IPv6/IPv4 ping matrices, then removes everything.
// Exit 0 only when every ordered pair pings over both families. Needs root.

import {
  createLab, formatTable, labPrerequisites, sweepStaleLabs, waitFor, type Lab, type PingMatrix
} from '../test/e2e/lab.ts'

const NODES = ['node1', 'node2', 'node3', 'node4']
const OVERLAY_IPV4 = '10.223.0.0/16' // lives only inside the lab's namespaces
const MESH_TIMEOUT_MS = 60_000

function log (msg: string): void {
  console.log(`[demo +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`)
}
const started = Date.now()

async function startMesh (lab: Lab): Promise<void> {
  for (const n of NODES) await lab.addNode(n)
  log(`created ${NODES.length} namespaces (lab ${lab.id}, files in ${lab.dir})`)
  const pskFile = await lab.genPsk()
  log('generated a PSK with `w2wesher genpsk`')
  const [first, ...rest] = NODES
  if (first === undefined) throw new Error('no nodes')
  lab.spawnDaemon(first, lab.joinArgs(first, { pskFile, overlayIpv4: OVERLAY_IPV4 }))
  const bootstrap = [lab.bootstrapAddr(first)]
  for (const n of rest) lab.spawnDaemon(n, lab.joinArgs(n, { pskFile, bootstrap, overlayIpv4: OVERLAY_IPV4 }))
  log(`started ${first} (new mesh) and ${rest.join(', ')} (--bootstrap ${bootstrap[0]})`)
}

// Every node's `wg show` lists all the others, and the overlay addresses are on the interface.
async function waitForFullMesh (lab: Lab): Promise<void> {
  const want = NODES.length - 1
  const state = async (): Promise<string[]> => Promise.all(NODES.map(async n => {
    const peers = (await lab.wgPeers(n)).length
    const a = await lab.overlayAddresses(n)
    return `${n}: ${peers}/${want} peers${a.ipv6 === undefined ? ', no IPv6' : ''}${a.ipv4 === undefined ? ', no IPv4' : ''}`
  }))
  let last: string[] = []
  try {
    await waitFor(async () => {
      for (const d of lab.daemons()) if (!d.running()) throw new Error(`daemon on ${d.node} exited: ${JSON.stringify(await d.exited)}`)
      last = await state()
      return last.every(s => s.endsWith(`${want}/${want} peers`))
    }, { timeoutMs: MESH_TIMEOUT_MS, intervalMs: 250, what: `every node to list ${want} WireGuard peers` })
  } catch (err) {
    throw new Error(`${(err as Error).message}\n  ${last.join('\n  ')}`)
  }
  log(`full mesh: every node lists ${want} peers`)
}

async function addressTable (lab: Lab): Promise<string> {
  const rows = [['node', 'underlay', 'interface', 'overlay IPv6', 'overlay IPv4', 'peers']]
  for (const n of NODES) {
    const a = await lab.overlayAddresses(n)
    const peers = await lab.wgPeers(n)
    rows.push([n, lab.node(n).underlay, lab.node(n).wgIf, a.ipv6 ?? '-', a.ipv4 ?? '-', String(peers.length)])
  }
  return formatTable(rows)
}

// The first packet to a peer triggers its handshake; retry a few seconds before judging.
async function settledMatrix (lab: Lab, family: 4 | 6): Promise<PingMatrix> {
  let m = await lab.pingMatrix(NODES, { family, timeoutMs: 2000 })
  const deadline = Date.now() + 10_000
  while (!m.ok && Date.now() < deadline) m = await lab.pingMatrix(NODES, { family, timeoutMs: 1000 })
  return m
}

async function main (): Promise<number> {
  const missing = labPrerequisites()
  if (missing.length > 0) {
    console.error(`demo needs: ${missing.join(', ')}`)
    return 2
  }
  const swept = sweepStaleLabs()
  if (swept.labs.length + swept.namespaces.length > 0) log(`removed leftovers of earlier runs: ${JSON.stringify(swept)}`)
  const lab = await createLab()
  let ok = false
  try {
    await startMesh(lab)
    await waitForFullMesh(lab)
    console.log(`\n${await addressTable(lab)}\n`)
    const v6 = await settledMatrix(lab, 6)
    const v4 = await settledMatrix(lab, 4)
    console.log(`${v6.text}\n\n${v4.text}\n`)
    ok = v6.ok && v4.ok
    if (!ok) {
      console.log(`failed pairs: ${[...v6.failures, ...v4.failures].map(f => `${f.from}->${f.to} (${f.addr ?? 'no address'})`).join(', ')}`)
    }
  } catch (err) {
    console.error(`\ndemo failed: ${(err as Error).message}\n`)
  } finally {
    if (!ok) console.error(`daemon log tails:\n${lab.logTails(25)}\n`)
    await lab.destroy({ keepFiles: !ok })
    const left = lab.leftovers()
    const clean = left.namespaces.length + left.pids.length + left.sockets.length === 0
    log(`cleaned up${clean ? '' : ` INCOMPLETELY: ${JSON.stringify(left)}`}${ok ? '' : `; logs kept in ${lab.dir}`}`)
  }
  log(ok ? 'PASS: every node reaches every other node over IPv6 and IPv4' : 'FAIL')
  return ok ? 0 : 1
}

process.exitCode = await main()
