import { mkdir, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { networkInterfaces } from 'node:os'
import { isIPv4 } from 'node:net'
import { generatePsk } from './psk.ts'
import { DEFAULT_PORT } from './addresses.ts'
import { ipv4Range } from '../membership/ipam.ts'
import { writeFileAtomic } from '../util/fs.ts'

// `w2wesher init`: a new network in one step. Writes a config file (0600) holding a fresh
// key and returns the text to print: where the file is, and how the other nodes join.

export interface InitOptions {
  path: string
  /** a CIDR, or 'off' for an IPv6-only mesh */
  overlayIpv4: string
  stateDir?: string
  force: boolean
}

export async function initNetwork (opts: InitOptions): Promise<string> {
  const range = opts.overlayIpv4 === 'off' ? undefined : ipv4RangeOrFail(opts.overlayIpv4)
  if (!opts.force && await exists(opts.path)) {
    throw new Error(`${opts.path} already exists; pass --force to replace it (its old key stops working for this node)`)
  }
  const psk = generatePsk()
  const hex = psk.swarmKey.trim().split('\n').at(-1)!
  const yaml = [
    '# w2wesher network created by `w2wesher init`. Every member uses the same psk.',
    '# Keep this file private (0600). Run: w2wesher up --config ' + opts.path,
    `psk: "${hex}"`,
    range === undefined ? '# overlayIpv4: off (IPv6 only)' : `overlayIpv4: ${range}`,
    ...(opts.stateDir === undefined ? [] : [`stateDir: ${JSON.stringify(opts.stateDir)}`]),
    ''
  ].join('\n')
  await mkdir(dirname(opts.path), { recursive: true, mode: 0o700 })
  await writeFileAtomic(opts.path, yaml, 0o600)
  const joinFlags = [`--bootstrap ${bootstrapGuess()}:${DEFAULT_PORT}`, ...(range === undefined ? [] : [`--overlay-ipv4 ${range}`])]
  return [
    `wrote ${opts.path} (mode 0600) with a new network key`,
    `start this node:  w2wesher up --config ${opts.path}`,
    'on every other node (the key goes in the environment, out of ps):',
    `  W2WESHER_PSK=${hex} w2wesher join ${joinFlags.join(' ')}`,
    ''
  ].join('\n')
}

function ipv4RangeOrFail (cidr: string): string {
  try {
    return ipv4Range(cidr).cidr
  } catch (err) {
    throw new Error(`invalid --overlay-ipv4: ${(err as Error).message} (or "off" for IPv6 only)`)
  }
}

/** The address others most likely reach us at: a global IPv4, else IPv6, else a placeholder. */
function bootstrapGuess (): string {
  const addrs = Object.values(networkInterfaces()).flatMap(a => a ?? []).filter(a => !a.internal && !a.address.toLowerCase().startsWith('fe80:'))
  const v4 = addrs.find(a => isIPv4(a.address))
  if (v4 !== undefined) return v4.address
  const v6 = addrs.find(a => !isIPv4(a.address))
  return v6 !== undefined ? `[${v6.address}]` : '<this-node-address>'
}

async function exists (path: string): Promise<boolean> {
  try { await stat(path); return true } catch { return false }
}
