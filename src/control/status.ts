// The status report served on the control socket and printed by `w2wesher status`.
// `--json` prints exactly this shape; fields are only ever added, never renamed.

import type { RotationStatus } from '../p2p/rotator.ts'

export type MemberState = 'ok' | 'connecting' | 'no-direct-path' | 'stale'

/** One announced routed subnet and whether this node uses it. */
export interface RouteStatus {
  cidr: string
  /** false: refused (overlaps the overlay, a reserved range or an earlier member's route, or unusable here) */
  accepted: boolean
  reason: string | null
}

export interface StatusReport {
  self: {
    peerId: string
    name: string
    interface: string
    implementation: 'kernel' | 'userspace' | 'memory' | null
    wgPublicKey: string
    wgPort: number
    ipv6: string
    ipv4: string | null
    listen: string[]
    /** our own announced routes; refused ones say why */
    routes: RouteStatus[]
  }
  members: Array<{
    peerId: string
    name: string
    ipv6: string
    ipv4: string | null
    /** WireGuard's current endpoint for the member */
    endpoint: string | null
    /** seconds since the last WireGuard handshake; null = never */
    handshakeAgeSeconds: number | null
    rxBytes: number
    txBytes: number
    /** a libp2p connection to the member is open */
    connected: boolean
    /** routes the member announces; accepted ones are in its AllowedIPs and routed into the tunnel */
    routes: RouteStatus[]
    /** seconds since we last received the member's record */
    recordAgeSeconds: number
    /** the WireGuard endpoints tried for the member, in order (connection host, announce, observed, interfaces) */
    candidates: string[]
    /**
     * ok: handshake in the last 3 minutes; connecting: trying its candidate endpoints;
     * no-direct-path: every candidate tried without a handshake (still retrying);
     * stale: no record refresh for 3 periods plus the time a refresh takes to spread
     * (a minute per doubling of the mesh; `staleAfterSeconds`)
     */
    state: MemberState
  }>
  /** network keys by id (never the keys), the rotation in progress, revoked members */
  network?: RotationStatus & { revoked: Array<{ peerId: string, by: string, at: string }> }
}

export function formatStatus (report: StatusReport): string {
  const s = report.self
  const lines = [
    `node      ${s.name}  ${s.peerId}`,
    `overlay   ${[s.ipv6, s.ipv4].filter(Boolean).join('  ')}`,
    `wireguard ${s.interface} (${s.implementation ?? 'unknown'}) port ${s.wgPort}`,
    `listen    ${s.listen.join('  ') || '-'}`,
    ''
  ]
  const rows = report.members.map(m => [
    m.name || '-',
    `${m.peerId.slice(0, 6)}…${m.peerId.slice(-6)}`,
    [m.ipv6, m.ipv4].filter(Boolean).join(' '),
    m.endpoint ?? '-',
    m.handshakeAgeSeconds === null ? 'never' : `${m.handshakeAgeSeconds}s`,
    `${bytes(m.rxBytes)}/${bytes(m.txBytes)}`,
    m.connected ? 'yes' : 'no',
    `${m.recordAgeSeconds}s`,
    m.state
  ])
  const header = ['NAME', 'PEER', 'OVERLAY', 'ENDPOINT', 'HANDSHAKE', 'RX/TX', 'P2P', 'RECORD', 'STATE']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i]!.length)))
  const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  lines.push(fmt(header), ...rows.map(fmt))
  if (rows.length === 0) lines.push('(no members yet)')
  const routes = [
    ...(s.routes ?? []).map(r => ({ ...r, via: `${s.name} (this node)` })),
    ...report.members.flatMap(m => (m.routes ?? []).map(r => ({ ...r, via: m.name || m.peerId })))
  ]
  if (routes.length > 0) {
    const width = Math.max(...routes.map(r => r.cidr.length))
    lines.push('', 'routes')
    for (const r of routes) lines.push(`  ${r.cidr.padEnd(width)}  via ${r.via}${r.accepted ? '' : `  REFUSED: ${r.reason ?? ''}`}`)
  }
  const n = report.network
  if (n !== undefined) {
    lines.push('', `network key ${n.dialKey}${n.acceptKeys.length > 1 ? ` (also accepting ${n.acceptKeys.filter(k => k !== n.dialKey).join(', ')})` : ''}`)
    if (n.rotation !== null && n.rotation.phase !== 'done') lines.push(`rotation  ${n.rotation.id} ${n.rotation.phase}: ${n.rotation.oldKey} -> ${n.rotation.newKey}, old key refused from ${n.rotation.dropAt}, delivered ${n.rotation.delivered}/${n.rotation.recipients}`)
    if (n.revoked.length > 0) lines.push(`revoked   ${n.revoked.map(r => r.peerId).join('  ')}`)
  }
  return lines.join('\n')
}

function bytes (n: number): string {
  if (n < 1024) return `${n}B`
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)}K`
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)}M`
  return `${(n / 1024 ** 3).toFixed(1)}G`
}
