import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { MAX_ENVELOPE_BYTES } from './record.ts'

// The sync protocol: anti-entropy between two members over one stream. Instead of full
// membership, the initiator sends a digest (peer id → seq of every record it holds); the
// responder answers with the records the initiator lacks plus a list of the ones it wants,
// and the initiator sends those. Cheap enough to run on every connection, after every
// gossip subscription, and periodically to repair anything gossip missed.
//
// Frames are length-prefixed; the first byte tags them. An empty frame ends a phase.

export const SYNC_PROTOCOL = '/w2wesher/sync/1.0.0'
export const MAX_SYNC_ENTRIES = 10_000
const TAG_DIGEST = 1
const TAG_RECORD = 2
const TAG_WANT = 3
const DIGEST_PER_FRAME = 40
const WANT_PER_FRAME = 60
const MAX_ID_LENGTH = 128

export interface SyncStore {
  /** peer id → seq of every record we hold (ours and tombstones included) */
  digest: () => Map<string, number>
  envelope: (peerId: string) => Uint8Array | undefined
  /** check and store one received record; never throws */
  accept: (envelope: Uint8Array) => Promise<unknown>
}

export interface SyncResult {
  sent: number
  received: number
}

// @libp2p/utils checks a length prefix's size only once it decodes, so a prefix of endless
// continuation bytes would be read one byte at a time until the timeout. A frame of at most
// MAX_ENVELOPE_BYTES + 1 needs a 2-byte prefix: refuse a third.
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

type Lp = ReturnType<typeof lpStream>
const open = (stream: Stream): Lp => lpStream(stream, { maxDataLength: MAX_ENVELOPE_BYTES + 1, lengthDecoder: decodeLength })

export async function initiateSync (stream: Stream, store: SyncStore, signal: AbortSignal): Promise<SyncResult> {
  const lp = open(stream)
  const digest = [...store.digest()]
  await lp.writeV([...chunks(digest, DIGEST_PER_FRAME).map(c => frame(TAG_DIGEST, c)), END], { signal })
  let received = 0
  // A set: each wanted record is sent once, however often the peer names it (else one id,
  // repeated, would draw 10,000 copies of a record of up to 4 KiB each).
  const wants = new Set<string>()
  await readPhase(lp, signal, async (tag, body) => {
    if (tag === TAG_RECORD) {
      if (++received > MAX_SYNC_ENTRIES) throw new Error('peer sent too many records')
      await store.accept(body)
    } else if (tag === TAG_WANT) {
      for (const peerId of parseIds(body)) wants.add(peerId)
      if (wants.size > MAX_SYNC_ENTRIES) throw new Error('peer wants too many records')
    } else {
      throw new Error(`unexpected frame tag ${tag} from the responder`)
    }
  })
  const sent = await sendRecords(lp, [...wants], store, signal)
  await stream.close({ signal })
  return { sent, received }
}

export async function serveSync (stream: Stream, store: SyncStore, signal: AbortSignal): Promise<SyncResult> {
  const lp = open(stream)
  const theirs = new Map<string, number>()
  await readPhase(lp, signal, async (tag, body) => {
    if (tag !== TAG_DIGEST) throw new Error(`unexpected frame tag ${tag} from the initiator`)
    for (const [peerId, seq] of parseDigest(body)) theirs.set(peerId, seq)
    if (theirs.size > MAX_SYNC_ENTRIES) throw new Error('peer digest is too large')
  })
  const ours = store.digest()
  const missing = [...ours].filter(([peerId, seq]) => (theirs.get(peerId) ?? -1) < seq).map(([peerId]) => peerId)
  const wanted = [...theirs].filter(([peerId, seq]) => (ours.get(peerId) ?? -1) < seq).map(([peerId]) => peerId)
  const sent = await sendRecords(lp, missing, store, signal, chunks(wanted, WANT_PER_FRAME).map(c => frame(TAG_WANT, c)))
  let received = 0
  await readPhase(lp, signal, async (tag, body) => {
    if (tag !== TAG_RECORD) throw new Error(`unexpected frame tag ${tag} from the initiator`)
    if (++received > wanted.length) throw new Error('peer sent records we did not ask for')
    await store.accept(body)
  })
  await stream.close({ signal })
  return { sent, received }
}

const END = new Uint8Array(0)

async function sendRecords (lp: Lp, peerIds: string[], store: SyncStore, signal: AbortSignal, trailer: Uint8Array[] = []): Promise<number> {
  const frames: Uint8Array[] = []
  for (const peerId of peerIds) {
    const envelope = store.envelope(peerId)
    if (envelope !== undefined) frames.push(tagged(TAG_RECORD, envelope))
  }
  await lp.writeV([...frames, ...trailer, END], { signal })
  return frames.length
}

async function readPhase (lp: Lp, signal: AbortSignal, onFrame: (tag: number, body: Uint8Array) => Promise<void>): Promise<void> {
  for (let frames = 0; ; frames++) {
    if (frames > 2 * MAX_SYNC_ENTRIES) throw new Error('too many sync frames')
    const data = (await lp.read({ signal })).subarray()
    if (data.length === 0) return
    await onFrame(data[0]!, data.subarray(1))
  }
}

function frame (tag: number, value: unknown): Uint8Array {
  return tagged(tag, new TextEncoder().encode(JSON.stringify(value)))
}

function tagged (tag: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 1)
  out[0] = tag
  out.set(body, 1)
  return out
}

function chunks<T> (items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

function parseJson (body: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))
  } catch {
    throw new Error('sync frame is not UTF-8 JSON')
  }
}

function parseDigest (body: Uint8Array): Array<[string, number]> {
  const value = parseJson(body)
  if (!Array.isArray(value) || value.length > DIGEST_PER_FRAME) throw new Error('malformed digest frame')
  return value.map(entry => {
    if (!Array.isArray(entry) || entry.length !== 2) throw new Error('malformed digest entry')
    const [peerId, seq] = entry as unknown[]
    if (typeof peerId !== 'string' || peerId.length > MAX_ID_LENGTH || !Number.isSafeInteger(seq) || (seq as number) < 0) throw new Error('malformed digest entry')
    return [peerId, seq as number]
  })
}

function parseIds (body: Uint8Array): string[] {
  const value = parseJson(body)
  if (!Array.isArray(value) || value.length > WANT_PER_FRAME || !value.every(id => typeof id === 'string' && id.length <= MAX_ID_LENGTH)) {
    throw new Error('malformed want frame')
  }
  return value as string[]
}
