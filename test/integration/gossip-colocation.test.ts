import { describe, it, expect, afterAll } from 'vitest'
import { makeNode } from '../unit/fixtures.ts'
import { freePort, testHost, testPsk, waitFor } from './harness.ts'
import type { Host } from '../../src/p2p/host.ts'

// Gossipsub's default peer score punishes more than 10 peers that share one IP address; from
// 14 on their score is below the publish threshold and a publication reaches none of them.
// Members behind one NAT (or every daemon of a one-host lab) look exactly like that, so our
// options switch the penalty off. 15 peers on 127.0.0.1 must all get a hub's publication.

const TOPIC = 'w2wesher-test/colocation'
const PEERS = 15
const psk = testPsk(0x3c)
const hosts: Host[] = []

afterAll(async () => {
  await Promise.all(hosts.map(async h => { await h.stop() }))
})

describe('gossipsub with many peers on one IP address', () => {
  it(`a publication reaches all ${PEERS} peers that share the hub's address`, async () => {
    const hubPort = await freePort()
    const hub = await testHost((await makeNode('hub')).key, psk, [`/ip4/127.0.0.1/tcp/${hubPort}`])
    hosts.push(hub)
    hub.services.pubsub.subscribe(TOPIC)
    const received = new Set<string>()
    for (let i = 0; i < PEERS; i++) {
      const peer = await testHost((await makeNode(`peer${i}`)).key, psk, ['/ip4/127.0.0.1/tcp/0'])
      hosts.push(peer)
      peer.services.pubsub.subscribe(TOPIC)
      peer.services.pubsub.addEventListener('message', evt => {
        if (evt.detail.topic === TOPIC) received.add(peer.peerId.toString())
      })
      await peer.dial(hub.getMultiaddrs()[0] ?? (() => { throw new Error('hub has no address') })())
    }
    await waitFor(`the hub to see ${PEERS} subscribers`, () => hub.services.pubsub.getSubscribers(TOPIC).length === PEERS)
    await hub.services.pubsub.publish(TOPIC, new TextEncoder().encode('hello'))
    await waitFor(`all ${PEERS} peers to get the publication`, () => received.size === PEERS, 5000).catch(() => {})
    expect(received.size).toBe(PEERS)
  })
})
