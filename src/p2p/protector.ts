import { createHash, randomBytes } from 'node:crypto'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'
import type { AbortOptions, ConnectionProtector, MultiaddrConnection } from '@libp2p/interface'
import { XSalsa20Stream } from './xsalsa20.ts'

// A pnet-compatible connection protector that accepts several keys, so the network key can
// change without a flag day. Wire format as @libp2p/pnet: each side sends a random 24-byte
// nonce, then everything is XSalsa20(key, own nonce) one way and XSalsa20(key, peer's nonce)
// the other way. pnet has no key id, so an inbound connection tells which key its dialer
// used by what it sends first: a dialer always opens with the multistream-select header,
// whose bytes we know, so the key that decrypts them to that header is the dialer's key.
// We then answer with the same key. Outbound connections use the current dial key.

const NONCE_BYTES = 24
const KEY_BYTES = 32
/** varint length 19, then "/multistream/1.0.0\n": the first bytes every libp2p dialer sends */
const MSS_HEADER = new Uint8Array([19, ...new TextEncoder().encode('/multistream/1.0.0\n')])
const HANDSHAKE_TIMEOUT_MS = 5_000

export interface ProtectorKeys {
  /** the key we dial with (always accepted too) */
  dial: Uint8Array
  /** further keys accepted from dialers */
  accept: Uint8Array[]
}

export interface KeyedConnection {
  keyId: string
  direction: 'inbound' | 'outbound'
  remoteAddr: string
}

/** A short, non-reversible label of a key: safe in logs and status output. */
export function keyId (key: Uint8Array): string {
  return createHash('sha256').update('w2wesher/psk-id/').update(key).digest('hex').slice(0, 16)
}

export class MultiKeyProtector implements ConnectionProtector {
  private keys: ProtectorKeys
  /** open protected connections and the key each uses: dropped keys close theirs */
  private readonly open = new Set<KeyedStream>()
  /** called when an inbound dialer used none of our keys (wrong or old network key) */
  onUnknownKey?: (remoteAddr: string) => void

  constructor (keys: ProtectorKeys) {
    this.keys = checkKeys(keys)
  }

  readonly [Symbol.toStringTag] = 'w2wesher/multi-key-pnet'

  /** Change the dial key and the accepted set at run time. Connections on keys no longer accepted are closed. */
  setKeys (keys: ProtectorKeys): void {
    this.keys = checkKeys(keys)
    const ids = new Set(this.accepted().map(keyId))
    for (const conn of this.open) {
      if (!ids.has(conn.keyId)) conn.abort(new Error('network key retired'))
    }
  }

  /** Which key each open protected connection uses (key ids only). */
  connections (): KeyedConnection[] {
    return [...this.open].map(c => ({ keyId: c.keyId, direction: c.direction, remoteAddr: c.remoteAddr.toString() }))
  }

  current (): { dial: string, accept: string[] } {
    return { dial: keyId(this.keys.dial), accept: this.accepted().map(keyId) }
  }

  private accepted (): Uint8Array[] {
    const out = [this.keys.dial]
    for (const k of this.keys.accept) if (!out.some(o => Buffer.compare(o, k) === 0)) out.push(k)
    return out
  }

  async protect (connection: MultiaddrConnection, options?: AbortOptions): Promise<MultiaddrConnection> {
    const signal = options?.signal ?? AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS)
    const bytes = byteStream(connection)
    const localNonce = new Uint8Array(randomBytes(NONCE_BYTES))
    const [nonce] = await Promise.all([
      bytes.read({ bytes: NONCE_BYTES, signal }),
      bytes.write(localNonce, { signal })
    ])
    const remoteNonce = nonce.subarray()
    let key: Uint8Array
    let inbound: XSalsa20Stream
    let firstPlain: Uint8Array | undefined
    if (connection.direction === 'outbound') {
      key = this.keys.dial
      inbound = new XSalsa20Stream(key, remoteNonce)
    } else {
      // The dialer speaks first: its opening bytes tell us its key.
      const opening = (await bytes.read({ bytes: MSS_HEADER.length, signal })).subarray()
      const found = this.findKey(remoteNonce, opening)
      if (found === undefined) {
        this.onUnknownKey?.(connection.remoteAddr.toString())
        const err = new Error('dialer used none of the accepted network keys')
        connection.abort(err)
        throw err
      }
      key = found.key
      inbound = found.xor
      firstPlain = found.plain
    }
    const stream = new KeyedStream({
      maConn: bytes.unwrap(),
      key,
      inbound,
      outbound: new XSalsa20Stream(key, localNonce),
      firstPlain,
      log: connection.log.newScope('multikey-pnet')
    })
    this.open.add(stream)
    stream.addEventListener('close', () => this.open.delete(stream))
    return stream
  }

  private findKey (nonce: Uint8Array, opening: Uint8Array): { key: Uint8Array, xor: XSalsa20Stream, plain: Uint8Array } | undefined {
    for (const key of this.accepted()) {
      const xor = new XSalsa20Stream(key, nonce)
      const plain = xor.update(opening)
      if (Buffer.compare(plain, MSS_HEADER) === 0) return { key, xor, plain }
    }
    return undefined
  }
}

function checkKeys (keys: ProtectorKeys): ProtectorKeys {
  for (const k of [keys.dial, ...keys.accept]) {
    if (k.length !== KEY_BYTES) throw new Error(`network key must be ${KEY_BYTES} bytes`)
  }
  return { dial: Uint8Array.from(keys.dial), accept: keys.accept.map(k => Uint8Array.from(k)) }
}

interface KeyedStreamInit {
  maConn: MultiaddrConnection
  key: Uint8Array
  inbound: XSalsa20Stream
  outbound: XSalsa20Stream
  /** already decrypted bytes (the dialer's opening), delivered before anything else */
  firstPlain?: Uint8Array
  log: MultiaddrConnection['log']
}

/** The encrypted connection: XORs the keystream over everything in and out. */
class KeyedStream extends AbstractMultiaddrConnection {
  readonly keyId: string
  private readonly maConn: MultiaddrConnection
  private readonly inbound: XSalsa20Stream
  private readonly outbound: XSalsa20Stream

  constructor (init: KeyedStreamInit) {
    super({ log: init.log, remoteAddr: init.maConn.remoteAddr, direction: init.maConn.direction })
    this.keyId = keyId(init.key)
    this.maConn = init.maConn
    this.inbound = init.inbound
    this.outbound = init.outbound
    // buffered until the upgrader listens; comes before the unread bytes unwrap() hands back
    if (init.firstPlain !== undefined) this.onData(init.firstPlain)
    this.maConn.addEventListener('message', evt => {
      const data = evt.data
      if (data instanceof Uint8Array) this.onData(this.inbound.update(data))
      else for (const chunk of data) this.onData(this.inbound.update(chunk))
    })
    this.maConn.addEventListener('drain', () => this.onMuxerDrain())
    this.maConn.addEventListener('close', evt => {
      if (evt.error === undefined || evt.error === null) this.onTransportClosed()
      else if (evt.local === true) this.abort(evt.error)
      else this.onRemoteReset()
    })
  }

  override async sendClose (options?: AbortOptions): Promise<void> {
    await this.maConn.close(options)
  }

  override sendData (data: Parameters<AbstractMultiaddrConnection['sendData']>[0]): ReturnType<AbstractMultiaddrConnection['sendData']> {
    return { sentBytes: data.byteLength, canSendMore: this.maConn.send(this.outbound.update(data.subarray())) }
  }

  override sendReset (err: Error): void {
    this.maConn.abort(err)
  }

  override sendPause (): void {
    this.maConn.pause()
  }

  override sendResume (): void {
    this.maConn.resume()
  }
}
