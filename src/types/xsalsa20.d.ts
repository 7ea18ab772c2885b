// Minimal types for the `xsalsa20` package (the cipher @libp2p/pnet uses).
declare module 'xsalsa20' {
  class XSalsa20 {
    constructor (nonce: Uint8Array, key: Uint8Array)
    update (input: Uint8Array, output?: Uint8Array): Uint8Array
    finalize (): void
  }
  export default XSalsa20
}
