import { randomBytes, createHash } from 'node:crypto'

/** The network pre-shared key: 32 bytes that gate the libp2p transport (pnet). */
export interface Psk {
  bytes: Uint8Array
  /** canonical swarm.key text, the form @libp2p/pnet reads */
  swarmKey: string
  /**
   * After a key rotation the overlay's IPv6 prefix still derives from the network's first key:
   * a rotated swarm.key carries that seed (hex) on a 4th line, which pnet ignores.
   */
  ulaSeed?: string
}

const ULA_LINE = /^\/w2wesher-ula\/([0-9a-f]{14})$/

/** swarm.key text of a rotated key: the seed of the mesh's IPv6 prefix on a 4th line. */
export function rotatedSwarmKey (bytes: Uint8Array, ulaSeed: string): string {
  return `${pskFromBytes(bytes).swarmKey}/w2wesher-ula/${ulaSeed}\n`
}

const HEADER = '/key/swarm/psk/1.0.0/'

export function pskFromBytes (bytes: Uint8Array): Psk {
  if (bytes.length !== 32) throw new Error(`psk must be 32 bytes, got ${bytes.length}`)
  const hex = Buffer.from(bytes).toString('hex')
  return { bytes: Uint8Array.from(bytes), swarmKey: `${HEADER}\n/base16/\n${hex}\n` }
}

export function generatePsk (): Psk {
  return pskFromBytes(randomBytes(32))
}

/**
 * Accepts the swarm.key text, bare 64-hex, or base64 of 32 bytes (the Go w2wesher format).
 * Errors never echo the key itself.
 */
export function parsePsk (input: string): Psk {
  const text = input.trim()
  const lines = text.split(/\r?\n/).map(l => l.trim()).filter(l => l !== '')
  if (lines[0] === HEADER) {
    if (lines[1] !== '/base16/') throw new Error('only the /base16/ swarm.key encoding is supported')
    const psk = pskFromHex(lines[2] ?? '')
    const seed = ULA_LINE.exec(lines[3] ?? '')?.[1]
    return seed === undefined ? psk : { ...psk, ulaSeed: seed }
  }
  if (lines.length !== 1) throw new Error('expected a swarm.key file, 64 hex characters or base64 of 32 bytes')
  // Only hex digits: meant as hex (a 32-byte base64 key always ends in "=").
  if (/^[0-9a-fA-F]+$/.test(text)) return pskFromHex(text)
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(text) && text.length % 4 === 0) {
    const bytes = Buffer.from(text, 'base64')
    if (bytes.length === 32) return pskFromBytes(bytes)
    throw new Error(`base64 key decodes to ${bytes.length} bytes, need 32 (generate one with "w2wesher genpsk")`)
  }
  throw new Error('expected a swarm.key file, 64 hex characters or base64 of 32 bytes (generate one with "w2wesher genpsk")')
}

function pskFromHex (hex: string): Psk {
  if (!/^[0-9a-fA-F]*$/.test(hex)) throw new Error('hex key holds characters other than 0-9 and a-f')
  if (hex.length !== 64) throw new Error(`hex key has ${hex.length} characters, need 64 (generate one with "w2wesher genpsk")`)
  return pskFromBytes(Buffer.from(hex, 'hex'))
}

/** A stable, non-reversible label derived from the PSK: used for the ULA prefix and log hints. */
export function pskDerive (psk: Psk, label: string, length: number): Buffer {
  return createHash('sha256').update(`w2wesher/${label}/`).update(psk.bytes).digest().subarray(0, length)
}

/**
 * What identifies the mesh across key rotations (hex, 7 bytes): derived from the network's
 * first key, carried by a rotated swarm.key. The IPv6 prefix and the mDNS tag come from it.
 */
export function meshSeed (psk: Psk): string {
  return psk.ulaSeed ?? pskDerive(psk, 'ula', 7).toString('hex')
}
