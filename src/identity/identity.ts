import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { ensurePrivateDir, writeFileAtomic } from '../util/fs.ts'
import { generateWgKeyPair, isWgKey, wgPublicKeyFromPrivate } from '../wireguard/keys.ts'

// A node is its two keys: the libp2p Ed25519 key (peer id, record signatures) and the
// WireGuard X25519 key. Both are created once and kept in the state directory (0600).

export interface Identity {
  libp2pKey: PrivateKey
  peerId: string
  wgPrivateKey: string
  wgPublicKey: string
}

export const LIBP2P_KEY_FILE = 'libp2p.key'
export const WG_KEY_FILE = 'wireguard.key'

export async function loadIdentity (stateDir: string): Promise<Identity & { created: boolean }> {
  await ensurePrivateDir(stateDir)
  let created = false
  const libp2pPath = join(stateDir, LIBP2P_KEY_FILE)
  let libp2pKey: PrivateKey
  const libp2pBytes = await readIfExists(libp2pPath)
  if (libp2pBytes === undefined) {
    libp2pKey = await generateKeyPair('Ed25519')
    await writeFileAtomic(libp2pPath, privateKeyToProtobuf(libp2pKey))
    created = true
  } else {
    try {
      libp2pKey = privateKeyFromProtobuf(libp2pBytes)
    } catch {
      throw new Error(`${libp2pPath} is not a libp2p private key; restore it from backup or move it away to make a new identity`)
    }
    if (libp2pKey.type !== 'Ed25519') throw new Error(`${libp2pPath} holds a ${libp2pKey.type} key; w2wesher needs Ed25519`)
  }
  const wgPath = join(stateDir, WG_KEY_FILE)
  const wgBytes = await readIfExists(wgPath)
  let wgPrivateKey: string
  if (wgBytes === undefined) {
    wgPrivateKey = generateWgKeyPair().privateKey
    await writeFileAtomic(wgPath, `${wgPrivateKey}\n`)
    created = true
  } else {
    wgPrivateKey = Buffer.from(wgBytes).toString('utf8').trim()
    if (!isWgKey(wgPrivateKey)) throw new Error(`${wgPath} is not a WireGuard private key (base64 of 32 bytes); restore it or move it away`)
  }
  return {
    libp2pKey,
    peerId: peerIdFromPrivateKey(libp2pKey).toString(),
    wgPrivateKey,
    wgPublicKey: wgPublicKeyFromPrivate(wgPrivateKey),
    created
  }
}

async function readIfExists (path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}
