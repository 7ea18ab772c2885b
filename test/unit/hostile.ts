import { generateKeyPair, generateKeyPairFromSeed, privateKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { MAX_ENVELOPE_BYTES, type NodeRecord } from '../../src/gossip/record.ts'
import { addressFor, claimDerives, MAX_COUNTER } from '../../src/membership/ipam.ts'
import { clampWgPrivateKey, wgPublicKeyFromPrivate } from '../../src/wireguard/keys.ts'
import { ranges, recordBuilder, type TestNode } from './fixtures.ts'

// Hostile-input generators shared by the record fuzz test and the sync/gossip integration
// tests. Everything is driven by a seeded PRNG, so a failing run is reproduced with
// FUZZ_SEED=<seed printed by the test>.

export interface Rng {
  /** uniform uint32 */
  u32: () => number
  /** integer in [0, n) */
  int: (n: number) => number
  chance: (p: number) => boolean
  pick: <T>(items: readonly T[]) => T
  bytes: (n: number) => Uint8Array
}

/** mulberry32: tiny, fast, good enough to drive a fuzzer. */
export function createRng (seed: number): Rng {
  let state = seed >>> 0
  const u32 = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
  const int = (n: number): number => Math.floor((u32() / 0x1_0000_0000) * n)
  return {
    u32,
    int,
    chance: p => u32() / 0x1_0000_0000 < p,
    pick: items => {
      if (items.length === 0) throw new Error('pick from an empty list')
      return items[int(items.length)] as (typeof items)[number]
    },
    bytes: n => {
      const out = new Uint8Array(n)
      for (let i = 0; i < n; i++) out[i] = u32() & 0xff
      return out
    }
  }
}

/** FUZZ_SEED from the environment (decimal or 0x hex), else a fixed default. */
export function fuzzSeed (fallback: number): number {
  const text = process.env.FUZZ_SEED
  if (text === undefined || text === '') return fallback >>> 0
  const n = Number(text)
  if (!Number.isInteger(n)) throw new Error(`FUZZ_SEED must be an integer, got "${text}"`)
  return n >>> 0
}

const encoder = new TextEncoder()
export const utf8 = (text: string): Uint8Array => encoder.encode(text)

export function concat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

// Must match src/gossip/record.ts: the control group fails if it ever drifts.
const DOMAIN = utf8('w2wesher/record/v1:')

/** Sign arbitrary body bytes the way signRecord does: a correct signature over any content. */
export async function signBody (body: Uint8Array, key: PrivateKey): Promise<Uint8Array> {
  return concat(body, await key.sign(concat(DOMAIN, body)))
}

/** A deterministic node (Ed25519 and WireGuard keys from the PRNG), shaped like fixtures.makeNode. */
export async function seededNode (name: string, rng: Rng): Promise<TestNode> {
  const key = await generateKeyPairFromSeed('Ed25519', rng.bytes(32))
  const peerId = peerIdFromPrivateKey(key).toString()
  const wgPublicKey = seededWgKey(rng)
  const record = recordBuilder(peerId, name, wgPublicKey)
  const sign = async (overrides?: Partial<NodeRecord>): Promise<{ record: NodeRecord, envelope: Uint8Array }> => {
    const r = record(overrides)
    return { record: r, envelope: await signBody(utf8(JSON.stringify(r)), key) }
  }
  return { key, peerId, wgPublicKey, record, sign }
}

export function seededWgKey (rng: Rng): string {
  return wgPublicKeyFromPrivate(clampWgPrivateKey(Buffer.from(rng.bytes(32)).toString('base64')))
}

const RAW = '\u0000raw\u0000'

/**
 * JSON text of `record` with the value at `path` replaced by raw JSON text (which may be
 * invalid JSON on purpose: NaN, 1e400, ...), or removed when `raw` is undefined.
 */
export function jsonWith (record: object, path: readonly string[], raw: string | undefined): string {
  const copy = structuredClone(record) as Record<string, unknown>
  let target: Record<string, unknown> = copy
  for (const key of path.slice(0, -1)) {
    const next = target[key]
    if (typeof next !== 'object' || next === null) { target[key] = {}; target = target[key] as Record<string, unknown>; continue }
    target = next as Record<string, unknown>
  }
  const last = path[path.length - 1] as string
  if (raw === undefined) { delete target[last]; return JSON.stringify(copy) }
  target[last] = RAW
  return JSON.stringify(copy).replace(JSON.stringify(RAW), () => raw)
}

/** A non-canonical spelling of a canonical WireGuard key that decodes to the same 32 bytes. */
export function keyAlias (key: string, rng: Rng): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  const last = alphabet.indexOf(key[42] as string)
  return key.slice(0, 42) + alphabet[(last & ~3) | (1 + rng.int(3))] + '='
}

export interface Hostile {
  kind: string
  bytes: Uint8Array
  /** the gossip author to present, when simulating the gossip path */
  author?: string
}

export interface HostileContext {
  /** the table owner */
  observer: TestNode
  /** honest members the observer already holds (at seq `baseSeq`) */
  members: TestNode[]
  /** a member (already held at seq `baseSeq`) that turns hostile and signs whatever it likes */
  attacker: TestNode
  /** a node the observer has never heard of */
  outsider: TestNode
  baseSeq: number
  /** records correctly signed with keys of other types (not Ed25519), under those keys' peer ids */
  foreignEnvelopes: Array<{ type: string, peerId: string, envelope: Uint8Array }>
  /** valid envelopes, newer than anything held: mutated copies of them must never get in */
  fresh: Uint8Array[]
  /** envelopes of held members with an older seq, and the exact held ones */
  replays: Uint8Array[]
  /** non-canonical spellings of the attacker's own peer id (CID forms) */
  attackerAliases: string[]
  /** unused WireGuard public keys */
  spareWgKeys: string[]
  /**
   * Attacker seqs only grow, so a record wrongly accepted never turns the later inputs into
   * "stale" ones: each input is judged on its own merits.
   */
  nextSeq: () => number
}

/** Build the cast and the fixed material of a hostile run. */
export async function hostileContext (rng: Rng, baseSeq = 1_000_000): Promise<HostileContext & { held: Uint8Array[] }> {
  const observer = await seededNode('observer', rng)
  const alice = await seededNode('alice', rng)
  const bob = await seededNode('bob', rng)
  const attacker = await seededNode('mallory', rng)
  const outsider = await seededNode('outsider', rng)
  const held: Uint8Array[] = []
  const replays: Uint8Array[] = []
  const fresh: Uint8Array[] = []
  for (const node of [alice, bob, attacker]) {
    for (const seq of [1, 2, baseSeq - 1]) replays.push((await node.sign({ seq })).envelope)
    const current = (await node.sign({ seq: baseSeq })).envelope
    held.push(current)
    replays.push(current)
    fresh.push((await node.sign({ seq: baseSeq + 1 + rng.int(1000), endpoints: ['198.18.0.2:10042', '[2001:db8::1]:51820'], routes: ['10.9.0.0/16'] })).envelope)
  }
  fresh.push((await outsider.sign({ seq: 7 })).envelope)
  // Not Ed25519: secp256k1 (derived from the seed) and RSA (random: its inputs are rejected before any signature check).
  const secp = privateKeyFromRaw(rng.bytes(32))
  const foreignEnvelopes: HostileContext['foreignEnvelopes'] = []
  for (const key of [secp, await generateKeyPair('RSA', 1024)]) {
    const peerId = peerIdFromPrivateKey(key).toString()
    for (let i = 0; i < 8; i++) {
      const record = {
        ...attacker.record({ seq: baseSeq + i }),
        peerId,
        ipv4: { address: addressFor(ranges.ipv4, peerId, 0), counter: 0, since: 1000 },
        ipv6: { address: addressFor(ranges.ipv6, peerId, 0), counter: 0, since: 1000 },
        wgPublicKey: seededWgKey(rng)
      }
      const body = utf8(JSON.stringify(record))
      const signature = await key.sign(concat(DOMAIN, body))
      // the signature as made (secp256k1 DER ~70 bytes, RSA 128 bytes), and cut or padded to 64
      const sig64 = signature.length >= 64 ? signature.slice(signature.length - 64) : concat(new Uint8Array(64 - signature.length), signature)
      foreignEnvelopes.push({ type: key.type, peerId, envelope: concat(body, signature) }, { type: key.type, peerId, envelope: concat(body, sig64) })
    }
  }
  const cid = peerIdFromString(attacker.peerId).toCID()
  // base32 (the default CID text) and base36 ("k51..."), both accepted by peerIdFromString
  const base36 = 'k' + BigInt('0x' + Buffer.from(cid.bytes).toString('hex')).toString(36)
  const attackerAliases = [cid.toString(), base36]
  const spareWgKeys = Array.from({ length: 32 }, () => seededWgKey(rng))
  let seq = baseSeq
  const nextSeq = (): number => ++seq
  return { observer, members: [alice, bob], attacker, outsider, baseSeq, foreignEnvelopes, fresh, replays, held, attackerAliases, spareWgKeys, nextSeq }
}

const NUMBER_TOKENS = ['NaN', 'Infinity', '-Infinity', '1e400', '-1e400', '-1', '1.5', '-0.5', '9007199254740992', '9007199254740993', '1e21', '-9007199254740993', '0x10', '01', '+1', '.5', '1e', '--1', '"1"', 'null', 'true', 'false', '[]', '{}', '[1]', '{"0":1}']
const STRING_JUNK = ['""', '123', 'null', 'true', '[]', '{}', '["a"]', '{"toString":"x"}', '"\\u0000"', '"\\ud800"', '"\\udfff\\ud800"', `"${'x'.repeat(300)}"`, '"\\n"', '" "']

/** Raw JSON values that are wrong for each field (never a valid value for that field). */
function invalidFor (path: string, rng: Rng, ctx: HostileContext): string {
  switch (path) {
    case 'v': return rng.pick(['0', '-1', '0.5', '1.5', '"1"', 'null', 'true', '[]', '{}', '[1]', '-1e400', 'NaN', '-Infinity', '"v1"'])
    case 'peerId': return rng.pick(['""', '123', 'null', '[]', '{}', JSON.stringify('x'.repeat(129)), `"${'1'.repeat(60)}"`, '"12D3KooWnotapeeridatall"', '"not a peer id"', `[${JSON.stringify(ctx.attacker.peerId)}]`, `{"id":${JSON.stringify(ctx.attacker.peerId)}}`])
    case 'name': return rng.pick([...STRING_JUNK.filter(s => s !== '""'), '"-bad"', '"bad-"', '"a b"', '"ü"', '"a/b"', '"../../etc/passwd"', `"${'a'.repeat(64)}"`, '"a\\u0000b"', '"x\\n"', '"$(reboot)"'])
    case 'wgPublicKey': return rng.pick([...STRING_JUNK, JSON.stringify(ctx.attacker.wgPublicKey.slice(0, 43)), JSON.stringify(ctx.attacker.wgPublicKey + '='), JSON.stringify(ctx.attacker.wgPublicKey.replace(/[+/]/g, '-').replace(/=$/, '') + '_'), JSON.stringify('A'.repeat(44)), JSON.stringify(ctx.attacker.wgPublicKey.slice(0, 42) + '!=')])
    case 'ipv4':
    case 'ipv6': return rng.pick(['null', 'true', '1', '"10.223.0.1"', '[]', '["fd00::1",0,0]', '{}', '{"address":null,"counter":0,"since":0}'])
    case 'ipv4.address':
    case 'ipv6.address': return rng.pick(['null', '1', '[]', '{}', '["10.223.0.1"]', `"${'1'.repeat(65)}"`, '"::%eth0"', '"::%1.2.3.4"', '"1::%x"', '"fd00::1%eth0"', '"10.223.0.256"', '"10.223.0.01"', '"hello"', '""'])
    case 'ipv4.counter':
    case 'ipv6.counter': return rng.pick([...NUMBER_TOKENS, String(MAX_COUNTER + 1), String(MAX_COUNTER + 1 + rng.int(1_000_000)), '4294967296'])
    case 'ipv4.since':
    case 'ipv6.since':
    case 'seq':
    case 'issuedAt': return rng.pick(NUMBER_TOKENS)
    case 'wgPort': return rng.pick([...NUMBER_TOKENS, '0', '65536', '99999', '"10042"'])
    case 'endpoints':
    case 'addrs':
    case 'routes': return rng.pick(['null', '"x"', '1', '{}', '{"0":"1.2.3.4:5","length":1}', '[null]', '[1]', '[[]]', '[{}]', '[true]'])
    case 'leaving': return rng.pick(['1', '0', '"true"', '"yes"', 'null', '[]', '{}'])
    default: throw new Error(`no invalid values for ${path}`)
  }
}

const FIELDS = ['v', 'peerId', 'name', 'wgPublicKey', 'ipv4', 'ipv6', 'ipv4.address', 'ipv6.address', 'ipv4.counter', 'ipv6.counter', 'ipv4.since', 'ipv6.since', 'wgPort', 'endpoints', 'addrs', 'routes', 'seq', 'issuedAt', 'leaving']
const REQUIRED = ['v', 'peerId', 'name', 'wgPublicKey', 'ipv6', 'ipv6.address', 'ipv6.counter', 'ipv6.since', 'ipv4.address', 'ipv4.counter', 'ipv4.since', 'wgPort', 'endpoints', 'addrs', 'routes', 'seq', 'issuedAt']

const BAD_ENDPOINTS = ['999.1.1.1:51820', '256.0.0.1:51820', '1.2.3.4:0', '1.2.3.4:65536', '1.2.3.4:99999', '1.2.3.4:00080', '01.2.3.4:51820', '[zz::1]:51820', '[:::::]:51820', '[1.2.3.4]:51820', '[::1%eth0]:51820', '1.2.3.4', '[::1]', 'localhost:51820', '1.2.3.4:51820\n', '[fe80::1]:0']

type Generator = (rng: Rng, ctx: HostileContext) => Promise<Hostile> | Hostile

/** Every way in, by name. Each produces one input that must be rejected. */
export const generators: Record<string, Generator> = {
  'random-bytes': rng => {
    const len = rng.pick([() => rng.int(65), () => rng.int(600), () => rng.int(MAX_ENVELOPE_BYTES + 1), () => MAX_ENVELOPE_BYTES + 1 + rng.int(10_240 - MAX_ENVELOPE_BYTES)])()
    return { kind: 'random-bytes', bytes: rng.bytes(len) }
  },
  'json-noise': rng => {
    const alphabet = '{}[]",:0123456789.eE-+ truefalsnul\\"abc'
    const len = 1 + rng.int(800)
    let text = ''
    for (let i = 0; i < len; i++) text += alphabet[rng.int(alphabet.length)]
    return { kind: 'json-noise', bytes: concat(utf8(text), rng.bytes(64)) }
  },
  truncated: (rng, ctx) => {
    const env = rng.pick(ctx.fresh)
    return { kind: 'truncated', bytes: env.slice(0, rng.int(env.length)) }
  },
  extended: (rng, ctx) => {
    const env = rng.pick(ctx.fresh)
    return { kind: 'extended', bytes: concat(env, rng.bytes(1 + rng.int(128))) }
  },
  'bit-flip': (rng, ctx) => {
    const bytes = Uint8Array.from(rng.pick(ctx.fresh))
    const flips = 1 + rng.int(8)
    for (let i = 0; i < flips; i++) {
      const at = rng.int(bytes.length)
      bytes[at] = (bytes[at] as number) ^ (1 << rng.int(8))
    }
    return { kind: 'bit-flip', bytes }
  },
  splice: (rng, ctx) => {
    const bytes = Uint8Array.from(rng.pick(ctx.fresh))
    const at = rng.int(bytes.length)
    bytes.set(rng.bytes(Math.min(1 + rng.int(32), bytes.length - at)), at)
    return { kind: 'splice', bytes }
  },
  'wrong-type': async (rng, ctx) => {
    const path = rng.pick(FIELDS)
    const text = jsonWith(ctx.attacker.record({ seq: nextSeq(rng, ctx) }), path.split('.'), invalidFor(path, rng, ctx))
    return { kind: 'wrong-type', bytes: await signBody(utf8(text), ctx.attacker.key), author: maybeAuthor(rng, ctx) }
  },
  'missing-field': async (rng, ctx) => {
    const path = rng.pick(REQUIRED)
    const text = jsonWith(ctx.attacker.record({ seq: nextSeq(rng, ctx) }), path.split('.'), undefined)
    return { kind: 'missing-field', bytes: await signBody(utf8(text), ctx.attacker.key), author: maybeAuthor(rng, ctx) }
  },
  'proto-pollution': async (rng, ctx) => {
    const good = ctx.attacker.record({ seq: nextSeq(rng, ctx) })
    const field = rng.pick(['wgPublicKey', 'ipv6', 'seq', 'peerId', 'endpoints'] as const)
    const inner = JSON.stringify({ [field]: good[field] })
    const without = jsonWith(good, [field], undefined)
    // The missing field is offered only through a prototype: JSON.parse must not honour it.
    const text = rng.pick([
      () => without.replace(/^\{/, `{"__proto__":${inner},`),
      () => without.replace(/^\{/, `{"constructor":{"prototype":${inner}},`),
      () => without.replace(/^\{/, `{"prototype":${inner},"__proto__":{"__proto__":${inner}},`),
      () => jsonWith(good, ['ipv6'], `{"__proto__":${JSON.stringify(good.ipv6)}}`),
      () => jsonWith(good, ['ipv6'], `{"constructor":{"prototype":${JSON.stringify(good.ipv6)}},"address":"${good.ipv6.address}"}`),
      () => jsonWith(good, ['endpoints'], '{"__proto__":[],"length":1,"0":"1.2.3.4:5"}'),
      () => `{"__proto__":${JSON.stringify(good)}}`,
      () => `[${JSON.stringify(good)}]`
    ])()
    return { kind: 'proto-pollution', bytes: await signBody(utf8(text), ctx.attacker.key) }
  },
  'deep-nesting': async (rng, ctx) => {
    const good = ctx.attacker.record({ seq: nextSeq(rng, ctx) })
    const depth = rng.pick([100, 700, 1000, 1900, 10_000])
    const arr = '['.repeat(depth) + ']'.repeat(depth)
    const obj = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
    const text = rng.pick([
      () => arr,
      () => obj,
      () => jsonWith(good, [rng.pick(['routes', 'endpoints', 'addrs', 'name', 'ipv6', 'seq'])], rng.chance(0.5) ? arr : obj),
      () => '['.repeat(depth) // unterminated
    ])()
    return { kind: 'deep-nesting', bytes: await signBody(utf8(text), ctx.attacker.key) }
  },
  'huge-array': async (rng, ctx) => {
    const field = rng.pick(['endpoints', 'addrs', 'routes'] as const)
    const item = { endpoints: '"1.2.3.4:5"', addrs: '"/ip4/1.2.3.4/tcp/1"', routes: '"10.0.0.0/8"' }[field]
    const max = { endpoints: 16, addrs: 16, routes: 64 }[field]
    const count = rng.chance(0.8) ? max + 1 + rng.int(200) : 1000 + rng.int(4000)
    const text = jsonWith(ctx.attacker.record({ seq: nextSeq(rng, ctx) }), [field], `[${Array<string>(count).fill(item).join(',')}]`)
    return { kind: 'huge-array', bytes: await signBody(utf8(text), ctx.attacker.key) }
  },
  'bad-number': async (rng, ctx) => {
    const path = rng.pick(['v', 'seq', 'issuedAt', 'wgPort', 'ipv6.counter', 'ipv6.since', 'ipv4.counter', 'ipv4.since'])
    const raw = rng.pick(['NaN', 'Infinity', '-Infinity', '1e400', '-1e400', '-1', '-0.5', '1.5', '9007199254740993', '1e300', '-9007199254740993'])
    if (path === 'v' && raw === '1e300') return await generators['bad-number']!(rng, ctx) // a huge v is a newer version, not an attack
    const text = jsonWith(ctx.attacker.record({ seq: nextSeq(rng, ctx) }), path.split('.'), raw)
    return { kind: 'bad-number', bytes: await signBody(utf8(text), ctx.attacker.key) }
  },
  'non-utf8': async (rng, ctx) => {
    const text = JSON.stringify(ctx.attacker.record({ seq: nextSeq(rng, ctx), name: 'XXXX' }))
    const at = text.indexOf('XXXX')
    const bad = rng.pick([[0xff], [0xfe], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc3], [0x80], [0xf0, 0x9f, 0x98]])
    const body = concat(utf8(text.slice(0, at)), Uint8Array.from(bad), utf8(text.slice(at + 4)))
    return { kind: 'non-utf8', bytes: await signBody(body, ctx.attacker.key) }
  },
  'bad-signature': async (rng, ctx) => {
    const body = utf8(JSON.stringify(ctx.attacker.record({ seq: nextSeq(rng, ctx) })))
    const signature = await rng.pick([
      async () => rng.bytes(64),
      async () => new Uint8Array(64),
      async () => new Uint8Array(64).fill(0xff),
      async () => (await signBody(utf8('something else'), ctx.attacker.key)).slice(-64),
      async () => (await signBody(body, ctx.outsider.key)).slice(-64),
      async () => await ctx.attacker.key.sign(body) // right key, no domain separation
    ])()
    return { kind: 'bad-signature', bytes: concat(body, signature), author: maybeAuthor(rng, ctx) }
  },
  impersonation: async (rng, ctx) => {
    // Correctly signed by the attacker, but claiming to be somebody else.
    const victim = rng.pick([...ctx.members, ctx.observer, ctx.outsider])
    const record = { ...victim.record({ seq: nextSeq(rng, ctx) }), wgPublicKey: ctx.attacker.wgPublicKey }
    return { kind: 'impersonation', bytes: await signBody(utf8(JSON.stringify(record)), ctx.attacker.key), author: rng.pick([undefined, ctx.attacker.peerId, victim.peerId]) }
  },
  'wrong-author': async (rng, ctx) => {
    // A genuine record, relayed under somebody else's gossip signature.
    const env = rng.pick(ctx.fresh)
    const author = rng.pick([...ctx.members, ctx.attacker, ctx.outsider, ctx.observer].map(n => n.peerId).filter(id => !utf8Includes(env, id)))
    return { kind: 'wrong-author', bytes: env, author }
  },
  replay: (rng, ctx) => ({ kind: 'replay', bytes: rng.pick(ctx.replays) }),
  'stale-resigned': async (rng, ctx) => {
    // The attacker re-signs its own record with an old or equal seq and new content.
    const seq = rng.pick([0, 1, ctx.baseSeq - 1, ctx.baseSeq])
    return { kind: 'stale-resigned', bytes: (await ctx.attacker.sign({ seq, name: `m${rng.int(1000)}` })).envelope }
  },
  'address-hijack': async (rng, ctx) => {
    // Another member's overlay address, under any counter, including ones beyond MAX_COUNTER.
    const victim = rng.pick([...ctx.members, ctx.observer])
    const family = rng.pick(['ipv4', 'ipv6'] as const)
    const range = family === 'ipv4' ? ranges.ipv4 : ranges.ipv6
    const theirs = rng.int(MAX_COUNTER + 1)
    const counter = rng.chance(0.8) ? rng.int(MAX_COUNTER + 1) : MAX_COUNTER + 1 + rng.int(1000)
    const claim = { address: addressFor(range, victim.peerId, theirs), counter, since: rng.pick([0, 1, 999, 1000]) }
    // A true hash collision with the attacker's own address is a legitimate claim: draw again.
    if (claimDerives(range, ctx.attacker.peerId, claim.address, counter)) return await generators['address-hijack']!(rng, ctx)
    const extra = rng.chance(0.3) ? { wgPublicKey: victim.wgPublicKey } : {}
    return { kind: 'address-hijack', bytes: (await ctx.attacker.sign({ seq: nextSeq(rng, ctx), [family]: claim, ...extra })).envelope, author: rng.pick([undefined, ctx.attacker.peerId]) }
  },
  'address-alias': async (rng, ctx) => {
    // Its own address, but spelled so that string comparisons miss a collision, or with a zone.
    const own = ctx.attacker.record().ipv6.address
    const groups = own.split(':')
    const address = rng.pick([
      own.toUpperCase(),
      own.replace('::', ':0:0:').replace(/^:/, '').replace(/:$/, ''),
      groups.map(g => g.padStart(4, '0')).join(':'),
      `${own}%eth0`,
      `${own}%1`,
      own.replace('::', '::0:')
    ])
    if (address === own) return await generators['address-alias']!(rng, ctx)
    return { kind: 'address-alias', bytes: (await ctx.attacker.sign({ seq: nextSeq(rng, ctx), ipv6: { address, counter: 0, since: 1000 } })).envelope }
  },
  'key-hijack': async (rng, ctx) => {
    const victim = rng.pick([...ctx.members, ctx.observer])
    const key = rng.chance(0.5) ? victim.wgPublicKey : keyAlias(victim.wgPublicKey, rng)
    return { kind: 'key-hijack', bytes: (await ctx.attacker.sign({ seq: nextSeq(rng, ctx), wgPublicKey: key })).envelope, author: rng.pick([undefined, ctx.attacker.peerId]) }
  },
  'key-alias': async (rng, ctx) => {
    // Its own key in a non-canonical spelling `wg` refuses: one such peer would fail every `wg set`.
    return { kind: 'key-alias', bytes: (await ctx.attacker.sign({ seq: nextSeq(rng, ctx), wgPublicKey: keyAlias(ctx.attacker.wgPublicKey, rng) })).envelope }
  },
  'bad-endpoint': async (rng, ctx) => {
    const endpoints = ['198.18.0.1:10042', rng.pick(BAD_ENDPOINTS)]
    if (rng.chance(0.5)) endpoints.reverse()
    return { kind: 'bad-endpoint', bytes: (await ctx.attacker.sign({ seq: nextSeq(rng, ctx), endpoints })).envelope }
  },
  'bad-route': async (rng, ctx) => {
    const route = rng.pick(['hello', '10.0.0.0', '10.0.0.0/33', 'fd00::/129', '::%eth0/64', '/8', '10.0.0.0/-1', '1.2.3.4/08x', ''])
    return { kind: 'bad-route', bytes: (await ctx.attacker.sign({ seq: nextSeq(rng, ctx), routes: [route] })).envelope }
  },
  'tombstone-hijack': async (rng, ctx) => {
    // A "leaving" record must not smuggle in another member's address or key either.
    const victim = rng.pick([...ctx.members, ctx.observer])
    const theirs = victim.record()
    const pick = rng.int(3)
    const overrides: Partial<NodeRecord> = pick === 0 ? { ipv6: theirs.ipv6 } : pick === 1 ? { ipv4: theirs.ipv4 } : { wgPublicKey: theirs.wgPublicKey }
    return { kind: 'tombstone-hijack', bytes: (await ctx.attacker.sign({ seq: nextSeq(rng, ctx), leaving: true, ...overrides })).envelope }
  },
  'non-ed25519': (rng, ctx) => {
    const { peerId, envelope } = rng.pick(ctx.foreignEnvelopes)
    return { kind: 'non-ed25519', bytes: envelope, author: rng.pick([undefined, peerId]) }
  },
  'peer-id-alias': async (rng, ctx) => {
    // The attacker's own key under another spelling of its peer id: a second identity for free.
    const alias = rng.pick(ctx.attackerAliases)
    const record = ctx.attacker.record({
      seq: nextSeq(rng, ctx),
      peerId: alias,
      wgPublicKey: rng.pick(ctx.spareWgKeys),
      ipv4: { address: addressFor(ranges.ipv4, alias, 0), counter: 0, since: 1000 },
      ipv6: { address: addressFor(ranges.ipv6, alias, 0), counter: 0, since: 1000 }
    })
    return { kind: 'peer-id-alias', bytes: await signBody(utf8(JSON.stringify(record)), ctx.attacker.key) }
  },
  'json-edge': async (rng, ctx) => {
    const good = JSON.stringify(ctx.attacker.record({ seq: nextSeq(rng, ctx) }))
    const text = rng.pick([
      'null', 'true', '0', '""', '[]', '{}', '"{}"', JSON.stringify(good),
      good.replace(/\}$/, ',"seq":-1}'), // duplicate key: the last one wins, and it is invalid
      good.replace(/\}$/, ',"ipv6":{"address":"::1","counter":0,"since":0}}'),
      good.slice(0, -1), // unterminated
      good + good,
      good.replace(/^\{/, '{"":1,"\\u0000":2,'), // harmless keys, but then:
      good.replace(/"wgPort":\d+/, '"wgPort":1e5'),
      `${good}\u0000`,
      good.replace(/^\{/, '{/*comment*/')
    ])
    // The one line with harmless keys stays valid unless we break it: make sure it is broken.
    const broken = text.startsWith('{"":1') ? text.replace(/"seq":\d+/, '"seq":"1"') : text
    return { kind: 'json-edge', bytes: await signBody(utf8(broken), ctx.attacker.key) }
  },
  oversize: async (rng, ctx) => {
    const record = { ...ctx.attacker.record({ seq: nextSeq(rng, ctx) }), padding: 'x'.repeat(MAX_ENVELOPE_BYTES + rng.int(6000)) }
    return { kind: 'oversize', bytes: await signBody(utf8(JSON.stringify(record)), ctx.attacker.key) }
  }
}

function nextSeq (_rng: Rng, ctx: HostileContext): number {
  return ctx.nextSeq()
}

function maybeAuthor (rng: Rng, ctx: HostileContext): string | undefined {
  return rng.chance(0.5) ? undefined : ctx.attacker.peerId
}

function utf8Includes (bytes: Uint8Array, text: string): boolean {
  return Buffer.from(bytes).includes(text)
}

/** One hostile input, of a kind chosen by the PRNG. */
export async function hostileInput (rng: Rng, ctx: HostileContext, kinds = Object.keys(generators)): Promise<Hostile> {
  const generate = generators[rng.pick(kinds)] as Generator
  return await generate(rng, ctx)
}
