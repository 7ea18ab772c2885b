// wireguard-go's control socket (<socketDir>/<name>.sock), spoken directly: the same
// line protocol `wg` uses for userspace devices (wireguard.com/xplatform), without a child
// process per call. Requests and replies are "key=value" lines ending with an empty line;
// keys on the wire are hex. Replies are parsed strictly; an error never echoes a value (a
// get reply carries the private key).
import { createConnection } from 'node:net'
import type { WgPeerConfig, WgPeerState } from './driver.ts'
import { isWgKey, wgPublicKeyFromPrivate } from './keys.ts'
import { normaliseAllowedIps, normaliseCidr, normaliseEndpoint, normalisePeerBatch } from './parse.ts'
import { parseIp } from '../util/ip.ts'

/** What a get tells us about the device. */
export interface UapiDevice {
  /** base64; '' when the device has no private key */
  publicKey: string
  listenPort: number
  /** 0 = off */
  fwmark: number
  /** in the device's order */
  peers: WgPeerState[]
}

/** The socket is not there or nobody listens on it: no userspace device of that name. */
export class UapiUnavailableError extends Error {
  constructor (path: string, code: string) {
    super(`${path}: ${code}`)
    this.name = 'UapiUnavailableError'
  }
}

export function keyToHex (base64: string): string {
  if (!isWgKey(base64)) throw new Error('uapi: invalid key (expected base64 of 32 bytes)')
  return Buffer.from(base64, 'base64').toString('hex')
}

export function keyFromHex (hex: string): string | undefined {
  if (!/^[0-9a-f]{64}$/.test(hex)) return undefined
  return Buffer.from(hex, 'hex').toString('base64')
}

/** An endpoint the socket takes as is (it does not resolve names; `wg` does). */
export function isLiteralEndpoint (endpoint: string): boolean {
  const t = endpoint.trim()
  if (t.startsWith('[')) return true // normaliseEndpoint accepts only an IPv6 literal there
  return parseIp(t.slice(0, t.lastIndexOf(':'))) !== undefined
}

/** The request that reads the whole device (answered by parseGetReply). */
export const GET_DEVICE = 'get=1\n\n'

/** "set=1" for key and/or port; undefined when neither is given. */
export function encodeSetDevice (opts: { privateKey?: string, listenPort?: number }): string | undefined {
  const lines: string[] = []
  if (opts.privateKey !== undefined) lines.push(`private_key=${keyToHex(opts.privateKey)}`)
  if (opts.listenPort !== undefined) {
    if (!Number.isInteger(opts.listenPort) || opts.listenPort < 0 || opts.listenPort > 65535) throw new Error(`uapi: listen port ${opts.listenPort} is not 0-65535`)
    lines.push(`listen_port=${opts.listenPort}`)
  }
  return lines.length === 0 ? undefined : `set=1\n${lines.join('\n')}\n\n`
}

/**
 * "set=1" applying a peer batch as `wg set` would: allowed IPs replaced in full, an
 * undefined endpoint left as is, keepalive 0 = off. Validated and normalised first; throws
 * on an endpoint that is a host name (the caller uses `wg`, which resolves it). Undefined
 * when there is nothing to do.
 */
export function encodeSetPeers (upserts: readonly WgPeerConfig[], removals: readonly string[]): string | undefined {
  const b = normalisePeerBatch(upserts, removals)
  if (b.upserts.length === 0 && b.removals.length === 0) return undefined
  const lines = ['set=1']
  for (const p of b.upserts) {
    lines.push(`public_key=${keyToHex(p.publicKey)}`)
    if (p.endpoint !== undefined) {
      if (!isLiteralEndpoint(p.endpoint)) throw new Error(`peer ${p.publicKey}: endpoint "${p.endpoint}" is not an IP address`)
      lines.push(`endpoint=${p.endpoint}`)
    }
    lines.push(`persistent_keepalive_interval=${p.persistentKeepalive}`, 'replace_allowed_ips=true')
    for (const a of p.allowedIps) lines.push(`allowed_ip=${a}`)
  }
  for (const k of b.removals) lines.push(`public_key=${keyToHex(k)}`, 'remove=true')
  return `${lines.join('\n')}\n\n`
}

const UINT = /^(0|[1-9][0-9]{0,19})$/

function uint (v: string, max: number, key: string, line: number): number {
  const n = UINT.test(v) ? Number(v) : NaN
  if (!Number.isSafeInteger(n) || n > max) throw new Error(`uapi reply line ${line}: bad ${key}`)
  return n
}

/** Split a reply into key/value lines up to the terminating empty line; checks errno. */
function replyLines (text: string): Array<[string, string]> {
  const end = text.indexOf('\n\n')
  if (end === -1 || end + 2 !== text.length) throw new Error('uapi reply: not terminated by one empty line')
  const raw = text.slice(0, end).split('\n')
  const out: Array<[string, string]> = []
  for (let i = 0; i < raw.length; i++) {
    const m = /^([a-z_]+)=(.*)$/.exec(raw[i]!)
    if (m === null) throw new Error(`uapi reply line ${i + 1}: not key=value`)
    out.push([m[1]!, m[2]!])
  }
  const last = out.pop()
  if (last === undefined || last[0] !== 'errno') throw new Error('uapi reply: does not end with errno')
  if (!/^-?(0|[1-9][0-9]{0,9})$/.test(last[1])) throw new Error(`uapi reply line ${raw.length}: bad errno`)
  if (last[1] !== '0') throw new Error(`uapi: wireguard-go answered errno=${last[1]}`)
  if (out.some(([k]) => k === 'errno')) throw new Error('uapi reply: errno before the end')
  return out
}

/** A set reply: exactly "errno=0". */
export function parseSetReply (text: string): void {
  if (replyLines(text).length !== 0) throw new Error('uapi set reply: unexpected lines before errno')
}

/**
 * A get reply. Device keys first, then each peer from its public_key line. Keys this
 * driver does not know are skipped (newer wireguard-go may add some); known keys must be
 * well-formed and in their section.
 */
export function parseGetReply (text: string): UapiDevice {
  const lines = replyLines(text)
  const dev: UapiDevice = { publicKey: '', listenPort: 0, fwmark: 0, peers: [] }
  let peer: WgPeerState | undefined
  let allowed: string[] = []
  const seen = new Set<string>()
  const finish = (): void => {
    if (peer === undefined) return
    peer.allowedIps = normaliseAllowedIps(allowed)
    dev.peers.push(peer)
  }
  for (let i = 0; i < lines.length; i++) {
    const [k, v] = lines[i]!
    const n = i + 1
    if (k === 'public_key') {
      finish()
      const key = keyFromHex(v)
      if (key === undefined) throw new Error(`uapi reply line ${n}: bad public_key`)
      if (seen.has(key)) throw new Error(`uapi reply line ${n}: peer listed twice`)
      seen.add(key)
      peer = { publicKey: key, allowedIps: [], persistentKeepalive: 0, latestHandshake: 0, rxBytes: 0, txBytes: 0 }
      allowed = []
      continue
    }
    if (peer === undefined) {
      if (k === 'private_key') {
        dev.publicKey = publicFromHex(v, n)
      } else if (k === 'listen_port') dev.listenPort = uint(v, 65535, k, n)
      else if (k === 'fwmark') dev.fwmark = uint(v, 0xffffffff, k, n)
      else if (PEER_KEYS.has(k)) throw new Error(`uapi reply line ${n}: ${k} before any public_key`)
      continue
    }
    switch (k) {
      case 'endpoint':
        try {
          peer.endpoint = normaliseEndpoint(v)
        } catch {
          throw new Error(`uapi reply line ${n}: bad endpoint`)
        }
        break
      case 'allowed_ip':
        try {
          allowed.push(normaliseCidr(v))
        } catch {
          throw new Error(`uapi reply line ${n}: bad allowed_ip`)
        }
        break
      case 'last_handshake_time_sec': peer.latestHandshake = uint(v, Number.MAX_SAFE_INTEGER, k, n); break
      case 'last_handshake_time_nsec': peer.latestHandshakeNsec = uint(v, 999_999_999, k, n); break
      case 'rx_bytes': peer.rxBytes = uint(v, Number.MAX_SAFE_INTEGER, k, n); break
      case 'tx_bytes': peer.txBytes = uint(v, Number.MAX_SAFE_INTEGER, k, n); break
      case 'persistent_keepalive_interval': peer.persistentKeepalive = uint(v, 65535, k, n); break
      case 'protocol_version': uint(v, 0xffffffff, k, n); break
      case 'preshared_key': if (!/^[0-9a-f]{64}$/.test(v)) throw new Error(`uapi reply line ${n}: bad preshared_key`); break
      default:
        if (DEVICE_KEYS.has(k)) throw new Error(`uapi reply line ${n}: ${k} after a peer`)
    }
  }
  finish()
  return dev
}

// the last derivation: every read of an unchanged device would otherwise repeat it
let derived: { hex: string, publicKey: string } | undefined
function publicFromHex (hex: string, line: number): string {
  if (derived?.hex === hex) return derived.publicKey
  const key = keyFromHex(hex)
  if (key === undefined) throw new Error(`uapi reply line ${line}: bad private_key`)
  derived = { hex, publicKey: wgPublicKeyFromPrivate(key) }
  return derived.publicKey
}

const DEVICE_KEYS = new Set(['private_key', 'listen_port', 'fwmark'])
const PEER_KEYS = new Set(['preshared_key', 'endpoint', 'allowed_ip', 'last_handshake_time_sec', 'last_handshake_time_nsec',
  'rx_bytes', 'tx_bytes', 'persistent_keepalive_interval', 'protocol_version'])

/** Enough for many thousands of peers; more is a broken or hostile socket. */
const MAX_REPLY_BYTES = 16 * 1024 * 1024

/**
 * One request on a fresh connection; resolves with the reply up to and including its
 * terminating empty line. Rejects with UapiUnavailableError when the socket is missing or
 * refuses, and with an Error on timeout, an early close or an oversized reply.
 */
export function uapiRequest (path: string, request: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ path })
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    const finish = (err: Error | undefined, reply?: string): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      if (err !== undefined) reject(err)
      else resolve(reply!)
    }
    const timer = setTimeout(() => finish(new Error(`uapi ${path}: no reply within ${timeoutMs} ms`)), timeoutMs)
    sock.on('connect', () => sock.write(request))
    sock.on('data', (b: Buffer) => {
      chunks.push(b)
      size += b.length
      if (size > MAX_REPLY_BYTES) return finish(new Error(`uapi ${path}: reply larger than ${MAX_REPLY_BYTES} bytes`))
      // the reply ends at its first empty line; look only near the new bytes
      const tail = Buffer.concat(chunks.length > 1 ? [chunks[chunks.length - 2]!.subarray(-1), b] : [b]).toString('latin1')
      if (tail.includes('\n\n')) {
        const text = Buffer.concat(chunks).toString('utf8')
        finish(undefined, text.slice(0, text.indexOf('\n\n') + 2))
      }
    })
    sock.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? ''
      finish(code === 'ENOENT' || code === 'ECONNREFUSED' ? new UapiUnavailableError(path, code) : new Error(`uapi ${path}: ${e.message}`))
    })
    sock.on('close', () => finish(new Error(`uapi ${path}: closed before the reply ended`)))
  })
}
