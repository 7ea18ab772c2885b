import { StreamState, YamuxStream } from '@libp2p/yamux/stream'

// @libp2p/yamux (8.0.3) answers every data frame it receives with a window update frame,
// however little of the 256 KiB receive window was used. Our streams carry small messages
// (records, digests, gossipsub RPCs), so each one cost a second frame back: its own Noise
// encryption, pnet cipher pass and socket write. A bootstrap taking in 24 members spent 7% of
// its time there; 25 daemons starting together used 60-65 CPU-s instead of 70-72 without it
// (2 runs each). Other yamux implementations (hashicorp's, which the spec comes from) send an
// update once half the window is used; so does this patch, for established streams (an
// update that also carries a SYN or ACK flag, or one sent while paused, goes as before).

interface WindowState {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

let applied = false

/** Patch the stream class once (idempotent). */
export function lessYamuxWindowUpdates (): void {
  if (applied) return
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: () => void }
  const sendWindowUpdate = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: WindowState): void {
    // the sender still has more than half the window: it is nowhere near blocking
    if (this.state === StreamState.Established && this.recvWindowCapacity * 2 > this.recvWindow) return
    sendWindowUpdate.call(this)
  }
  applied = true
}
