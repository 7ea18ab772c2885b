import { describe, it, expect, beforeAll } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import { openRecord, signRecord, MAX_ENVELOPE_BYTES } from '../../src/gossip/record.ts'
import { addressFor } from '../../src/membership/ipam.ts'
import { makeNode, membershipFor, ranges, type TestNode } from './fixtures.ts'

let me: TestNode, alice: TestNode, bob: TestNode
beforeAll(async () => { [me, alice, bob] = await Promise.all([makeNode('me'), makeNode('alice'), makeNode('bob')]) })

describe('record envelopes', () => {
  it('round-trips a signed record', async () => {
    const signed = await alice.sign()
    const opened = await openRecord(signed.envelope)
    expect(opened.record).toEqual(signed.record)
  })

  it('rejects a flipped bit as a bad signature', async () => {
    const { envelope } = await alice.sign()
    const tampered = Uint8Array.from(envelope)
    const at = new TextDecoder().decode(envelope).indexOf('"name":"alice"') + 9
    tampered[at] = 'A'.charCodeAt(0)
    await expect(openRecord(tampered)).rejects.toMatchObject({ reason: 'bad-signature' })
  })

  it('rejects a record signed by somebody else than its peerId', async () => {
    const forged = await signRecord(alice.record(), bob.key)
    await expect(openRecord(forged.envelope)).rejects.toMatchObject({ reason: 'bad-signature' })
  })

  it('checks every record of an author whose key it already holds, and its spelling too', async () => {
    // carol's key gets cached by her first valid record
    const carol = await makeNode('carol')
    await openRecord((await carol.sign()).envelope)
    const forged = await signRecord(carol.record(), bob.key)
    await expect(openRecord(forged.envelope)).rejects.toMatchObject({ reason: 'bad-signature' })
    const valid = await carol.sign()
    const cut = Uint8Array.from(valid.envelope)
    cut[cut.length - 1] = cut[cut.length - 1]! ^ 1
    await expect(openRecord(cut)).rejects.toMatchObject({ reason: 'bad-signature' })
    // the same key under a CID spelling of her peer id: another member entry, so refused
    const cid = peerIdFromString(carol.peerId).toCID().toString()
    const alias = await signRecord(carol.record({ peerId: cid }), carol.key)
    await expect(openRecord(alias.envelope)).rejects.toMatchObject({ reason: 'malformed' })
    expect((await openRecord(valid.envelope)).record.peerId).toBe(carol.peerId)
  })

  it('judges an author first seen in a forgery like any other', async () => {
    const dave = await makeNode('dave')
    const forged = await signRecord(dave.record(), bob.key)
    await expect(openRecord(forged.envelope)).rejects.toMatchObject({ reason: 'bad-signature' })
    expect((await openRecord((await dave.sign()).envelope)).record.peerId).toBe(dave.peerId)
    await expect(openRecord(forged.envelope)).rejects.toMatchObject({ reason: 'bad-signature' })
  })

  it('rejects oversize, truncated and non-JSON envelopes', async () => {
    await expect(openRecord(new Uint8Array(MAX_ENVELOPE_BYTES + 1))).rejects.toMatchObject({ reason: 'oversize' })
    await expect(openRecord(new Uint8Array(10))).rejects.toMatchObject({ reason: 'malformed' })
    await expect(openRecord(new Uint8Array(200).fill(0xff))).rejects.toMatchObject({ reason: 'malformed' })
    await expect(signRecord(alice.record({ addrs: Array(16).fill(`/dns/${'a'.repeat(200)}/tcp/10042`), routes: Array(64).fill('fd00:1234:5678:9abc:def0:1234:5678:9abc/128') }), alice.key)).rejects.toThrow(/over the 4096-byte limit/)
  })

  it('ignores unknown fields from a newer version, but keeps them signed', async () => {
    const record = { ...alice.record(), v: 2, future: { x: 1 } }
    const signed = await signRecord(record as never, alice.key)
    const opened = await openRecord(signed.envelope)
    expect(opened.record.peerId).toBe(alice.peerId)
    expect(opened.envelope).toEqual(signed.envelope)
  })
})

describe('membership acceptance', () => {
  it('accepts a valid record and rejects the wrong gossip author', async () => {
    const table = membershipFor(me)
    const signed = await alice.sign()
    expect((await table.acceptEnvelope(signed.envelope, bob.peerId))).toMatchObject({ accepted: false, reason: 'wrong-author' })
    expect((await table.acceptEnvelope(signed.envelope, alice.peerId)).accepted).toBe(true)
    expect(table.members().map(e => e.record.peerId)).toEqual([alice.peerId])
  })

  it('rejects an old seq and tells a duplicate apart', async () => {
    const table = membershipFor(me)
    const old = await alice.sign({ seq: 5 })
    const current = await alice.sign({ seq: 6 })
    expect(table.accept(current).accepted).toBe(true)
    expect(table.accept(old)).toMatchObject({ accepted: false, reason: 'stale' })
    expect(table.accept(current)).toMatchObject({ accepted: false, reason: 'duplicate' })
    expect(table.accept(await alice.sign({ seq: 6, name: 'other' }))).toMatchObject({ accepted: false, reason: 'stale' })
  })

  it('rejects claims on addresses that do not derive from the peer id', async () => {
    const table = membershipFor(me)
    const stolen6 = { address: addressFor(ranges.ipv6, bob.peerId, 0), counter: 0, since: 1 }
    const stolen4 = { address: addressFor(ranges.ipv4, bob.peerId, 0), counter: 0, since: 1 }
    expect(table.accept(await alice.sign({ ipv6: stolen6 }))).toMatchObject({ accepted: false, reason: 'bad-claim' })
    expect(table.accept(await alice.sign({ ipv4: stolen4 }))).toMatchObject({ accepted: false, reason: 'bad-claim' })
    expect(table.accept(await alice.sign({ ipv4: { ...stolen4, counter: 1 } }))).toMatchObject({ accepted: false, reason: 'bad-claim' })
    expect(table.members()).toHaveLength(0)
  })

  it('rejects another member\'s WireGuard key, and ours', async () => {
    const table = membershipFor(me)
    expect(table.accept(await bob.sign()).accepted).toBe(true)
    expect(table.accept(await alice.sign({ wgPublicKey: bob.wgPublicKey }))).toMatchObject({ accepted: false, reason: 'key-taken' })
    expect(table.accept(await alice.sign({ wgPublicKey: me.wgPublicKey }))).toMatchObject({ accepted: false, reason: 'key-taken' })
  })

  it('keeps a tombstone so an older record cannot bring the member back', async () => {
    const table = membershipFor(me)
    const live = await alice.sign({ seq: 10 })
    expect(table.accept(live).accepted).toBe(true)
    expect(table.accept(await alice.sign({ seq: 11, leaving: true })).accepted).toBe(true)
    expect(table.members()).toHaveLength(0)
    expect(table.accept(live)).toMatchObject({ accepted: false, reason: 'stale' })
    expect(table.all().map(e => e.record.peerId)).toEqual([alice.peerId])
  })

  it('tells listeners when a change is only a refresh (new seq and issuedAt, nothing else)', async () => {
    const table = membershipFor(me)
    const changes: boolean[] = []
    table.onChange(c => changes.push(c.refreshOnly))
    expect(table.accept(await alice.sign({ issuedAt: 1000 })).accepted).toBe(true)
    expect(table.accept(await alice.sign({ issuedAt: 2000 })).accepted).toBe(true)
    expect(table.accept(await alice.sign({ issuedAt: 3000, endpoints: ['198.18.0.9:10042'] })).accepted).toBe(true)
    expect(table.accept(await alice.sign({ issuedAt: 4000, endpoints: ['198.18.0.9:10042'], revokes: [bob.peerId] })).accepted).toBe(true)
    table.setSelf(await me.sign({ issuedAt: 1000 }))
    table.setSelf(await me.sign({ issuedAt: 5000 }))
    table.setSelf(await me.sign({ issuedAt: 6000, name: 'renamed' }))
    expect(changes).toEqual([false, true, false, false, false, true, false])
  })

  it('ignores records about ourselves', async () => {
    const table = membershipFor(me)
    expect(table.accept(await me.sign({ seq: 99 }))).toMatchObject({ accepted: false, reason: 'self' })
  })
})

describe('membership expiry', () => {
  it('forgets members and tombstones not refreshed within the expiry, never ourselves', async () => {
    let now = 10_000
    const table = new (await import('../../src/membership/table.ts')).Membership({
      self: me.peerId, selfWgPublicKey: me.wgPublicKey, ipv6Range: ranges.ipv6, ipv4Range: ranges.ipv4, now: () => now
    })
    table.setSelf(await me.sign({ issuedAt: 1 }))
    expect(table.accept(await alice.sign({ issuedAt: 9_000 })).accepted).toBe(true)
    expect(table.accept(await bob.sign({ issuedAt: 2_000, leaving: true })).accepted).toBe(true)
    expect(table.expire(5_000)).toEqual([bob.peerId])
    now = 20_000
    expect(table.expire(5_000)).toEqual([alice.peerId])
    expect(table.all().map(e => e.record.peerId)).toEqual([me.peerId])
  })
})
