import { isIPv4, isIPv6 } from 'node:net'
import { ipToBigInt } from '../util/ip.ts'

export { ipToBigInt }

// Overlay addresses are derived from the peer id, so every member computes every other
// member's address with no coordination, and can check a claim instead of trusting it.

const FNV128_OFFSET = 0x6c62272e07bb014262b821756295c58dn
const FNV128_PRIME = 0x0000000001000000000000000000013bn
const MASK128 = (1n << 128n) - 1n

/** FNV-1a, 128-bit, as wesher used. */
export function fnv1a128 (data: Uint8Array | string): bigint {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data
  let hash = FNV128_OFFSET
  for (const b of bytes) {
    hash ^= BigInt(b)
    hash = (hash * FNV128_PRIME) & MASK128
  }
  return hash
}

/** Highest counter a claim may use: collisions beyond this are not plausible, only hostile. */
export const MAX_COUNTER = 64

export type Family = 4 | 6

/** An overlay range: IPv4 CIDR of any length up to /30, or an IPv6 /64. */
export interface OverlayRange {
  family: Family
  /** network address as an integer */
  network: bigint
  prefixLength: number
  /** canonical CIDR text */
  cidr: string
}

export function parseCidr (text: string): { family: Family, address: bigint, prefixLength: number } {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim())
  if (m === null) throw new Error(`"${text}" is not a CIDR (expected ADDRESS/PREFIX, e.g. 10.223.0.0/16)`)
  const [, addr, lenText] = m as unknown as [string, string, string]
  const prefixLength = Number(lenText)
  if (isIPv4(addr)) {
    if (prefixLength > 32) throw new Error(`"${text}": IPv4 prefix length must be 0..32`)
    return { family: 4, address: ipToBigInt(addr), prefixLength }
  }
  if (isIPv6(addr)) {
    if (prefixLength > 128) throw new Error(`"${text}": IPv6 prefix length must be 0..128`)
    return { family: 6, address: ipToBigInt(addr), prefixLength }
  }
  throw new Error(`"${text}" is not a CIDR: "${addr}" is not an IP address`)
}

/** An IPv4 overlay range: /8 to /30, so that hosts exist besides network and broadcast. */
export function ipv4Range (cidr: string): OverlayRange {
  const { family, address, prefixLength } = parseCidr(cidr)
  if (family !== 4) throw new Error(`"${cidr}" is not an IPv4 CIDR`)
  if (prefixLength < 8 || prefixLength > 30) throw new Error(`"${cidr}": IPv4 overlay prefix must be between /8 and /30`)
  const network = address & prefixMask(4, prefixLength)
  return { family: 4, network, prefixLength, cidr: `${bigIntToIp(network, 4)}/${prefixLength}` }
}

/** The /64 ULA (fd00::/8) prefix every member derives from the same 7 bytes of PSK material. */
export function ula64 (globalIdAndSubnet: Uint8Array): OverlayRange {
  if (globalIdAndSubnet.length < 7) throw new Error('ula64 needs 7 bytes')
  let network = 0xfdn
  for (let i = 0; i < 7; i++) network = (network << 8n) | BigInt(globalIdAndSubnet[i] as number)
  network <<= 64n
  return { family: 6, network, prefixLength: 64, cidr: `${bigIntToIp(network, 6)}/64` }
}

/** The hash input for a claim: the peer id, then "peerId/<counter>" on collision. */
export function claimInput (peerId: string, counter: number): string {
  return counter === 0 ? peerId : `${peerId}/${counter}`
}

/** The address a peer owns in `range` with `counter`; never the network or broadcast address. */
export function addressFor (range: OverlayRange, peerId: string, counter: number): string {
  const bits = (range.family === 4 ? 32 : 128) - range.prefixLength
  const size = 1n << BigInt(bits)
  const hash = fnv1a128(claimInput(peerId, counter))
  // Skip host 0 (network / subnet-router anycast) and, for IPv4, the broadcast address.
  const usable = range.family === 4 ? size - 2n : size - 1n
  const host = 1n + (hash % usable)
  return bigIntToIp(range.network | host, range.family)
}

/** Whether `address` is what `peerId` owns in `range` under `counter`: a claim that cannot be forged. */
export function claimDerives (range: OverlayRange, peerId: string, address: string, counter: number): boolean {
  return Number.isInteger(counter) && counter >= 0 && counter <= MAX_COUNTER && inRange(range, address) &&
    addressFor(range, peerId, counter) === canonicalIp(address)
}

export function inRange (range: OverlayRange, address: string): boolean {
  const family = isIPv4(address) ? 4 : isIPv6(address) ? 6 : 0
  if (family !== range.family) return false
  return (ipToBigInt(address) & prefixMask(range.family, range.prefixLength)) === range.network
}

export function canonicalIp (address: string): string {
  if (isIPv4(address)) return bigIntToIp(ipToBigInt(address), 4)
  if (isIPv6(address)) return bigIntToIp(ipToBigInt(address), 6)
  throw new Error(`"${address}" is not an IP address`)
}

export function prefixMask (family: Family, prefixLength: number): bigint {
  const total = family === 4 ? 32 : 128
  return ((1n << BigInt(total)) - 1n) ^ ((1n << BigInt(total - prefixLength)) - 1n)
}

export function bigIntToIp (value: bigint, family: Family): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map(s => ((value >> s) & 0xffn).toString()).join('.')
  }
  const groups = Array.from({ length: 8 }, (_, i) => ((value >> BigInt(112 - 16 * i)) & 0xffffn).toString(16))
  // RFC 5952: compress the longest run (length >= 2) of zero groups.
  let bestStart = -1; let bestLen = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue }
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i }
    i = j
  }
  if (bestStart < 0) return groups.join(':')
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`
}

/** One member's claim on an overlay address. `since` is when it first claimed it (ms). */
export interface Claim {
  peerId: string
  address: string
  counter: number
  since: number
}

/** Older claim wins; equal age goes to the lower peer id. Every node computes the same order. */
export function claimBeats (a: Claim, b: Claim): boolean {
  return a.since !== b.since ? a.since < b.since : a.peerId < b.peerId
}

/** address → winning claim, whatever order the claims arrive in. */
export function resolveClaims (claims: Iterable<Claim>): Map<string, Claim> {
  const owners = new Map<string, Claim>()
  for (const claim of claims) {
    const current = owners.get(claim.address)
    if (current === undefined || claimBeats(claim, current)) owners.set(claim.address, claim)
  }
  return owners
}

/**
 * Our own claim given everybody else's: keep the current one while it wins, else take the next
 * counter whose address no other member holds (and claim it from now).
 */
export function chooseClaim (range: OverlayRange, peerId: string, current: Claim | undefined, others: Iterable<Claim>, now: number): Claim {
  const owners = resolveClaims([...others].filter(c => c.peerId !== peerId))
  const valid = current !== undefined && claimDerives(range, peerId, current.address, current.counter)
  if (valid) {
    const rival = owners.get(current.address)
    if (rival === undefined || claimBeats(current, rival)) return current
  }
  const start = valid ? current.counter + 1 : 0
  for (let counter = start; counter <= MAX_COUNTER; counter++) {
    const address = addressFor(range, peerId, counter)
    if (!owners.has(address)) return { peerId, address, counter, since: now }
  }
  throw new Error(`no free overlay address in ${range.cidr} after ${MAX_COUNTER} tries: the range is too small for this mesh`)
}
