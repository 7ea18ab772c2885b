import { afterEach, describe, expect, it } from 'vitest'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import type { ConnectionProtector } from '@libp2p/interface'
import { keyId, MultiKeyProtector } from '../../src/p2p/protector.ts'
import { pskFromBytes } from '../../src/config/psk.ts'
import { freePort, waitFor } from './harness.ts'

// The multi-key protector against @libp2p/pnet itself, on real in-process libp2p hosts over
// loopback TCP: a node holding only the old key and a node in the middle of a rotation must
// interoperate in both directions, and a retired key must close its connections.

const OLD = new Uint8Array(32).fill(0x11)
const NEW = new Uint8Array(32).fill(0x22)
const OTHER = new Uint8Array(32).fill(0x33)

const hosts: Libp2p[] = []
afterEach(async () => {
  await Promise.all(hosts.splice(0).map(async h => { await h.stop() }))
})

async function node (protector: ConnectionProtector | 'pnet-old' | 'pnet-new'): Promise<{ host: Libp2p<{ ping: ReturnType<ReturnType<typeof ping>> }>, addr: string }> {
  const port = await freePort()
  const pnet = (key: Uint8Array): ReturnType<typeof preSharedKey> => preSharedKey({ psk: new TextEncoder().encode(pskFromBytes(key).swarmKey) })
  const host = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: [`/ip4/127.0.0.1/tcp/${port}`] },
    transports: [tcp()],
    connectionProtector: protector === 'pnet-old' ? pnet(OLD) : protector === 'pnet-new' ? pnet(NEW) : () => protector,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { inboundConnectionThreshold: 100 },
    services: { ping: ping() }
  })
  hosts.push(host)
  return { host, addr: `/ip4/127.0.0.1/tcp/${port}/p2p/${host.peerId.toString()}` }
}

/** A dial and a ping over it; false when the connection cannot be made. */
async function works (from: Awaited<ReturnType<typeof node>>, to: Awaited<ReturnType<typeof node>>): Promise<boolean> {
  try {
    const rtt = await from.host.services.ping.ping(multiaddr(to.addr), { signal: AbortSignal.timeout(3000) })
    return typeof rtt === 'number'
  } catch {
    return false
  }
}

describe('multi-key protector against @libp2p/pnet', () => {
  it('old-key pnet node dials a rotating node, and the rotating node (accept phase) dials it', async () => {
    const plain = await node('pnet-old')
    const rotating = new MultiKeyProtector({ dial: OLD, accept: [NEW] })
    const rot = await node(rotating)
    expect(await works(plain, rot)).toBe(true)
    await plain.host.hangUp(rot.host.peerId)
    await waitFor('both sides closed', () => rot.host.getConnections().length === 0 && plain.host.getConnections().length === 0)
    expect(await works(rot, plain)).toBe(true)
    // the connection the plain node dialled was recognised as the old key
    expect(rotating.connections().map(c => c.keyId)).toContain(keyId(OLD))
  })

  it('a node dialling with the new key reaches a new-key pnet node and a rotating node, not an old-only one', async () => {
    const switched = await node(new MultiKeyProtector({ dial: NEW, accept: [OLD] }))
    const newOnly = await node('pnet-new')
    const oldOnly = await node('pnet-old')
    const accepting = new MultiKeyProtector({ dial: OLD, accept: [NEW] })
    const acc = await node(accepting)
    expect(await works(switched, newOnly)).toBe(true)
    expect(await works(newOnly, switched)).toBe(true)
    expect(await works(switched, acc)).toBe(true)
    expect(accepting.connections().some(c => c.direction === 'inbound' && c.keyId === keyId(NEW))).toBe(true)
    expect(await works(switched, oldOnly)).toBe(false)
    // and the old-only node can still dial the switched node while it accepts the old key
    expect(await works(oldOnly, switched)).toBe(true)
  })

  it('refuses a dialer whose key it does not accept and reports it', async () => {
    const unknown: string[] = []
    const protector = new MultiKeyProtector({ dial: NEW, accept: [] })
    protector.onUnknownKey = addr => unknown.push(addr)
    const target = await node(protector)
    const old = await node('pnet-old')
    const other = await node(new MultiKeyProtector({ dial: OTHER, accept: [] }))
    expect(await works(old, target)).toBe(false)
    expect(await works(other, target)).toBe(false)
    expect(unknown.length).toBeGreaterThanOrEqual(2)
    expect(await works(await node('pnet-new'), target)).toBe(true)
  })

  it('switches keys at run time: dropping the old key closes its connections and refuses it from then on', async () => {
    const protector = new MultiKeyProtector({ dial: OLD, accept: [NEW] })
    const rot = await node(protector)
    const plain = await node('pnet-old')
    expect(await works(plain, rot)).toBe(true)
    expect(plain.host.getConnections(rot.host.peerId).length).toBe(1)
    protector.setKeys({ dial: NEW, accept: [] })
    expect(protector.current()).toEqual({ dial: keyId(NEW), accept: [keyId(NEW)] })
    await waitFor('old-key connection closed', () => plain.host.getConnections(rot.host.peerId).length === 0, 5000)
    expect(await works(plain, rot)).toBe(false)
    expect(await works(await node('pnet-new'), rot)).toBe(true)
  })

  it('carries bulk data both ways intact (keystream stays in step after the opening bytes)', async () => {
    const a = await node(new MultiKeyProtector({ dial: NEW, accept: [OLD] }))
    const b = await node(new MultiKeyProtector({ dial: OLD, accept: [NEW] }))
    const payload = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff)
    const received: Uint8Array[] = []
    await b.host.handle('/test/echo/1', async (stream) => {
      for await (const chunk of stream) stream.send(chunk.subarray())
      await stream.close()
    })
    const stream = await a.host.dialProtocol(multiaddr(b.addr), '/test/echo/1')
    const reading = (async () => { for await (const chunk of stream) received.push(chunk.subarray()) })()
    stream.send(payload)
    await stream.close()
    await reading
    expect(Buffer.compare(Buffer.concat(received), payload)).toBe(0)
  })
})
