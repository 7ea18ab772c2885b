// xsalsa20 ships no types: the calls we use (callable with or without `new`).
declare module 'xsalsa20' {
  namespace xsalsa20 {
    interface Xor {
      update: (input: Uint8Array, output?: Uint8Array) => Uint8Array
      finalize: () => void
    }
  }
  interface XSalsa20 {
    new (nonce: Uint8Array, key: Uint8Array): xsalsa20.Xor
    (nonce: Uint8Array, key: Uint8Array): xsalsa20.Xor
  }
  const xsalsa20: XSalsa20
  export = xsalsa20
}
