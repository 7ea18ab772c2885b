import { describe, it, expect, afterAll } from 'vitest'
import { makeNode } from '../unit/fixtures.ts'
import { startMeshNode, testPsk, waitFor, type MeshNode } from './harness.ts'

// Members behind NATs cannot dial each other: x and y both talk only to p. A sync carries
// x's record to p, but only gossip carries it on to y. x's record was published before x had
// any subscribed peer, so x publishes it again once p's subscription arrives, and p relays it.

const psk = testPsk(0x6e)
const nodes: MeshNode[] = []

afterAll(async () => {
  await Promise.all(nodes.map(async n => { await n.stop() }))
})

describe('gossip relay through a hub', () => {
  it('a record published before any subscriber reaches a member that is not connected to its author', async () => {
    const p = await startMeshNode(await makeNode('p'), psk, { real: true, antiEntropySeconds: 3600 })
    const y = await startMeshNode(await makeNode('y'), psk, { real: false, antiEntropySeconds: 3600 })
    nodes.push(p, y)
    await y.host.dial(p.addr)
    await waitFor('y to know p', () => y.membership.envelope(p.node.peerId) !== undefined)
    await new Promise(resolve => setTimeout(resolve, 1500)) // gossipsub mesh p<->y forms (heartbeat 1 s)
    const x = await startMeshNode(await makeNode('x'), psk, { real: false, antiEntropySeconds: 3600 })
    nodes.push(x)
    await x.host.dial(p.addr)
    await waitFor('p to know x', () => p.membership.envelope(x.node.peerId) !== undefined)
    // nothing but gossip through p can bring x's record to y (no x<->y connection, no anti-entropy)
    await waitFor('y to learn x through p', () => y.membership.envelope(x.node.peerId) !== undefined, 8000)
    expect(y.host.getConnections(x.host.peerId)).toHaveLength(0)
  })
})
