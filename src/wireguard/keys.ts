// WireGuard (X25519) keys with node:crypto only: no `wg genkey` child process, so key
// generation works without wireguard-tools and never puts a secret on a command line.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto'

export interface WgKeyPair {
  /** base64, 32 bytes, clamped the way `wg genkey` clamps */
  privateKey: string
  /** base64, 32 bytes */
  publicKey: string
}

// PKCS#8 PrivateKeyInfo header for an X25519 key (RFC 8410), followed by the 32-byte scalar.
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')

const B64_32 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/

/** True when `s` is canonical base64 of exactly 32 bytes (the form `wg` prints and accepts). */
export function isWgKey(s: string): boolean {
  return typeof s === 'string' && B64_32.test(s) && Buffer.from(s, 'base64').length === 32
}

/**
 * Curve25519 clamping (RFC 7748). The kernel stores the clamped key and `wg show` prints
 * it, so comparing configured and live keys must compare clamped forms (or public keys).
 */
export function clampWgPrivateKey(priv: string): string {
  const raw = decodeKey(priv, 'private key')
  raw[0] = raw[0]! & 248
  raw[31] = (raw[31]! & 127) | 64
  return raw.toString('base64')
}

export function generateWgKeyPair(): WgKeyPair {
  const { privateKey } = generateKeyPairSync('x25519')
  const jwk = privateKey.export({ format: 'jwk' })
  if (jwk.d === undefined) throw new Error('x25519 key export returned no private part')
  const priv = clampWgPrivateKey(Buffer.from(jwk.d, 'base64url').toString('base64'))
  return { privateKey: priv, publicKey: wgPublicKeyFromPrivate(priv) }
}

/** the last derivation: the driver checks the live key against ours on every resync */
let lastDerived: { priv: string, pub: string } | undefined

/** The public key `wg pubkey` would print for this private key. */
export function wgPublicKeyFromPrivate(priv: string): string {
  if (lastDerived?.priv === priv) return lastDerived.pub
  const pub = derivePublicKey(priv)
  lastDerived = { priv, pub }
  return pub
}

function derivePublicKey(priv: string): string {
  const raw = decodeKey(priv, 'private key')
  // Node 20 refuses a JWK without `x`, so import the raw scalar as PKCS#8 DER instead.
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: 'der', type: 'pkcs8' })
  const x = createPublicKey(key).export({ format: 'jwk' }).x
  if (x === undefined) throw new Error('x25519 public key export failed')
  return Buffer.from(x, 'base64url').toString('base64')
}

function decodeKey(s: string, what: string): Buffer {
  // Never echo the value: it may be a secret.
  if (!isWgKey(s)) throw new Error(`invalid WireGuard ${what}: expected base64 of 32 bytes (44 characters ending in '=')`)
  return Buffer.from(s, 'base64')
}
