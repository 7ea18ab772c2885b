import { createPublicKey, verify, type KeyObject } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'
import * as z from 'zod'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { canonicalIp, MAX_COUNTER } from '../membership/ipam.ts'
import { isWgKey } from '../wireguard/keys.ts'

// A node record is self-certifying: it names its author's peer id and is signed with that
// peer's libp2p key, so it stays verifiable however it travels (gossip, sync, state dump).
// Wire form ("envelope"): the record's JSON bytes followed by a 64-byte Ed25519 signature
// over DOMAIN || those bytes. The signature covers the exact bytes, so no canonical JSON
// is needed, and fields added by newer versions survive relaying untouched.

export const RECORD_VERSION = 1
export const MAX_ENVELOPE_BYTES = 4096
/** revocations one record carries (the newest); the table keeps every one it ever saw */
export const MAX_REVOKES = 24
const SIGNATURE_BYTES = 64
const DOMAIN = new TextEncoder().encode('w2wesher/record/v1:')

// Addresses must be in canonical form: claims are compared as strings (collisions, owners), so
// "FD00::1" next to "fd00::1", or a zone ("fd00::1%eth0"), would slip past those comparisons.
const canonicalAddress = (text: string): boolean => {
  try { return !text.includes('%') && canonicalIp(text) === text } catch { return false }
}

const claimSchema = z.object({
  address: z.string().max(64).refine(canonicalAddress, 'address must be an IP address in canonical form'),
  counter: z.number().int().min(0).max(MAX_COUNTER),
  since: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
})

// Every endpoint must be a literal IP and port that `wg set` takes (no name lookups): a single
// bad one would fail the whole batch, for every peer.
const usableEndpoint = (text: string): boolean => {
  const m = /^(?:\[([^\]%]+)\]|([^:[\]]+)):([1-9]\d{0,4})$/.exec(text)
  if (m === null || Number(m[3]) > 65535) return false
  return m[1] !== undefined ? isIPv6(m[1]) : isIPv4(m[2] as string)
}
const endpointText = z.string().max(64).regex(/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/, 'endpoint must be IP:PORT or [IPv6]:PORT')
  .refine(usableEndpoint, 'endpoint must be a valid IP address and a port 1-65535')

export const recordSchema = z.object({
  v: z.number().int().min(RECORD_VERSION),
  peerId: z.string().min(1).max(128),
  name: z.string().max(63).regex(/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$|^$/, 'name must be a hostname label'),
  // canonical base64 only: `wg` refuses other spellings, and keys are compared as strings
  wgPublicKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'wgPublicKey must be a base64 WireGuard key').refine(isWgKey, 'wgPublicKey must be canonical base64 of 32 bytes'),
  ipv4: claimSchema.optional(),
  ipv6: claimSchema,
  wgPort: z.number().int().min(1).max(65535),
  endpoints: z.array(endpointText).max(16),
  addrs: z.array(z.string().max(256)).max(16),
  routes: z.array(z.string().max(64)).max(64),
  seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  issuedAt: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  leaving: z.boolean().optional(),
  /**
   * Members this author revoked (w2wesher revoke): signed by the author like the rest of the
   * record, so it travels and persists with it. Older versions ignore the field.
   */
  revokes: z.array(z.string().regex(/^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/, 'revokes must list Ed25519 peer ids')).max(MAX_REVOKES).optional()
})

export type NodeRecord = z.infer<typeof recordSchema>

/**
 * What a record says, without its seq and issuedAt: equal for a record and its refresh, so a
 * refresh can be told from a change (a record's fields are plain JSON data).
 */
export function recordContent (record: NodeRecord): string {
  return JSON.stringify({ ...record, seq: 0, issuedAt: 0 })
}
export type RecordClaim = z.infer<typeof claimSchema>

export interface SignedRecord {
  record: NodeRecord
  /** the exact bytes as signed and sent */
  envelope: Uint8Array
}

export class RecordError extends Error {
  constructor (readonly reason: 'oversize' | 'malformed' | 'bad-signature', message: string) {
    super(message)
  }
}

export async function signRecord (record: NodeRecord, key: PrivateKey): Promise<SignedRecord> {
  const body = new TextEncoder().encode(JSON.stringify(record))
  const signature = await key.sign(concat(DOMAIN, body))
  const envelope = concat(body, signature)
  if (envelope.length > MAX_ENVELOPE_BYTES) throw new Error(`own record is ${envelope.length} bytes, over the ${MAX_ENVELOPE_BYTES}-byte limit (too many endpoints or routes)`)
  return { record, envelope }
}

/** The signature an envelope ends with, as a map key; undefined when it is too short to hold one. */
export function signatureKey (envelope: Uint8Array): string | undefined {
  if (envelope.length <= SIGNATURE_BYTES) return undefined
  return Buffer.from(envelope.buffer, envelope.byteOffset + envelope.length - SIGNATURE_BYTES, SIGNATURE_BYTES).toString('base64')
}

/** Decode and verify an envelope from anywhere. Throws RecordError, never anything else. */
export async function openRecord (envelope: Uint8Array): Promise<SignedRecord> {
  if (envelope.length > MAX_ENVELOPE_BYTES) throw new RecordError('oversize', `record is ${envelope.length} bytes, limit ${MAX_ENVELOPE_BYTES}`)
  if (envelope.length <= SIGNATURE_BYTES) throw new RecordError('malformed', 'record too short')
  const body = envelope.subarray(0, envelope.length - SIGNATURE_BYTES)
  const signature = envelope.subarray(envelope.length - SIGNATURE_BYTES)
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))
  } catch {
    throw new RecordError('malformed', 'record is not UTF-8 JSON')
  }
  const parsed = recordSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new RecordError('malformed', `record field ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`)
  }
  const author = parsed.data.peerId
  const cached = authorKeys.get(author)
  let key: KeyObject
  try {
    key = cached ?? authorKey(author)
  } catch {
    throw new RecordError('malformed', 'record peerId is not a canonical Ed25519 peer id')
  }
  let valid = false
  try {
    valid = verify(null, concat(DOMAIN, body), key, signature)
  } catch {
    // OpenSSL refuses some malformed signatures outright: as wrong as a mismatch
  }
  if (!valid) throw new RecordError('bad-signature', `signature does not match peer ${author}`)
  if (cached === undefined) rememberAuthor(author, key)
  return { record: parsed.data, envelope: Uint8Array.from(envelope) }
}

const MAX_AUTHOR_KEYS = 4096
/**
 * Canonical peer id → public key, ready for OpenSSL, of authors whose records were genuine.
 * Every member's record arrives again and again (each new version, from each peer); without
 * V8's optimising compiler (the daemon runs without it, see cmd/load-daemon.ts) decoding the
 * base58 peer id, spelling it back for the canonical check and importing the key cost ~100 µs
 * a record, about as much as the signature check itself.
 */
const authorKeys = new Map<string, KeyObject>()

/** The Ed25519 key a peer id spells. Throws when it is not a canonical Ed25519 peer id. */
function authorKey (peerIdText: string): KeyObject {
  const peerId = peerIdFromString(peerIdText)
  const publicKey = peerId.publicKey
  if (publicKey?.type !== 'Ed25519') throw new Error('not an Ed25519 peer id')
  // One key, one member: other spellings of the same peer id (CID forms) would be another entry.
  if (peerId.toString() !== peerIdText) throw new Error('not in canonical form')
  // as JWK: Node builds the key from the raw bytes (8 µs); DER goes through OpenSSL's decoders (100 µs)
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey.raw).toString('base64url') }, format: 'jwk' })
}

/** Only after a valid signature: forged records never take a place; the oldest entry goes first. */
function rememberAuthor (peerIdText: string, key: KeyObject): void {
  if (authorKeys.size >= MAX_AUTHOR_KEYS) authorKeys.delete(authorKeys.keys().next().value as string)
  authorKeys.set(peerIdText, key)
}

function concat (a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}
