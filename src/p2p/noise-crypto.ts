import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto'
import type { ICryptoInterface } from '@libp2p/noise'
import { defaultCrypto } from '@libp2p/noise/crypto'
import type { Uint8ArrayList } from 'uint8arraylist'

// Noise's X25519 and HKDF on OpenSSL, without re-importing keys. Noise's own Node crypto
// imports both keys of every Diffie-Hellman from DER (~0.5 ms here, ten times the DH itself)
// and runs HKDF in JavaScript (0.34 ms a call without TurboFan, which the daemon turns off;
// 13 µs in OpenSSL). A handshake does three DHs and four HKDFs on each side. The key objects
// of the pairs we generate are kept with them; peers' public keys come in as JWK (8 µs).
// Same results, byte for byte (test/unit/noise-crypto.test.ts).

/** OpenSSL's key object for each private key we handed Noise (keyed by the very array). */
const keyObjects = new WeakMap<Uint8Array, KeyObject>()
const NO_INFO = new Uint8Array(0)

function keyPairFrom (privateKey: KeyObject): { publicKey: Uint8Array, privateKey: Uint8Array } {
  const jwk = privateKey.export({ format: 'jwk' })
  const pair = { publicKey: base64url(jwk.x), privateKey: base64url(jwk.d) }
  keyObjects.set(pair.privateKey, privateKey)
  return pair
}

function base64url (text: string | undefined): Uint8Array {
  if (text === undefined) throw new Error('X25519 key export lacks a field')
  return new Uint8Array(Buffer.from(text, 'base64url'))
}

const bytes = (data: Uint8Array | Uint8ArrayList): Uint8Array => data instanceof Uint8Array ? data : data.subarray()

export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  getHKDF (ck, ikm) {
    const okm = new Uint8Array(hkdfSync('sha256', ikm, ck, NO_INFO, 96))
    return [okm.subarray(0, 32), okm.subarray(32, 64), okm.subarray(64, 96)]
  },
  generateX25519KeyPair () {
    return keyPairFrom(generateKeyPairSync('x25519').privateKey)
  },
  generateX25519KeyPairFromSeed (seed) {
    const privateKey = privateKeyObject(seed)
    // Noise keeps the seed itself as the private key
    keyObjects.set(seed, privateKey)
    return { publicKey: keyPairFrom(privateKey).publicKey, privateKey: seed }
  },
  generateX25519SharedKey (privateKey, publicKey) {
    const ours = privateKey instanceof Uint8Array ? keyObjects.get(privateKey) : undefined
    return diffieHellman({
      privateKey: ours ?? privateKeyObject(bytes(privateKey)),
      publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(bytes(publicKey)).toString('base64url') }, format: 'jwk' })
    })
  }
}

// A private key we did not generate (a seed, a key from elsewhere): PKCS#8 is the one import
// that needs no public half.
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex')
function privateKeyObject (raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' })
}
