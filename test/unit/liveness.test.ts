import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { MessageStream } from '@libp2p/interface'
import { withLiveness, type PingingMuxer } from '../../src/p2p/liveness.ts'

// The liveness pings' schedule (src/p2p/liveness.ts) with a stand-in muxer and fake clocks:
// a connection pings only after hearing nothing for an interval, so the two ends of a quiet
// connection share one ping per interval. (Real hosts and a real partition:
// test/integration/liveness.test.ts.)

const OPTS = { intervalMs: 1000, timeoutMs: 300 }

class FakeStream extends EventTarget {
  abortedWith?: Error
  abort (err: Error): void { this.abortedWith = err }
  hear (): void { this.dispatchEvent(new Event('message')) }
}

interface End { stream: FakeStream, muxer: { status: string, ping: () => Promise<number> }, pings: number }

function end (answer: (self: End) => Promise<number>): End {
  const self: End = { stream: new FakeStream(), muxer: { status: 'open', ping: async () => { self.pings++; return await answer(self) } }, pings: 0 }
  const factory = (): { protocol: string, createStreamMuxer: () => PingingMuxer } => ({ protocol: '/yamux/1.0.0', createStreamMuxer: () => self.muxer as unknown as PingingMuxer })
  withLiveness(factory as never, OPTS)().createStreamMuxer(self.stream as unknown as MessageStream)
  return self
}

beforeEach(() => { vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] }) })
afterEach(() => { vi.useRealTimers() })

describe('liveness pings', () => {
  it('ping a silent connection about once per interval while answers come', async () => {
    const e = end(async self => { self.stream.hear(); return 1 })
    await vi.advanceTimersByTimeAsync(20 * OPTS.intervalMs)
    expect(e.pings).toBeGreaterThanOrEqual(16)
    expect(e.pings).toBeLessThanOrEqual(25)
    expect(e.stream.abortedWith).toBeUndefined()
  })

  it('never ping while the peer keeps talking', async () => {
    const e = end(async () => 1)
    for (let t = 0; t < 20; t++) {
      await vi.advanceTimersByTimeAsync(OPTS.intervalMs / 2)
      e.stream.hear()
    }
    expect(e.pings).toBe(0)
  })

  it('take turns on the two ends of a quiet connection: one ping per interval between them', async () => {
    const ends: End[] = []
    // a ping reaches the other end (it hears something), then its answer comes back
    const viaPeer = (self: End): Promise<number> => { (ends[0] === self ? ends[1] : ends[0])!.stream.hear(); self.stream.hear(); return Promise.resolve(1) }
    ends.push(end(viaPeer), end(viaPeer))
    await vi.advanceTimersByTimeAsync(40 * OPTS.intervalMs)
    const total = ends[0]!.pings + ends[1]!.pings
    // both ends pinging on their own would make ~80
    expect(total).toBeGreaterThanOrEqual(30)
    expect(total).toBeLessThanOrEqual(50)
  })

  it('abort the connection when a ping goes unanswered', async () => {
    const e = end(async () => await new Promise<number>((_resolve, reject) => { setTimeout(() => { reject(new Error('timed out')) }, OPTS.timeoutMs) }))
    await vi.advanceTimersByTimeAsync(1.2 * OPTS.intervalMs + OPTS.timeoutMs + 10)
    expect(e.pings).toBe(1)
    expect(e.stream.abortedWith?.name).toBe('LivenessTimeoutError')
  })
})
