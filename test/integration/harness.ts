import { createServer } from 'node:net'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@libp2p/gossipsub'
import { preSharedKey } from '@libp2p/pnet'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { lpStream } from '@libp2p/utils'
import type { PrivateKey } from '@libp2p/interface'
import { pino } from 'pino'
import { createHost, dhtService, GOSSIPSUB_OPTIONS, streamMuxer, type Host } from '../../src/p2p/host.ts'
import type { LivenessOptions } from '../../src/p2p/liveness.ts'
import { startGossip, type Gossip } from '../../src/gossip/gossip.ts'
import { initiateSync, SYNC_PROTOCOL } from '../../src/gossip/sync.ts'
import { signRecord, type NodeRecord } from '../../src/gossip/record.ts'
import { Membership } from '../../src/membership/table.ts'
import { inRange } from '../../src/membership/ipam.ts'
import { pskFromBytes, type Psk } from '../../src/config/psk.ts'
import { ranges, type TestNode } from '../unit/fixtures.ts'

// In-process nodes on loopback, wired the way src/daemon.ts wires them (host → gossip →
// membership), minus WireGuard. createHost refuses to *dial* loopback (its gater keeps
// members from reaching each other through the overlay or lo), so nodes that must dial
// out use `testHost`: the same stack (TCP + PSK + Noise + yamux, identify, ping, the same
// gossipsub options) without that gater. Nodes that are dialled use the real createHost.

export const silentLog = pino({ level: 'silent' })

export function testPsk (fill = 7): Psk {
  return pskFromBytes(new Uint8Array(32).fill(fill))
}

const isOverlayAddress = (ip: string): boolean => inRange(ranges.ipv6, ip) || inRange(ranges.ipv4, ip)

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** The createHost stack without its dial gater, so that it can dial 127.0.0.1; `dht` adds createHost's DHT service. */
export async function testHost (privateKey: PrivateKey, psk: Psk, listen: string[], opts: { dht?: boolean, liveness?: LivenessOptions } = {}): Promise<Host> {
  return await createLibp2p({
    privateKey,
    addresses: { listen },
    transports: [tcp()],
    connectionProtector: preSharedKey({ psk: new TextEncoder().encode(psk.swarmKey) }),
    connectionEncrypters: [noise()],
    streamMuxers: [streamMuxer(opts.liveness)],
    connectionGater: { denyDialMultiaddr: () => false },
    connectionManager: { inboundConnectionThreshold: 100, maxIncomingPendingConnections: 100 },
    connectionMonitor: { enabled: false },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub(GOSSIPSUB_OPTIONS),
      ...(opts.dht === true ? { dht: await dhtService() } : {})
    }
  })
}

export interface MeshNode {
  node: TestNode
  host: Host
  membership: Membership
  gossip: Gossip
  /** dialable address, with /p2p/<id> */
  addr: Multiaddr
  /** sign, hold and publish a new own record, as the daemon's announce() does */
  announce: (overrides: Partial<NodeRecord>) => Promise<Uint8Array>
  stop: () => Promise<void>
}

/**
 * A node with a Membership and startGossip wired like the daemon. `real` builds its host
 * with src/p2p/host.ts createHost (it can be dialled, not dial loopback).
 */
export async function startMeshNode (node: TestNode, psk: Psk, opts: { real: boolean, seq?: number, antiEntropySeconds?: number, dht?: boolean, record?: Partial<NodeRecord>, onAuthorSynced?: (peer: string) => void }): Promise<MeshNode> {
  const port = await freePort()
  const listen = [`/ip4/127.0.0.1/tcp/${port}`]
  const host = opts.real
    ? await createHost({ privateKey: node.key, psk, listen, isOverlayAddress, dht: opts.dht })
    : await testHost(node.key, psk, listen, { dht: opts.dht })
  const membership = new Membership({ self: node.peerId, selfWgPublicKey: node.wgPublicKey, ipv6Range: ranges.ipv6, ipv4Range: ranges.ipv4 })
  const own = await signRecord(node.record({ seq: opts.seq ?? 1, ...opts.record }), node.key)
  membership.setSelf(own)
  const gossip = await startGossip({
    host,
    log: silentLog,
    accept: async (envelope, author) => await membership.acceptEnvelope(envelope, author),
    digest: () => membership.digest(),
    envelope: peerId => membership.envelope(peerId),
    antiEntropySeconds: opts.antiEntropySeconds,
    onAuthorSynced: opts.onAuthorSynced
  })
  if (host.status !== 'started') await host.start()
  await gossip.publish(own.envelope)
  const announce = async (overrides: Partial<NodeRecord>): Promise<Uint8Array> => {
    const signed = await signRecord(node.record(overrides), node.key)
    membership.setSelf(signed)
    await gossip.publish(signed.envelope)
    return signed.envelope
  }
  let stopped = false
  return {
    node,
    host,
    membership,
    gossip,
    addr: multiaddr(`/ip4/127.0.0.1/tcp/${port}/p2p/${node.peerId}`),
    announce,
    async stop () {
      if (stopped) return
      stopped = true
      await gossip.stop().catch(() => {})
      await host.stop()
    }
  }
}

/** Poll until `check` holds; fail with `what` after `timeoutMs`. */
export async function waitFor (what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/** Sum of all rejection counters. */
export function rejectedTotal (gossip: Gossip): number {
  return Object.values(gossip.stats.rejected).reduce((n: number, c) => n + (c ?? 0), 0)
}

/** Per-reason increase of the rejection counters since `before`. */
export function rejectedSince (gossip: Gossip, before: Gossip['stats']['rejected']): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [reason, count] of Object.entries(gossip.stats.rejected)) {
    const delta = (count ?? 0) - (before[reason as keyof typeof before] ?? 0)
    if (delta !== 0) out[reason] = delta
  }
  return out
}

// The sync protocol's framing (src/gossip/sync.ts), for tests that speak it by hand: length-
// prefixed frames, the first byte a tag, an empty frame ends a phase. Initiator: DIGEST frames
// ([peerId, seq] pairs, 40 a frame); responder: RECORD frames and WANT frames (peer ids, 60 a
// frame); initiator: the wanted RECORD frames.

export type Lp = ReturnType<typeof lpStream>
export const TAG_DIGEST = 1
export const TAG_RECORD = 2
export const TAG_WANT = 3
export const END = new Uint8Array(0)

export function tagged (tag: number, body: Uint8Array | string): Uint8Array {
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body
  const out = new Uint8Array(bytes.length + 1)
  out[0] = tag
  out.set(bytes, 1)
  return out
}

export const jsonFrame = (tag: number, value: unknown): Uint8Array => tagged(tag, JSON.stringify(value))
export const recordFrame = (envelope: Uint8Array): Uint8Array => tagged(TAG_RECORD, envelope)

export function chunked<T> (items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

export const digestFrames = (entries: ReadonlyArray<readonly [string, number]>): Uint8Array[] => chunked(entries, 40).map(c => jsonFrame(TAG_DIGEST, c))
export const wantFrames = (ids: readonly string[]): Uint8Array[] => chunked(ids, 60).map(c => jsonFrame(TAG_WANT, c))

/** One phase as received, frame by frame. */
export interface Phase {
  digest: Array<[string, number]>
  records: Uint8Array[]
  wants: string[]
  /** entries per DIGEST frame and ids per WANT frame, in order */
  digestSizes: number[]
  wantSizes: number[]
}

/** Read frames up to the empty one that ends the phase. */
export async function readPhase (lp: Lp, timeoutMs = 5000): Promise<Phase> {
  const phase: Phase = { digest: [], records: [], wants: [], digestSizes: [], wantSizes: [] }
  const signal = AbortSignal.timeout(timeoutMs)
  const json = (body: Uint8Array): unknown[] => JSON.parse(new TextDecoder().decode(body)) as unknown[]
  for (;;) {
    const data = (await lp.read({ signal })).subarray()
    if (data.length === 0) return phase
    const body = data.subarray(1)
    if (data[0] === TAG_RECORD) {
      phase.records.push(body.slice())
    } else if (data[0] === TAG_DIGEST) {
      const entries = json(body) as Array<[string, number]>
      phase.digest.push(...entries)
      phase.digestSizes.push(entries.length)
    } else if (data[0] === TAG_WANT) {
      const ids = json(body) as string[]
      phase.wants.push(...ids)
      phase.wantSizes.push(ids.length)
    } else {
      throw new Error(`unknown sync frame tag ${String(data[0])}`)
    }
  }
}

/** Offer `to` one record by a sync from `from`, as a member holding it would (seq 1). */
export async function pushBySync (from: Host, to: Multiaddr, peerId: string, envelope: Uint8Array): Promise<void> {
  const stream = await from.dialProtocol(to, SYNC_PROTOCOL)
  await initiateSync(stream, {
    digest: () => new Map([[peerId, 1]]),
    envelope: id => id === peerId ? envelope : undefined,
    accept: async () => {}
  }, AbortSignal.timeout(5000))
}
