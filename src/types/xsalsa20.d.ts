// xsalsa20 ships no types; the two calls we use.
declare module 'xsalsa20' {
  namespace xsalsa20 {
    interface Xor {
      update: (input: Uint8Array, output?: Uint8Array) => Uint8Array
      finalize: () => void
    }
  }
  function xsalsa20 (nonce: Uint8Array, key: Uint8Array): xsalsa20.Xor
  export = xsalsa20
}
