import { describe, it, expect } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { ipOf, tcpTarget, usableAddress } from '../../src/p2p/host.ts'

describe('multiaddr helpers', () => {
  it('reads the IP, treating IPv4-mapped IPv6 as the IPv4 it is', () => {
    expect(ipOf(multiaddr('/ip4/198.18.0.1/tcp/10042'))).toBe('198.18.0.1')
    expect(ipOf(multiaddr('/ip6/fd00::1/tcp/10042'))).toBe('fd00::1')
    expect(ipOf(multiaddr('/ip6/::ffff:10.223.0.5/tcp/10042'))).toBe('10.223.0.5')
    expect(ipOf(multiaddr('/dns/example.com/tcp/10042'))).toBeUndefined()
  })
  it('reads host and TCP port', () => {
    expect(tcpTarget(multiaddr('/ip4/198.18.0.1/tcp/10042/p2p/12D3KooWHk62UNH4Z3sis1yPy7bwenEM4VbjQro1HPTx1SCFDiUK'))).toEqual({ host: '198.18.0.1', port: 10042 })
    expect(tcpTarget(multiaddr('/dns/node1.example.com/tcp/7'))).toEqual({ host: 'node1.example.com', port: 7 })
    expect(tcpTarget(multiaddr('/ip4/198.18.0.1/udp/7'))).toBeUndefined()
  })
})

describe('announce and dial filter', () => {
  const isOverlayAddress = (ip: string): boolean => ip.startsWith('10.223.')
  const ok = (ma: string, allowLoopback?: boolean): boolean => usableAddress(multiaddr(ma), { isOverlayAddress, allowLoopback })
  it('refuses loopback, link-local and the overlay by default', () => {
    expect(ok('/ip4/198.18.0.1/tcp/10042')).toBe(true)
    expect(ok('/ip4/127.0.0.1/tcp/10042')).toBe(false)
    expect(ok('/ip6/::1/tcp/10042')).toBe(false)
    expect(ok('/ip6/::ffff:127.0.0.1/tcp/10042')).toBe(false)
    expect(ok('/ip4/169.254.1.1/tcp/10042')).toBe(false)
    expect(ok('/ip4/10.223.0.5/tcp/10042')).toBe(false)
  })
  it('lets only loopback through with the test/bench option', () => {
    expect(ok('/ip4/127.0.0.1/tcp/10042', true)).toBe(true)
    expect(ok('/ip6/::1/tcp/10042', true)).toBe(true)
    expect(ok('/ip4/169.254.1.1/tcp/10042', true)).toBe(false)
    expect(ok('/ip6/fe80::1/tcp/10042', true)).toBe(false)
    expect(ok('/ip4/10.223.0.5/tcp/10042', true)).toBe(false)
  })
})
