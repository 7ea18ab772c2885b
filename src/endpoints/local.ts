import { networkInterfaces } from 'node:os'
import { formatEndpoint, normaliseIp, parseIp, unmapIpv4 } from '../util/ip.ts'
import { parsePort } from '../config/addresses.ts'

// Our own candidate WireGuard endpoints, as our record lists them (the others try them in this
// order after the address their libp2p connection to us uses):
//   1. configured `announce` addresses: what the operator knows (a cloud VM's 1:1 NAT address);
//   2. addresses other members observed us at (identify): a NAT's public address, which
//      masquerade usually pairs with our WireGuard port unchanged;
//   3. our interface addresses.

export const MAX_ENDPOINTS = 16
/** observed addresses kept at most (newest first): a few NATs or uplinks, not one per member */
const MAX_OBSERVED = 4

export interface AnnounceAddress {
  host: string
  /** absent: our WireGuard port */
  port?: number
}

/** `announce` entry: IP, IP:port, [IPv6]:port or a bare IPv6 address. No DNS names: records carry literals. */
export function parseAnnounce (text: string): AnnounceAddress {
  const input = text.trim()
  let host = input
  let port: number | undefined
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(input)
  if (bracketed !== null) {
    host = bracketed[1] as string
    if (bracketed[2] !== undefined) port = parsePort(bracketed[2], input)
  } else if (!input.includes(':') || input.indexOf(':') !== input.lastIndexOf(':')) {
    host = input // IPv4 without port, or a bare IPv6 address
  } else {
    host = input.slice(0, input.indexOf(':'))
    port = parsePort(input.slice(input.indexOf(':') + 1), input)
  }
  const ip = parseIp(host)
  if (ip === undefined) throw new Error(`"${input}" is not an IP address, IP:port or [IPv6]:port (names are not resolved)`)
  if (!routable(normaliseIp(host))) throw new Error(`"${input}" is a loopback, link-local or unspecified address`)
  return { host: normaliseIp(host), ...(port !== undefined ? { port } : {}) }
}

export interface LocalCandidatesInput {
  wgPort: number
  announce: AnnounceAddress[]
  /** IPs other members saw our connections come from, newest first */
  observed: string[]
  /** our interface IPs */
  interfaces: string[]
  isOverlayAddress: (ip: string) => boolean
}

/** The endpoints our record lists, best first, without duplicates. */
export function localCandidates (input: LocalCandidatesInput): string[] {
  const out: string[] = []
  const add = (host: string, port: number): void => {
    const ip = unmapIpv4(host) ?? host
    if (!routable(ip) || input.isOverlayAddress(ip)) return
    const endpoint = formatEndpoint(ip, port)
    if (!out.includes(endpoint)) out.push(endpoint)
  }
  for (const a of input.announce) add(a.host, a.port ?? input.wgPort)
  for (const ip of input.observed) add(ip, input.wgPort)
  for (const ip of input.interfaces) add(ip, input.wgPort)
  return out.slice(0, MAX_ENDPOINTS)
}

/** Non-internal interface addresses (canonical text), in the order the OS lists them. */
export function interfaceAddresses (): string[] {
  const out: string[] = []
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal || a.address.includes('%')) continue
      const ip = normaliseIp(a.address)
      if (routable(ip)) out.push(ip)
    }
  }
  return out
}

/**
 * What members observed us at (identify), one entry per member connection. Entries for
 * addresses that are or were our own interface addresses add nothing (and after roaming
 * they are stale), so only the others (a NAT's public side) are listed.
 */
export class ObservedAddresses {
  private readonly byPeer = new Map<string, { ip: string, at: number }>()
  private readonly ownEver = new Set<string>()

  set (peerId: string, ip: string, at = Date.now()): void {
    this.byPeer.set(peerId, { ip: unmapIpv4(ip) ?? ip, at })
  }

  delete (peerId: string): void {
    this.byPeer.delete(peerId)
  }

  /** Note our current interface addresses (ours now, or once: never listed as observed). */
  noteInterfaces (ips: string[]): void {
    for (const ip of ips) this.ownEver.add(ip)
  }

  /** Distinct observed IPs, newest first. */
  list (): string[] {
    const entries = [...this.byPeer.values()].filter(e => !this.ownEver.has(e.ip)).sort((a, b) => b.at - a.at)
    return [...new Set(entries.map(e => e.ip))].slice(0, MAX_OBSERVED)
  }
}

function routable (ip: string): boolean {
  const lower = ip.toLowerCase()
  if (lower === '::' || lower === '::1' || lower.startsWith('fe80:') || lower.startsWith('ff')) return false
  return !(ip === '0.0.0.0' || ip.startsWith('127.') || ip.startsWith('169.254.') || /^(22[4-9]|23\d|24\d|25[0-5])\./.test(ip))
}
