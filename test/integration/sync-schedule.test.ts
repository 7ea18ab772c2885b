import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { lpStream } from '@libp2p/utils'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Connection, Stream } from '@libp2p/interface'
import { RECORD_TOPIC, SYNC_PROTOCOL } from '../../src/gossip/gossip.ts'
import type { Host } from '../../src/p2p/host.ts'
import { makeNode } from '../unit/fixtures.ts'
import { END, readPhase, startMeshNode, testHost, testPsk, waitFor, type MeshNode } from './harness.ts'

// src/gossip/gossip.ts runs at most one sync per peer; triggers that arrive meanwhile fold into
// one more sync afterwards. That sync must not be lost when the connection the running sync
// used is gone by then while the peer is still connected by another (a duplicate connection
// pruned, a reconnect): it runs on the connection that is left.

const psk = testPsk(0x5c)

let victim: MeshNode
/** a peer with an id above the victim's: the victim starts a sync when its subscription arrives */
let peer: Host

type Serve = (stream: Stream, connection: Connection) => Promise<void>
const script: Serve[] = []
const served: Array<{ connection: string, at: number }> = []

async function honest (stream: Stream): Promise<void> {
  const lp = lpStream(stream)
  await readPhase(lp)
  await lp.write(END)
  await readPhase(lp)
  await stream.close()
}

beforeAll(async () => {
  victim = await startMeshNode(await makeNode('victim'), psk, { real: true, antiEntropySeconds: 3600 })
  let key = await generateKeyPair('Ed25519')
  while (peerIdFromPrivateKey(key).toString() < victim.node.peerId) key = await generateKeyPair('Ed25519')
  peer = await testHost(key, psk, ['/ip4/127.0.0.1/tcp/0'])
  await peer.handle(SYNC_PROTOCOL, async (stream, connection) => {
    served.push({ connection: connection.id, at: Date.now() })
    try {
      await (script.shift() ?? honest)(stream, connection)
    } catch {
      // the victim dropped the stream
    }
  })
}, 30_000)

afterAll(async () => {
  await peer?.stop()
  await victim?.stop()
})

describe('sync scheduling', () => {
  it('a sync folded while the running one fails on a closing connection runs on the peer\'s other connection', async () => {
    const syncs = victim.gossip.stats.syncs
    let renewed = (): void => {}
    const renewal = new Promise<void>(resolve => { renewed = resolve })
    const subscriptions: number[] = []
    victim.host.services.pubsub.addEventListener('subscription-change', evt => {
      if (!evt.detail.peerId.equals(peer.peerId) || !evt.detail.subscriptions.some(s => s.topic === RECORD_TOPIC && s.subscribe)) return
      if (subscriptions.push(Date.now()) === 2) renewed()
    })
    // The victim's first sync: while it runs, the peer opens a second connection and renews its
    // subscription (a trigger that folds into one more sync), then closes the first connection
    // under the sync. The folded sync must run, on the second connection.
    let second: Connection | undefined
    let closedAt = 0
    script.push(async (_stream, connection) => {
      second = await peer.dial(victim.addr, { force: true })
      peer.services.pubsub.unsubscribe(RECORD_TOPIC)
      peer.services.pubsub.subscribe(RECORD_TOPIC)
      await renewal
      closedAt = Date.now()
      await connection.close()
    })
    const first = await peer.dial(victim.addr)
    peer.services.pubsub.subscribe(RECORD_TOPIC)

    await waitFor('the victim to sync with the peer on its other connection', () => victim.gossip.stats.syncs === syncs + 1, 5000)
    // Every trigger (gossipsub may resend the subscription once the first connection is gone)
    // came while the first sync still ran: its attempt fails at the close, then waits 250 ms.
    for (const at of subscriptions) expect(at - closedAt).toBeLessThan(250)
    expect(first.status).not.toBe('open')
    expect(served.map(s => s.connection)).toEqual([first.id, second!.id])
    console.log(`folded sync ran on the remaining connection ${served[1]!.at - closedAt} ms after the first closed; subscriptions arrived at`, subscriptions.map(at => at - closedAt), 'ms')
  })
})
