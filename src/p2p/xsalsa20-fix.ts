import XSalsa20 from 'xsalsa20'

// @libp2p/pnet encrypts with the `xsalsa20` package (1.2.0), whose ciphers share one
// WebAssembly memory but each keep their own view of it. When one cipher grows the memory
// (a chunk larger than the free space, e.g. a big burst while the event loop was busy),
// every other cipher's view is detached (length 0), so its next update "grows" again, which
// detaches the others: from then on every update adds 64 KiB until the memory's maximum and
// the process dies with "WebAssembly.Memory.grow(): Maximum memory size exceeded" (seen with
// 50 daemons under load). The fix: a detached view is refreshed instead of growing.

interface WasmCipher {
  _memory: Uint8Array
  realloc: (size: number) => void
}

let applied = false

/** Patch the package's WASM cipher once (idempotent); false when it runs without WebAssembly. */
export function fixXsalsa20 (): boolean {
  if (applied) return true
  const probe = new XSalsa20(new Uint8Array(24), new Uint8Array(32)) as unknown as { _xor: WasmCipher, finalize: () => void }
  const proto = Object.getPrototypeOf(probe._xor) as WasmCipher
  /** the live memory: only realloc grows it, and we see every realloc */
  let latest = probe._xor._memory.buffer
  probe.finalize()
  if (typeof proto.realloc !== 'function') return false // the pure-JS fallback has no such bug
  const realloc = proto.realloc
  proto.realloc = function (this: WasmCipher, size: number): void {
    if (this._memory.buffer !== latest) {
      this._memory = new Uint8Array(latest)
      if (size < this._memory.length) return
    }
    realloc.call(this, size)
    latest = this._memory.buffer
  }
  applied = true
  return true
}
