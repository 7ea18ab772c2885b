import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { Connection, Stream } from '@libp2p/interface'
import type { Host } from './host.ts'
import { keyId, type MultiKeyProtector } from './protector.ts'
import {
  keysAt, newRotationId, supersededBy, offerFrom, offerSchema, phaseAt, rotationFromOffer, saveRotation, timingFor,
  type Offer, type Rotation, type RotationPhase
} from './rotation.ts'
import { rotatedSwarmKey } from '../config/psk.ts'
import { writeFileAtomic } from '../util/fs.ts'
import type { Logger } from '../log.ts'

// Runs network key rotations on a live host: `rotate()` starts one here; offers from other
// members (protocol below) start it elsewhere. The new key travels only inside Noise-encrypted
// libp2p streams and only to members that are not revoked; each node then follows the
// time-driven phases of ./rotation.ts and forwards the offer to the members it knows, so a
// member the origin could not reach still gets it while the rotation runs. Members that are
// offline for the whole rotation, or join after it started, never get the key from the mesh:
// the operator gives it to them (SECURITY.md).

export const ROTATE_PROTOCOL = '/w2wesher/rotate/1.0.0'
export const NEW_KEY_FILE = 'swarm.key'
const MAX_OFFER_BYTES = 16_384
const OFFER_TIMEOUT_MS = 5_000
/** at most one dial per unconnected recipient in this time */
const REDIAL_MS = 30_000
const REDELIVER_MS = 2_000

export interface RotatorOptions {
  host: Host
  protector: MultiKeyProtector
  stateDir: string
  self: string
  log: Logger
  /** extra accepted keys from the config (pskAccept) */
  extraKeys: Uint8Array[]
  /** the key dialled with when no rotation is active (config psk) */
  baseKey: Uint8Array
  /** how long the old key stays accepted after a rotation starts here */
  graceMs: number
  /** seed of the overlay's IPv6 prefix, kept across rotations */
  ulaSeed: string
  /** a rotation read back from the state directory */
  initial?: Rotation
  /** the config's psk file: rewritten with the new key when we can */
  pskFile?: string
  /** members in good standing (known, not revoked), us excluded */
  members: () => string[]
  isRevoked: (peerId: string) => boolean
  revoked: () => string[]
  /** our signed record (base64), so receivers apply our revocations before the key */
  selfRecord: () => string | undefined
  /** verify and store a record from an offer */
  acceptRecord: (envelope: Uint8Array, author: string) => Promise<unknown>
}

export interface RotationStatus {
  /** key id (not the key) we dial with */
  dialKey: string
  acceptKeys: string[]
  /** open connections per key id */
  connectionsByKey: Record<string, number>
  rotation: null | {
    id: string
    origin: string
    phase: RotationPhase
    oldKey: string
    newKey: string
    switchAt: string
    dropAt: string
    recipients: number
    delivered: number
  }
}

export interface Rotator {
  start: () => Promise<void>
  /** Start a rotation here: the new key's id and how many members it goes to. */
  rotate: () => Promise<{ id: string, keyId: string, recipients: number, dropAt: string }>
  status: () => RotationStatus
  stop: () => Promise<void>
}

export function createRotator (opts: RotatorOptions): Rotator {
  const { host, protector, log } = opts
  let current = opts.initial
  let phase: RotationPhase | undefined
  let timer: NodeJS.Timeout | undefined
  let redeliver: NodeJS.Timeout | undefined
  const delivered = new Set<string>()
  const sending = new Set<string>()
  /** recipients we were not connected to: when we last dialled them */
  const dialledAt = new Map<string, number>()
  let stopped = false

  const dialKeyNow = (): Uint8Array => current === undefined ? opts.baseKey : keysAt(current, Date.now()).dial

  /** Set the protector from the phase, and wake again at the next phase change. */
  const apply = (): void => {
    if (timer !== undefined) { clearTimeout(timer); timer = undefined }
    if (current === undefined) return
    const now = Date.now()
    const next = phaseAt(current, now)
    protector.setKeys(keysAt(current, now, opts.extraKeys))
    if (next !== phase) {
      phase = next
      const ids = { rotation: current.id, oldKey: keyId(Buffer.from(current.oldKey, 'hex')), newKey: keyId(Buffer.from(current.newKey, 'hex')) }
      if (next === 'accept') log.info(ids, 'network key rotation: accepting the new key')
      if (next === 'switch') log.info(ids, 'network key rotation: dialling with the new key')
      if (next === 'done') log.info(ids, 'network key rotation done: the old key is refused now')
    }
    if (next !== 'done') {
      timer = setTimeout(apply, Math.max(0, (next === 'accept' ? current.switchAt : current.dropAt) - now))
      timer.unref()
    }
  }

  /**
   * The offer goes to every recipient, over the connection we have or a new dial (a large
   * mesh keeps only some members connected: src/p2p/keeper.ts); retried until the rotation
   * is done.
   */
  const deliverAll = (): void => {
    if (!keepRedelivering() || current === undefined) return
    for (const peer of current.recipients) {
      if (delivered.has(peer) || sending.has(peer) || opts.isRevoked(peer) || current.exclude.includes(peer)) continue
      void deliver(peer)
    }
  }

  /**
   * The redelivery timer runs only while a rotation is being handed out (an idle daemon
   * sleeps); true while it is.
   */
  const keepRedelivering = (): boolean => {
    const handingOut = current !== undefined && !stopped && phaseAt(current, Date.now()) !== 'done'
    if (handingOut && redeliver === undefined) {
      redeliver = setInterval(deliverAll, REDELIVER_MS)
      redeliver.unref()
    } else if (!handingOut && redeliver !== undefined) {
      clearInterval(redeliver)
      redeliver = undefined
    }
    return handingOut
  }

  const deliver = async (peer: string): Promise<void> => {
    if (current === undefined) return
    sending.add(peer)
    let stream: Stream | undefined
    try {
      const id = peerIdFromString(peer)
      let connection = host.getConnections(id).find(c => c.status === 'open')
      if (connection === undefined) {
        // a member that is away is not dialled at every redelivery
        if (Date.now() - (dialledAt.get(peer) ?? 0) < REDIAL_MS) return
        dialledAt.set(peer, Date.now())
        connection = await host.dial(id, { signal: AbortSignal.timeout(OFFER_TIMEOUT_MS) })
      }
      const exclude = [...new Set([...current.exclude, ...opts.revoked()])]
      const offer = offerFrom(current, keyId(Buffer.from(current.oldKey, 'hex')), Date.now(), exclude, opts.selfRecord())
      const signal = AbortSignal.timeout(OFFER_TIMEOUT_MS)
      stream = await connection.newStream(ROTATE_PROTOCOL, { signal })
      const lp = lpStream(stream, { maxDataLength: MAX_OFFER_BYTES })
      await lp.write(new TextEncoder().encode(JSON.stringify(offer)), { signal })
      const answer = new TextDecoder().decode((await lp.read({ signal })).subarray())
      await stream.close().catch(() => {})
      if (answer === 'ok') {
        delivered.add(peer)
        log.debug({ peer, rotation: offer.id }, 'new network key delivered')
      } else {
        log.warn({ peer, rotation: offer.id, answer: answer.slice(0, 200) }, 'a member refused the new network key')
        delivered.add(peer) // a refusal is final for this rotation (it is on another key or rotation)
      }
    } catch (err) {
      stream?.abort(err as Error)
      log.debug({ peer, err: String(err) }, 'new network key not delivered yet')
    } finally {
      sending.delete(peer)
    }
  }

  /** Where the new key lives from now on: the psk file when we can write it, always the state directory. */
  const persistKey = async (r: Rotation): Promise<void> => {
    await saveRotation(opts.stateDir, r)
    const text = rotatedSwarmKey(Buffer.from(r.newKey, 'hex'), r.ulaSeed)
    const stateCopy = join(opts.stateDir, NEW_KEY_FILE)
    await writeFileAtomic(stateCopy, text)
    if (opts.pskFile !== undefined) {
      try {
        await writeFileAtomic(opts.pskFile, text)
        log.info({ pskFile: opts.pskFile, newKey: keyId(Buffer.from(r.newKey, 'hex')) }, 'network key rotation: psk file updated with the new key')
        return
      } catch (err) {
        log.warn({ pskFile: opts.pskFile, err: (err as NodeJS.ErrnoException).code ?? String(err), newKeyFile: stateCopy }, 'cannot update the psk file: the new key is in the state directory; copy it over')
        return
      }
    }
    log.warn({ newKeyFile: stateCopy }, 'network key rotation: the config still holds the old key (psk / --psk / W2WESHER_PSK); this node keeps using the new key from its state directory; put the new key in the config')
  }

  const handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString()
    const lp = lpStream(stream, { maxDataLength: MAX_OFFER_BYTES })
    const signal = AbortSignal.timeout(OFFER_TIMEOUT_MS)
    let answer: string
    try {
      const body = (await lp.read({ signal })).subarray()
      answer = await receive(peer, body)
    } catch (err) {
      answer = `error: ${(err as Error).message}`
    }
    try {
      await lp.write(new TextEncoder().encode(answer), { signal })
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  /** Judge an offer from `peer`; 'ok' when we hold this rotation afterwards. Never throws on bad input. */
  const receive = async (peer: string, body: Uint8Array): Promise<string> => {
    if (opts.isRevoked(peer) || !opts.members().includes(peer)) return 'refused: not a member in good standing'
    let offer: Offer
    try {
      const parsed = offerSchema.safeParse(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body)))
      if (!parsed.success) return `refused: malformed offer (${parsed.error.issues[0]?.path.join('.') ?? ''})`
      offer = parsed.data
    } catch {
      return 'refused: offer is not JSON'
    }
    // the sender's revocations first: a revoked member must drop out before the key moves on
    if (offer.record !== undefined) await opts.acceptRecord(Buffer.from(offer.record, 'base64'), peer).catch(() => {})
    if (offer.exclude.includes(opts.self)) return 'refused: we are revoked'
    if (current?.id === offer.id) { delivered.add(peer); return 'ok' }
    if (current !== undefined && phaseAt(current, Date.now()) !== 'done') return 'refused: another rotation is in progress'
    const dial = dialKeyNow()
    if (keyId(dial) !== offer.oldKeyId) return 'refused: we are on another network key'
    if (offer.newKey === Buffer.from(dial).toString('hex')) return 'refused: the new key is the current key'
    const excluded = new Set(offer.exclude)
    const recipients = opts.members().filter(p => p !== peer && !excluded.has(p) && !opts.isRevoked(p))
    const rotation = rotationFromOffer(offer, dial, opts.ulaSeed, recipients, Date.now(), supersededBy(current))
    current = rotation
    phase = undefined
    delivered.clear()
    delivered.add(peer)
    await persistKey(rotation)
    log.info({ from: peer, origin: offer.origin, rotation: offer.id, newKey: keyId(Buffer.from(offer.newKey, 'hex')) }, 'received a new network key')
    apply()
    deliverAll()
    return 'ok'
  }

  const onConnect = (): void => { setTimeout(deliverAll, 200).unref() }

  return {
    async start () {
      await host.handle(ROTATE_PROTOCOL, handle, { runOnLimitedConnection: false })
      host.addEventListener('connection:open', onConnect)
      apply()
      keepRedelivering()
      if (current !== undefined && phaseAt(current, Date.now()) !== 'done') {
        log.info({ rotation: current.id, phase: phaseAt(current, Date.now()) }, 'resuming a network key rotation')
      }
    },
    async rotate () {
      if (current !== undefined && phaseAt(current, Date.now()) !== 'done') throw new Error(`a network key rotation (${current.id}) is still running until ${new Date(current.dropAt).toISOString()}`)
      const now = Date.now()
      const timing = timingFor(opts.graceMs)
      const oldKey = dialKeyNow()
      const newKey = randomBytes(32)
      const revoked = new Set(opts.revoked())
      const rotation: Rotation = {
        v: 1,
        id: newRotationId(),
        origin: opts.self,
        oldKey: Buffer.from(oldKey).toString('hex'),
        newKey: newKey.toString('hex'),
        startedAt: now,
        switchAt: now + timing.switchAfterMs,
        dropAt: now + timing.graceMs,
        ulaSeed: opts.ulaSeed,
        recipients: opts.members().filter(p => !revoked.has(p)),
        supersedes: supersededBy(current),
        exclude: [...revoked]
      }
      current = rotation
      phase = undefined
      delivered.clear()
      await persistKey(rotation)
      log.info({ rotation: rotation.id, newKey: keyId(newKey), recipients: rotation.recipients.length }, 'started a network key rotation')
      apply()
      deliverAll()
      return { id: rotation.id, keyId: keyId(newKey), recipients: rotation.recipients.length, dropAt: new Date(rotation.dropAt).toISOString() }
    },
    status () {
      const keys = protector.current()
      const byKey: Record<string, number> = {}
      for (const c of protector.connections()) byKey[c.keyId] = (byKey[c.keyId] ?? 0) + 1
      return {
        dialKey: keys.dial,
        acceptKeys: keys.accept,
        connectionsByKey: byKey,
        rotation: current === undefined
          ? null
          : {
              id: current.id,
              origin: current.origin,
              phase: phaseAt(current, Date.now()),
              oldKey: keyId(Buffer.from(current.oldKey, 'hex')),
              newKey: keyId(Buffer.from(current.newKey, 'hex')),
              switchAt: new Date(current.switchAt).toISOString(),
              dropAt: new Date(current.dropAt).toISOString(),
              recipients: current.recipients.length,
              delivered: current.recipients.filter(p => delivered.has(p)).length
            }
      }
    },
    async stop () {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
      if (redeliver !== undefined) clearInterval(redeliver)
      host.removeEventListener('connection:open', onConnect)
      await host.unhandle(ROTATE_PROTOCOL).catch(() => {})
    }
  }
}
