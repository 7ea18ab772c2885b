// IP literals: the one parser the daemon uses, and an inet_ntop-style formatter (what `wg`
// and `ip` print, so what the driver reads back compares equal to what it wrote).

export interface ParsedIp {
  family: 4 | 6
  /** 4 or 16 bytes, network order */
  bytes: Uint8Array
}

/** Parse an IPv4 or IPv6 literal (no zone, no brackets, no prefix); undefined if invalid. */
export function parseIp(s: string): ParsedIp | undefined {
  if (s.includes(':')) {
    const bytes = parseIpv6(s)
    return bytes === undefined ? undefined : { family: 6, bytes }
  }
  const bytes = parseIpv4(s)
  return bytes === undefined ? undefined : { family: 4, bytes }
}

function parseIpv4(s: string): Uint8Array | undefined {
  const parts = s.split('.')
  if (parts.length !== 4) return undefined
  const out = new Uint8Array(4)
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!
    // inet_pton rejects leading zeros (they would read as octal elsewhere): so do we.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined
    const n = Number(p)
    if (n > 255) return undefined
    out[i] = n
  }
  return out
}

function parseIpv6(s: string): Uint8Array | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(s)) return undefined
  const dbl = s.indexOf('::')
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return undefined
  const words: number[] = []
  const parseSide = (side: string, allowV4Tail: boolean): number[] | undefined => {
    if (side === '') return []
    const groups = side.split(':')
    const out: number[] = []
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!
      if (g.includes('.')) {
        if (!allowV4Tail || i !== groups.length - 1) return undefined
        const v4 = parseIpv4(g)
        if (v4 === undefined) return undefined
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
        continue
      }
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return undefined
      out.push(parseInt(g, 16))
    }
    return out
  }
  if (dbl === -1) {
    const all = parseSide(s, true)
    if (all === undefined || all.length !== 8) return undefined
    words.push(...all)
  } else {
    const head = parseSide(s.slice(0, dbl), false)
    const tail = parseSide(s.slice(dbl + 2), true)
    if (head === undefined || tail === undefined) return undefined
    const fill = 8 - head.length - tail.length
    if (fill < 1) return undefined
    words.push(...head, ...new Array<number>(fill).fill(0), ...tail)
  }
  const out = new Uint8Array(16)
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i]! >> 8
    out[2 * i + 1] = words[i]! & 0xff
  }
  return out
}

/** Format like glibc inet_ntop (what `wg` and `ip` print): lowercase, longest zero run compressed. */
export function formatIp(ip: ParsedIp): string {
  const b = ip.bytes
  if (ip.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
  const words: number[] = []
  for (let i = 0; i < 8; i++) words.push((b[2 * i]! << 8) | b[2 * i + 1]!)
  // Longest run of zero words, first one wins; runs of 1 are not compressed (RFC 5952).
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLen) { bestStart = i; bestLen = j - i }
    i = j
  }
  if (bestLen < 2) { bestStart = -1; bestLen = 0 }
  let out = ''
  for (let i = 0; i < 8; i++) {
    if (bestStart !== -1 && i >= bestStart && i < bestStart + bestLen) {
      if (i === bestStart) out += ':'
      continue
    }
    if (i !== 0) out += ':'
    // Embedded IPv4 (IPv4-compatible or IPv4-mapped), as inet_ntop prints it.
    if (i === 6 && bestStart === 0 &&
      (bestLen === 6 || (bestLen === 7 && words[7] !== 1) || (bestLen === 5 && words[5] === 0xffff))) {
      out += `${b[12]}.${b[13]}.${b[14]}.${b[15]}`
      break
    }
    out += words[i]!.toString(16)
  }
  if (bestStart !== -1 && bestStart + bestLen === 8) out += ':'
  return out
}

/** Normalise an IP literal; throws on anything that is not one. */
export function normaliseIp(s: string): string {
  const ip = parseIp(s.trim())
  if (ip === undefined) throw new Error(`invalid IP address "${s}"`)
  return formatIp(ip)
}

/** An IP literal as an integer (32 or 128 bits); throws on anything that is not one. */
export function ipToBigInt (address: string): bigint {
  const ip = parseIp(address)
  if (ip === undefined) throw new Error(`"${address}" is not an IP address`)
  return ip.bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n)
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), else undefined. */
export function unmapIpv4 (address: string): string | undefined {
  const ip = parseIp(address)
  if (ip?.family !== 6 || !ip.bytes.subarray(0, 10).every(b => b === 0) || ip.bytes[10] !== 0xff || ip.bytes[11] !== 0xff) return undefined
  return formatIp({ family: 4, bytes: ip.bytes.subarray(12) })
}

/** "1.2.3.4:5" and "[fd00::1]:5" from a host and a port */
export function formatEndpoint (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** "1.2.3.4:5" → "1.2.3.4", "[fd00::1]:5" → "fd00::1" */
export function hostOf (endpoint: string): string {
  return endpoint.startsWith('[') ? endpoint.slice(1, endpoint.indexOf(']')) : endpoint.slice(0, endpoint.lastIndexOf(':'))
}
