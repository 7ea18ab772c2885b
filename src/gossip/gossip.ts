import { lpStream } from '@libp2p/utils'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Connection, Stream } from '@libp2p/interface'
import type { Host } from '../p2p/host.ts'
import type { Logger } from '../log.ts'
import type { AcceptResult, RejectReason } from '../membership/table.ts'
import { MAX_ENVELOPE_BYTES } from './record.ts'

// Two ways records travel. Gossip (a versioned gossipsub topic) carries changes, signed by
// their author. Gossipsub delivers nothing to late joiners, so on every new connection the
// dialling side runs a sync: both sides send every record they hold (length-prefixed frames,
// an empty frame ends a side) and each checks what it receives like any other record.

export const RECORD_TOPIC = '/w2wesher/records/1'
export const SYNC_PROTOCOL = '/w2wesher/sync/1.0.0'
const MAX_SYNC_RECORDS = 10_000
const SYNC_TIMEOUT_MS = 10_000
const SYNC_ATTEMPTS = 4

// @libp2p/utils checks a length prefix's size only once it decodes, so a prefix of endless
// continuation bytes (0xff 0xff ...) would be read one byte at a time, at full CPU, until the
// sync timeout. A prefix for MAX_ENVELOPE_BYTES takes 2 bytes: refuse a third.
const MAX_PREFIX_BYTES = 2
function decodeLength (data: { byteLength: number, get: (index: number) => number }): number {
  let value = 0
  for (let i = 0; i < data.byteLength; i++) {
    const byte = data.get(i)
    value += (byte & 0x7f) * 2 ** (7 * i)
    if ((byte & 0x80) === 0) return value
    if (i + 1 >= MAX_PREFIX_BYTES) throw new Error(`sync frame length prefix is longer than ${MAX_PREFIX_BYTES} bytes`)
  }
  throw new RangeError('incomplete length prefix') // lpStream reads one more byte
}
const LP_OPTIONS = { maxDataLength: MAX_ENVELOPE_BYTES, lengthDecoder: decodeLength }

export interface GossipOptions {
  host: Host
  /** verify and store one envelope; `author` is the gossip signer when there is one */
  accept: (envelope: Uint8Array, author?: string) => Promise<AcceptResult>
  /** every envelope we hold, ours included */
  snapshot: () => Uint8Array[]
  log: Logger
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

  const judge = async (envelope: Uint8Array, author: string | undefined, via: string): Promise<AcceptResult> => {
    stats.received++
    const result = await opts.accept(envelope, author)
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

  await host.handle(SYNC_PROTOCOL, async (stream, connection) => {
    try {
      const lp = lpStream(stream, LP_OPTIONS)
      const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
      await receiveAll(lp, connection, signal)
      await sendAll(lp, signal)
      await stream.close({ signal })
    } catch (err) {
      log.debug({ peer: connection.remotePeer.toString(), err: String(err) }, 'sync (serving) failed')
      stream.abort(err as Error)
    }
  }, { runOnLimitedConnection: false })

  const onConnection = (evt: CustomEvent<Connection>): void => {
    const connection = evt.detail
    if (connection.direction !== 'outbound') return
    void syncWith(connection)
  }
  host.addEventListener('connection:open', onConnection)

  async function syncWith (connection: Connection, attempt = 1): Promise<void> {
    let stream: Stream | undefined
    try {
      const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
      stream = await connection.newStream(SYNC_PROTOCOL, { signal })
      const lp = lpStream(stream, LP_OPTIONS)
      await sendAll(lp, signal)
      const count = await receiveAll(lp, connection, signal)
      await stream.close({ signal })
      stats.syncs++
      log.debug({ peer: connection.remotePeer.toString(), records: count }, 'synced membership')
    } catch (err) {
      log.debug({ peer: connection.remotePeer.toString(), err: String(err), attempt }, 'sync failed')
      stream?.abort(err as Error)
      // The other side may still be starting up: retry a few times while the connection lives.
      if (attempt < SYNC_ATTEMPTS && connection.status === 'open') {
        setTimeout(() => { void syncWith(connection, attempt + 1) }, 250 * attempt)
      }
    }
  }

  type Lp = ReturnType<typeof lpStream>

  async function sendAll (lp: Lp, signal: AbortSignal): Promise<void> {
    await lp.writeV([...opts.snapshot(), new Uint8Array(0)], { signal })
  }

  async function receiveAll (lp: Lp, connection: Connection, signal: AbortSignal): Promise<number> {
    let count = 0
    for (;;) {
      const frame = (await lp.read({ signal })).subarray()
      if (frame.length === 0) return count
      if (++count > MAX_SYNC_RECORDS) throw new Error(`peer sent more than ${MAX_SYNC_RECORDS} records`)
      await judge(frame, undefined, `sync:${connection.remotePeer.toString()}`)
    }
  }

  return {
    stats,
    async publish (envelope) {
      try {
        const result = await pubsub.publish(RECORD_TOPIC, envelope)
        stats.published++
        log.debug({ recipients: result.recipients.length }, 'published own record')
      } catch (err) {
        // No subscribed peer yet: the sync on the next connection carries the record instead.
        log.debug({ err: String(err) }, 'publish skipped')
      }
    },
    async stop () {
      host.removeEventListener('connection:open', onConnection)
      pubsub.unsubscribe(RECORD_TOPIC)
      await host.unhandle(SYNC_PROTOCOL)
    }
  }
}
