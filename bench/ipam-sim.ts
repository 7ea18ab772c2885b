// IP allocation simulation: many nodes claim overlay addresses with src/membership/ipam.ts
// (chooseClaim/resolveClaims), each seeing the others' claims late and in a random order, and
// we count the duplicates left once everybody has seen everybody (must be 0) and how many
// nodes needed counter 1, 2, ... `tsx bench/ipam-sim.ts [nodes]` prints it and writes
// bench/results/ipam.json; test/unit/ipam-sim.test.ts runs a small one in CI.
//
// Model. Nodes join in a random order at random times within `spreadMs`; a joining node knows
// only the claims made at least `lagMs` before it (gossip is not instant), in a shuffled order,
// and picks its claim with chooseClaim. Then rounds: every node learns every claim (again in
// its own random order) and re-runs chooseClaim, as the daemon's reviewClaims() does on each
// membership change; a loser moves to its next counter, claimed from the round's time. Rounds
// repeat until no claim changes.

import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { chooseClaim, ipv4Range, resolveClaims, ula64, type Claim, type OverlayRange } from '../src/membership/ipam.ts'

export interface SimOptions {
  nodes: number
  range: OverlayRange
  seed?: number
  /** joins spread over this many ms */
  spreadMs?: number
  /** a claim reaches others this many ms after it is made */
  lagMs?: number
}

export interface SimResult {
  range: string
  nodes: number
  seed: number
  spreadMs: number
  lagMs: number
  /** nodes whose first claim (made with partial knowledge) collided with another's */
  initialCollisions: number
  /** rounds of "everyone sees everything" until no claim changed */
  rounds: number
  /** addresses held by more than one node at the end: must be 0 */
  duplicates: number
  /** final counter → how many nodes hold an address with it */
  counters: Record<number, number>
  /** every node computes the same owners from the final claims, whatever the order */
  orderIndependent: boolean
  ms: number
}

/** Small seeded PRNG (mulberry32): the same seed gives the same run. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function shuffle<T> (items: T[], rnd: () => number): T[] {
  const a = [...items]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    const t = a[i] as T; a[i] = a[j] as T; a[j] = t
  }
  return a
}

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
/** Strings shaped like Ed25519 peer ids; the hash only sees the text. */
export function fakePeerIds (n: number, rnd: () => number): string[] {
  const ids = new Set<string>()
  while (ids.size < n) ids.add(`12D3KooW${Array.from({ length: 44 }, () => B58[Math.floor(rnd() * 58)]).join('')}`)
  return [...ids]
}

export function simulate (opts: SimOptions): SimResult {
  const t0 = performance.now()
  const seed = opts.seed ?? 1
  const spreadMs = opts.spreadMs ?? 60_000
  const lagMs = opts.lagMs ?? 2_000
  const rnd = prng(seed)
  const ids = fakePeerIds(opts.nodes, rnd)
  // join times, with some exact ties (same ms) so the peer-id tie-break is exercised
  const joins = shuffle(ids, rnd).map(peerId => ({ peerId, at: Math.floor(rnd() * spreadMs / 4) * 4 })).sort((a, b) => a.at - b.at)

  const claims = new Map<string, Claim>()
  const made: Claim[] = [] // in the order they were made (= join order)
  let visible = 0 // made[0..visible) were made at least lagMs before the current join
  for (const { peerId, at } of joins) {
    while (visible < made.length && (made[visible] as Claim).since <= at - lagMs) visible++
    const claim = chooseClaim(opts.range, peerId, undefined, shuffle(made.slice(0, visible), rnd), at)
    claims.set(peerId, claim)
    made.push(claim)
  }
  const initialCollisions = countHolders([...claims.values()]).filter(n => n > 1).reduce((s, n) => s + n, 0)

  // Everyone sees everything. resolveClaims does not depend on the order (checked below), so
  // only losers need a new claim: a winner's chooseClaim keeps its current claim.
  let rounds = 0
  let now = spreadMs + lagMs
  for (;;) {
    rounds++
    const all = shuffle([...claims.values()], rnd)
    const owners = resolveClaims(all)
    const losers = all.filter(c => owners.get(c.address)?.peerId !== c.peerId)
    if (losers.length === 0) break
    if (rounds > 100) throw new Error('claims did not settle within 100 rounds')
    for (const loser of losers) {
      const next = chooseClaim(opts.range, loser.peerId, loser, shuffle(all, rnd), now)
      claims.set(loser.peerId, next)
    }
    now += lagMs
  }

  const final = [...claims.values()]
  const duplicates = countHolders(final).filter(n => n > 1).length
  const counters: Record<number, number> = {}
  for (const c of final) counters[c.counter] = (counters[c.counter] ?? 0) + 1
  const reference = ownersKey(resolveClaims(final))
  const orderIndependent = [1, 2, 3].every(() => ownersKey(resolveClaims(shuffle(final, rnd))) === reference)
  return {
    range: opts.range.cidr, nodes: opts.nodes, seed, spreadMs, lagMs, initialCollisions, rounds, duplicates, counters, orderIndependent,
    ms: Math.round(performance.now() - t0)
  }
}

function countHolders (claims: Claim[]): number[] {
  const by = new Map<string, number>()
  for (const c of claims) by.set(c.address, (by.get(c.address) ?? 0) + 1)
  return [...by.values()]
}

const ownersKey = (owners: Map<string, Claim>): string => [...owners.entries()].map(([a, c]) => `${a}=${c.peerId}`).sort().join(',')

export function runIpamSim (nodes = 10_000): SimResult[] {
  const v4 = simulate({ nodes, range: ipv4Range('10.223.0.0/16'), seed: 1 })
  // any 7 bytes give a /64; the PSK-derived one is no different for the hash
  const v6 = simulate({ nodes, range: ula64(new Uint8Array([1, 2, 3, 4, 5, 6, 7])), seed: 2 })
  return [v4, v6]
}

async function main (): Promise<void> {
  const nodes = Number(process.argv[2] ?? 10_000)
  const results = runIpamSim(nodes)
  for (const r of results) {
    console.log(`${r.range}: ${r.nodes} nodes, ${r.initialCollisions} nodes collided at first, settled in ${r.rounds} rounds; duplicates left ${r.duplicates}; counters ${JSON.stringify(r.counters)}; order-independent ${r.orderIndependent} (${r.ms} ms)`)
  }
  const dir = resolve(import.meta.dirname, 'results')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'ipam.json'), `${JSON.stringify({ date: new Date().toISOString(), results }, null, 2)}\n`)
  if (results.some(r => r.duplicates !== 0 || !r.orderIndependent)) process.exitCode = 1
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch(err => { console.error(err); process.exit(1) })
}
