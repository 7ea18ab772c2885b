import { readdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import * as z from 'zod'
import { writeFileAtomic } from '../util/fs.ts'
import { MAX_COUNTER } from '../membership/ipam.ts'

// The state dump: what a restart needs to come back without the network — our own address
// claims and record seq, and every verified record (re-verified on load: they are
// self-certifying, so a tampered dump cannot inject members).

export const STATE_FILE = 'state.json'
const STATE_VERSION = 1

const claimSchema = z.object({
  peerId: z.string(),
  address: z.string(),
  counter: z.number().int().min(0).max(MAX_COUNTER),
  since: z.number().int().nonnegative()
})

const stateSchema = z.object({
  version: z.literal(STATE_VERSION),
  savedAt: z.number(),
  seq: z.number().int().nonnegative(),
  claims: z.object({ ipv6: claimSchema.optional(), ipv4: claimSchema.optional() }),
  /** base64 envelopes, ours included */
  records: z.array(z.string()).max(100_000),
  /** revoked members (w2wesher revoke): sticky, so old records cannot bring them back */
  revoked: z.array(z.object({ peerId: z.string().max(128), by: z.string().max(128), at: z.number().int().nonnegative() })).max(100_000).optional()
})

export type SavedState = z.infer<typeof stateSchema>

export type LoadResult =
  | { status: 'missing' }
  | { status: 'ok', state: SavedState }
  | { status: 'corrupt', reason: string, movedTo: string }

export async function loadState (stateDir: string, now = new Date()): Promise<LoadResult> {
  const path = join(stateDir, STATE_FILE)
  // temp files of writes cut short by a crash: the dump itself is intact, these are not
  for (const name of await readdir(stateDir).catch(() => [])) {
    if (name.startsWith(`.${STATE_FILE}.`) && name.endsWith('.tmp')) await rm(join(stateDir, name), { force: true })
  }
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' }
    return await setAside(path, `unreadable: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, now)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return await setAside(path, 'not valid JSON', now)
  }
  const parsed = stateSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    return await setAside(path, `field ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`, now)
  }
  return { status: 'ok', state: parsed.data }
}

/** Never overwrite a dump we could not read: move it aside for the operator. */
async function setAside (path: string, reason: string, now: Date): Promise<LoadResult> {
  const movedTo = `${path}.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`
  await rename(path, movedTo)
  return { status: 'corrupt', reason, movedTo }
}

export async function saveState (stateDir: string, state: Omit<SavedState, 'version' | 'savedAt'>): Promise<void> {
  const full: SavedState = { version: STATE_VERSION, savedAt: Date.now(), ...state }
  await writeFileAtomic(join(stateDir, STATE_FILE), JSON.stringify(full))
}

export const encodeEnvelope = (e: Uint8Array): string => Buffer.from(e).toString('base64')
export const decodeEnvelope = (s: string): Uint8Array => Buffer.from(s, 'base64')

/** After leaving: drop the mesh state (keys stay, so a later join keeps the same identity). */
export async function forgetState (stateDir: string): Promise<void> {
  await rm(join(stateDir, STATE_FILE), { force: true })
}
