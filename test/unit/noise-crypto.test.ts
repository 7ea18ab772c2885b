import { describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import { pureJsCrypto } from '@libp2p/noise'
import { Uint8ArrayList } from 'uint8arraylist'
import { noiseCrypto } from '../../src/p2p/noise-crypto.ts'

// The host gives Noise OpenSSL's X25519 and HKDF with cached key objects
// (src/p2p/noise-crypto.ts): every result must equal Noise's reference (@noble), byte for byte.

const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n))
const hex = (data: Uint8Array | Uint8ArrayList): string => Buffer.from(data.subarray()).toString('hex')

describe('noise X25519 and HKDF on OpenSSL', () => {
  it('derives HKDF keys like the reference, also from an empty input (the final split)', () => {
    for (const ikm of [bytes(32), new Uint8Array(0), bytes(77)]) {
      const ck = bytes(32)
      expect(noiseCrypto.getHKDF(ck, ikm).map(hex)).toEqual(pureJsCrypto.getHKDF(ck, ikm).map(hex))
    }
  })

  it('makes key pairs whose public half is the reference\'s for the private half, from a seed too', () => {
    for (let i = 0; i < 5; i++) {
      const pair = noiseCrypto.generateX25519KeyPair()
      expect(pair.privateKey).toHaveLength(32)
      expect(hex(pair.publicKey)).toBe(hex(pureJsCrypto.generateX25519KeyPairFromSeed(pair.privateKey).publicKey))
      const seed = bytes(32)
      const seeded = noiseCrypto.generateX25519KeyPairFromSeed(seed)
      expect(seeded.privateKey).toBe(seed)
      expect(hex(seeded.publicKey)).toBe(hex(pureJsCrypto.generateX25519KeyPairFromSeed(seed).publicKey))
    }
  })

  it('agrees on shared keys with the reference, for its own pairs, seeds, copies and lists', () => {
    const ours = noiseCrypto.generateX25519KeyPair()
    const seeded = noiseCrypto.generateX25519KeyPairFromSeed(bytes(32))
    const theirs = pureJsCrypto.generateX25519KeyPair()
    for (const pair of [ours, seeded]) {
      const expected = hex(pureJsCrypto.generateX25519SharedKey(theirs.privateKey, pair.publicKey))
      expect(hex(noiseCrypto.generateX25519SharedKey(pair.privateKey, theirs.publicKey))).toBe(expected)
      // a key Noise did not get from us (no cached key object) and key material in pieces
      expect(hex(noiseCrypto.generateX25519SharedKey(Uint8Array.from(pair.privateKey), theirs.publicKey))).toBe(expected)
      const list = new Uint8ArrayList(pair.privateKey.subarray(0, 10), pair.privateKey.subarray(10))
      const peer = new Uint8ArrayList(theirs.publicKey.subarray(0, 5), theirs.publicKey.subarray(5))
      expect(hex(noiseCrypto.generateX25519SharedKey(list, peer))).toBe(expected)
    }
  })

  it('refuses a low-order public key (an all-zero shared secret) as the reference does', () => {
    const pair = noiseCrypto.generateX25519KeyPair()
    expect(() => noiseCrypto.generateX25519SharedKey(pair.privateKey, new Uint8Array(32))).toThrow()
    expect(() => pureJsCrypto.generateX25519SharedKey(pair.privateKey, new Uint8Array(32))).toThrow()
  })
})
