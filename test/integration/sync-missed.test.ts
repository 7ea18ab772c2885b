import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { lpStream } from '@libp2p/utils'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { RECORD_TOPIC, SYNC_PROTOCOL } from '../../src/gossip/gossip.ts'
import type { Host } from '../../src/p2p/host.ts'
import { makeNode } from '../unit/fixtures.ts'
import { END, readPhase, startMeshNode, testHost, testPsk, waitFor, type MeshNode } from './harness.ts'

// Only the lower id syncs when a peer's subscription arrives. A publication made while the
// peer was connected but not yet subscribed reaches nobody, and the lower id's sync may have
// run before it: so the publisher syncs too when that peer's subscription arrives, whatever
// the ids. (A collision e2e once stayed split for a minute, until anti-entropy, on this gap.)

const psk = testPsk(0x3d)

let publisher: MeshNode
/** a peer with an id below the publisher's: by the id rule alone, the publisher never syncs */
let peer: Host
const digests: Array<Array<[string, number]>> = []

beforeAll(async () => {
  publisher = await startMeshNode(await makeNode('publisher'), psk, { real: true, antiEntropySeconds: 3600 })
  let key = await generateKeyPair('Ed25519')
  while (peerIdFromPrivateKey(key).toString() > publisher.node.peerId) key = await generateKeyPair('Ed25519')
  peer = await testHost(key, psk, ['/ip4/127.0.0.1/tcp/0'])
  await peer.handle(SYNC_PROTOCOL, async stream => {
    const lp = lpStream(stream)
    const phase = await readPhase(lp)
    digests.push(phase.digest)
    await lp.write(END)
    await readPhase(lp)
    await stream.close()
  })
}, 30_000)

afterAll(async () => {
  await peer?.stop()
  await publisher?.stop()
})

const subscribed = async (): Promise<void> => {
  const seen = new Promise<void>(resolve => {
    publisher.host.services.pubsub.addEventListener('subscription-change', evt => {
      if (evt.detail.peerId.equals(peer.peerId) && evt.detail.subscriptions.some(s => s.topic === RECORD_TOPIC)) resolve()
    })
  })
  await seen
  await new Promise(resolve => setTimeout(resolve, 300)) // a sync it triggers has started by now
}

describe('publication missed by a connected, unsubscribed peer', () => {
  it('without a publication in between, the higher id does not sync on subscription', async () => {
    // The peer dials (so the publisher, inbound, runs no connection sync) and subscribes.
    await peer.dial(publisher.addr)
    const arrived = subscribed()
    peer.services.pubsub.subscribe(RECORD_TOPIC)
    await arrived
    expect(digests).toEqual([])
    const leaving = subscribed()
    peer.services.pubsub.unsubscribe(RECORD_TOPIC)
    await leaving
  })

  it('after a publication the peer missed, its subscription makes the publisher sync', async () => {
    const seq = 7
    await publisher.announce({ seq })
    const arrived = subscribed()
    peer.services.pubsub.subscribe(RECORD_TOPIC)
    await arrived
    await waitFor('the publisher to sync with the peer', () => digests.length === 1, 5000)
    expect(digests[0]).toContainEqual([publisher.node.peerId, seq])
  })
})
