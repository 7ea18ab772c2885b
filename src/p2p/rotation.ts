import { randomBytes } from 'node:crypto'
import { readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import * as z from 'zod'
import { writeFileAtomic } from '../util/fs.ts'
import { keyId, type ProtectorKeys } from './protector.ts'

// One network key rotation as one node sees it. Time alone moves it on, so a restart picks
// up exactly where it was (the times are this node's own clock, persisted):
//   accept  (start .. switchAt):  dial with the old key, accept old and new
//   switch  (switchAt .. dropAt): dial with the new key, still accept the old one
//   done    (dropAt ..):          the old key is gone; connections still on it are closed
// Every member gets the key within moments of the start, so by switchAt everyone accepts the
// new key before anybody dials with it; the old key stays accepted until dropAt, for members
// that switch a little later.

export const ROTATION_FILE = 'rotation.json'

export type RotationPhase = 'accept' | 'switch' | 'done'

const hex32 = z.string().regex(/^[0-9a-f]{64}$/)

const rotationSchema = z.object({
  v: z.literal(1),
  id: z.string().regex(/^[0-9a-f]{16}$/),
  /** hex; secret */
  oldKey: hex32,
  /** hex; secret */
  newKey: hex32,
  /** member that started it */
  origin: z.string().min(1).max(128),
  startedAt: z.number().int().nonnegative(),
  switchAt: z.number().int().nonnegative(),
  dropAt: z.number().int().nonnegative(),
  /** the 7 bytes the overlay's IPv6 prefix derives from: the mesh keeps its addresses across rotations */
  ulaSeed: z.string().regex(/^[0-9a-f]{14}$/),
  /** members that get the key from us (those known when we got it; revoked ones are struck off) */
  recipients: z.array(z.string().max(128)).max(10_000),
  /** key ids (never keys) of the keys before oldKey: a config still holding one of them is simply behind */
  supersedes: z.array(z.string().regex(/^[0-9a-f]{16}$/)).max(64).default([]),
  /** members the key must never reach, as the offer named them: handed on when relaying */
  exclude: z.array(z.string().max(128)).max(10_000).default([])
})

export type Rotation = z.infer<typeof rotationSchema>

/** Key ids superseded once `previous` is followed by another rotation. */
export function supersededBy (previous: Rotation | undefined): string[] {
  if (previous === undefined) return []
  return [...previous.supersedes, keyId(Buffer.from(previous.oldKey, 'hex'))].slice(-64)
}

export interface Timing {
  /** from the start until members dial with the new key */
  switchAfterMs: number
  /** from the start until the old key is refused */
  graceMs: number
}

/** The switch comes after a third of the grace period, at most 10 s: the key reaches everyone in well under that. */
export function timingFor (graceMs: number): Timing {
  return { switchAfterMs: Math.min(10_000, Math.floor(graceMs / 3)), graceMs }
}

export function newRotationId (): string {
  return randomBytes(8).toString('hex')
}

export function phaseAt (r: Rotation, now: number): RotationPhase {
  if (now >= r.dropAt) return 'done'
  if (now >= r.switchAt) return 'switch'
  return 'accept'
}

/** The protector keys at `now`, plus extra accepted keys from the config (pskAccept). */
export function keysAt (r: Rotation, now: number, extra: Uint8Array[] = []): ProtectorKeys {
  const oldKey = Buffer.from(r.oldKey, 'hex')
  const newKey = Buffer.from(r.newKey, 'hex')
  const phase = phaseAt(r, now)
  const withExtra = (keys: Uint8Array[]): Uint8Array[] => dedupe([...keys, ...extra])
  if (phase === 'accept') return { dial: oldKey, accept: withExtra([newKey]) }
  if (phase === 'switch') return { dial: newKey, accept: withExtra([oldKey]) }
  // extra keys the operator configured stay accepted, even the old one: their choice
  return { dial: newKey, accept: dedupe(extra) }
}

/**
 * Keys at start-up. The config names the key (psk) and extra accepted keys (pskAccept); a
 * persisted rotation wins when the config still holds either of its keys (the config file may
 * not have been updatable). A config holding another key means the operator moved on: the
 * rotation file is ignored. A config holding a key from before (superseded) is behind, not new.
 */
export function startKeys (configKey: Uint8Array, extra: Uint8Array[], rotation: Rotation | undefined, now: number): { keys: ProtectorKeys, rotation?: Rotation } {
  if (rotation !== undefined && (sameHex(configKey, rotation.oldKey) || sameHex(configKey, rotation.newKey) || rotation.supersedes.includes(keyId(configKey)))) {
    return { keys: keysAt(rotation, now, extra), rotation }
  }
  return { keys: { dial: configKey, accept: dedupe(extra) } }
}

/** What travels on the rotate protocol (over Noise, to members only). */
export const offerSchema = z.object({
  v: z.literal(1),
  id: z.string().regex(/^[0-9a-f]{16}$/),
  origin: z.string().min(1).max(128),
  /** key id (src/p2p/protector.ts keyId) of the key being replaced: a receiver on another key refuses */
  oldKeyId: z.string().regex(/^[0-9a-f]{16}$/),
  newKey: hex32,
  /** remaining times at the sender, so forwarding does not restart the clock */
  switchInMs: z.number().int().min(0).max(600_000),
  dropInMs: z.number().int().min(1).max(86_400_000),
  /** the sender's signed record (base64): carries its revocations, applied before anything else */
  record: z.string().max(8192).optional(),
  /** members the key must never reach (revoked at the origin) */
  exclude: z.array(z.string().max(128)).max(10_000)
}).refine(o => o.dropInMs > o.switchInMs, 'dropInMs must come after switchInMs')

export type Offer = z.infer<typeof offerSchema>

export function offerFrom (r: Rotation, oldKeyId: string, now: number, exclude: string[], record?: string): Offer {
  return {
    v: 1,
    id: r.id,
    origin: r.origin,
    oldKeyId,
    newKey: r.newKey,
    switchInMs: Math.max(0, r.switchAt - now),
    dropInMs: Math.max(1, r.dropAt - now, r.switchAt - now + 1),
    record,
    exclude
  }
}

/** A received offer as our own rotation, timed on our clock. */
export function rotationFromOffer (offer: Offer, oldKey: Uint8Array, ulaSeed: string, recipients: string[], now: number, supersedes: string[] = []): Rotation {
  return {
    v: 1,
    id: offer.id,
    origin: offer.origin,
    oldKey: Buffer.from(oldKey).toString('hex'),
    newKey: offer.newKey,
    startedAt: now,
    switchAt: now + offer.switchInMs,
    dropAt: now + offer.dropInMs,
    ulaSeed,
    recipients,
    supersedes,
    exclude: offer.exclude
  }
}

export type LoadedRotation = { status: 'missing' } | { status: 'ok', rotation: Rotation } | { status: 'corrupt', reason: string, movedTo: string }

export async function loadRotation (stateDir: string): Promise<LoadedRotation> {
  const path = join(stateDir, ROTATION_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' }
    throw err
  }
  let reason: string | undefined
  try {
    const parsed = rotationSchema.safeParse(JSON.parse(text))
    if (parsed.success) return { status: 'ok', rotation: parsed.data }
    reason = `field ${parsed.error.issues[0]?.path.join('.') ?? '(root)'}: ${parsed.error.issues[0]?.message ?? 'invalid'}`
  } catch {
    reason = 'not valid JSON'
  }
  // set aside, never overwritten unread: it may hold the only copy of the new key
  const movedTo = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`
  await rename(path, movedTo)
  return { status: 'corrupt', reason, movedTo }
}

export async function saveRotation (stateDir: string, rotation: Rotation): Promise<void> {
  await writeFileAtomic(join(stateDir, ROTATION_FILE), JSON.stringify(rotationSchema.parse(rotation)))
}

function sameHex (key: Uint8Array, hex: string): boolean {
  return Buffer.from(key).toString('hex') === hex
}

function dedupe (keys: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const k of keys) if (!out.some(o => Buffer.compare(o, k) === 0)) out.push(k)
  return out
}
