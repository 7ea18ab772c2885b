import { isIPv4, isIPv6 } from 'node:net'

// The metrics endpoint address. Kept apart from the prom-client code so config validation
// does not load prom-client when metrics are off.

export interface ListenAddress {
  host: string
  port: number
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/** Parse `host:port` or `[v6]:port`. A host is required: binding every address must be a choice. */
export function parseListenAddress (text: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim())
  if (m === null) throw new Error('must be host:port or [ipv6]:port, e.g. 127.0.0.1:9586')
  const host = m[1] ?? m[2]!
  const port = Number(m[3])
  if (port < 1 || port > 65535) throw new Error('port must be 1-65535')
  if (m[1] !== undefined && !isIPv6(host)) throw new Error(`"${host}" is not an IPv6 address`)
  if (m[2] !== undefined && !isIPv4(host) && !HOSTNAME.test(host)) throw new Error(`"${host}" is not an IPv4 address or host name`)
  return { host, port }
}

export function formatListenAddress (a: ListenAddress): string {
  return isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}
