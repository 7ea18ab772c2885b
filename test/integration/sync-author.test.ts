import { describe, it, expect, afterEach } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { signRecord } from '../../src/gossip/record.ts'
import { makeNode } from '../unit/fixtures.ts'
import { pushBySync, startMeshNode, testHost, testPsk, waitFor, type MeshNode } from './harness.ts'

// A sync its author starts with us, ending with its own record accepted from it, means the
// author held our record first: it has added us to WireGuard, and the daemon starts the
// handshake at once instead of after the stagger (src/reconciler/reconciler.ts peerAddedUs).

const psk = testPsk(0x5a)
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => { for (const fn of cleanup.splice(0).reverse()) await fn() })

describe('a served sync that brings its initiator\'s own record', () => {
  async function served (pusherIsAuthor: boolean): Promise<{ told: string[], learnt: boolean, author: string }> {
    const told: string[] = []
    const b: MeshNode = await startMeshNode(await makeNode('b'), psk, { real: true, onAuthorSynced: peer => told.push(peer) })
    cleanup.push(async () => { await b.stop() })
    const x = await makeNode('x')
    const envelope = (await signRecord(x.record({ seq: 1 }), x.key)).envelope
    // the initiator is X itself, or a bare host relaying X's record
    const pusher = await testHost(pusherIsAuthor ? x.key : await generateKeyPair('Ed25519'), psk, ['/ip4/127.0.0.1/tcp/0'])
    cleanup.push(async () => { await pusher.stop() })
    await pushBySync(pusher, b.addr, x.peerId, envelope)
    await waitFor('B to learn X', () => b.membership.get(x.peerId) !== undefined)
    await new Promise(resolve => setTimeout(resolve, 100)) // the serving side finishes after the initiator
    return { told, learnt: b.membership.get(x.peerId) !== undefined, author: x.peerId }
  }

  it('from its author: the serving side is told the author holds its record', async () => {
    const r = await served(true)
    expect(r.learnt).toBe(true)
    expect(r.told).toEqual([r.author])
  })

  it('relayed by another peer: nobody is told', async () => {
    const r = await served(false)
    expect(r.learnt).toBe(true)
    expect(r.told).toEqual([])
  })
})
