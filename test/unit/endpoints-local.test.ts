import { describe, it, expect } from 'vitest'
import { localCandidates, ObservedAddresses, parseAnnounce, interfaceAddresses } from '../../src/endpoints/local.ts'

const overlay = (ip: string): boolean => ip.startsWith('10.223.') || ip.startsWith('fd5c:')

describe('announce addresses', () => {
  it('takes IP, IP:port, [IPv6]:port and bare IPv6, canonical', () => {
    expect(parseAnnounce('203.0.113.7')).toEqual({ host: '203.0.113.7' })
    expect(parseAnnounce(' 203.0.113.7:51820 ')).toEqual({ host: '203.0.113.7', port: 51820 })
    expect(parseAnnounce('[2001:DB8::0:1]:4000')).toEqual({ host: '2001:db8::1', port: 4000 })
    expect(parseAnnounce('2001:db8::1')).toEqual({ host: '2001:db8::1' })
  })

  it('refuses names, bad ports and unusable addresses', () => {
    expect(() => parseAnnounce('vm.example.com')).toThrow(/not an IP address/)
    expect(() => parseAnnounce('203.0.113.7:0')).toThrow(/port/)
    expect(() => parseAnnounce('203.0.113.7:99999')).toThrow(/port/)
    expect(() => parseAnnounce('127.0.0.1')).toThrow(/loopback/)
    expect(() => parseAnnounce('[fe80::1]:5')).toThrow(/link-local/)
    expect(() => parseAnnounce('')).toThrow()
  })
})

describe('local candidates', () => {
  it('lists announce, then observed, then interface addresses, each with the WireGuard port', () => {
    const out = localCandidates({
      wgPort: 10042,
      announce: [{ host: '203.0.113.7' }, { host: '2001:db8::1', port: 4000 }],
      observed: ['198.51.100.9', '::ffff:198.51.100.10'],
      interfaces: ['192.168.1.5', '10.223.0.5', 'fd5c::5', '2001:db8:1::5', '198.51.100.9'],
      isOverlayAddress: overlay
    })
    expect(out).toEqual(['203.0.113.7:10042', '[2001:db8::1]:4000', '198.51.100.9:10042', '198.51.100.10:10042', '192.168.1.5:10042', '[2001:db8:1::5]:10042'])
  })

  it('caps the list at 16 (the record limit)', () => {
    const interfaces = Array.from({ length: 30 }, (_, i) => `192.0.2.${i + 1}`)
    expect(localCandidates({ wgPort: 1, announce: [], observed: [], interfaces, isOverlayAddress: overlay })).toHaveLength(16)
  })

  it('reads interface addresses without loopback or link-local', () => {
    for (const ip of interfaceAddresses()) expect(ip).not.toMatch(/^(127\.|::1$|fe80:)/)
  })
})

describe('observed addresses', () => {
  it('keeps one per member, newest first, and never lists our own (past) interface addresses', () => {
    const o = new ObservedAddresses()
    o.noteInterfaces(['198.18.0.3'])
    o.set('p1', '198.18.0.3', 1) // no NAT between us: nothing new
    o.set('p2', '203.0.113.1', 2)
    o.set('p3', '203.0.113.2', 3)
    o.set('p4', '203.0.113.1', 4)
    expect(o.list()).toEqual(['203.0.113.1', '203.0.113.2'])
    o.delete('p4')
    o.delete('p3')
    expect(o.list()).toEqual(['203.0.113.1'])
    // we roamed: the address we had is stale wherever a lingering connection still reports it
    o.set('p5', '198.18.7.7', 5)
    o.noteInterfaces(['198.18.7.7'])
    expect(o.list()).toEqual(['203.0.113.1'])
  })
})
