import { describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import { xsalsa20 } from '@noble/ciphers/salsa.js'
import { XSalsa20Stream } from '../../src/p2p/xsalsa20.ts'

// The pnet keystream arrives in chunks of any size; each must continue exactly where the last
// stopped, also in the middle of a 64-byte block. (Wire compatibility with @libp2p/pnet itself:
// test/integration/protector.test.ts.)

const key = new Uint8Array(randomBytes(32))
const nonce = new Uint8Array(randomBytes(24))

function chunked (data: Uint8Array, sizes: number[]): Uint8Array {
  const stream = new XSalsa20Stream(key, nonce)
  const out = new Uint8Array(data.length)
  let at = 0
  for (let i = 0; at < data.length; i++) {
    const size = Math.min(sizes[i % sizes.length] as number, data.length - at)
    out.set(stream.update(data.subarray(at, at + size)), at)
    at += size
  }
  return out
}

describe('XSalsa20Stream', () => {
  const data = new Uint8Array(randomBytes(5000))
  const whole = xsalsa20(key, nonce, data)

  it('gives the one-shot keystream whatever the chunking', () => {
    for (const sizes of [[5000], [64], [1], [19, 5, 64, 200, 3], [63, 65], [1000, 7]]) {
      expect(Buffer.from(chunked(data, sizes)).equals(Buffer.from(whole)), `chunks ${sizes.join(',')}`).toBe(true)
    }
  })

  it('decrypts what it encrypted and leaves its input alone', () => {
    const copy = Uint8Array.from(data)
    const sealed = new XSalsa20Stream(key, nonce).update(data)
    expect(Buffer.from(data).equals(Buffer.from(copy))).toBe(true)
    expect(Buffer.from(sealed).equals(Buffer.from(data))).toBe(false)
    expect(Buffer.from(chunked(sealed, [33, 100])).equals(Buffer.from(data))).toBe(true)
  })

  it('handles empty chunks without moving the keystream', () => {
    const stream = new XSalsa20Stream(key, nonce)
    expect(stream.update(new Uint8Array(0))).toHaveLength(0)
    expect(Buffer.from(stream.update(data.subarray(0, 10))).equals(Buffer.from(whole.subarray(0, 10)))).toBe(true)
  })

  it('rejects a wrong key or nonce length', () => {
    expect(() => new XSalsa20Stream(new Uint8Array(31), nonce)).toThrow('key must be 32 bytes')
    expect(() => new XSalsa20Stream(key, new Uint8Array(8))).toThrow('nonce must be 24 bytes')
  })
})
