import { describe, it, expect } from 'vitest'
import {
  addressFor, bigIntToIp, canonicalIp, chooseClaim, claimDerives, fnv1a128, inRange, ipToBigInt, ipv4Range,
  resolveClaims, ula64, type Claim
} from '../../src/membership/ipam.ts'

const ids = Array.from({ length: 200 }, (_, i) => `12D3KooWpeer${i.toString().padStart(4, '0')}`)

describe('fnv1a128', () => {
  it('matches the reference vector', () => {
    expect(fnv1a128('test').toString(16)).toBe('69d061a9c5757277b806e99413dd99a5')
    expect(fnv1a128('').toString(16)).toBe('6c62272e07bb014262b821756295c58d')
  })
})

describe('address derivation', () => {
  it('never yields the network or broadcast address, for /29 … /8', () => {
    for (let len = 8; len <= 29; len++) {
      const range = ipv4Range(`10.0.0.0/${len}`)
      const size = 1n << BigInt(32 - len)
      for (const id of ids) {
        for (const counter of [0, 1, 2]) {
          const address = addressFor(range, id, counter)
          const host = ipToBigInt(address) - range.network
          expect(inRange(range, address)).toBe(true)
          expect(host).toBeGreaterThan(0n)
          expect(host).toBeLessThan(size - 1n)
        }
      }
    }
  })

  it('covers all usable hosts of a /30 and /29', () => {
    for (const [cidr, usable] of [['192.0.2.0/30', 2], ['192.0.2.8/29', 6]] as const) {
      const range = ipv4Range(cidr)
      const seen = new Set(ids.map(id => addressFor(range, id, 0)))
      expect(seen.size).toBe(usable)
    }
  })

  it('derives a /64 ULA from 7 bytes and a host part inside it', () => {
    const range = ula64(Uint8Array.from([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde]))
    expect(range.cidr).toBe('fd12:3456:789a:bcde::/64')
    const address = addressFor(range, ids[0]!, 0)
    expect(address.startsWith('fd12:3456:789a:bcde:')).toBe(true)
    expect(address).not.toBe('fd12:3456:789a:bcde::')
    expect(canonicalIp(address)).toBe(address)
  })

  it('normalises the range and rejects unusable ones', () => {
    expect(ipv4Range('10.223.5.7/16').cidr).toBe('10.223.0.0/16')
    expect(() => ipv4Range('10.0.0.0/31')).toThrow(/between \/8 and \/30/)
    expect(() => ipv4Range('10.0.0.0/7')).toThrow(/between \/8 and \/30/)
    expect(() => ipv4Range('fd00::/64')).toThrow(/not an IPv4/)
    expect(() => ipv4Range('10.0.0.300/16')).toThrow(/not an IP address/)
    expect(() => ipv4Range('10.0.0.0')).toThrow(/not a CIDR/)
  })

  it('round-trips IPv6 text', () => {
    for (const text of ['::', '::1', 'fd00::1', '2001:db8::1:0:0:1', 'fd12:3456:789a:bcde:1:2:3:4', '1::']) {
      expect(bigIntToIp(ipToBigInt(text), 6)).toBe(text)
    }
    expect(canonicalIp('FD00:0:0:0:0:0:0:1')).toBe('fd00::1')
    expect(canonicalIp('::ffff:1.2.3.4')).toBe('::ffff:102:304')
  })
})

describe('claims', () => {
  const range = ipv4Range('10.1.0.0/29')

  it('accepts only claims that derive from the peer id (no hijacking)', () => {
    const a = ids[0]!; const b = ids[1]!
    const own = addressFor(range, a, 0)
    expect(claimDerives(range, a, own, 0)).toBe(true)
    expect(claimDerives(range, a, addressFor(range, a, 3), 3)).toBe(true)
    // b claiming a's address under any counter is rejected unless the hash really gives it
    const hijack = [...Array(65).keys()].filter(c => claimDerives(range, b, own, c))
    for (const c of hijack) expect(addressFor(range, b, c)).toBe(own)
    expect(claimDerives(range, a, own, 1000)).toBe(false)
    expect(claimDerives(range, a, 'garbage', 0)).toBe(false)
    expect(claimDerives(range, a, '10.9.9.9', 0)).toBe(false)
  })

  it('resolves collisions identically whatever order claims arrive in', () => {
    const claims: Claim[] = [
      { peerId: 'b', address: '10.1.0.3', counter: 0, since: 100 },
      { peerId: 'a', address: '10.1.0.3', counter: 0, since: 100 },
      { peerId: 'c', address: '10.1.0.3', counter: 0, since: 50 },
      { peerId: 'd', address: '10.1.0.4', counter: 0, since: 10 }
    ]
    const expected = [...resolveClaims(claims)].map(([k, v]) => [k, v.peerId]).sort()
    expect(expected).toEqual([['10.1.0.3', 'c'], ['10.1.0.4', 'd']])
    for (let i = 0; i < 50; i++) {
      const shuffled = [...claims].sort(() => Math.random() - 0.5)
      expect([...resolveClaims(shuffled)].map(([k, v]) => [k, v.peerId]).sort()).toEqual(expected)
    }
    // equal age: the lower peer id wins
    expect(resolveClaims(claims.slice(0, 2)).get('10.1.0.3')?.peerId).toBe('a')
  })

  it('lets every node in a crowded /29 settle on distinct addresses, keeping older holders', () => {
    const nodes = ids.slice(0, 6)
    const held = new Map<string, Claim>()
    // arrive one at a time; each chooses against the claims it sees
    nodes.forEach((id, i) => held.set(id, chooseClaim(range, id, undefined, held.values(), 1000 + i)))
    // iterate until stable (losers move on)
    for (let round = 0; round < 10; round++) {
      for (const id of nodes) held.set(id, chooseClaim(range, id, held.get(id), held.values(), 2000 + round))
    }
    const addresses = [...held.values()].map(c => c.address)
    expect(new Set(addresses).size).toBe(nodes.length)
    for (const c of held.values()) expect(claimDerives(range, c.peerId, c.address, c.counter)).toBe(true)
    // a holder keeps its claim when a newcomer collides with it
    const first = held.get(nodes[0]!)!
    const again = chooseClaim(range, nodes[0]!, first, [...held.values(), { peerId: 'zz', address: first.address, counter: 0, since: 99_999 }], 5000)
    expect(again).toBe(first)
  })
})
