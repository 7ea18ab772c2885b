import { ANTI_ENTROPY_SECONDS } from './gossip.ts'
import { recordContent, type NodeRecord, type SignedRecord } from './record.ts'

// Our own record: built, signed, held in our table, and published when its content changed.
// A refresh (the same content, a newer seq and issuedAt) is signed and held but not
// published: it only says we are alive, and anti-entropy (a sync with a random peer about
// once a minute) spreads it within minutes, one copy per member. Gossip would hand every
// member several copies at once: at N=100, with a refresh every 5 min each, that alone was
// ~1.4 KB/s per node, over the 1 KiB/s budget for an idle mesh.

/**
 * A member's record older than this means it stopped refreshing (`status` says `stale`): three
 * periods, plus the time a refresh takes to reach everyone. Anti-entropy paces that spread,
 * not the period: each round (about a minute) roughly doubles the members holding a refresh,
 * so the allowance grows by a round per doubling of the mesh. Measured at N=250 (300 s
 * periods): the oldest record a node held was 695-717 s old, 5-6 rounds after the latest
 * possible refresh; the allowance there is 8 rounds. With the 3 periods alone, a 30 s period
 * would call most of a large mesh stale.
 */
export function staleAfterSeconds (refreshSeconds: number, members: number): number {
  return 3 * refreshSeconds + ANTI_ENTROPY_SECONDS * Math.ceil(Math.log2(Math.max(1, members) + 1))
}

export interface AnnouncerOptions {
  /** a fresh record (new seq and issuedAt) from the current state */
  build: () => NodeRecord
  sign: (record: NodeRecord) => Promise<SignedRecord>
  /** store it as our own record (the table, and from there syncs and the state dump) */
  hold: (signed: SignedRecord) => void
  publish: (envelope: Uint8Array) => Promise<void>
}

export interface Announcer {
  /**
   * Sign and publish our record when anything but seq and time changed; with `refresh`, sign
   * and hold it even when nothing did. Runs one at a time, in call order: overlapping runs
   * could store or publish an older record after a newer one.
   */
  announce: (extra?: Partial<NodeRecord>, refresh?: boolean) => Promise<void>
  /** nothing is announced after this (a tombstone must stay our last record) */
  close: () => void
}

export function createAnnouncer (opts: AnnouncerOptions): Announcer {
  let lastContent = ''
  let closed = false
  let queue: Promise<void> = Promise.resolve()

  const run = async (extra: Partial<NodeRecord>, refresh: boolean): Promise<void> => {
    if (closed) return
    const record = { ...opts.build(), ...extra }
    const content = recordContent(record)
    const changed = content !== lastContent
    if (!changed && !refresh) return
    lastContent = content
    const signed = await opts.sign(record)
    opts.hold(signed)
    if (changed) await opts.publish(signed.envelope)
  }

  return {
    async announce (extra = {}, refresh = false) {
      const next = queue.then(async () => { await run(extra, refresh) })
      queue = next.catch(() => {})
      await next
    },
    close () { closed = true }
  }
}
