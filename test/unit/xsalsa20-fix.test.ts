import { describe, it, expect } from 'vitest'
import XSalsa20 from 'xsalsa20'
import { fixXsalsa20 } from '../../src/p2p/xsalsa20-fix.ts'

// The pnet cipher must survive many connections after one large chunk: unpatched, xsalsa20
// 1.2.0 grows its WASM memory on every update once any cipher has grown it, and throws
// "Maximum memory size exceeded" after a few hundred updates.

const key = new Uint8Array(32).fill(1)
const nonce = (n: number): Uint8Array => new Uint8Array(24).fill(n)

describe('xsalsa20 shared-memory fix', () => {
  it('keeps many ciphers working, and correct, after one grows the memory', () => {
    expect(fixXsalsa20()).toBe(true)
    const ciphers = Array.from({ length: 8 }, (_, i) => new XSalsa20(nonce(i), key))
    const twins = Array.from({ length: 8 }, (_, i) => new XSalsa20(nonce(i), key))
    ciphers[0]!.update(new Uint8Array(2_000_000)) // grows the shared memory
    twins[0]!.update(new Uint8Array(2_000_000))
    const data = new Uint8Array(100).map((_, i) => i)
    let wrong = 0
    for (let round = 0; round < 2000; round++) {
      for (let i = 0; i < ciphers.length; i++) {
        const enc = ciphers[i]!.update(data)
        // the same stream from a twin cipher decrypts it: no keystream was lost or repeated
        if (Buffer.compare(twins[i]!.update(enc), data) !== 0) wrong++
      }
    }
    expect(wrong).toBe(0)
    const c = ciphers[1] as unknown as { _xor: { _memory: Uint8Array } }
    expect(c._xor._memory.buffer.byteLength).toBeLessThan(16 * 2 ** 20)
  })
})
