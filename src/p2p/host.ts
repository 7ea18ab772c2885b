import { createHash } from 'node:crypto'
import '../polyfill.ts'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@libp2p/gossipsub'
import { mdns } from '@libp2p/mdns'
import type { ComponentLogger, ConnectionProtector, Logger, PeerInfo, PrivateKey } from '@libp2p/interface'
import type { kadDHT } from '@libp2p/kad-dht'
import type { Multiaddr } from '@multiformats/multiaddr'
import { meshSeed, type Psk } from '../config/psk.ts'
import { unmapIpv4 } from '../util/ip.ts'
import { createTokenBucket } from '../util/rate.ts'
import { lessYamuxWindowUpdates } from './yamux-window.ts'
import { withLiveness, type LivenessOptions } from './liveness.ts'
import { MultiKeyProtector } from './protector.ts'
import { noiseCrypto } from './noise-crypto.ts'

// yamux answers every data frame with a window update of its own (see the module)
lessYamuxWindowUpdates()

// The libp2p stack: TCP, gated by the network PSK (pnet's wire format), then Noise and yamux. Gossipsub
// carries record changes; identify tells each side the address the other sees.

export interface HostOptions {
  privateKey: PrivateKey
  psk: Psk
  listen: string[]
  /** addresses we must never announce or dial: overlay ranges (we would route over our own tunnel) */
  isOverlayAddress: (ip: string) => boolean
  /** find members on the local segment by multicast DNS (the keeper dials what it finds) */
  mdns?: boolean
  /** the mesh's stable seed (src/config/psk.ts meshSeed): the mDNS tag survives key rotations */
  meshSeed?: string
  /** kad-dht as extra peer routing; loaded only when on */
  dht?: boolean
  /** the connection protector (several keys during a key rotation); default: `psk` alone */
  protector?: ConnectionProtector
  /** peers we refuse in both directions (revoked members) */
  denyPeer?: (peerId: string) => boolean
  /**
   * Tests and benchmarks only (many daemons in one process on 127.0.0.1): announce and dial
   * loopback. Never set by the CLI or the config: members must not reach each other over lo.
   */
  allowLoopback?: boolean
  /** how often each connection is pinged, and how long an answer may take (tests shorten both) */
  liveness?: LivenessOptions
}

/**
 * libp2p's own debug logs stay off unless DEBUG names them (DEBUG=libp2p:*). Off, its logger
 * (weald) still costs: libp2p makes several per connection and per stream, and each asks
 * whether stderr is a terminal, a system call. Without DEBUG libp2p gets loggers that do
 * nothing (two in-process hosts: 0.7 ms of CPU less per connection).
 */
export function libp2pLogger (debug = process.env.DEBUG): ComponentLogger | undefined {
  if ((debug ?? '') !== '') return undefined // libp2p's default, weald
  const silent: Logger = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false, newScope: () => silent })
  return { forComponent: () => silent }
}

/** kad-dht protocol of our own: the mesh's DHT never mixes with a public one. */
export const DHT_PROTOCOL = '/w2wesher/kad/1.0.0'

export type Host = Awaited<ReturnType<typeof createHost>>

export async function createHost (opts: HostOptions) {
  const usable = (ma: Multiaddr): boolean => usableAddress(ma, opts)
  return await createLibp2p({
    privateKey: opts.privateKey,
    logger: libp2pLogger(),
    addresses: { listen: opts.listen, announceFilter: addrs => addrs.filter(usable) },
    transports: [tcp()],
    connectionProtector: () => opts.protector ?? new MultiKeyProtector({ dial: opts.psk.bytes, accept: [] }),
    connectionEncrypters: [noise({ crypto: noiseCrypto })],
    streamMuxers: [streamMuxer(opts.liveness)],
    connectionGater: {
      // never reach a member through the overlay itself
      denyDialMultiaddr: ma => !usable(ma),
      denyDialPeer: peer => opts.denyPeer?.(peer.toString()) ?? false,
      denyInboundEncryptedConnection: peer => opts.denyPeer?.(peer.toString()) ?? false,
      denyOutboundEncryptedConnection: peer => opts.denyPeer?.(peer.toString()) ?? false
    },
    connectionManager: {
      // many members can sit behind one IP (NAT, tests): the default 5/s per host throttles joins
      inboundConnectionThreshold: 100,
      maxIncomingPendingConnections: 100
    },
    // replaced by the muxer's own pings (streamMuxer below)
    connectionMonitor: { enabled: false },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub(GOSSIPSUB_OPTIONS),
      // mDNS answers with addressManager.getAddresses(), i.e. after the announce filter above:
      // never loopback, link-local or overlay addresses. Every answer reaches every node on
      // the segment, so N nodes querying every 10 s (the default) cost each of them N²/10
      // answers a second: query rarely here, and often only while we know nobody (the
      // keeper, via queryLan).
      // The service asks once at start; its fixed interval is off (see repeatLanQueries).
      ...(opts.mdns === true ? { mdns: mdns({ serviceTag: mdnsServiceTag(opts.meshSeed ?? meshSeed(opts.psk)), interval: MAX_TIMER_MS }) } : {}),
      ...(opts.dht === true ? { dht: await dhtService() } : {})
    }
  })
}

/**
 * Our mDNS service name: a short one-way hash of the mesh seed (itself a one-way hash of the
 * network's first key, so the tag stays the same across key rotations). Meshes on one LAN do
 * not even see each other (no futile dials between them); it reveals no more than that two
 * nodes share a mesh, which their connections to each other show anyway.
 */
export function mdnsServiceTag (seed: string): string {
  const digest = createHash('sha256').update(`w2wesher/mdns/${seed}`).digest()
  return `_w2w-${digest.subarray(0, 5).toString('hex')}._udp.local`
}

/** how often every node asks the LAN anyway (islands of one mesh that formed apart merge) */
export const MDNS_QUERY_MS = 300_000
/** the longest delay a Node timer takes (a longer one fires after 1 ms) */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Ask the LAN every MDNS_QUERY_MS (±50 %), from a random point of the first period on. The
 * service's own interval kept the phase of the node's start: 250 daemons started together
 * asked within seconds of each other every 5 min, and each of those bursts made every node
 * look at 62,500 queries at once. Returns a stop function.
 */
export function repeatLanQueries (host: Host, seed: string, periodMs = MDNS_QUERY_MS): () => void {
  let timer: NodeJS.Timeout | undefined
  const next = (share: number): void => {
    timer = setTimeout(() => { queryLan(host, seed); next(0.5 + Math.random()) }, periodMs * share)
    timer.unref()
  }
  next(Math.random())
  return () => { clearTimeout(timer) }
}

/** One mDNS query for our mesh now; nothing when mDNS is off. The answers reach the keeper. */
export function queryLan (host: Host, seed: string): void {
  const service = (host.services as { mdns?: { mdns?: { query: (q: { questions: Array<{ name: string, type: 'PTR' }> }) => void } } }).mdns
  service?.mdns?.query({ questions: [{ name: mdnsServiceTag(seed), type: 'PTR' }] })
}

/** members answering one mDNS query, on average, in a large mesh */
export const LAN_ANSWERS = 8

/**
 * Every member on the segment answers every mDNS query, and every answer reaches every node:
 * a fleet of N booting together parses N³ answers between them. A newcomer needs one answer
 * (the sync over that connection teaches it the rest), so each member answers with chance
 * LAN_ANSWERS / members: about LAN_ANSWERS answers per query, all of them in a small mesh.
 * A query nobody answered is asked again (the keeper, every 10 s while alone).
 */
export function thinLanAnswers (host: Host, members: () => number): void {
  const service = (host.services as { mdns?: LanService }).mdns
  const socket = service?.mdns
  const answer = service?._onMdnsQuery
  if (service === undefined || socket === undefined || answer === undefined) return
  // Knowing nobody yet (a fleet booting together), the peers heard on the LAN tell how many
  // would answer: bounded, it only needs to tell "a few" from "many".
  const heard = new Set<string>()
  service.addEventListener('peer', evt => { if (heard.size < MAX_HEARD) heard.add(evt.detail.id.toString()) })
  // ... and a burst of LAN_ANSWER_BURST answers, then one per LAN_ANSWER_REFILL_MS: when
  // a whole fleet boots at once, the answers it needs are a few per node, not N.
  const answers = createTokenBucket(LAN_ANSWER_BURST, LAN_ANSWER_REFILL_MS)
  socket.removeListener('query', answer)
  socket.on('query', query => {
    // Answer after a random delay (as mDNS responders do, RFC 6762 6.): a fleet booting
    // together queries all at once, and the first answers teach everyone how many listen.
    setTimeout(() => {
      if (Math.random() * Math.max(1, members(), heard.size) >= LAN_ANSWERS) return
      if (answers.take()) answer(query)
    }, LAN_ANSWER_DELAY_MS * (0.02 + Math.random() * 0.98)).unref()
  })
}

export const LAN_ANSWER_BURST = 5
export const LAN_ANSWER_REFILL_MS = 2000

/** longest random delay before an mDNS answer */
export const LAN_ANSWER_DELAY_MS = 1000

const MAX_HEARD = 4096

/** an answer from a responder already passed on within this time is dropped */
export const LAN_ANSWER_MEMORY_MS = 30_000
/** answers passed on: a burst of this many, then one per LAN_PASS_REFILL_MS */
export const LAN_PASS_BURST = 10
export const LAN_PASS_REFILL_MS = 2000

/**
 * Every answer on the segment reaches every node, and each one the mDNS service passes on
 * costs a libp2p peer-store write and a look by the keeper: 250 daemons booting on one host
 * spent a sixth of their CPU there (docs/benchmarks.md, round 8). Passed on: an answer from
 * a peer that is not a member yet (a member's addresses come with its record), once per
 * responder (its mDNS instance name, new at every start) in LAN_ANSWER_MEMORY_MS, and a
 * burst of them, then one per LAN_PASS_REFILL_MS: the keeper dials one stranger at a time,
 * and one that answers is enough (its sync teaches us the rest).
 */
export function filterLanAnswers (host: Host, isMember: (peerId: string) => boolean): void {
  const service = (host.services as { mdns?: LanService }).mdns
  const socket = service?.mdns
  const onResponse = service?._onMdnsResponse
  if (service === undefined || socket === undefined || onResponse === undefined) return
  const passedAt = new Map<string, number>()
  const passes = createTokenBucket(LAN_PASS_BURST, LAN_PASS_REFILL_MS)
  socket.removeListener('response', onResponse)
  socket.on('response', response => {
    const { answers = [], additionals = [] } = response as LanResponse
    // the service reads the last PTR answer, and only one for our tag
    const ptr = answers.filter(a => a.type === 'PTR').at(-1)
    if (typeof ptr?.data !== 'string') return
    const now = Date.now()
    if (now - (passedAt.get(ptr.data) ?? -Infinity) < LAN_ANSWER_MEMORY_MS) return
    const peerId = lanAnswerPeerId([...answers, ...additionals])
    if (peerId !== undefined && isMember(peerId)) return
    if (!passes.take()) return
    passedAt.delete(ptr.data)
    // bounded (answers are network input): forget the oldest
    if (passedAt.size >= MAX_HEARD) passedAt.delete(passedAt.keys().next().value!)
    passedAt.set(ptr.data, now)
    onResponse(response)
  })
}

/** the peer id of an mDNS answer: the /p2p/ part of its first dnsaddr TXT record, as the service reads it */
function lanAnswerPeerId (records: LanRecord[]): string | undefined {
  for (const record of records) {
    if (record.type !== 'TXT') continue
    for (const item of Array.isArray(record.data) ? record.data : [record.data]) {
      const text = String(item)
      if (text.startsWith('dnsaddr=')) return /\/p2p\/([^/]+)$/.exec(text)?.[1]
    }
  }
  return undefined
}

interface LanRecord { type?: string, data?: unknown }
interface LanResponse { answers?: LanRecord[], additionals?: LanRecord[] }

/** what thinLanAnswers uses of @libp2p/mdns (its multicast socket and query handler are public fields) */
interface LanService {
  mdns?: { on: (e: 'query' | 'response', f: (q: unknown) => void) => void, removeListener: (e: 'query' | 'response', f: (q: unknown) => void) => void }
  _onMdnsQuery?: (q: unknown) => void
  _onMdnsResponse?: (r: unknown) => void
  addEventListener: (e: 'peer', f: (evt: CustomEvent<PeerInfo>) => void) => void
}

/**
 * The DHT service (also used by the tests' hosts). Server mode: every member answers,
 * there is no public DHT to protect. Addresses pass unfiltered (the default mapper would
 * drop the private addresses a LAN mesh lives on); the dial gater still refuses loopback
 * and overlay addresses.
 */
export async function dhtService (): Promise<ReturnType<typeof kadDHT>> {
  const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
  return kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper })
}

/**
 * Silent deaths (a partition) are noticed within about a minute and a half: every connection
 * is pinged about once a minute from each end. A ping is one yamux frame, so no longer the
 * idle cost it was as a stream (src/p2p/liveness.ts). The timeout stays generous: a fleet
 * starting on few cores delays answers by seconds, and a missed answer drops the connection.
 */
export const LIVENESS: LivenessOptions = { intervalMs: 60_000, timeoutMs: 20_000 }

/**
 * yamux, with its own keepalive off (it pings every 30 s and never acts on a missing
 * answer) and our liveness pings on instead.
 */
export function streamMuxer (liveness: LivenessOptions = LIVENESS) {
  return withLiveness(yamux({ enableKeepAlive: false }), liveness)
}

/**
 * One small topic whose authors reach every member directly (floodPublish on a full mesh of
 * connections; the sync protocol repairs the rest): the gossipsub mesh only adds redundancy,
 * so its heartbeat (mesh upkeep, IHAVE gossip) can run far slower than the 1 s default.
 */
export const GOSSIPSUB_OPTIONS = {
  allowPublishToZeroTopicPeers: true,
  emitSelf: false,
  floodPublish: true,
  heartbeatInterval: 5_000,
  // A record reaches a node along several paths. Without a fast id every copy has its gossipsub
  // signature checked before it is found to be a duplicate; with it, later copies are dropped on
  // author + sequence number (the id gossipsub uses anyway). An id is cached only after a valid copy.
  fastMsgIdFn: (msg: { from?: Uint8Array, seqno?: Uint8Array }): string =>
    `${Buffer.from(msg.from ?? []).toString('base64')}/${Buffer.from(msg.seqno ?? []).toString('base64')}`,
  scoreParams: {
    // Peer scoring guards open networks against Sybils; ours is gated by the PSK. Its IP
    // colocation penalty would silence every peer once more than 10 share an address (members
    // behind one NAT, or every daemon of a one-host lab): gossip to and from them stops.
    IPColocationFactorWeight: 0,
    // Score decay (and with it a wake-up) once a minute instead of every second.
    decayInterval: 60_000
  }
}

/** The IP of a multiaddr; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 it is. */
export function ipOf (ma: Multiaddr): string | undefined {
  const c = ma.getComponents()[0]
  if (c === undefined || (c.name !== 'ip4' && c.name !== 'ip6') || c.value === undefined) return undefined
  return c.name === 'ip4' ? c.value : unmapIpv4(c.value) ?? c.value
}

/** Whether we may announce or dial `ma`: never the overlay, loopback (unless allowed) or link-local. */
export function usableAddress (ma: Multiaddr, opts: Pick<HostOptions, 'isOverlayAddress' | 'allowLoopback'>): boolean {
  const ip = ipOf(ma)
  if (ip === undefined) return true
  const lo = isLoopbackOrLinkLocal(ip) && !(opts.allowLoopback === true && isLoopback(ip))
  return !(lo || opts.isOverlayAddress(ip))
}

function isLoopback (ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1'
}

function isLoopbackOrLinkLocal (ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip.toLowerCase().startsWith('fe80:') || ip.startsWith('169.254.')
}

/** host and TCP port of a multiaddr such as /ip4/1.2.3.4/tcp/10042 or /dns/x/tcp/10042 */
export function tcpTarget (ma: Multiaddr): { host: string, port: number } | undefined {
  const components = ma.getComponents()
  const host = components[0]
  const port = components.find(c => c.name === 'tcp')?.value
  if (host?.value === undefined || port === undefined || !/^(ip4|ip6|dns|dns4|dns6)$/.test(host.name)) return undefined
  return { host: host.value, port: Number(port) }
}
