import { describe, it, expect } from 'vitest'
import { acceptedRoutes, canonicalRoute, cidrContainsIp, cidrsOverlap, localRouteProblem, resolveRoutes, routeEvents, routeProblem, type RouteMember } from '../../src/membership/routes.ts'
import { desiredPeers } from '../../src/reconciler/desired.ts'
import { createReconciler } from '../../src/reconciler/reconciler.ts'
import { createMemoryDriver } from '../../src/wireguard/memory.ts'
import { generateWgKeyPair } from '../../src/wireguard/keys.ts'
import { makeNode, membershipFor, ranges } from './fixtures.ts'
import { formatStatus, type StatusReport } from '../../src/control/status.ts'

const overlay = [ranges.ipv6, ranges.ipv4]
const member = (peerId: string, since: number, routes: string[]): RouteMember => ({ peerId, name: `n-${peerId}`, since, routes })
const verdictsOf = (members: RouteMember[], opts = {}) =>
  resolveRoutes(members, { overlay, ...opts }).verdicts.map(v => `${v.peerId} ${v.cidr} ${v.accepted ? 'ok' : 'refused'}`).sort()

describe('route arithmetic', () => {
  it('canonical routes: network address only, lowercase, with the fix in the error', () => {
    expect(canonicalRoute('10.77.0.0/24')).toBe('10.77.0.0/24')
    expect(canonicalRoute('FD77:0077:0::/48')).toBe('fd77:77::/48')
    expect(() => canonicalRoute('10.77.0.1/24')).toThrow(/host bits set: the network is 10\.77\.0\.0\/24/)
    expect(() => canonicalRoute('10.77.0.0')).toThrow(/not a CIDR/)
    expect(() => canonicalRoute('10.77.0.0/33')).toThrow(/prefix length/)
    expect(() => canonicalRoute('fe80::%eth0/64')).toThrow()
  })

  it('overlap is containment either way, never across families', () => {
    expect(cidrsOverlap('10.0.0.0/8', '10.77.0.0/24')).toBe(true)
    expect(cidrsOverlap('10.77.0.0/24', '10.0.0.0/8')).toBe(true)
    expect(cidrsOverlap('10.77.0.0/25', '10.77.0.128/25')).toBe(false)
    expect(cidrsOverlap('10.77.0.0/24', '10.77.0.0/24')).toBe(true)
    expect(cidrsOverlap('::/0', '10.0.0.0/8')).toBe(false)
    expect(cidrContainsIp('10.77.0.0/24', '10.77.0.9')).toBe(true)
    expect(cidrContainsIp('10.77.0.0/24', '10.78.0.9')).toBe(false)
    expect(cidrContainsIp('fd77::/16', 'fd77::1')).toBe(true)
    expect(cidrContainsIp('fd77::/16', 'not-an-ip')).toBe(false)
  })

  it('refuses the overlay ranges and reserved ranges (which rules out default routes)', () => {
    expect(routeProblem('10.223.5.0/24', overlay)).toMatch(/IPv4 overlay range 10\.223\.0\.0\/16/)
    expect(routeProblem('10.0.0.0/8', overlay)).toMatch(/overlay/)
    expect(routeProblem(ranges.ipv6.cidr.replace('/64', '/48'), overlay)).toMatch(/IPv6 overlay/)
    expect(routeProblem('0.0.0.0/0', overlay)).toBeDefined()
    expect(routeProblem('::/0', overlay)).toBeDefined()
    expect(routeProblem('127.0.0.0/16', overlay)).toMatch(/loopback/)
    expect(routeProblem('fe80::/64', overlay)).toMatch(/link-local/)
    expect(routeProblem('224.1.0.0/16', overlay)).toMatch(/multicast/)
    expect(routeProblem('10.77.0.0/24', overlay)).toBeUndefined()
    expect(routeProblem('fd77::/48', overlay)).toBeUndefined()
  })
})

describe('resolveRoutes', () => {
  it('the senior member wins an overlap, whatever order the records arrive in', () => {
    const a = member('A', 2000, ['10.77.0.0/24'])
    const b = member('B', 1000, ['10.77.0.128/25', '10.88.0.0/16'])
    const c = member('C', 3000, ['10.77.0.0/16', '10.99.0.0/24'])
    const want = ['A 10.77.0.0/24 refused', 'B 10.77.0.128/25 ok', 'B 10.88.0.0/16 ok', 'C 10.77.0.0/16 refused', 'C 10.99.0.0/24 ok']
    expect(verdictsOf([a, b, c])).toEqual(want)
    expect(verdictsOf([c, b, a])).toEqual(want)
    expect(verdictsOf([b, c, a])).toEqual(want)
  })

  it('equal seniority goes to the lower peer id', () => {
    expect(verdictsOf([member('Z', 5, ['10.1.0.0/24']), member('Y', 5, ['10.1.0.0/24'])])).toEqual(['Y 10.1.0.0/24 ok', 'Z 10.1.0.0/24 refused'])
  })

  it('a refused route blocks nothing; a member\'s own overlaps go to the route listed first', () => {
    // B loses to A; C overlaps only B's refused route, so C stands.
    expect(verdictsOf([member('A', 1, ['10.1.0.0/24']), member('B', 2, ['10.1.0.0/16']), member('C', 3, ['10.1.128.0/24'])]))
      .toEqual(['A 10.1.0.0/24 ok', 'B 10.1.0.0/16 refused', 'C 10.1.128.0/24 ok'])
    const r = resolveRoutes([member('A', 1, ['10.1.0.0/16', '10.1.2.0/24'])], { overlay })
    expect(r.verdicts[1]).toMatchObject({ accepted: false, reason: 'overlaps 10.1.0.0/16, listed before it by the same member' })
  })

  it('says why, naming the winner', () => {
    const r = resolveRoutes([member('A', 1, ['10.77.0.0/24']), member('B', 2, ['10.77.0.128/25', '10.223.1.0/24'])], { overlay })
    expect(r.verdicts.find(v => v.cidr === '10.77.0.128/25')!.reason).toBe('overlaps 10.77.0.0/24 of n-A (A), a member that claimed its place earlier')
    expect(r.verdicts.find(v => v.cidr === '10.223.1.0/24')!.reason).toMatch(/overlay range/)
    expect(acceptedRoutes(r, 'A')).toEqual(['10.77.0.0/24'])
    expect(acceptedRoutes(r, 'B')).toEqual([])
  })

  it('local refusals apply to other members only and change nobody\'s verdict elsewhere', () => {
    const members = [member('A', 1, ['198.18.0.0/16']), member('B', 2, ['198.18.5.0/24']), member('ME', 3, ['10.5.0.0/24'])]
    const r = resolveRoutes(members, { overlay, self: 'ME', localProblem: cidr => cidr.startsWith('198.18.') || cidr.startsWith('10.5.') ? 'covers our underlay' : undefined })
    expect(r.verdicts.map(v => [v.peerId, v.accepted, v.local === true])).toEqual([['A', false, true], ['B', false, false], ['ME', true, false]])
    // B still lost to A (the mesh-wide decision), not to the local refusal
    expect(r.verdicts[1]!.reason).toMatch(/of n-A/)
  })
})

describe('localRouteProblem', () => {
  const check = localRouteProblem({
    ownAddresses: ['198.18.0.3', '2001:db8::3'],
    members: [{ peerId: 'A', endpoints: ['203.0.113.7:10042', '10.77.0.1:10042'] }, { peerId: 'B', endpoints: ['[2001:db8:5::9]:10042'] }],
    hasIpv4: true
  })
  it('refuses routes over our own underlay addresses and other members\' endpoints', () => {
    expect(check('198.18.0.0/16', 'A')).toBe('covers 198.18.0.3, an underlay address the tunnel itself uses')
    expect(check('2001:db8::/48', 'A')).toMatch(/covers 2001:db8::3/)
    expect(check('203.0.113.0/24', 'B')).toMatch(/covers 203\.0\.113\.7/)
    expect(check('2001:db8:5::/48', 'A')).toMatch(/covers 2001:db8:5::9/)
  })
  it('allows the announcer\'s own endpoints inside its subnet, and ordinary subnets', () => {
    expect(check('10.77.0.0/24', 'A')).toBeUndefined()
    expect(check('10.77.0.0/24', 'B')).toMatch(/covers 10\.77\.0\.1/)
    expect(check('fd77::/48', 'B')).toBeUndefined()
  })
  it('refuses IPv4 routes when this node has no IPv4 overlay address', () => {
    const v6only = localRouteProblem({ ownAddresses: [], members: [], hasIpv4: false })
    expect(v6only('10.77.0.0/24', 'A')).toMatch(/no IPv4 overlay address/)
    expect(v6only('fd77::/48', 'A')).toBeUndefined()
  })
})

describe('routeEvents', () => {
  it('logs a refusal once, on the announcing side and the receiving side, and a takeover', () => {
    const a = member('A', 1, ['10.77.0.0/24'])
    const b = member('B', 2, ['10.77.0.128/25'])
    const both = resolveRoutes([a, b], { overlay })
    const onB = routeEvents(undefined, both, 'B')
    expect(onB.map(e => [e.level, e.msg])).toEqual([
      ['info', 'route 10.77.0.0/24 via member n-A'],
      ['warn', 'our route 10.77.0.128/25 is refused: overlaps 10.77.0.0/24 of n-A (A), a member that claimed its place earlier']
    ])
    const onA = routeEvents(undefined, both, 'A')
    expect(onA.map(e => e.msg)).toEqual(['rejected route 10.77.0.128/25 of member n-B: overlaps 10.77.0.0/24 of n-A (A), a member that claimed its place earlier'])
    expect(onA[0]!.fields).toMatchObject({ route: '10.77.0.128/25', peer: 'B', name: 'n-B' })
    expect(routeEvents(both, resolveRoutes([b, a], { overlay }), 'A')).toEqual([]) // nothing changed
    const aGone = resolveRoutes([b], { overlay })
    expect(routeEvents(both, aGone, 'B').map(e => e.msg)).toEqual(['our route 10.77.0.128/25 is accepted now'])
    expect(routeEvents(both, aGone, 'C').map(e => e.msg)).toEqual(['route 10.77.0.128/25 via member n-B'])
  })
})

describe('routes in AllowedIPs and kernel routes', () => {
  it('desiredPeers appends a member\'s accepted routes after its overlay addresses', async () => {
    const [me, a, b] = await Promise.all([makeNode('me'), makeNode('a'), makeNode('b')])
    const table = membershipFor(me)
    table.accept(await a.sign({ routes: ['10.77.0.0/24', 'fd77::/48'] }))
    table.accept(await b.sign({ routes: ['10.77.0.128/25'] }))
    const members = table.members().map(e => e.record)
    const resolution = resolveRoutes(members.map(r => ({ peerId: r.peerId, name: r.name, since: r.peerId === a.peerId ? 1 : 2, routes: r.routes })), { overlay })
    const peers = desiredPeers({
      members,
      owners: { 4: table.owners(4), 6: table.owners(6) },
      connectedHost: () => undefined,
      persistentKeepalive: 25,
      routes: peerId => acceptedRoutes(resolution, peerId)
    })
    const byKey = new Map(peers.map(p => [p.publicKey, p.allowedIps]))
    expect(byKey.get(a.wgPublicKey)).toEqual([`${a.record().ipv4!.address}/32`, `${a.record().ipv6.address}/128`, '10.77.0.0/24', 'fd77::/48'])
    expect(byKey.get(b.wgPublicKey)).toEqual([`${b.record().ipv4!.address}/32`, `${b.record().ipv6.address}/128`])
  })

  it('membership rejects a record whose route is not a canonical network CIDR', async () => {
    const [me, a] = await Promise.all([makeNode('me'), makeNode('a')])
    const table = membershipFor(me)
    for (const route of ['10.77.0.1/24', 'FD77::/48', 'fd77:0::/48', '10.77.0.0', 'x']) {
      const r = table.accept(await a.sign({ routes: [route] }))
      expect(r, route).toMatchObject({ accepted: false, reason: 'malformed' })
    }
    // an overlap with the overlay is the route's problem, not the record's
    expect(table.accept(await a.sign({ routes: ['10.223.0.0/24'] })).accepted).toBe(true)
  })

  it('the reconciler installs routes through the interface, re-applies only on change, removes stale ones', async () => {
    const driver = createMemoryDriver()
    const { privateKey } = generateWgKeyPair()
    let routes = ['10.77.0.0/24', 'fd77::/48']
    const reconciler = createReconciler({
      driver,
      log: { debug: () => {}, info: () => {}, warn: () => {} },
      iface: () => ({ name: 'w2wrt0', privateKey, listenPort: 10042, mtu: 1420, addresses: ['fd00::1/64'] }),
      desired: () => [],
      routes: () => routes
    })
    try {
      driver.foreignRoutes.add('10.99.0.0/24')
      await reconciler.runNow()
      expect(driver.devices.get('w2wrt0')!.routes).toEqual(['10.77.0.0/24', 'fd77::/48'])
      await reconciler.runNow()
      expect(driver.calls.filter(c => c.op === 'setRoutes')).toHaveLength(1)
      routes = ['10.99.0.0/24', 'fd77::/48']
      await reconciler.runNow()
      expect(driver.calls.filter(c => c.op === 'setRoutes').at(-1)).toEqual({ op: 'setRoutes', name: 'w2wrt0', added: [], removed: ['10.77.0.0/24'], skipped: ['10.99.0.0/24'] })
      expect(driver.devices.get('w2wrt0')!.routes).toEqual(['fd77::/48'])
      expect(driver.foreignRoutes.has('10.99.0.0/24')).toBe(true)
    } finally {
      reconciler.stop()
    }
  })
})

describe('status', () => {
  it('lists every announced route with the member behind it, and why a refused one was refused', () => {
    const member = (name: string, routes: StatusReport['members'][number]['routes']): StatusReport['members'][number] => ({
      peerId: `12D3KooW${name}xxxxxxxx`, name, ipv6: 'fd00::2', ipv4: null, endpoint: null, handshakeAgeSeconds: 3, rxBytes: 0, txBytes: 0, connected: true, routes, recordAgeSeconds: 1, candidates: [], state: 'ok'
    })
    const report: StatusReport = {
      self: { peerId: '12D3KooWself', name: 'me', interface: 'wesh0', implementation: 'memory', wgPublicKey: 'k', wgPort: 10042, ipv6: 'fd00::1', ipv4: null, listen: [], routes: [{ cidr: 'fd77::/48', accepted: true, reason: null }] },
      members: [
        member('r2', [{ cidr: '10.77.0.0/24', accepted: true, reason: null }]),
        member('r3', [{ cidr: '10.77.0.128/25', accepted: false, reason: 'overlaps 10.77.0.0/24 of r2' }])
      ]
    }
    const text = formatStatus(report)
    expect(text).toContain('\nroutes\n  fd77::/48       via me (this node)\n  10.77.0.0/24    via r2\n  10.77.0.128/25  via r3  REFUSED: overlaps 10.77.0.0/24 of r2')
    expect(formatStatus({ self: { ...report.self, routes: [] }, members: [] })).not.toContain('routes')
  })
})
