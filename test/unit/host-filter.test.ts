import { EventEmitter } from 'node:events'
import { describe, it, expect, vi, afterEach } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { filterLanAnswers, GOSSIPSUB_OPTIONS, ipOf, libp2pLogger, LAN_ANSWER_BURST, LAN_ANSWER_DELAY_MS, LAN_ANSWER_MEMORY_MS, LAN_ANSWER_REFILL_MS, LAN_ANSWERS, LAN_PASS_BURST, LAN_PASS_REFILL_MS, MDNS_QUERY_MS, mdnsServiceTag, repeatLanQueries, tcpTarget, thinLanAnswers, usableAddress, type Host } from '../../src/p2p/host.ts'
import { meshSeed, parsePsk, pskFromBytes, rotatedSwarmKey } from '../../src/config/psk.ts'

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

describe('mDNS service tag', () => {
  it('is a stable DNS-SD name per mesh, differs between meshes and shows nothing of the key', () => {
    const a = pskFromBytes(new Uint8Array(32).fill(1))
    const b = pskFromBytes(new Uint8Array(32).fill(2))
    expect(mdnsServiceTag(meshSeed(a))).toMatch(/^_w2w-[0-9a-f]{10}\._udp\.local$/)
    expect(mdnsServiceTag(meshSeed(a))).toBe(mdnsServiceTag(meshSeed(pskFromBytes(new Uint8Array(32).fill(1)))))
    expect(mdnsServiceTag(meshSeed(a))).not.toBe(mdnsServiceTag(meshSeed(b)))
    expect(mdnsServiceTag(meshSeed(a))).not.toContain('0101010101')
  })

  it('stays the same after a key rotation: a rotated swarm.key carries the first key\'s seed', () => {
    const first = pskFromBytes(new Uint8Array(32).fill(1))
    const rotated = parsePsk(rotatedSwarmKey(new Uint8Array(32).fill(3), meshSeed(first)))
    expect(mdnsServiceTag(meshSeed(rotated))).toBe(mdnsServiceTag(meshSeed(first)))
    expect(mdnsServiceTag(meshSeed(pskFromBytes(new Uint8Array(32).fill(3))))).not.toBe(mdnsServiceTag(meshSeed(first)))
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

describe('mDNS answers in a large mesh', () => {
  afterEach(() => { vi.useRealTimers() })

  /** a host whose mDNS socket we drive: queries in, answers counted */
  function lanHost (): { host: Host, query: () => void, answers: () => number, hear: (id: string) => void } {
    const socket = new EventEmitter()
    let answered = 0
    const service = Object.assign(new EventTarget(), { mdns: socket, _onMdnsQuery: (): void => { answered++ } })
    socket.on('query', service._onMdnsQuery)
    return {
      host: { services: { mdns: service } } as unknown as Host,
      query: () => { socket.emit('query', {}) },
      answers: () => answered,
      hear: id => { service.dispatchEvent(new CustomEvent('peer', { detail: { id: { toString: () => id }, multiaddrs: [] } })) }
    }
  }

  it('a small mesh answers every query; a large one about LAN_ANSWERS members per query', () => {
    vi.useFakeTimers()
    const small = lanHost()
    thinLanAnswers(small.host, () => LAN_ANSWERS)
    for (let i = 0; i < 100; i++) { small.query(); vi.advanceTimersByTime(LAN_ANSWER_REFILL_MS) }
    expect(small.answers()).toBe(100)

    const large = lanHost()
    thinLanAnswers(large.host, () => LAN_ANSWERS * 10)
    for (let i = 0; i < 2000; i++) { large.query(); vi.advanceTimersByTime(LAN_ANSWER_REFILL_MS) }
    // binomial(2000, 0.1): mean 200, sd 13.4
    expect(large.answers()).toBeGreaterThan(140)
    expect(large.answers()).toBeLessThan(260)
  })

  it('knowing nobody yet, the peers heard on the LAN count, also those heard while an answer waits', () => {
    vi.useFakeTimers()
    const lan = lanHost()
    thinLanAnswers(lan.host, () => 0)
    lan.query() // waits its random delay; meanwhile the LAN answers
    for (let i = 0; i < LAN_ANSWERS * 10; i++) lan.hear(`peer${i}`)
    for (let i = 1; i < 2000; i++) { lan.query(); vi.advanceTimersByTime(LAN_ANSWER_REFILL_MS) }
    expect(lan.answers()).toBeGreaterThan(140)
    expect(lan.answers()).toBeLessThan(260)
  })

  it('a burst of queries draws a burst of answers, then one per refill interval', () => {
    vi.useFakeTimers()
    const lan = lanHost()
    thinLanAnswers(lan.host, () => 1)
    for (let i = 0; i < 200; i++) lan.query()
    vi.advanceTimersByTime(LAN_ANSWER_DELAY_MS)
    expect(lan.answers()).toBe(LAN_ANSWER_BURST)
  })

  it('no mDNS service: nothing to thin', () => {
    expect(() => { thinLanAnswers({ services: {} } as unknown as Host, () => 1) }).not.toThrow()
  })
})

describe('mDNS queries of a running node', () => {
  afterEach(() => { vi.useRealTimers(); vi.restoreAllMocks() })

  function queryTimes (random: () => number, periods: number): number[] {
    vi.useFakeTimers({ now: 0 })
    vi.spyOn(Math, 'random').mockImplementation(random)
    const times: number[] = []
    const host = { services: { mdns: { mdns: { query: () => { times.push(Date.now()) } } } } } as unknown as Host
    const stop = repeatLanQueries(host, 'seed')
    vi.advanceTimersByTime(periods * MDNS_QUERY_MS)
    stop()
    vi.advanceTimersByTime(10 * MDNS_QUERY_MS)
    vi.useRealTimers()
    return times
  }

  it('ask every period ±50 %, from a random point of the first period on, and stop when told', () => {
    const P = MDNS_QUERY_MS
    expect(queryTimes(() => 0.25, 3)).toEqual([0.25 * P, P, 1.75 * P, 2.5 * P])
    expect(queryTimes(() => 0.9, 3)).toEqual([0.9 * P, 2.3 * P])
  })

  it('nodes started together ask at different times', () => {
    const real = Math.random
    const firsts = Array.from({ length: 50 }, () => queryTimes(() => real(), 1)[0]!)
    // 50 draws from one period: within any tenth of it, far fewer than all of them
    const crowd = Math.max(...firsts.map(t => firsts.filter(u => Math.abs(u - t) < MDNS_QUERY_MS / 20).length))
    expect(crowd).toBeLessThan(25)
  })
})

describe('mDNS answers heard', () => {
  afterEach(() => { vi.useRealTimers() })

  /** a host whose mDNS socket we drive: answers in, answers passed to the service counted */
  function lanHost (): { host: Host, answer: (responder?: string) => void, passed: () => number } {
    const socket = new EventEmitter()
    let passed = 0
    const service = Object.assign(new EventTarget(), { mdns: socket, _onMdnsResponse: (): void => { passed++ } })
    socket.on('response', service._onMdnsResponse)
    const tag = '_w2w-0123456789._udp.local'
    return {
      host: { services: { mdns: service } } as unknown as Host,
      // as @libp2p/mdns answers: a PTR naming the responder's instance, TXT records with its
      // addresses (multicast-dns hands TXT data over as Buffers); responder r has peer id id-r
      answer: responder => {
        const answers = [{ type: 'TXT', name: `${responder}.${tag}`, data: [Buffer.from(`dnsaddr=/ip4/192.168.1.2/tcp/10042/p2p/id-${responder}`)] }]
        if (responder !== undefined) answers.unshift({ type: 'PTR', name: tag, data: `${responder}.${tag}` } as never)
        socket.emit('response', { answers, additionals: [] })
      },
      passed: () => passed
    }
  }

  it('passes one answer per responder in LAN_ANSWER_MEMORY_MS on', () => {
    vi.useFakeTimers()
    const lan = lanHost()
    filterLanAnswers(lan.host, () => false)
    for (let i = 0; i < 50; i++) lan.answer('a')
    expect(lan.passed()).toBe(1)
    vi.advanceTimersByTime(LAN_ANSWER_MEMORY_MS - 1000)
    lan.answer('a')
    expect(lan.passed()).toBe(1)
    vi.advanceTimersByTime(1000)
    lan.answer('a')
    lan.answer('a')
    expect(lan.passed()).toBe(2)
  })

  it('passes many responders in a burst, then one per refill interval', () => {
    vi.useFakeTimers()
    const lan = lanHost()
    filterLanAnswers(lan.host, () => false)
    for (let i = 0; i < 100; i++) lan.answer(`r${i}`)
    expect(lan.passed()).toBe(LAN_PASS_BURST)
    vi.advanceTimersByTime(LAN_PASS_REFILL_MS * 3)
    // the ones held back were not marked as passed: they get through when tokens are back
    for (let i = 0; i < 100; i++) lan.answer(`r${i}`)
    expect(lan.passed()).toBe(LAN_PASS_BURST + 3)
  })

  it('drops answers from members (their addresses come with their records)', () => {
    const lan = lanHost()
    filterLanAnswers(lan.host, peerId => peerId === 'id-m')
    lan.answer('m')
    lan.answer('s')
    expect(lan.passed()).toBe(1)
  })

  it('drops an answer with no PTR record (the service would ignore it too)', () => {
    const lan = lanHost()
    filterLanAnswers(lan.host, () => false)
    lan.answer(undefined)
    expect(lan.passed()).toBe(0)
  })

  it('without the filter every copy reaches the service', () => {
    const lan = lanHost()
    for (let i = 0; i < 50; i++) lan.answer('a')
    expect(lan.passed()).toBe(50)
  })

  it('no mDNS service: nothing to filter', () => {
    expect(() => { filterLanAnswers({ services: {} } as unknown as Host, () => false) }).not.toThrow()
  })
})

describe('gossipsub duplicate id', () => {
  const id = GOSSIPSUB_OPTIONS.fastMsgIdFn
  const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b)
  it('is the same for copies of one publication and differs by author and by sequence number', () => {
    expect(id({ from: bytes(1, 2), seqno: bytes(0, 7) })).toBe(id({ from: bytes(1, 2), seqno: bytes(0, 7) }))
    expect(id({ from: bytes(1, 2), seqno: bytes(0, 8) })).not.toBe(id({ from: bytes(1, 2), seqno: bytes(0, 7) }))
    expect(id({ from: bytes(1, 3), seqno: bytes(0, 7) })).not.toBe(id({ from: bytes(1, 2), seqno: bytes(0, 7) }))
    // the separator keeps the boundary: (12, 3) and (1, 23) are different publications
    expect(id({ from: bytes(1, 2), seqno: bytes(3) })).not.toBe(id({ from: bytes(1), seqno: bytes(2, 3) }))
  })
})

describe('libp2p logger', () => {
  it('is silent and cheap without DEBUG, libp2p\'s own (weald) with it', () => {
    const silent = libp2pLogger('')?.forComponent('libp2p:connection')
    expect(silent).toBeDefined()
    expect(silent?.enabled).toBe(false)
    expect(silent?.newScope('outbound')).toBe(silent)
    expect(() => { silent?.('x %s', 1); silent?.error('e'); silent?.trace('t') }).not.toThrow()
    expect(libp2pLogger(undefined)?.forComponent('a').enabled).toBe(false)
    expect(libp2pLogger('libp2p:*')).toBeUndefined()
  })
})
