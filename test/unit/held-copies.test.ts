import { describe, it, expect, beforeAll, beforeEach, vi } from 'vitest'
import * as record from '../../src/gossip/record.ts'
import { makeNode, membershipFor, type TestNode } from './fixtures.ts'

// Copies of a record we hold are known by their bytes, without another signature check; any
// other envelope is decoded and checked as before.
vi.mock('../../src/gossip/record.ts', async importOriginal => {
  const original = await importOriginal<typeof import('../../src/gossip/record.ts')>()
  return { ...original, openRecord: vi.fn(original.openRecord) }
})
const opened = vi.mocked(record.openRecord)

let me: TestNode, alice: TestNode, bob: TestNode
beforeAll(async () => { [me, alice, bob] = await Promise.all([makeNode('me'), makeNode('alice'), makeNode('bob')]) })
beforeEach(() => { opened.mockClear() })

describe('copies of held records', () => {
  it('answers a copy from gossip or sync as a duplicate without checking it again', async () => {
    const table = membershipFor(me)
    const signed = await alice.sign()
    expect((await table.acceptEnvelope(signed.envelope, alice.peerId)).accepted).toBe(true)
    expect(opened).toHaveBeenCalledTimes(1)
    const copy = Uint8Array.from(signed.envelope)
    expect(await table.acceptEnvelope(copy, alice.peerId)).toMatchObject({ accepted: false, reason: 'duplicate', record: { peerId: alice.peerId } })
    expect(await table.acceptEnvelope(copy)).toMatchObject({ accepted: false, reason: 'duplicate' })
    expect(opened).toHaveBeenCalledTimes(1)
  })

  it('still checks a copy relayed under another author, other bytes under the same signature, and our own record', async () => {
    const table = membershipFor(me)
    const signed = await alice.sign()
    await table.acceptEnvelope(signed.envelope)
    expect(await table.acceptEnvelope(signed.envelope, bob.peerId)).toMatchObject({ accepted: false, reason: 'wrong-author' })
    const tampered = Uint8Array.from([' '.charCodeAt(0), ...signed.envelope]) // same signature, other body
    expect(await table.acceptEnvelope(tampered)).toMatchObject({ accepted: false, reason: 'bad-signature' })
    const ours = await me.sign()
    table.setSelf(ours)
    expect(await table.acceptEnvelope(ours.envelope)).toMatchObject({ accepted: false, reason: 'self' })
    expect(opened).toHaveBeenCalledTimes(4)
  })

  it('forgets the bytes of a record once it is replaced, revoked or expired', async () => {
    const table = membershipFor(me)
    const first = await alice.sign({ issuedAt: 1000 })
    await table.acceptEnvelope(first.envelope)
    const second = await alice.sign({ issuedAt: 2000 })
    expect((await table.acceptEnvelope(second.envelope)).accepted).toBe(true)
    expect(await table.acceptEnvelope(first.envelope)).toMatchObject({ accepted: false, reason: 'stale' })

    const fromBob = await bob.sign({ issuedAt: 1000 })
    await table.acceptEnvelope(fromBob.envelope)
    table.revoke(bob.peerId, me.peerId)
    expect(await table.acceptEnvelope(fromBob.envelope)).toMatchObject({ accepted: false, reason: 'revoked' })

    expect(table.expire(Date.now() - 2500)).toEqual([alice.peerId])
    expect((await table.acceptEnvelope(second.envelope)).accepted).toBe(true)
    expect(opened).toHaveBeenCalledTimes(6)
  })
})
