// The pnet keystream (XSalsa20, 24-byte nonce) over a connection's bytes as they arrive in
// chunks of any size. Plain JavaScript, written for the daemon's JIT tiers (no TurboFan, see
// cmd/load-daemon.ts): rotations inline instead of a function call each, the subkey derived once
// per connection and the current keystream block kept between chunks. @noble/ciphers'
// one-shot xsalsa20 derived the subkey again for every chunk, and most chunks are a few dozen
// bytes (yamux frames): 30 µs for a 40-byte chunk, against 8 µs here (docs/benchmarks.md,
// round 12). The `xsalsa20` package's WebAssembly is not an option either: it costs each daemon
// V8's WebAssembly compiler (~1 MiB of RSS) and broke under load (docs/benchmarks.md).
// test/unit/xsalsa20.test.ts checks every chunking against @noble/ciphers' xsalsa20.

const BLOCK = 64
/** "expand 32-byte k" */
const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574] as const

export class XSalsa20Stream {
  /** Salsa20's input: constants, the subkey, the nonce's last 8 bytes and the block counter */
  private readonly input = new Uint32Array(16)
  private readonly words = new Uint32Array(16)
  private readonly keystream = new Uint8Array(BLOCK)
  /** bytes of `keystream` already used */
  private used = BLOCK

  constructor (key: Uint8Array, nonce: Uint8Array) {
    if (key.length !== 32) throw new Error('xsalsa20 key must be 32 bytes')
    if (nonce.length !== 24) throw new Error('xsalsa20 nonce must be 24 bytes')
    // HSalsa20(key, nonce[0..16]) is the subkey; Salsa20 then runs on it with nonce[16..24]
    const input = this.input
    setConstantsAndKey(input, key)
    for (let i = 0; i < 4; i++) input[6 + i] = le32(nonce, 4 * i)
    const words = this.words
    salsaRounds(input, words)
    // the subkey is words 0, 5, 10, 15, 6, 7, 8, 9 of that, into the key's places
    input[1] = words[0]!; input[2] = words[5]!; input[3] = words[10]!; input[4] = words[15]!
    input[11] = words[6]!; input[12] = words[7]!; input[13] = words[8]!; input[14] = words[9]!
    input[6] = le32(nonce, 16)
    input[7] = le32(nonce, 20)
    input[8] = 0
    input[9] = 0
  }

  /** XORs the next data.length keystream bytes over data (new array; data is untouched). */
  update (data: Uint8Array): Uint8Array {
    const out = new Uint8Array(data.length)
    const keystream = this.keystream
    let used = this.used
    for (let i = 0; i < data.length; i++) {
      if (used === BLOCK) { this.nextBlock(); used = 0 }
      out[i] = data[i]! ^ keystream[used++]!
    }
    this.used = used
    return out
  }

  private nextBlock (): void {
    const { input, words, keystream } = this
    salsaRounds(input, words)
    for (let i = 0, o = 0; i < 16; i++, o += 4) {
      const w = (words[i]! + input[i]!) | 0
      keystream[o] = w; keystream[o + 1] = w >>> 8; keystream[o + 2] = w >>> 16; keystream[o + 3] = w >>> 24
    }
    // 64-bit block counter, little-endian in words 8 and 9
    input[8] = (input[8]! + 1) | 0
    if (input[8] === 0) input[9] = (input[9]! + 1) | 0
  }
}

function le32 (bytes: Uint8Array, at: number): number {
  return (bytes[at]! | bytes[at + 1]! << 8 | bytes[at + 2]! << 16 | bytes[at + 3]! << 24) >>> 0
}

function setConstantsAndKey (input: Uint32Array, key: Uint8Array): void {
  input[0] = SIGMA[0]; input[5] = SIGMA[1]; input[10] = SIGMA[2]; input[15] = SIGMA[3]
  for (let i = 0; i < 4; i++) { input[1 + i] = le32(key, 4 * i); input[11 + i] = le32(key, 16 + 4 * i) }
}

/** Salsa20's 20 rounds over `input` into `out`, without the final addition. */
function salsaRounds (input: Uint32Array, out: Uint32Array): void {
  let x0 = input[0]!; let x1 = input[1]!; let x2 = input[2]!; let x3 = input[3]!
  let x4 = input[4]!; let x5 = input[5]!; let x6 = input[6]!; let x7 = input[7]!
  let x8 = input[8]!; let x9 = input[9]!; let x10 = input[10]!; let x11 = input[11]!
  let x12 = input[12]!; let x13 = input[13]!; let x14 = input[14]!; let x15 = input[15]!
  let u: number
  for (let round = 0; round < 20; round += 2) {
    // columns
    u = x0 + x12 | 0; x4 ^= u << 7 | u >>> 25
    u = x4 + x0 | 0; x8 ^= u << 9 | u >>> 23
    u = x8 + x4 | 0; x12 ^= u << 13 | u >>> 19
    u = x12 + x8 | 0; x0 ^= u << 18 | u >>> 14
    u = x5 + x1 | 0; x9 ^= u << 7 | u >>> 25
    u = x9 + x5 | 0; x13 ^= u << 9 | u >>> 23
    u = x13 + x9 | 0; x1 ^= u << 13 | u >>> 19
    u = x1 + x13 | 0; x5 ^= u << 18 | u >>> 14
    u = x10 + x6 | 0; x14 ^= u << 7 | u >>> 25
    u = x14 + x10 | 0; x2 ^= u << 9 | u >>> 23
    u = x2 + x14 | 0; x6 ^= u << 13 | u >>> 19
    u = x6 + x2 | 0; x10 ^= u << 18 | u >>> 14
    u = x15 + x11 | 0; x3 ^= u << 7 | u >>> 25
    u = x3 + x15 | 0; x7 ^= u << 9 | u >>> 23
    u = x7 + x3 | 0; x11 ^= u << 13 | u >>> 19
    u = x11 + x7 | 0; x15 ^= u << 18 | u >>> 14
    // rows
    u = x0 + x3 | 0; x1 ^= u << 7 | u >>> 25
    u = x1 + x0 | 0; x2 ^= u << 9 | u >>> 23
    u = x2 + x1 | 0; x3 ^= u << 13 | u >>> 19
    u = x3 + x2 | 0; x0 ^= u << 18 | u >>> 14
    u = x5 + x4 | 0; x6 ^= u << 7 | u >>> 25
    u = x6 + x5 | 0; x7 ^= u << 9 | u >>> 23
    u = x7 + x6 | 0; x4 ^= u << 13 | u >>> 19
    u = x4 + x7 | 0; x5 ^= u << 18 | u >>> 14
    u = x10 + x9 | 0; x11 ^= u << 7 | u >>> 25
    u = x11 + x10 | 0; x8 ^= u << 9 | u >>> 23
    u = x8 + x11 | 0; x9 ^= u << 13 | u >>> 19
    u = x9 + x8 | 0; x10 ^= u << 18 | u >>> 14
    u = x15 + x14 | 0; x12 ^= u << 7 | u >>> 25
    u = x12 + x15 | 0; x13 ^= u << 9 | u >>> 23
    u = x13 + x12 | 0; x14 ^= u << 13 | u >>> 19
    u = x14 + x13 | 0; x15 ^= u << 18 | u >>> 14
  }
  out[0] = x0; out[1] = x1; out[2] = x2; out[3] = x3; out[4] = x4; out[5] = x5; out[6] = x6; out[7] = x7
  out[8] = x8; out[9] = x9; out[10] = x10; out[11] = x11; out[12] = x12; out[13] = x13; out[14] = x14; out[15] = x15
}
