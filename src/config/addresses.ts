import { isIPv4, isIPv6 } from 'node:net'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'

export const DEFAULT_PORT = 10042

/**
 * A bootstrap address as users write it: host:port, [v6]:port, dnsname:port, a bare host
 * (default port), or a multiaddr, each with or without /p2p/<id>.
 */
export function parseBootstrap (text: string): Multiaddr {
  const input = text.trim()
  if (input === '') throw new Error('empty address')
  if (input.startsWith('/')) {
    let ma: Multiaddr
    try { ma = multiaddr(input) } catch (err) { throw new Error(`"${input}" is not a valid multiaddr (${(err as Error).message})`) }
    const components = ma.getComponents()
    if (!components.some(c => c.name === 'tcp')) throw new Error(`"${input}" has no /tcp/ port; w2wesher dials over TCP`)
    const p2p = components.find(c => c.name === 'p2p')?.value
    if (p2p !== undefined) checkPeerId(p2p, input)
    return ma
  }
  const [hostPort, peer, ...rest] = input.split('/p2p/')
  if (rest.length > 0 || hostPort === undefined) throw new Error(`"${input}": more than one /p2p/ part`)
  if (peer !== undefined) checkPeerId(peer, input)
  const { host, port } = splitHostPort(hostPort, input)
  const proto = isIPv4(host) ? 'ip4' : isIPv6(host) ? 'ip6' : 'dns'
  if (proto === 'dns' && !/^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(host)) {
    throw new Error(`"${input}": "${host}" is neither an IP address nor a DNS name`)
  }
  return multiaddr(`/${proto}/${host}/tcp/${port}${peer !== undefined ? `/p2p/${peer}` : ''}`)
}

function splitHostPort (text: string, original: string): { host: string, port: number } {
  let host = text
  let portText: string | undefined
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text)
  if (bracketed !== null) {
    host = bracketed[1] as string
    portText = bracketed[2]
    if (!isIPv6(host)) throw new Error(`"${original}": "[${host}]" is not an IPv6 address`)
  } else if (isIPv6(text)) {
    host = text // a bare IPv6 address with no port
  } else if (text.includes(':')) {
    const at = text.lastIndexOf(':')
    host = text.slice(0, at)
    portText = text.slice(at + 1)
  }
  const port = portText === undefined ? DEFAULT_PORT : parsePort(portText, original)
  return { host, port }
}

export function parsePort (text: string | number, field: string): number {
  const n = typeof text === 'number' ? text : /^\d+$/.test(text) ? Number(text) : NaN
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`"${field}": port must be a number from 1 to 65535, got "${text}"`)
  return n
}

function checkPeerId (id: string, input: string): void {
  try { peerIdFromString(id) } catch { throw new Error(`"${input}": "${id}" is not a valid peer id`) }
}

/** --listen: a port (all IPv4 and IPv6 addresses) or a TCP multiaddr. */
export function parseListen (text: string | number): string[] {
  const input = String(text).trim()
  if (/^\d+$/.test(input)) {
    const port = parsePort(input, input)
    return [`/ip4/0.0.0.0/tcp/${port}`, `/ip6/::/tcp/${port}`]
  }
  let ma: Multiaddr
  try { ma = multiaddr(input) } catch { throw new Error(`"${input}" is neither a port nor a multiaddr (e.g. 10042 or /ip4/0.0.0.0/tcp/10042)`) }
  if (!ma.getComponents().some(c => c.name === 'tcp')) throw new Error(`"${input}" has no /tcp/ port`)
  return [ma.toString()]
}
