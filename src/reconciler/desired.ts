import type { WgPeerConfig, WgPeerState } from '../wireguard/driver.ts'
import type { Claim } from '../membership/ipam.ts'
import type { NodeRecord } from '../gossip/record.ts'
import type { DesiredPeer } from './endpoint-rotation.ts'
import { formatEndpoint, hostOf } from '../util/ip.ts'

export { formatEndpoint, hostOf }

// Desired WireGuard peers are a pure function of membership: no I/O here, so it is cheap to
// recompute on every change and easy to test.

export interface DesiredInput {
  members: NodeRecord[]
  /** address → winning claim, per family */
  owners: { 4: Map<string, Claim>, 6: Map<string, Claim> }
  /** the host our libp2p connection to that peer uses: the best endpoint guess */
  connectedHost: (peerId: string) => string | undefined
  persistentKeepalive: number
  /** the member's routed subnets that won (see membership/routes.ts); none when absent */
  routes?: (peerId: string) => string[]
}

export function desiredPeers (input: DesiredInput): DesiredPeer[] {
  return input.members.map(record => {
    const allowedIps: string[] = []
    const v4 = record.ipv4
    if (v4 !== undefined && input.owners[4].get(v4.address)?.peerId === record.peerId) allowedIps.push(`${v4.address}/32`)
    if (input.owners[6].get(record.ipv6.address)?.peerId === record.peerId) allowedIps.push(`${record.ipv6.address}/128`)
    // after the overlay addresses: the reconciler pokes allowedIps[0] to start a handshake
    allowedIps.push(...(input.routes?.(record.peerId) ?? []))
    const candidates = endpointCandidates(record, input.connectedHost(record.peerId))
    return {
      publicKey: record.wgPublicKey,
      endpoint: candidates[0],
      candidates,
      allowedIps,
      persistentKeepalive: input.persistentKeepalive
    }
  })
}

/**
 * The endpoints to try for a member, best first: the host our libp2p connection to it uses,
 * then the candidates its record lists (announce, observed, interface addresses). A connection
 * host the record no longer vouches for (the member roamed away; the old TCP connection has not
 * died yet) goes last instead of first.
 */
export function endpointCandidates (record: NodeRecord, connectedHost: string | undefined): string[] {
  const listed = record.endpoints
  if (connectedHost === undefined) return dedupe(listed)
  const viaConnection = formatEndpoint(connectedHost, record.wgPort)
  const vouched = listed.length === 0 || listed.some(e => hostOf(e) === connectedHost) ||
    record.addrs.some(a => a.split('/')[2] === connectedHost)
  return dedupe(vouched ? [viaConnection, ...listed] : [...listed, viaConnection])
}

function dedupe (list: string[]): string[] {
  return [...new Set(list)]
}

export interface PeerDiff {
  upserts: WgPeerConfig[]
  removals: string[]
}

/**
 * What must change so the device matches `desired`. A peer that is already right is not
 * touched at all, so its session and handshake survive. An undefined endpoint keeps whatever
 * the device has; whether a working (possibly roamed) endpoint stays is the rotation's call
 * (endpoint-rotation.ts), made before this.
 */
export function diffPeers (desired: WgPeerConfig[], actual: WgPeerState[]): PeerDiff {
  const current = new Map(actual.map(p => [p.publicKey, p]))
  const wanted = new Set(desired.map(p => p.publicKey))
  const upserts = desired.filter(want => {
    const have = current.get(want.publicKey)
    if (have === undefined) return true
    if (!sameSet(want.allowedIps, have.allowedIps)) return true
    if (want.persistentKeepalive !== have.persistentKeepalive) return true
    return want.endpoint !== undefined && want.endpoint !== have.endpoint
  })
  const removals = actual.filter(p => !wanted.has(p.publicKey)).map(p => p.publicKey)
  return { upserts, removals }
}

function sameSet (a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false
  const set = new Set(b)
  return a.every(x => set.has(x))
}
