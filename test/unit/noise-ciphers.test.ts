import { describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import * as wasmChacha from '@chainsafe/as-chacha20poly1305'
import * as wasmSha from '@chainsafe/as-sha256'
import { ChaCha20Poly1305, digest, newInstance } from '../../src/p2p/noise-ciphers.ts'

// The bundle gives @libp2p/noise these OpenSSL stand-ins instead of its WebAssembly packages
// (scripts/build-options.mjs): every result must equal the original's, byte for byte.

const original = new wasmChacha.ChaCha20Poly1305(wasmChacha.newInstance())
const ours = new ChaCha20Poly1305(newInstance())
const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n))
const same = (a: Uint8Array | null, b: Uint8Array | null): boolean => a !== null && b !== null && Buffer.from(a).equals(Buffer.from(b))

describe('noise ciphers on OpenSSL', () => {
  it('seals like as-chacha20poly1305, with and without associated data, into dst when given', () => {
    for (const size of [0, 1, 63, 64, 65, 1199, 1200, 4000]) {
      const key = bytes(32); const nonce = bytes(12); const plain = bytes(size); const ad = bytes(32)
      expect(same(ours.seal(key, nonce, plain, ad), original.seal(key, nonce, plain, ad)), `size ${size}`).toBe(true)
      expect(same(ours.seal(key, nonce, plain), original.seal(key, nonce, plain)), `size ${size}, no ad`).toBe(true)
      const dst = new Uint8Array(size + 16)
      expect(ours.seal(key, nonce, plain, ad, dst)).toBe(dst)
      expect(same(dst, original.seal(key, nonce, plain, ad))).toBe(true)
    }
  })

  it('opens what as-chacha20poly1305 sealed, in place as noise does, and refuses a tampered message', () => {
    const key = bytes(32); const nonce = bytes(12); const plain = bytes(500); const ad = bytes(32)
    const sealed = original.seal(key, nonce, plain, ad)
    expect(same(ours.open(key, nonce, sealed, ad), plain)).toBe(true)
    const inPlace = Uint8Array.from(sealed)
    const dst = inPlace.subarray(0, inPlace.length - 16)
    expect(ours.open(key, nonce, inPlace, ad, dst)).toBe(dst)
    expect(same(dst, plain)).toBe(true)
    const tampered = Uint8Array.from(sealed)
    tampered[7] = (tampered[7] as number) ^ 1
    expect(ours.open(key, nonce, tampered, ad)).toBeNull()
    expect(original.open(key, nonce, tampered, ad)).toBeNull()
    expect(ours.open(key, nonce, sealed, bytes(32))).toBeNull()
    expect(ours.open(key, nonce, new Uint8Array(5), ad)).toBeNull()
  })

  it('hashes like as-sha256', () => {
    for (const size of [0, 55, 64, 1000]) {
      const data = bytes(size)
      expect(same(digest(data), wasmSha.digest(data))).toBe(true)
    }
  })
})
