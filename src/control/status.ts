// The status report served on the control socket and printed by `w2wesher status`.
// `--json` prints exactly this shape; fields are only ever added, never renamed.

export type MemberState = 'ok' | 'connecting' | 'no-direct-path' | 'stale'

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
    /** seconds since we last received the member's record */
    recordAgeSeconds: number
    /** the WireGuard endpoints tried for the member, in order (connection host, announce, observed, interfaces) */
    candidates: string[]
    /**
     * ok: handshake in the last 3 minutes; connecting: trying its candidate endpoints;
     * no-direct-path: every candidate tried without a handshake (still retrying);
     * stale: no record refresh for 3 periods
     */
    state: MemberState
  }>
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
  return lines.join('\n')
}

function bytes (n: number): string {
  if (n < 1024) return `${n}B`
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)}K`
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)}M`
  return `${(n / 1024 ** 3).toFixed(1)}G`
}
