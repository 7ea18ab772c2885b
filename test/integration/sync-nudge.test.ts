import { describe, it, expect, afterEach } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { signRecord } from '../../src/gossip/record.ts'
import { makeNode } from '../unit/fixtures.ts'
import { pushBySync, startMeshNode, testHost, testPsk, waitFor, type MeshNode } from './harness.ts'

// Gossip carries a record only from its author on. A member that joined through B (its
// record reached B by sync) must still reach B's other peers soon, not at the next
// anti-entropy round: B syncs with a random peer shortly after learning a new member.

const psk = testPsk(0x4e)
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => { for (const fn of cleanup.splice(0).reverse()) await fn() })

async function started (node: Promise<MeshNode>): Promise<MeshNode> {
  const n = await node
  cleanup.push(async () => { await n.stop() })
  return n
}

describe('a member learnt by sync', () => {
  it('spreads on by sync within seconds, with anti-entropy an hour away', async () => {
    const a = await started(startMeshNode(await makeNode('a'), psk, { real: false, antiEntropySeconds: 3600 }))
    const b = await started(startMeshNode(await makeNode('b'), psk, { real: true, antiEntropySeconds: 3600 }))
    await a.host.dial(b.addr)
    await waitFor('A and B to know each other', () => a.membership.get(b.node.peerId) !== undefined && b.membership.get(a.node.peerId) !== undefined)

    // X never publishes: its record reaches B only by a sync from a bare host, which then leaves
    const x = await makeNode('x')
    const envelope = (await signRecord(x.record({ seq: 1 }), x.key)).envelope
    const pusher = await testHost(await generateKeyPair('Ed25519'), psk, ['/ip4/127.0.0.1/tcp/0'])
    await pushBySync(pusher, b.addr, x.peerId, envelope)
    await waitFor('B to learn X', () => b.membership.get(x.peerId) !== undefined)
    await pusher.stop()

    const since = Date.now()
    await waitFor('A to learn X', () => a.membership.get(x.peerId) !== undefined, 8000)
    console.log(`A learnt X ${Date.now() - since} ms after B did`)
  }, 30_000)
})
