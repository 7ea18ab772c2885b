import { describe, it, expect, afterEach } from 'vitest'
import { createServer, connect, type Socket } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createHost, type Host } from '../../src/p2p/host.ts'
import { freePort, testHost, testPsk, waitFor } from './harness.ts'

// A connection whose other end goes silent (a partition: no FIN, no RST, packets just stop)
// must be dropped by the muxer's liveness pings (src/p2p/liveness.ts), on both ends, while a
// healthy connection lives on through many pings. A TCP relay between the two hosts
// plays the partition: it stops forwarding but keeps both sockets open.

const psk = testPsk(0x5a)
const LIVENESS = { intervalMs: 200, timeoutMs: 400 }
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => { for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {}) })

interface Relay { port: number, blackhole: () => void }

async function relay (targetPort: number): Promise<Relay> {
  const sockets: Socket[] = []
  let dark = false
  const server = createServer(inbound => {
    const outbound = connect(targetPort, '127.0.0.1')
    sockets.push(inbound, outbound)
    const forward = (from: Socket, to: Socket): void => { from.on('data', chunk => { if (!dark) to.write(chunk) }) }
    forward(inbound, outbound)
    forward(outbound, inbound)
    for (const s of [inbound, outbound]) s.on('error', () => {})
  })
  const port = await freePort()
  await new Promise<void>(resolve => server.listen(port, '127.0.0.1', resolve))
  cleanup.push(async () => {
    for (const s of sockets) s.destroy()
    await new Promise(resolve => server.close(resolve))
  })
  return { port, blackhole: () => { dark = true } }
}

async function pair (): Promise<{ a: Host, b: Host, bId: string, aId: string, relay: Relay }> {
  const bKey = await generateKeyPair('Ed25519')
  const aKey = await generateKeyPair('Ed25519')
  const bPort = await freePort()
  const b = await createHost({ privateKey: bKey, psk, listen: [`/ip4/127.0.0.1/tcp/${bPort}`], isOverlayAddress: () => false, liveness: LIVENESS })
  await b.start()
  const a = await testHost(aKey, psk, ['/ip4/127.0.0.1/tcp/0'], { liveness: LIVENESS })
  await a.start()
  cleanup.push(async () => { await a.stop() }, async () => { await b.stop() })
  const r = await relay(bPort)
  const bId = peerIdFromPrivateKey(bKey).toString()
  await a.dial(multiaddr(`/ip4/127.0.0.1/tcp/${r.port}/p2p/${bId}`))
  return { a, b, bId, aId: peerIdFromPrivateKey(aKey).toString(), relay: r }
}

const connections = (host: Host, peer: string): number => host.getConnections().filter(c => c.remotePeer.toString() === peer).length

describe('liveness pings', () => {
  it('keep a healthy connection through ten intervals', async () => {
    const { a, b, aId, bId } = await pair()
    await waitFor('B to see the connection', () => connections(b, aId) === 1)
    await new Promise(resolve => setTimeout(resolve, LIVENESS.intervalMs * 10))
    expect(connections(a, bId)).toBe(1)
    expect(connections(b, aId)).toBe(1)
  }, 20_000)

  it('drop a connection whose other end went silent, on both ends', async () => {
    const { a, b, aId, bId, relay } = await pair()
    await waitFor('B to see the connection', () => connections(b, aId) === 1)
    const since = Date.now()
    relay.blackhole()
    // one interval (at most 1.2×) plus the timeout, and slack for a loaded machine
    await waitFor('A to drop the silent connection', () => connections(a, bId) === 0, 5000)
    await waitFor('B to drop the silent connection', () => connections(b, aId) === 0, 5000)
    const ms = Date.now() - since
    console.log(`silent connection dropped on both ends after ${ms} ms`)
    expect(ms).toBeGreaterThanOrEqual(LIVENESS.timeoutMs)
  }, 20_000)
})
