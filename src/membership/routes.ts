import { bigIntToIp, parseCidr, prefixMask, type Family, type OverlayRange } from './ipam.ts'
import { hostOf, ipToBigInt } from '../util/ip.ts'

// Routed subnets: a member announces CIDRs that live behind it; every other member adds the
// ones that win to that member's AllowedIPs and routes them into the tunnel. Which announcement
// wins is decided from records alone, so every node that holds the same records agrees:
// - a route may not overlap the overlay ranges or a reserved range (loopback, link-local,
//   multicast; this also rules out default routes);
// - of two overlapping routes the member that has been in the mesh longer wins (earlier claim
//   of its IPv6 overlay address, a value every node sees in the record), ties go to the lower
//   peer id; within one member, the route listed first. A refused route blocks nothing.
// On top of that, each node refuses locally (without affecting anybody's decision) a route it
// cannot use: one covering its own underlay addresses or another member's WireGuard endpoint
// (it would route the tunnel into itself), or an IPv4 route when it has no IPv4 overlay address
// (replies would come from an address the announcer's WireGuard does not accept).

/** At most this many routes per node: keeps the record well under its 4 KiB limit. */
export const MAX_ROUTES = 32

const RESERVED: Array<[string, string]> = [
  ['0.0.0.0/8', 'this-network'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['224.0.0.0/4', 'multicast'],
  ['::1/128', 'loopback'],
  ['fe80::/10', 'link-local'],
  ['ff00::/8', 'multicast']
]

interface Net { family: Family, network: bigint, prefixLength: number }

function net (cidr: string): Net {
  const { family, address, prefixLength } = parseCidr(cidr)
  return { family, network: address & prefixMask(family, prefixLength), prefixLength }
}

/** A route in canonical form (the network address, lowercase IPv6); throws naming the problem. */
export function canonicalRoute (text: string): string {
  const { family, address, prefixLength } = parseCidr(text)
  const network = address & prefixMask(family, prefixLength)
  const canonical = `${bigIntToIp(network, family)}/${prefixLength}`
  if (network !== address) throw new Error(`"${text}" has host bits set: the network is ${canonical}`)
  return canonical
}

/** Two CIDRs overlap when one contains the other. */
export function cidrsOverlap (a: string, b: string): boolean {
  const x = net(a)
  const y = net(b)
  if (x.family !== y.family) return false
  const m = prefixMask(x.family, Math.min(x.prefixLength, y.prefixLength))
  return (x.network & m) === (y.network & m)
}

/** Whether a CIDR contains an IP address. */
export function cidrContainsIp (cidr: string, ip: string): boolean {
  const n = net(cidr)
  const family = ip.includes(':') ? 6 : 4
  if (family !== n.family) return false
  try {
    return (ipToBigInt(ip) & prefixMask(n.family, n.prefixLength)) === n.network
  } catch {
    return false
  }
}

/** Why a route may not be used anywhere in this mesh (overlay or reserved overlap), or undefined. */
export function routeProblem (cidr: string, overlay: OverlayRange[]): string | undefined {
  for (const range of overlay) {
    if (cidrsOverlap(cidr, range.cidr)) return `overlaps the IPv${range.family} overlay range ${range.cidr}`
  }
  for (const [reserved, what] of RESERVED) {
    if (cidrsOverlap(cidr, reserved)) return `overlaps the ${what} range ${reserved}`
  }
  return undefined
}

export interface RouteMember {
  peerId: string
  name: string
  /** seniority: when the member first claimed its IPv6 overlay address (ms, its own clock) */
  since: number
  routes: string[]
}

export interface RouteVerdict {
  peerId: string
  name: string
  cidr: string
  accepted: boolean
  /** why it was refused */
  reason?: string
  /** refused by this node only (it cannot use the route), not by the mesh-wide rules */
  local?: boolean
}

export interface RouteResolution {
  /** every announced route of every member, in a stable order */
  verdicts: RouteVerdict[]
}

export interface ResolveOptions {
  overlay: OverlayRange[]
  /** peer id of this node: its own routes are judged but never refused locally */
  self?: string
  /** a node-local reason not to use another member's route (see the top of this file) */
  localProblem?: (cidr: string, peerId: string) => string | undefined
}

const seniorFirst = (a: RouteMember, b: RouteMember): number =>
  a.since !== b.since ? a.since - b.since : a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0

/** Decide every member's routes; the same input (in any order) gives the same verdicts. */
export function resolveRoutes (members: RouteMember[], opts: ResolveOptions): RouteResolution {
  const verdicts: RouteVerdict[] = []
  const winners: RouteVerdict[] = []
  for (const member of [...members].sort(seniorFirst)) {
    for (const cidr of member.routes) {
      const verdict: RouteVerdict = { peerId: member.peerId, name: member.name, cidr, accepted: false }
      verdicts.push(verdict)
      let reason: string | undefined
      try {
        reason = routeProblem(cidr, opts.overlay)
      } catch (err) {
        reason = (err as Error).message
      }
      if (reason === undefined) {
        const rival = winners.find(w => cidrsOverlap(w.cidr, cidr))
        if (rival !== undefined) {
          reason = rival.peerId === member.peerId
            ? `overlaps ${rival.cidr}, listed before it by the same member`
            : `overlaps ${rival.cidr} of ${rival.name || '(unnamed)'} (${rival.peerId}), a member that claimed its place earlier`
        }
      }
      if (reason !== undefined) { verdict.reason = reason; continue }
      verdict.accepted = true
      winners.push(verdict)
    }
  }
  // Local refusals come last: they never change which announcement wins.
  for (const v of verdicts) {
    if (!v.accepted || v.peerId === opts.self || opts.localProblem === undefined) continue
    const reason = opts.localProblem(v.cidr, v.peerId)
    if (reason !== undefined) Object.assign(v, { accepted: false, reason, local: true })
  }
  return { verdicts }
}

export interface LocalRouteContext {
  /** this node's own underlay (non-overlay) addresses */
  ownAddresses: string[]
  /** every other member's candidate WireGuard endpoints ("IP:PORT", "[IPv6]:PORT") */
  members: Array<{ peerId: string, endpoints: string[] }>
  /** this node has an IPv4 overlay address to send from */
  hasIpv4: boolean
}

/** The node-local refusals described at the top of this file, as a ResolveOptions.localProblem. */
export function localRouteProblem (ctx: LocalRouteContext): (cidr: string, peerId: string) => string | undefined {
  return (cidr, peerId) => {
    if (!cidr.includes(':') && !ctx.hasIpv4) return 'this node has no IPv4 overlay address to send from (set overlayIpv4)'
    // the announcer's own endpoints may well sit inside its subnet; nobody else's may
    const endpoints = ctx.members.filter(m => m.peerId !== peerId).flatMap(m => m.endpoints.map(hostOf))
    const hit = [...ctx.ownAddresses, ...endpoints].find(ip => cidrContainsIp(cidr, ip))
    return hit === undefined ? undefined : `covers ${hit}, an underlay address the tunnel itself uses`
  }
}

/** The routes this node should send to `peerId` (its AllowedIPs beyond the overlay addresses). */
export function acceptedRoutes (resolution: RouteResolution, peerId: string): string[] {
  return resolution.verdicts.filter(v => v.accepted && v.peerId === peerId).map(v => v.cidr)
}

export interface RouteEvent {
  level: 'info' | 'warn'
  msg: string
  fields: Record<string, unknown>
}

/**
 * What to log when the verdicts change: every newly refused route (our own: "refused", another
 * member's: "rejected", naming the member and why), and every route that starts being used.
 */
export function routeEvents (prev: RouteResolution | undefined, next: RouteResolution, self: string): RouteEvent[] {
  const key = (v: RouteVerdict): string => `${v.peerId} ${v.cidr}`
  const before = new Map(prev?.verdicts.map(v => [key(v), v]))
  const events: RouteEvent[] = []
  for (const v of next.verdicts) {
    const old = before.get(key(v))
    if (old !== undefined && old.accepted === v.accepted && old.reason === v.reason) continue
    const mine = v.peerId === self
    if (!v.accepted) {
      events.push(mine
        ? { level: 'warn', msg: `our route ${v.cidr} is refused: ${v.reason ?? ''}`, fields: { route: v.cidr, reason: v.reason } }
        : { level: 'warn', msg: `rejected route ${v.cidr} of member ${v.name || v.peerId}: ${v.reason ?? ''}`, fields: { route: v.cidr, peer: v.peerId, name: v.name, reason: v.reason, local: v.local === true } })
    } else if (!mine) {
      events.push({ level: 'info', msg: `route ${v.cidr} via member ${v.name || v.peerId}`, fields: { route: v.cidr, peer: v.peerId, name: v.name } })
    } else if (old !== undefined) {
      events.push({ level: 'info', msg: `our route ${v.cidr} is accepted now`, fields: { route: v.cidr } })
    }
  }
  return events
}
