import { createCipheriv, createDecipheriv, createHash } from 'node:crypto'

// Stand-ins for the two WebAssembly packages @libp2p/noise imports, with the same exports,
// backed by Node's OpenSSL: the bundle aliases `@chainsafe/as-chacha20poly1305` and
// `@chainsafe/as-sha256` to this module (scripts/build-options.mjs). Noise instantiates both
// modules when it loads, whichever cipher it then picks; without them no daemon runs V8's
// WebAssembly compiler at all (with the pnet cipher in JavaScript too), which took ~1 MiB of
// RSS and some start-up CPU per daemon. Same results, byte for byte
// (test/unit/noise-ciphers.test.ts checks them against the originals).

const TAG_BYTES = 16

/** as-chacha20poly1305 keeps its WebAssembly instance here; OpenSSL needs none. */
export function newInstance (): object {
  return {}
}

export class ChaCha20Poly1305 {
  constructor (_ctx?: object) {}

  /** ciphertext followed by the 16-byte tag, in dst when given */
  seal (key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, associatedData?: Uint8Array, dst?: Uint8Array): Uint8Array {
    const out = dst ?? new Uint8Array(plaintext.length + TAG_BYTES)
    if (out.length !== plaintext.length + TAG_BYTES) throw new Error('ChaCha20Poly1305: incorrect destination length')
    const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES })
    if (associatedData !== undefined) cipher.setAAD(associatedData, { plaintextLength: plaintext.length })
    const body = cipher.update(plaintext)
    cipher.final()
    out.set(body, 0)
    out.set(cipher.getAuthTag(), plaintext.length)
    return out
  }

  /** the plaintext (in dst when given), or null when the tag does not match */
  open (key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, associatedData?: Uint8Array, dst?: Uint8Array): Uint8Array | null {
    if (sealed.length < TAG_BYTES) return null
    const body = sealed.subarray(0, sealed.length - TAG_BYTES)
    if (dst !== undefined && dst.length !== body.length) throw new Error('ChaCha20Poly1305: incorrect destination length')
    const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES })
    if (associatedData !== undefined) decipher.setAAD(associatedData, { plaintextLength: body.length })
    decipher.setAuthTag(sealed.subarray(body.length))
    const plain = decipher.update(body)
    try {
      decipher.final()
    } catch {
      return null
    }
    if (dst === undefined) return plain
    dst.set(plain)
    return dst
  }
}

/** as-sha256's one-shot digest */
export function digest (data: Uint8Array): Uint8Array {
  return createHash('sha256').update(data).digest()
}
