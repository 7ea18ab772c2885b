import { beforeAll, describe, expect, it } from 'vitest'
import { openRecord, signRecord, MAX_REVOKES } from '../../src/gossip/record.ts'
import { makeNode, membershipFor, type TestNode } from './fixtures.ts'
import { resolveRevokeTarget } from '../../src/membership/revoke.ts'

// Revocations ride in the revoker's signed record (field `revokes`) and are sticky in the
// table: once a member is revoked, no record of it is accepted again, whoever relays it.

let me: TestNode, alice: TestNode, bob: TestNode, carol: TestNode
beforeAll(async () => { [me, alice, bob, carol] = await Promise.all([makeNode('me'), makeNode('alice'), makeNode('bob'), makeNode('carol')]) })

describe('revocation', () => {
  it('a revoking record removes the member at once and its later records are rejected as revoked', async () => {
    const table = membershipFor(me)
    expect(table.accept(await bob.sign())).toMatchObject({ accepted: true })
    const seen: string[] = []
    table.onRevoke(r => seen.push(`${r.peerId} by ${r.by}`))
    expect(table.accept(await alice.sign({ revokes: [bob.peerId] }))).toMatchObject({ accepted: true })
    expect(table.get(bob.peerId)).toBeUndefined()
    expect(table.members().map(e => e.record.peerId)).toEqual([alice.peerId])
    expect(seen).toEqual([`${bob.peerId} by ${alice.peerId}`])
    // newer, validly signed records of bob cannot bring him back
    const later = table.accept(await bob.sign({ seq: Date.now() }))
    expect(later).toMatchObject({ accepted: false, reason: 'revoked' })
    expect(table.digest().has(bob.peerId)).toBe(false)
  })

  it('survives the state dump: restored revocations reject old records read back', async () => {
    const first = membershipFor(me)
    const oldBob = await bob.sign()
    first.accept(oldBob)
    first.revoke(bob.peerId, me.peerId, 5)
    const restored = membershipFor(me)
    for (const r of first.revocations()) restored.revoke(r.peerId, r.by, r.at)
    expect(restored.revocations()).toEqual([{ peerId: bob.peerId, by: me.peerId, at: 5 }])
    expect(restored.accept(oldBob)).toMatchObject({ accepted: false, reason: 'revoked' })
  })

  it('a revoked member cannot revoke anybody any more, and nobody can revoke us', async () => {
    const table = membershipFor(me)
    const heard: string[] = []
    table.onRevoke(r => heard.push(`${r.peerId === me.peerId ? 'me' : r.peerId} by ${r.by === alice.peerId ? 'alice' : r.by}`))
    table.accept(await carol.sign())
    table.revoke(bob.peerId, me.peerId)
    expect(table.accept(await bob.sign({ seq: Date.now(), revokes: [carol.peerId] }))).toMatchObject({ accepted: false, reason: 'revoked' })
    expect(table.get(carol.peerId)).toBeDefined()
    expect(table.accept(await alice.sign({ revokes: [me.peerId] }))).toMatchObject({ accepted: true })
    expect(table.isRevoked(me.peerId)).toBe(false)
    expect(table.revoke(me.peerId, alice.peerId)).toBe(false)
    // we hear about it once (the daemon logs it), and we stay in our own table
    expect(heard.filter(h => h.startsWith('me '))).toEqual(['me by alice'])
  })

  it('revocation is tied to the signature: a forged revokes field fails verification', async () => {
    const signed = await alice.sign({ revokes: [carol.peerId] })
    const body = new TextDecoder().decode(signed.envelope.subarray(0, signed.envelope.length - 64))
    const forged = new Uint8Array([...new TextEncoder().encode(body.replace(carol.peerId, bob.peerId)), ...signed.envelope.subarray(signed.envelope.length - 64)])
    await expect(openRecord(forged)).rejects.toMatchObject({ reason: 'bad-signature' })
    const byBob = await signRecord(alice.record({ revokes: [carol.peerId] }), bob.key)
    await expect(openRecord(byBob.envelope)).rejects.toMatchObject({ reason: 'bad-signature' })
  })

  it('bounds the revokes list', async () => {
    const tooMany = await signRecord(alice.record({ revokes: Array.from({ length: MAX_REVOKES + 1 }, () => bob.peerId) }), alice.key)
    await expect(openRecord(tooMany.envelope)).rejects.toMatchObject({ reason: 'malformed' })
    // only peer ids: junk cannot grow every node's sticky revocation list
    const junk = await signRecord(alice.record({ revokes: ['not-a-peer-id'] }), alice.key)
    await expect(openRecord(junk.envelope)).rejects.toMatchObject({ reason: 'malformed' })
  })

  it('resolves the revoke target by peer id or unique name, and refuses ourselves and ambiguity', () => {
    const members = [{ peerId: alice.peerId, name: 'alice' }, { peerId: bob.peerId, name: 'twin' }, { peerId: carol.peerId, name: 'twin' }]
    expect(resolveRevokeTarget('alice', me.peerId, members)).toBe(alice.peerId)
    expect(resolveRevokeTarget(bob.peerId, me.peerId, members)).toBe(bob.peerId)
    // a peer id we never saw can still be revoked in advance
    expect(resolveRevokeTarget('12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq', me.peerId, [])).toBe('12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq')
    expect(() => resolveRevokeTarget('twin', me.peerId, members)).toThrow(/2 members are named "twin"/)
    expect(() => resolveRevokeTarget('nobody', me.peerId, members)).toThrow(/no member/)
    expect(() => resolveRevokeTarget(me.peerId, me.peerId, members)).toThrow(/ourselves/)
  })
})
