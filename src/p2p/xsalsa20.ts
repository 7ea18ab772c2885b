import { xsalsa20 } from '@noble/ciphers/salsa.js'

// The pnet keystream (XSalsa20, 24-byte nonce) over a connection's bytes as they arrive in
// chunks of any size. In plain JavaScript (@noble/ciphers) rather than the `xsalsa20`
// package's WebAssembly: that one costs each daemon V8's WebAssembly compiler (~1 MiB of
// RSS) and shares one memory between all ciphers (which broke under load, see
// docs/benchmarks.md), and a control connection carries too little for the speed to matter.

const BLOCK = 64

export class XSalsa20Stream {
  private readonly key: Uint8Array
  private readonly nonce: Uint8Array
  /** keystream bytes used so far */
  private position = 0

  constructor (key: Uint8Array, nonce: Uint8Array) {
    if (key.length !== 32) throw new Error('xsalsa20 key must be 32 bytes')
    if (nonce.length !== 24) throw new Error('xsalsa20 nonce must be 24 bytes')
    this.key = Uint8Array.from(key)
    this.nonce = Uint8Array.from(nonce)
  }

  /** XORs the next data.length keystream bytes over data (new array; data is untouched). */
  update (data: Uint8Array): Uint8Array {
    const block = Math.floor(this.position / BLOCK)
    const skip = this.position % BLOCK
    this.position += data.length
    if (skip === 0) return xsalsa20(this.key, this.nonce, data, undefined, block)
    // mid-block: run the whole block and drop the keystream already used
    const padded = new Uint8Array(skip + data.length)
    padded.set(data, skip)
    return xsalsa20(this.key, this.nonce, padded, undefined, block).subarray(skip)
  }
}
