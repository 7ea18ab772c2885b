import type { AbortOptions, MessageStream, StreamMuxer, StreamMuxerFactory } from '@libp2p/interface'

// Silent deaths (a partition, a peer that lost power) show on a connection only when
// something is sent on it. libp2p's connection monitor finds them by opening a stream and
// negotiating /ipfs/ping on every connection, from both ends: about 14 ms of CPU each, half
// the idle CPU of a 10-node mesh. The muxer can do the same with one 12-byte yamux PING
// frame and no stream. This wraps a muxer factory so that every connection it carries
// pings that way and is aborted when an answer does not come. A connection pings only after
// it has heard nothing for a while: anything from the peer (its own ping, data) shows it is
// alive, so the two ends of a quiet connection take turns instead of both pinging.

export interface LivenessOptions {
  /** how long a connection may stay silent before it pings (80–120% of it, so that a node's connections spread out) */
  intervalMs: number
  /** a ping unanswered this long aborts the connection */
  timeoutMs: number
}

/** A muxer that can ping its peer (yamux can). */
export interface PingingMuxer extends StreamMuxer {
  ping: (options?: AbortOptions) => Promise<number>
}

/** What `yamux()` returns: libp2p calls it once per node. */
export type MuxerFactoryInit<M extends PingingMuxer> = () => StreamMuxerFactory<M>

export function withLiveness<M extends PingingMuxer> (factory: MuxerFactoryInit<M>, opts: LivenessOptions): MuxerFactoryInit<M> {
  return () => {
    const inner = factory()
    return {
      protocol: inner.protocol,
      createStreamMuxer (stream: MessageStream): M {
        const muxer = inner.createStreamMuxer(stream)
        watch(muxer, stream, opts)
        return muxer
      }
    }
  }
}

function watch (muxer: PingingMuxer, stream: MessageStream, opts: LivenessOptions): void {
  let timer: NodeJS.Timeout | undefined
  let heardAt = performance.now()
  const heard = (): void => { heardAt = performance.now() }
  const silence = (): number => opts.intervalMs * (0.8 + Math.random() * 0.4)
  const wait = (ms: number): void => {
    timer = setTimeout(check, ms)
    timer.unref()
  }
  const next = (): void => { wait(silence()) }
  const check = (): void => {
    if (muxer.status !== 'open') return
    const quiet = performance.now() - heardAt
    if (quiet < opts.intervalMs * 0.8) {
      wait(silence() - quiet)
      return
    }
    muxer.ping({ signal: AbortSignal.timeout(opts.timeoutMs) }).then(next, (err: unknown) => {
      if (muxer.status !== 'open') return
      // the connection (and with it the muxer) closes with the stream it runs on
      const reason = new Error(`no answer to a liveness ping within ${opts.timeoutMs} ms (${(err as Error).message})`)
      reason.name = 'LivenessTimeoutError'
      stream.abort(reason)
    })
  }
  stream.addEventListener('message', heard)
  stream.addEventListener('close', () => {
    clearTimeout(timer)
    stream.removeEventListener('message', heard)
  }, { once: true })
  next()
}
