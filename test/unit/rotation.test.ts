import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  keysAt, loadRotation, supersededBy, offerFrom, offerSchema, phaseAt, rotationFromOffer, saveRotation, startKeys, timingFor, ROTATION_FILE, type Rotation
} from '../../src/p2p/rotation.ts'
import { keyId } from '../../src/p2p/protector.ts'

const OLD = Buffer.alloc(32, 1)
const NEW = Buffer.alloc(32, 2)
const EXTRA = Buffer.alloc(32, 3)
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const rotation = (over: Partial<Rotation> = {}): Rotation => ({
  v: 1, id: '0123456789abcdef', origin: 'peerA', oldKey: hex(OLD), newKey: hex(NEW),
  startedAt: 1000, switchAt: 3000, dropAt: 10_000, ulaSeed: '01020304050607', recipients: ['peerB'], supersedes: [], exclude: [], ...over
})
const keys = (k: { dial: Uint8Array, accept: Uint8Array[] }): { dial: string, accept: string[] } => ({ dial: hex(k.dial), accept: k.accept.map(hex) })

let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'w2w-rotation-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

describe('rotation phases', () => {
  it('accepts both keys, then dials with the new one, then drops the old one, by time alone', () => {
    const r = rotation()
    expect(phaseAt(r, 1000)).toBe('accept')
    expect(keys(keysAt(r, 2999))).toEqual({ dial: hex(OLD), accept: [hex(NEW)] })
    expect(phaseAt(r, 3000)).toBe('switch')
    expect(keys(keysAt(r, 9999))).toEqual({ dial: hex(NEW), accept: [hex(OLD)] })
    expect(phaseAt(r, 10_000)).toBe('done')
    expect(keys(keysAt(r, 10_000))).toEqual({ dial: hex(NEW), accept: [] })
    // keys the operator configured (pskAccept) stay accepted in every phase
    expect(keys(keysAt(r, 10_000, [EXTRA]))).toEqual({ dial: hex(NEW), accept: [hex(EXTRA)] })
    expect(keys(keysAt(r, 0, [EXTRA, NEW]))).toEqual({ dial: hex(OLD), accept: [hex(NEW), hex(EXTRA)] })
  })

  it('switches after a third of the grace period, at most 10 s', () => {
    expect(timingFor(6000)).toEqual({ switchAfterMs: 2000, graceMs: 6000 })
    expect(timingFor(60_000)).toEqual({ switchAfterMs: 10_000, graceMs: 60_000 })
  })

  it('at start-up a rotation wins while the config holds either of its keys, else the config does', () => {
    const r = rotation()
    expect(keys(startKeys(OLD, [], r, 5000).keys)).toEqual({ dial: hex(NEW), accept: [hex(OLD)] })
    expect(startKeys(NEW, [], r, 50_000).rotation).toBe(r)
    expect(keys(startKeys(NEW, [], r, 50_000).keys)).toEqual({ dial: hex(NEW), accept: [] })
    const other = startKeys(EXTRA, [OLD], r, 5000)
    expect(other.rotation).toBeUndefined()
    expect(keys(other.keys)).toEqual({ dial: hex(EXTRA), accept: [hex(OLD)] })
    expect(keys(startKeys(OLD, [], undefined, 0).keys)).toEqual({ dial: hex(OLD), accept: [] })
    // a config two rotations behind (key only in the history) still follows the rotation
    const older = Buffer.alloc(32, 9)
    const second = rotation({ oldKey: hex(NEW), newKey: hex(EXTRA), supersedes: supersededBy(rotation({ oldKey: hex(older) })) })
    expect(second.supersedes).toEqual([keyId(older)])
    expect(startKeys(older, [], second, 50_000).rotation).toBe(second)
    expect(keys(startKeys(older, [], second, 50_000).keys)).toEqual({ dial: hex(EXTRA), accept: [] })
  })

  it('an offer carries the remaining times, and the receiver times them on its own clock', () => {
    const r = rotation()
    const offer = offerFrom(r, 'aaaaaaaaaaaaaaaa', 2000, ['revokedPeer'])
    expect(offerSchema.parse(offer)).toMatchObject({ switchInMs: 1000, dropInMs: 8000, exclude: ['revokedPeer'] })
    const theirs = rotationFromOffer(offer, OLD, 'ffffffffffffff', ['peerC'], 500_000)
    expect(theirs).toMatchObject({ id: r.id, switchAt: 501_000, dropAt: 508_000, oldKey: hex(OLD), newKey: hex(NEW), ulaSeed: 'ffffffffffffff', recipients: ['peerC'], exclude: ['revokedPeer'] })
    // past the switch: dial new at once, keep the drop after it
    expect(offerFrom(r, 'aaaaaaaaaaaaaaaa', 9999, [])).toMatchObject({ switchInMs: 0, dropInMs: 1 })
    expect(offerSchema.safeParse({ ...offer, newKey: 'zz' }).success).toBe(false)
    expect(offerSchema.safeParse({ ...offer, switchInMs: 9000, dropInMs: 8000 }).success).toBe(false)
  })
})

describe('rotation persistence', () => {
  it('saves atomically with mode 0600 and reads back the same rotation', async () => {
    const r = rotation()
    await saveRotation(dir, r)
    expect((await stat(join(dir, ROTATION_FILE))).mode & 0o777).toBe(0o600)
    expect(await loadRotation(dir)).toEqual({ status: 'ok', rotation: r })
  })

  it('reports missing, and sets a corrupt file aside instead of overwriting it', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'w2w-rotation-empty-'))
    expect(await loadRotation(empty)).toEqual({ status: 'missing' })
    await writeFile(join(empty, ROTATION_FILE), '{"v":1,"id":"x"}')
    const loaded = await loadRotation(empty)
    expect(loaded.status).toBe('corrupt')
    if (loaded.status !== 'corrupt') return
    expect(loaded.reason).toMatch(/field id/)
    expect(await readFile(loaded.movedTo, 'utf8')).toBe('{"v":1,"id":"x"}')
    expect(await loadRotation(empty)).toEqual({ status: 'missing' })
    await rm(empty, { recursive: true, force: true })
  })
})
