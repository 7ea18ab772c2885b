import type { WgPeerConfig, WgPeerState } from '../wireguard/driver.ts'
import type { Claim } from '../membership/ipam.ts'
import type { NodeRecord } from '../gossip/record.ts'

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

export function desiredPeers (input: DesiredInput): WgPeerConfig[] {
  return input.members.map(record => {
    const allowedIps: string[] = []
    const v4 = record.ipv4
    if (v4 !== undefined && input.owners[4].get(v4.address)?.peerId === record.peerId) allowedIps.push(`${v4.address}/32`)
    if (input.owners[6].get(record.ipv6.address)?.peerId === record.peerId) allowedIps.push(`${record.ipv6.address}/128`)
    // after the overlay addresses: the reconciler pokes allowedIps[0] to start a handshake
    allowedIps.push(...(input.routes?.(record.peerId) ?? []))
    return {
      publicKey: record.wgPublicKey,
      endpoint: chooseEndpoint(record, input.connectedHost(record.peerId)),
      allowedIps,
      persistentKeepalive: input.persistentKeepalive
    }
  })
}

/** Prefer the address our libp2p connection uses; else the record's first candidate. */
export function chooseEndpoint (record: NodeRecord, connectedHost: string | undefined): string | undefined {
  if (connectedHost !== undefined) return formatEndpoint(connectedHost, record.wgPort)
  return record.endpoints[0]
}

export function formatEndpoint (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

export interface PeerDiff {
  upserts: WgPeerConfig[]
  removals: string[]
}

/** A handshake this recent means the current endpoint works (WireGuard roams by itself). */
const WORKING_HANDSHAKE_SECONDS = 180

/**
 * What must change so the device matches `desired`. A peer that is already right is not
 * touched at all, so its session and handshake survive.
 */
export function diffPeers (desired: WgPeerConfig[], actual: WgPeerState[], nowSeconds: number): PeerDiff {
  const current = new Map(actual.map(p => [p.publicKey, p]))
  const wanted = new Set(desired.map(p => p.publicKey))
  const upserts = desired.filter(want => {
    const have = current.get(want.publicKey)
    if (have === undefined) return true
    if (!sameSet(want.allowedIps, have.allowedIps)) return true
    if (want.persistentKeepalive !== have.persistentKeepalive) return true
    return !endpointAcceptable(want, have, nowSeconds)
  })
  const removals = actual.filter(p => !wanted.has(p.publicKey)).map(p => p.publicKey)
  return { upserts, removals }
}

function endpointAcceptable (want: WgPeerConfig, have: WgPeerState, nowSeconds: number): boolean {
  if (want.endpoint === undefined || want.endpoint === have.endpoint) return true
  return have.endpoint !== undefined && have.latestHandshake > 0 && nowSeconds - have.latestHandshake < WORKING_HANDSHAKE_SECONDS
}

function sameSet (a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false
  const set = new Set(b)
  return a.every(x => set.has(x))
}
