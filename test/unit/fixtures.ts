import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { addressFor, ipv4Range, ula64 } from '../../src/membership/ipam.ts'
import { RECORD_VERSION, signRecord, type NodeRecord, type SignedRecord } from '../../src/gossip/record.ts'
import { generateWgKeyPair } from '../../src/wireguard/keys.ts'
import { Membership } from '../../src/membership/table.ts'

export const ranges = { ipv6: ula64(Uint8Array.from([1, 2, 3, 4, 5, 6, 7])), ipv4: ipv4Range('10.223.0.0/16') }

export interface TestNode {
  key: PrivateKey
  peerId: string
  wgPublicKey: string
  record: (overrides?: Partial<NodeRecord>) => NodeRecord
  sign: (overrides?: Partial<NodeRecord>) => Promise<SignedRecord>
}

export async function makeNode (name = 'n'): Promise<TestNode> {
  const key = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key).toString()
  const wgPublicKey = generateWgKeyPair().publicKey
  const record = recordBuilder(peerId, name, wgPublicKey)
  return { key, peerId, wgPublicKey, record, sign: async (o) => await signRecord(record(o), key) }
}

/** A valid record for this node (its own addresses, seq counting up), with overrides. */
export function recordBuilder (peerId: string, name: string, wgPublicKey: string): (overrides?: Partial<NodeRecord>) => NodeRecord {
  let seq = 0
  return (overrides = {}) => ({
    v: RECORD_VERSION,
    peerId,
    name,
    wgPublicKey,
    ipv4: { address: addressFor(ranges.ipv4, peerId, 0), counter: 0, since: 1000 },
    ipv6: { address: addressFor(ranges.ipv6, peerId, 0), counter: 0, since: 1000 },
    wgPort: 10042,
    endpoints: ['198.18.0.1:10042'],
    addrs: ['/ip4/198.18.0.1/tcp/10042'],
    routes: [],
    seq: ++seq,
    issuedAt: 1000,
    ...overrides
  })
}

export function membershipFor (node: TestNode): Membership {
  return new Membership({ self: node.peerId, selfWgPublicKey: node.wgPublicKey, ipv6Range: ranges.ipv6, ipv4Range: ranges.ipv4 })
}
