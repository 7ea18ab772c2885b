import { afterEach, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@libp2p/gossipsub'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import type { Host } from '../../src/p2p/host.ts'
import { keyId, MultiKeyProtector } from '../../src/p2p/protector.ts'
import { createRotator, type Rotator } from '../../src/p2p/rotator.ts'
import { loadRotation } from '../../src/p2p/rotation.ts'
import { parsePsk } from '../../src/config/psk.ts'
import { freePort, silentLog, waitFor } from './harness.ts'

// The rotate protocol between in-process hosts: the key goes only to members in good
// standing, a relaying member never hands it to a member the origin revoked, an offer from a
// non-member is refused, and everyone ends on the new key only.

const K1 = new Uint8Array(32).fill(0x41)
const GRACE_MS = 1500

interface TestPeer {
  name: string
  host: Host
  id: string
  protector: MultiKeyProtector
  rotator: Rotator
  members: Set<string>
  revoked: Set<string>
  addr: string
  stateDir: string
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0)) await c().catch(() => {}) })

async function peer (name: string): Promise<TestPeer> {
  const port = await freePort()
  const protector = new MultiKeyProtector({ dial: K1, accept: [] })
  const host = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: [`/ip4/127.0.0.1/tcp/${port}`] },
    transports: [tcp()],
    connectionProtector: () => protector,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { inboundConnectionThreshold: 100 },
    services: { identify: identify(), ping: ping(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
  }) as unknown as Host
  const stateDir = await mkdtemp(join(tmpdir(), `w2w-rotate-${name}-`))
  const members = new Set<string>()
  const revoked = new Set<string>()
  const id = host.peerId.toString()
  const rotator = createRotator({
    host,
    protector,
    stateDir,
    self: id,
    log: silentLog,
    extraKeys: [],
    baseKey: K1,
    graceMs: GRACE_MS,
    ulaSeed: '01020304050607',
    members: () => [...members].filter(m => !revoked.has(m)),
    isRevoked: p => revoked.has(p),
    revoked: () => [...revoked],
    selfRecord: () => undefined,
    acceptRecord: async () => {}
  })
  await rotator.start()
  await host.start()
  cleanups.push(async () => { await rotator.stop(); await host.stop(); await rm(stateDir, { recursive: true, force: true }) })
  return { name, host, id, protector, rotator, members, revoked, addr: `/ip4/127.0.0.1/tcp/${port}/p2p/${id}`, stateDir }
}

const link = async (a: TestPeer, b: TestPeer): Promise<void> => { await a.host.dial(multiaddr(b.addr)) }

describe('rotate protocol', () => {
  it('reaches members in good standing (also by relay), never a revoked one, and everyone ends on the new key', async () => {
    const [a, b, c, d] = await Promise.all(['a', 'b', 'c', 'd'].map(peer)) as [TestPeer, TestPeer, TestPeer, TestPeer]
    for (const x of [a, b, c, d]) for (const y of [a, b, c, d]) if (x !== y) x.members.add(y.id)
    a.revoked.add(d.id) // a revoked d; b and c have not heard of it yet
    await link(a, b)
    await link(b, c) // c is reachable from a only through b
    await link(b, d)
    await link(c, d)
    const started = await a.rotator.rotate()
    expect(started.recipients).toBe(2) // b and c, not d
    await waitFor('b and c hold the rotation', () => b.rotator.status().rotation?.id === started.id && c.rotator.status().rotation?.id === started.id, 3000)
    await waitFor('rotation done everywhere', () => [a, b, c].every(p => p.rotator.status().rotation?.phase === 'done'), 5000)
    // the phase follows the clock; the protector drops the old key on a timer a moment later
    await waitFor('old key dropped everywhere', () => [a, b, c].every(p => p.protector.current().accept.length === 1), 2000)
    for (const p of [a, b, c]) expect(p.protector.current()).toEqual({ dial: started.keyId, accept: [started.keyId] })
    // d never got the key, and after the grace period nobody keeps an old-key connection to it
    expect(d.rotator.status().rotation).toBeNull()
    expect(d.protector.current().dial).toBe(keyId(K1))
    await waitFor('d cut off', () => d.host.getConnections().length === 0, 3000)
    await expect(d.host.dial(multiaddr(b.addr), { signal: AbortSignal.timeout(2000) })).rejects.toBeDefined()
    // the others reconnect on the new key
    await link(a, c)
    expect(c.protector.connections().every(x => x.keyId === started.keyId)).toBe(true)
    // progress and the new key are persisted (0600 files; swarm.key with the prefix seed)
    const saved = await loadRotation(c.stateDir)
    expect(saved.status === 'ok' && saved.rotation.id).toBe(started.id)
    const file = parsePsk(await readFile(join(c.stateDir, 'swarm.key'), 'utf8'))
    expect(keyId(file.bytes)).toBe(started.keyId)
    expect(file.ulaSeed).toBe('01020304050607')
  })

  it('refuses an offer from a non-member and a second rotation while one runs', async () => {
    const [a, b, stranger] = await Promise.all(['a', 'b', 's'].map(peer)) as [TestPeer, TestPeer, TestPeer]
    a.members.add(b.id)
    b.members.add(a.id)
    stranger.members.add(b.id) // the stranger thinks b is a member; b does not know the stranger
    await link(stranger, b)
    await link(a, b)
    const bogus = await stranger.rotator.rotate()
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(b.rotator.status().rotation).toBeNull()
    expect(b.protector.current().dial).toBe(keyId(K1))
    expect(stranger.rotator.status().rotation?.id).toBe(bogus.id)
    const real = await a.rotator.rotate()
    await waitFor('b holds the real rotation', () => b.rotator.status().rotation?.id === real.id, 3000)
    await expect(a.rotator.rotate()).rejects.toThrow(/still running/)
  })
})
