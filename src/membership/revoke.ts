import { peerIdFromString } from '@libp2p/peer-id'

// `w2wesher revoke PEER_ID_OR_NAME`: which member the operator means. Names are not unique
// (they are only labels), so a name must match exactly one member; a peer id may also name a
// node we have never seen, revoked in advance.

export function resolveRevokeTarget (target: string, self: string, members: Array<{ peerId: string, name: string }>): string {
  const text = target.trim()
  if (text === '') throw new Error('revoke needs a peer id or a member name')
  let peerId: string | undefined
  if (members.some(m => m.peerId === text)) {
    peerId = text
  } else {
    const named = members.filter(m => m.name === text)
    if (named.length > 1) throw new Error(`${named.length} members are named "${text}": give the peer id (w2wesher status shows them)`)
    if (named.length === 1) peerId = named[0]!.peerId
    else if (isPeerId(text)) peerId = text
    else throw new Error(`no member is named "${text}" and it is not a peer id`)
  }
  if (peerId === self) throw new Error('cannot revoke ourselves: use "w2wesher leave" on this node')
  return peerId
}

function isPeerId (text: string): boolean {
  try {
    const id = peerIdFromString(text)
    return id.type === 'Ed25519' && id.toString() === text
  } catch {
    return false
  }
}
