import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Host } from '../p2p/host.ts'
import type { Logger } from '../log.ts'
import type { AcceptResult, RejectReason } from '../membership/table.ts'
import { initiateSync, serveSync, SYNC_PROTOCOL, type SyncStore } from './sync.ts'

// Two ways records travel. Gossip (a versioned gossipsub topic) carries changes, signed by
// their author, at once. Gossipsub delivers nothing to late joiners and nothing published
// before a peer's subscription arrives, so a digest sync (./sync.ts) repairs the gaps: on
// every new connection, when a peer's subscription arrives, and now and then at random.

export const RECORD_TOPIC = '/w2wesher/records/1'
export { SYNC_PROTOCOL }
const SYNC_TIMEOUT_MS = 10_000
const SYNC_ATTEMPTS = 4
/** at most one extra sync per this time while new members arrive */
const NUDGE_MS = 2_000
const MAX_KNOWN_AUTHORS = 10_000
/** mean seconds between anti-entropy syncs with a random connected peer */
export const ANTI_ENTROPY_SECONDS = 60

export interface GossipOptions {
  host: Host
  /** verify and store one envelope; `author` is the gossip signer when there is one */
  accept: (envelope: Uint8Array, author?: string) => Promise<AcceptResult>
  /** peer id → seq of every record we hold, ours and tombstones included */
  digest: () => Map<string, number>
  envelope: (peerId: string) => Uint8Array | undefined
  log: Logger
  /** mean seconds between anti-entropy syncs with a random connected peer */
  antiEntropySeconds?: number
  /**
   * A sync that `peer` started with us ended with its own record accepted from it. It held our
   * record before we held its (we send ours, or its digest had it, before it sends its own), so
   * it has added us to WireGuard by now or will in a moment: we are the second to add.
   */
  onAuthorSynced?: (peer: string) => void
}

export interface GossipStats {
  received: number
  published: number
  rejected: Partial<Record<RejectReason, number>>
  syncs: number
}

export interface Gossip {
  publish: (envelope: Uint8Array) => Promise<void>
  stats: GossipStats
  stop: () => Promise<void>
}

export async function startGossip (opts: GossipOptions): Promise<Gossip> {
  const { host, log } = opts
  const pubsub = host.services.pubsub
  const stats: GossipStats = { received: 0, published: 0, rejected: {}, syncs: 0 }
  // state of 4. below (records may arrive while the handlers are still being registered)
  const knownAuthors = new Set<string>()
  let nudge: NodeJS.Timeout | undefined
  let nudgedAt = 0
  let stopped = false

  const judge = async (envelope: Uint8Array, author: string | undefined, via: string): Promise<AcceptResult> => {
    stats.received++
    const result = await opts.accept(envelope, author)
    if (result.accepted && result.record !== undefined) newMember(result.record.peerId)
    if (!result.accepted && result.reason !== 'duplicate' && result.reason !== 'stale' && result.reason !== 'self') {
      stats.rejected[result.reason] = (stats.rejected[result.reason] ?? 0) + 1
      log.warn({ via, reason: result.reason, detail: result.detail, peer: result.record?.peerId }, 'rejected a record')
    }
    return result
  }

  // Validation decides forwarding: only records we accept (or already hold) travel further.
  pubsub.topicValidators.set(RECORD_TOPIC, async (_peer, message) => {
    if (message.type !== 'signed') return TopicValidatorResult.Reject
    const result = await judge(message.data, message.from.toString(), 'gossip')
    if (result.accepted || result.reason === 'duplicate') return TopicValidatorResult.Accept
    return result.reason === 'stale' || result.reason === 'self' ? TopicValidatorResult.Ignore : TopicValidatorResult.Reject
  })
  // Handlers are registered before the host starts (no early peer finds them missing);
  // gossipsub only takes subscriptions once started.
  const subscribe = (): void => { pubsub.subscribe(RECORD_TOPIC) }
  if (host.status === 'started') subscribe()
  else host.addEventListener('start', subscribe, { once: true })

  const storeFor = (peer: string, judged?: (result: AcceptResult) => void): SyncStore => ({
    digest: opts.digest,
    envelope: opts.envelope,
    accept: async envelope => {
      const result = await judge(envelope, undefined, `sync:${peer}`)
      judged?.(result)
      return result
    }
  })

  await host.handle(SYNC_PROTOCOL, async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    try {
      let authorSynced = false
      const store = storeFor(peer, result => { authorSynced ||= result.accepted && result.record?.peerId === peer })
      await serveSync(stream, store, AbortSignal.timeout(SYNC_TIMEOUT_MS))
      if (authorSynced) opts.onAuthorSynced?.(peer)
    } catch (err) {
      log.debug({ peer, err: String(err) }, 'sync (serving) failed')
      stream.abort(err as Error)
    }
  }, { runOnLimitedConnection: false })

  /** One sync with the peer, retried while the connection lives (the peer may be starting). */
  async function syncWith (connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    for (let attempt = 1; attempt <= SYNC_ATTEMPTS && connection.status === 'open'; attempt++) {
      let stream: Stream | undefined
      try {
        const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
        stream = await connection.newStream(SYNC_PROTOCOL, { signal })
        const result = await initiateSync(stream, storeFor(peer), signal)
        stats.syncs++
        log.debug({ peer, ...result }, 'synced membership')
        return
      } catch (err) {
        log.debug({ peer, err: String(err), attempt }, 'sync failed')
        stream?.abort(err as Error)
        await new Promise(resolve => setTimeout(resolve, 250 * attempt))
      }
    }
  }

  // At most one sync per peer at a time: triggers that arrive meanwhile (a peer toggling its
  // subscription, say) fold into one more sync afterwards, on the newest connection they came
  // with or else any open one: the running sync's own connection may be gone by then (the peer
  // reconnected, a duplicate connection was pruned) while the peer is still there.
  const inFlight = new Map<string, { again?: Connection }>()
  function requestSync (connection: Connection): void {
    const peer = connection.remotePeer.toString()
    const running = inFlight.get(peer)
    if (running !== undefined) { running.again = connection; return }
    const state: { again?: Connection } = {}
    inFlight.set(peer, state)
    void syncWith(connection).finally(() => {
      inFlight.delete(peer)
      if (state.again === undefined) return
      const next = state.again.status === 'open' ? state.again : host.getConnections(connection.remotePeer).find(c => c.status === 'open')
      if (next !== undefined) requestSync(next)
    })
  }

  const syncPeer = (peerId: PeerId): void => {
    const connection = host.getConnections(peerId).find(c => c.status === 'open')
    if (connection !== undefined) requestSync(connection)
  }

  // 1. A new connection: the dialling side syncs.
  const onConnection = (evt: CustomEvent<Connection>): void => {
    if (evt.detail.direction === 'outbound') requestSync(evt.detail)
  }
  host.addEventListener('connection:open', onConnection)

  // 2. A peer's subscription arrived: from now on gossip reaches it, so one more sync closes
  //    the window between the connection's sync and the subscription. The lower id syncs,
  //    and so does a side that published while the peer was connected but not yet subscribed
  //    (the other side's sync may have run before that publication).
  const self = host.peerId.toString()
  const missedPublication = new Set<string>()
  /**
   * Our newest record when its publish reached nobody. A sync carries it to that neighbour,
   * but only gossip carries it on to members we cannot dial (behind NATs): publish it again
   * once a subscriber shows up.
   */
  let unsent: Uint8Array | undefined
  const onSubscription = (evt: CustomEvent<{ peerId: PeerId, subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    const { peerId, subscriptions } = evt.detail
    if (!subscriptions.some(s => s.topic === RECORD_TOPIC && s.subscribe)) return
    const missed = missedPublication.delete(peerId.toString())
    if (self < peerId.toString() || missed) syncPeer(peerId)
    if (unsent !== undefined) {
      const envelope = unsent
      unsent = undefined
      // after gossipsub has taken the subscription in (it handles the same event)
      setTimeout(() => { void publish(envelope) }, 100).unref()
    }
  }
  const noteMissed = (recipients: PeerId[]): void => {
    const reached = new Set(recipients.map(p => p.toString()))
    for (const peer of host.getPeers()) {
      if (!reached.has(peer.toString())) missedPublication.add(peer.toString())
    }
  }
  const onDisconnect = (evt: CustomEvent<PeerId>): void => { missedPublication.delete(evt.detail.toString()) }
  host.addEventListener('peer:disconnect', onDisconnect)
  pubsub.addEventListener('subscription-change', onSubscription)

  // 3. Anti-entropy: now and then, a random connected peer. Repairs whatever gossip lost.
  const meanMs = (opts.antiEntropySeconds ?? ANTI_ENTROPY_SECONDS) * 1000
  let antiEntropy: NodeJS.Timeout | undefined
  const scheduleAntiEntropy = (): void => {
    antiEntropy = setTimeout(() => {
      const peers = host.getPeers()
      const peer = peers[Math.floor(Math.random() * peers.length)]
      if (peer !== undefined) syncPeer(peer)
      scheduleAntiEntropy()
    }, meanMs * (0.5 + Math.random()))
    antiEntropy.unref()
  }
  scheduleAntiEntropy()

  // 4. A member we did not know yet. Gossip carries a record only from its author on, so a
  //    record that reached us by sync (a member that joined through somebody else) spreads
  //    further by sync alone: sync with a random peer soon, not only at the next anti-entropy
  //    round (a minute), at most once per NUDGE_MS while new members keep arriving.
  function newMember (peerId: string): void {
    if (knownAuthors.has(peerId)) return
    if (knownAuthors.size >= MAX_KNOWN_AUTHORS) knownAuthors.clear()
    knownAuthors.add(peerId)
    if (nudge !== undefined || stopped) return
    const wait = Math.max(NUDGE_MS / 2, nudgedAt + NUDGE_MS - Date.now()) * (0.75 + Math.random() * 0.5)
    nudge = setTimeout(() => {
      nudge = undefined
      nudgedAt = Date.now()
      const peers = host.getPeers()
      const peer = peers[Math.floor(Math.random() * peers.length)]
      if (peer !== undefined) syncPeer(peer)
    }, wait)
    nudge.unref()
  }

  async function publish (envelope: Uint8Array): Promise<void> {
    try {
      const result = await pubsub.publish(RECORD_TOPIC, envelope)
      stats.published++
      unsent = result.recipients.length === 0 ? envelope : undefined
      noteMissed(result.recipients)
      log.debug({ recipients: result.recipients.length }, 'published own record')
    } catch (err) {
      // No subscribed peer yet: the sync on the next connection carries the record instead.
      unsent = envelope
      noteMissed([])
      log.debug({ err: String(err) }, 'publish skipped')
    }
  }

  return {
    stats,
    publish,
    async stop () {
      stopped = true
      if (antiEntropy !== undefined) clearTimeout(antiEntropy)
      if (nudge !== undefined) clearTimeout(nudge)
      host.removeEventListener('connection:open', onConnection)
      host.removeEventListener('peer:disconnect', onDisconnect)
      pubsub.removeEventListener('subscription-change', onSubscription)
      pubsub.unsubscribe(RECORD_TOPIC)
      await host.unhandle(SYNC_PROTOCOL)
    }
  }
}
