import { openRecord, recordContent, RecordError, signatureKey, type NodeRecord, type SignedRecord } from '../gossip/record.ts'
import { claimDerives, inRange, resolveClaims, type Claim, type OverlayRange } from './ipam.ts'
import { canonicalRoute } from './routes.ts'

// The table of verified records. Everything that arrives from the network passes accept();
// whatever it rejects never reaches the reconciler.

export type RejectReason =
  | 'oversize' | 'malformed' | 'bad-signature' // from decoding
  | 'wrong-author' // relayed under somebody else's gossip signature
  | 'duplicate' // exactly the record we hold (harmless: it came by another path)
  | 'stale' // older than what we hold, or the same seq with other content (replays land here)
  | 'self' // a record about us that we did not just make
  | 'bad-claim' // an overlay address that does not derive from the author's peer id
  | 'key-taken' // a WireGuard key another member already uses
  | 'revoked' // the author was revoked (w2wesher revoke): no record of it comes back

export type AcceptResult =
  | { accepted: true, record: NodeRecord }
  | { accepted: false, reason: RejectReason, detail: string, record?: NodeRecord }

export interface Entry {
  record: NodeRecord
  envelope: Uint8Array
  receivedAt: number
}

export interface Revocation {
  peerId: string
  /** the member whose signed record carried the revocation */
  by: string
  at: number
}

/**
 * What changed. A refresh re-signs a record with a newer seq and issuedAt and nothing else:
 * it keeps the member alive but changes nothing WireGuard, libp2p or the hosts file use. In a
 * mesh of N members each node hears N of them per refresh interval (250 nodes: ~1 a second),
 * so listeners skip their O(N) reviews for them.
 */
export interface MembershipChange {
  refreshOnly: boolean
}

export interface MembershipOptions {
  self: string
  selfWgPublicKey: string
  ipv6Range: OverlayRange
  ipv4Range?: OverlayRange
  now?: () => number
}

export class Membership {
  private readonly entries = new Map<string, Entry>()
  /** signature → peer id of every envelope held, to know a copy without checking it again */
  private readonly bySignature = new Map<string, string>()
  private readonly listeners = new Set<(change: MembershipChange) => void>()
  private readonly revokeListeners = new Set<(revocation: Revocation) => void>()
  /** sticky: kept in the state dump, never undone by a record */
  private readonly revokedPeers = new Map<string, Revocation>()
  private selfRevokedBy?: string
  private readonly now: () => number

  constructor (private readonly opts: MembershipOptions) {
    this.now = opts.now ?? Date.now
  }

  /** Decode, verify and accept an envelope from the network. Never throws. */
  async acceptEnvelope (envelope: Uint8Array, author?: string): Promise<AcceptResult> {
    // Most envelopes are copies of one we hold (gossip, then sync, then gossip again): the
    // same bytes were checked when they came first, and an Ed25519 check is the costliest
    // step here (100 nodes starting: half of all record checks were such copies).
    const held = this.heldCopy(envelope)
    if (held !== undefined && held.record.peerId !== this.opts.self && (author === undefined || author === held.record.peerId)) {
      return { accepted: false, reason: 'duplicate', detail: 'already held', record: held.record }
    }
    let signed: SignedRecord
    try {
      signed = await openRecord(envelope)
    } catch (err) {
      if (err instanceof RecordError) return { accepted: false, reason: err.reason, detail: err.message }
      return { accepted: false, reason: 'malformed', detail: String(err) }
    }
    try {
      return this.accept(signed, author)
    } catch (err) {
      // A check that throws on some input is a bug, but must not become a crash.
      return { accepted: false, reason: 'malformed', detail: `cannot check record: ${String(err)}`, record: signed.record }
    }
  }

  /** Accept an already verified record. */
  accept (signed: SignedRecord, author?: string): AcceptResult {
    const { record } = signed
    const reject = (reason: RejectReason, detail: string): AcceptResult => ({ accepted: false, reason, detail, record })
    if (author !== undefined && author !== record.peerId) return reject('wrong-author', `record of ${record.peerId} relayed by ${author}`)
    if (record.peerId === this.opts.self) return reject('self', 'record about ourselves')
    const revocation = this.revokedPeers.get(record.peerId)
    if (revocation !== undefined) return reject('revoked', `${record.peerId} was revoked by ${revocation.by}`)
    const current = this.entries.get(record.peerId)
    if (current !== undefined && record.seq <= current.record.seq) {
      if (record.seq === current.record.seq && sameBytes(signed.envelope, current.envelope)) return reject('duplicate', 'already held')
      return reject('stale', `seq ${record.seq} is not newer than ${current.record.seq}`)
    }
    // Tombstones too: an honest one carries its author's own claims and key, and a hostile one
    // must not be stored and handed on to every late joiner.
    const claimProblem = this.checkClaims(record)
    if (claimProblem !== undefined) return reject('bad-claim', claimProblem)
    if (record.wgPublicKey === this.opts.selfWgPublicKey) return reject('key-taken', 'uses our own WireGuard key')
    for (const other of this.live()) {
      if (other.record.peerId !== record.peerId && other.record.wgPublicKey === record.wgPublicKey) {
        return reject('key-taken', `WireGuard key already used by ${other.record.peerId}`)
      }
    }
    // Routes are compared as strings (overlaps, AllowedIPs): only the canonical network form.
    // Overlaps are not a reason to drop the record: resolveRoutes refuses just the route.
    for (const route of record.routes) {
      let canonical: string | undefined
      try { canonical = canonicalRoute(route) } catch { }
      if (canonical !== route) return reject('malformed', `route "${route}" is not a CIDR in canonical network form`)
    }
    this.put({ record, envelope: signed.envelope, receivedAt: this.now() })
    // a valid record of a member in good standing: its revocations hold
    let revoked = false
    for (const target of record.revokes ?? []) revoked = this.revokeQuietly(target, record.peerId) || revoked
    this.emit({ refreshOnly: !revoked && current !== undefined && recordContent(current.record) === recordContent(record) })
    return { accepted: true, record }
  }

  /**
   * Revoke a member: its entry goes at once, and no record of it is accepted again. Any member
   * may revoke (the mesh has no admin); `by` names who did. We never revoke ourselves here.
   * Returns false when it was already revoked.
   */
  revoke (peerId: string, by: string, at = this.now()): boolean {
    const changed = this.revokeQuietly(peerId, by, at)
    if (changed) this.emit({ refreshOnly: false })
    return changed
  }

  isRevoked (peerId: string): boolean {
    return this.revokedPeers.has(peerId)
  }

  revocations (): Revocation[] {
    return [...this.revokedPeers.values()]
  }

  /** Called for every new revocation, ours or learnt from a record (also one of us: peerId = self). */
  onRevoke (listener: (revocation: Revocation) => void): () => void {
    this.revokeListeners.add(listener)
    return () => this.revokeListeners.delete(listener)
  }

  private revokeQuietly (peerId: string, by: string, at = this.now()): boolean {
    if (this.revokedPeers.has(peerId) || (peerId === this.opts.self && this.selfRevokedBy === by)) return false
    const revocation = { peerId, by, at }
    if (peerId === this.opts.self) {
      // we stay in our own table; listeners hear it once per revoker (the operator must know)
      this.selfRevokedBy = by
    } else {
      this.revokedPeers.set(peerId, revocation)
      this.remove(peerId)
    }
    for (const listener of this.revokeListeners) {
      try { listener(revocation) } catch { /* must not break acceptance */ }
    }
    return peerId !== this.opts.self
  }

  /** Our own record: always replaces the previous one, never validated against ourselves. */
  setSelf (signed: SignedRecord): void {
    const current = this.entries.get(signed.record.peerId)
    this.put({ record: signed.record, envelope: signed.envelope, receivedAt: this.now() })
    this.emit({ refreshOnly: current !== undefined && recordContent(current.record) === recordContent(signed.record) })
  }

  get (peerId: string): Entry | undefined {
    return this.entries.get(peerId)
  }

  /** peer id → seq of everything we hold: what the sync protocol compares. */
  digest (): Map<string, number> {
    return new Map([...this.entries.values()].map(e => [e.record.peerId, e.record.seq]))
  }

  envelope (peerId: string): Uint8Array | undefined {
    return this.entries.get(peerId)?.envelope
  }

  /** Records held (us, members, tombstones): members().length + 1 or a little more, in O(1). */
  get size (): number {
    return this.entries.size
  }

  /** Live members other than us. */
  members (): Entry[] {
    return this.live().filter(e => e.record.peerId !== this.opts.self)
  }

  /** Everything we would hand a late joiner: us, members and tombstones. */
  all (): Entry[] {
    return [...this.entries.values()]
  }

  /** Live claims in one family, ours included. IPv4 claims outside our range are ignored. */
  claims (family: 4 | 6): Claim[] {
    const claims: Claim[] = []
    for (const { record } of this.live()) {
      const claim = family === 6 ? record.ipv6 : record.ipv4
      if (claim === undefined) continue
      if (family === 4 && (this.opts.ipv4Range === undefined || !inRange(this.opts.ipv4Range, claim.address))) continue
      claims.push({ peerId: record.peerId, ...claim })
    }
    return claims
  }

  /** address → winning claim, the same on every node that holds the same records. */
  owners (family: 4 | 6): Map<string, Claim> {
    return resolveClaims(this.claims(family))
  }

  /**
   * Forget members (and tombstones) whose author has not refreshed its record for `maxAgeMs`,
   * by the author's own clock: days-long expiries make clock skew irrelevant.
   */
  expire (maxAgeMs: number): string[] {
    const cutoff = this.now() - maxAgeMs
    const gone = [...this.entries.values()].filter(e => e.record.peerId !== this.opts.self && e.record.issuedAt < cutoff).map(e => e.record.peerId)
    for (const peerId of gone) this.remove(peerId)
    if (gone.length > 0) this.emit({ refreshOnly: false })
    return gone
  }

  onChange (listener: (change: MembershipChange) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private put (entry: Entry): void {
    this.remove(entry.record.peerId)
    this.entries.set(entry.record.peerId, entry)
    const key = signatureKey(entry.envelope)
    if (key !== undefined) this.bySignature.set(key, entry.record.peerId)
  }

  private remove (peerId: string): void {
    const entry = this.entries.get(peerId)
    if (entry === undefined) return
    this.entries.delete(peerId)
    const key = signatureKey(entry.envelope)
    if (key !== undefined && this.bySignature.get(key) === peerId) this.bySignature.delete(key)
  }

  /** The entry holding exactly these bytes, if any. */
  private heldCopy (envelope: Uint8Array): Entry | undefined {
    const key = signatureKey(envelope)
    const peerId = key === undefined ? undefined : this.bySignature.get(key)
    const entry = peerId === undefined ? undefined : this.entries.get(peerId)
    return entry !== undefined && sameBytes(entry.envelope, envelope) ? entry : undefined
  }

  private live (): Entry[] {
    return [...this.entries.values()].filter(e => e.record.leaving !== true)
  }

  private checkClaims (record: NodeRecord): string | undefined {
    const { ipv6Range, ipv4Range } = this.opts
    if (!claimDerives(ipv6Range, record.peerId, record.ipv6.address, record.ipv6.counter)) {
      return `ipv6 ${record.ipv6.address} is not this peer's address in ${ipv6Range.cidr}`
    }
    // An IPv4 claim in another range is a configuration mismatch, not an attack: it is ignored
    // (claims() skips it); inside our range it must derive from the peer id.
    const v4 = record.ipv4
    if (v4 !== undefined && ipv4Range !== undefined && inRange(ipv4Range, v4.address) &&
      !claimDerives(ipv4Range, record.peerId, v4.address, v4.counter)) {
      return `ipv4 ${v4.address} is not this peer's address in ${ipv4Range.cidr}`
    }
    return undefined
  }

  private emit (change: MembershipChange): void {
    for (const listener of this.listeners) {
      try { listener(change) } catch { /* a listener's failure must not break acceptance */ }
    }
  }
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}
