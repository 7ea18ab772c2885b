// Pure helpers for the WireGuard drivers: parsing `wg show dump` and `ip -json` output,
// normalising addresses the way `wg` prints them, validating configs and building the
// `wg set` argv. Nothing here runs a command, so all of it is unit-tested without root.
import type { WgInterfaceConfig, WgPeerConfig, WgPeerState } from './driver.ts'
import { isWgKey } from './keys.ts'
import { formatIp, parseIp, type ParsedIp } from '../util/ip.ts'

export { normaliseIp } from '../util/ip.ts'

interface ParsedCidr extends ParsedIp { prefix: number }

function parseCidr(s: string, what: string, prefixRequired: boolean): ParsedCidr {
  const t = s.trim()
  const slash = t.indexOf('/')
  const addr = slash === -1 ? t : t.slice(0, slash)
  const ip = parseIp(addr)
  if (ip === undefined) throw new Error(`invalid ${what} "${s}": not an IP address`)
  const max = ip.family === 4 ? 32 : 128
  if (slash === -1) {
    if (prefixRequired) throw new Error(`invalid ${what} "${s}": missing /prefix length`)
    return { ...ip, prefix: max }
  }
  const p = t.slice(slash + 1)
  if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > max) {
    throw new Error(`invalid ${what} "${s}": prefix length must be 0-${max}`)
  }
  return { ...ip, prefix: Number(p) }
}

function maskHostBits(ip: ParsedCidr): ParsedCidr {
  const bytes = new Uint8Array(ip.bytes)
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, ip.prefix - 8 * i))
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff)
  }
  return { ...ip, bytes }
}

/**
 * An allowed-IP as `wg` prints it: host bits cleared (WireGuard clears them too),
 * "/32" or "/128" added when missing, IPv6 compressed lowercase.
 */
export function normaliseCidr(s: string): string {
  const c = maskHostBits(parseCidr(s, 'allowed IP', false))
  return `${formatIp(c)}/${c.prefix}`
}

/** An interface address "addr/len" as `ip` prints it; host bits are kept (it is an address). */
export function normaliseInterfaceAddress(s: string): string {
  const c = parseCidr(s, 'interface address', true)
  return `${formatIp(c)}/${c.prefix}`
}

/** Order: IPv4 before IPv6, then by address bytes, then by prefix length. */
export function compareCidr(a: string, b: string): number {
  const pa = parseCidr(a, 'CIDR', false)
  const pb = parseCidr(b, 'CIDR', false)
  if (pa.family !== pb.family) return pa.family - pb.family
  for (let i = 0; i < pa.bytes.length; i++) {
    const d = pa.bytes[i]! - pb.bytes[i]!
    if (d !== 0) return d
  }
  return pa.prefix - pb.prefix
}

/** Normalise, de-duplicate and sort a list of allowed IPs. Equal sets give equal arrays. */
export function normaliseAllowedIps(list: readonly string[]): string[] {
  return [...new Set(list.map(normaliseCidr))].sort(compareCidr)
}

/** Normalise, de-duplicate and sort interface addresses. */
export function normaliseInterfaceAddresses(list: readonly string[]): string[] {
  return [...new Set(list.map(normaliseInterfaceAddress))].sort(compareCidr)
}

/** fe80::/10: the kernel manages these; we neither report nor remove them. */
export function isIpv6LinkLocal(addr: string): boolean {
  const ip = parseIp(addr.split('/')[0]!)
  return ip !== undefined && ip.family === 6 && ip.bytes[0] === 0xfe && (ip.bytes[1]! & 0xc0) === 0x80
}

/**
 * An endpoint as `wg` prints it: "1.2.3.4:10042", "[fd00::1]:10042" (zone kept as given).
 * A hostname ("vpn.example.org:10042") is passed through unchanged: wg resolves it.
 */
export function normaliseEndpoint(s: string): string {
  const t = s.trim()
  let host: string
  let port: string
  if (t.startsWith('[')) {
    const close = t.indexOf(']')
    if (close === -1 || t[close + 1] !== ':') throw new Error(`invalid endpoint "${s}": expected "[IPv6]:port"`)
    host = t.slice(1, close)
    port = t.slice(close + 2)
  } else {
    const colon = t.lastIndexOf(':')
    if (colon === -1) throw new Error(`invalid endpoint "${s}": missing ":port"`)
    host = t.slice(0, colon)
    port = t.slice(colon + 1)
    if (host.includes(':')) throw new Error(`invalid endpoint "${s}": write IPv6 endpoints as "[addr]:port"`)
  }
  if (!/^[1-9][0-9]{0,4}$/.test(port) || Number(port) > 65535) {
    throw new Error(`invalid endpoint "${s}": port must be 1-65535`)
  }
  if (t.startsWith('[')) {
    const pct = host.indexOf('%')
    const addr = pct === -1 ? host : host.slice(0, pct)
    const zone = pct === -1 ? '' : host.slice(pct)
    const ip = parseIp(addr)
    if (ip === undefined || ip.family !== 6) throw new Error(`invalid endpoint "${s}": not an IPv6 address`)
    return `[${formatIp(ip)}${zone}]:${port}`
  }
  const ip = parseIp(host)
  if (ip !== undefined) return `${formatIp(ip)}:${port}`
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) throw new Error(`invalid endpoint "${s}": bad host`)
  return `${host}:${port}`
}

// ---------------------------------------------------------------------------------------
// `wg show IF dump`

export interface WgDump {
  /** undefined when the device has no private key ("(none)") */
  privateKey?: string
  /** '' when the device has no key */
  publicKey: string
  listenPort: number
  /** 0 = off */
  fwmark: number
  peers: WgPeerState[]
}

const unset = (v: string): boolean => v === '(none)' || v === 'off' || v === ''

function intField(v: string, field: string, line: number): number {
  if (unset(v)) return 0
  // fwmark is printed in hex ("0x..."), everything else decimal.
  const n = v.startsWith('0x') ? parseInt(v, 16) : Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`wg dump line ${line}: bad ${field} "${v}"`)
  return n
}

/**
 * Parse `wg show IF dump`. Line 1: private-key public-key listen-port fwmark.
 * Then one line per peer: public-key preshared-key endpoint allowed-ips latest-handshake
 * transfer-rx transfer-tx persistent-keepalive. Tab separated; "(none)"/"off" mean unset.
 */
export function parseWgDump(text: string): WgDump {
  const lines = text.split('\n').filter((l) => l.trim() !== '')
  const first = lines[0]
  if (first === undefined) throw new Error('wg dump is empty')
  const f = first.split('\t')
  if (f.length !== 4) throw new Error(`wg dump line 1: expected 4 fields, got ${f.length}`)
  const dump: WgDump = {
    publicKey: unset(f[1]!) ? '' : f[1]!,
    listenPort: intField(f[2]!, 'listen-port', 1),
    fwmark: intField(f[3]!, 'fwmark', 1),
    peers: []
  }
  if (!unset(f[0]!)) dump.privateKey = f[0]!
  for (let i = 1; i < lines.length; i++) {
    const p = lines[i]!.split('\t')
    const n = i + 1
    if (p.length !== 8) throw new Error(`wg dump line ${n}: expected 8 fields, got ${p.length}`)
    const [pub, , endpoint, allowed, hs, rx, tx, ka] = p as [string, string, string, string, string, string, string, string]
    if (!isWgKey(pub)) throw new Error(`wg dump line ${n}: bad public key`)
    const peer: WgPeerState = {
      publicKey: pub,
      allowedIps: unset(allowed) ? [] : normaliseAllowedIps(allowed.split(',')),
      persistentKeepalive: intField(ka, 'persistent-keepalive', n),
      latestHandshake: intField(hs, 'latest-handshake', n),
      rxBytes: intField(rx, 'transfer-rx', n),
      txBytes: intField(tx, 'transfer-tx', n)
    }
    if (!unset(endpoint)) peer.endpoint = normaliseEndpoint(endpoint)
    dump.peers.push(peer)
  }
  return dump
}

// ---------------------------------------------------------------------------------------
// `ip -json -d addr show dev IF`

export interface IpLinkInfo {
  name: string
  mtu: number
  up: boolean
  /** linkinfo.info_kind: 'wireguard' (kernel), 'tun' (wireguard-go), other, or '' when not shown */
  kind: string
  /** normalised "addr/len", sorted, link-local fe80::/10 left out */
  addresses: string[]
}

interface IpJsonAddr { family?: string, local?: string, prefixlen?: number }
interface IpJsonLink {
  ifname?: string
  mtu?: number
  flags?: string[]
  linkinfo?: { info_kind?: string }
  addr_info?: IpJsonAddr[]
}

/** Parse `ip -json [-d] addr show dev IF` (or `link show`: then addresses is empty). */
export function parseIpJson(text: string): IpLinkInfo {
  let arr: unknown
  try {
    arr = JSON.parse(text)
  } catch {
    throw new Error('ip -json printed invalid JSON')
  }
  if (!Array.isArray(arr) || arr.length !== 1) throw new Error('ip -json: expected exactly one link')
  const l = arr[0] as IpJsonLink
  if (typeof l.ifname !== 'string' || typeof l.mtu !== 'number') throw new Error('ip -json: link without ifname/mtu')
  const addresses: string[] = []
  for (const a of l.addr_info ?? []) {
    if ((a.family !== 'inet' && a.family !== 'inet6') || typeof a.local !== 'string' || typeof a.prefixlen !== 'number') continue
    if (isIpv6LinkLocal(a.local)) continue
    addresses.push(`${a.local}/${a.prefixlen}`)
  }
  return {
    name: l.ifname,
    mtu: l.mtu,
    up: (l.flags ?? []).includes('UP'),
    kind: l.linkinfo?.info_kind ?? '',
    addresses: normaliseInterfaceAddresses(addresses)
  }
}

// ---------------------------------------------------------------------------------------
// Validation and `wg set` argv

/** Linux interface names: 1-15 bytes, no '/', ':', whitespace; not "." or "..". */
export function validateInterfaceName(name: string): void {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.=+-]{1,15}$/.test(name) || name === '.' || name === '..') {
    throw new Error(`invalid interface name "${name}": 1-15 characters of A-Z a-z 0-9 _ . - = +`)
  }
}

/** Validate and normalise an interface config (addresses normalised and sorted). Never echoes the key. */
export function normaliseInterfaceConfig(cfg: WgInterfaceConfig): WgInterfaceConfig {
  validateInterfaceName(cfg.name)
  if (!isWgKey(cfg.privateKey)) throw new Error(`interface ${cfg.name}: invalid private key (expected base64 of 32 bytes)`)
  if (!Number.isInteger(cfg.listenPort) || cfg.listenPort < 0 || cfg.listenPort > 65535) {
    throw new Error(`interface ${cfg.name}: listen port ${cfg.listenPort} is not 0-65535`)
  }
  if (!Number.isInteger(cfg.mtu) || cfg.mtu < 68 || cfg.mtu > 65535) {
    throw new Error(`interface ${cfg.name}: MTU ${cfg.mtu} is not 68-65535`)
  }
  return { ...cfg, addresses: normaliseInterfaceAddresses(cfg.addresses) }
}

/**
 * Validate a setPeers batch and return it normalised (allowed IPs sorted, endpoints in
 * wg's form). Throws on a bad key, a duplicate, or a key that is both upserted and removed.
 */
export function normalisePeerBatch(
  upserts: readonly WgPeerConfig[],
  removals: readonly string[]
): { upserts: WgPeerConfig[], removals: string[] } {
  const seen = new Set<string>()
  const out: WgPeerConfig[] = []
  for (const p of upserts) {
    if (!isWgKey(p.publicKey)) throw new Error(`peer "${p.publicKey}": invalid public key (expected base64 of 32 bytes)`)
    if (seen.has(p.publicKey)) throw new Error(`peer ${p.publicKey}: listed twice in one batch`)
    seen.add(p.publicKey)
    if (!Number.isInteger(p.persistentKeepalive) || p.persistentKeepalive < 0 || p.persistentKeepalive > 65535) {
      throw new Error(`peer ${p.publicKey}: persistent keepalive ${p.persistentKeepalive} is not 0-65535`)
    }
    const q: WgPeerConfig = {
      publicKey: p.publicKey,
      allowedIps: normaliseAllowedIps(p.allowedIps),
      persistentKeepalive: p.persistentKeepalive
    }
    if (p.endpoint !== undefined) q.endpoint = normaliseEndpoint(p.endpoint)
    out.push(q)
  }
  const rm = [...new Set(removals)]
  for (const k of rm) {
    if (!isWgKey(k)) throw new Error(`peer "${k}": invalid public key to remove`)
    if (seen.has(k)) throw new Error(`peer ${k}: both updated and removed in one batch`)
  }
  return { upserts: out, removals: rm }
}

/**
 * argv (without the leading "wg") for one `wg set` that applies the whole batch, or
 * undefined when there is nothing to do. allowed-ips is always given in full (wg replaces
 * the list); an undefined endpoint is omitted (left as is); keepalive 0 is "off".
 * Inputs are validated and normalised first.
 */
export function buildWgSetArgv(name: string, upserts: readonly WgPeerConfig[], removals: readonly string[]): string[] | undefined {
  validateInterfaceName(name)
  const b = normalisePeerBatch(upserts, removals)
  if (b.upserts.length === 0 && b.removals.length === 0) return undefined
  const argv = ['set', name]
  for (const p of b.upserts) {
    argv.push('peer', p.publicKey)
    if (p.endpoint !== undefined) argv.push('endpoint', p.endpoint)
    argv.push('allowed-ips', p.allowedIps.join(','))
    argv.push('persistent-keepalive', p.persistentKeepalive === 0 ? 'off' : String(p.persistentKeepalive))
  }
  for (const k of b.removals) argv.push('peer', k, 'remove')
  return argv
}

/** True when `address` (an IP, optionally with /len, which is ignored) lies inside `cidr`. */
export function cidrContains(cidr: string, address: string): boolean {
  const c = parseCidr(cidr, 'CIDR', false)
  const ip = parseIp(address.split('/')[0]!.trim())
  if (ip === undefined || ip.family !== c.family) return false
  const masked = maskHostBits({ ...ip, prefix: c.prefix })
  const net = maskHostBits(c)
  return masked.bytes.every((b, i) => b === net.bytes[i])
}
