import { describe, it, expect, afterEach } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'
import type { Host } from '../../src/p2p/host.ts'
import { lessYamuxWindowUpdates } from '../../src/p2p/yamux-window.ts'
import { testHost, testPsk } from './harness.ts'

// src/p2p/yamux-window.ts: a stream sends a window update once half its receive window is
// used, not after every data frame; bulk transfers larger than the window still complete.

const WINDOW_UPDATE = 1
const ACK = 2
const WINDOW = 256 * 1024

interface SentFrame { type: number, flag: number, length: number }

function fakeStream (state: StreamState, capacity: number): { stream: { sendWindowUpdate: () => void, recvWindowCapacity: number }, frames: SentFrame[] } {
  const frames: SentFrame[] = []
  const stream = Object.assign(Object.create(YamuxStream.prototype) as object, {
    state,
    recvWindow: WINDOW,
    recvWindowCapacity: capacity,
    maxStreamWindowSize: 16 * 1024 * 1024,
    epochStart: Date.now(),
    getRTT: () => -1,
    sendFrame: (frame: SentFrame) => { frames.push(frame) }
  })
  return { stream: stream as unknown as { sendWindowUpdate: () => void, recvWindowCapacity: number }, frames }
}

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => { for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {}) })

describe('yamux window updates', () => {
  it('an established stream updates its window once half of it is used', () => {
    lessYamuxWindowUpdates() // as src/p2p/host.ts does when it loads
    const { stream, frames } = fakeStream(StreamState.Established, WINDOW - 1000)
    stream.sendWindowUpdate()
    expect(frames).toEqual([])
    stream.recvWindowCapacity = WINDOW / 2 - 1
    stream.sendWindowUpdate()
    expect(frames).toEqual([expect.objectContaining({ type: WINDOW_UPDATE, flag: 0, length: WINDOW / 2 + 1 })])
    expect(stream.recvWindowCapacity).toBe(WINDOW)
  })

  it('an update that acknowledges a new stream goes at once', () => {
    lessYamuxWindowUpdates()
    const { stream, frames } = fakeStream(StreamState.SYNReceived, WINDOW)
    stream.sendWindowUpdate()
    expect(frames).toEqual([expect.objectContaining({ type: WINDOW_UPDATE, flag: ACK })])
  })

  it('2.5 windows of data in small frames arrive whole, with a handful of updates', async () => {
    const [a, b] = await Promise.all([0, 1].map(async () => await testHost(await generateKeyPair('Ed25519'), testPsk(0x11), ['/ip4/127.0.0.1/tcp/0']))) as [Host, Host]
    for (const h of [a, b]) { await h.start(); cleanup.push(async () => { await h.stop() }) }
    const CHUNK = 4 * 1024
    const CHUNKS = 160 // 640 KiB
    let updates = 0
    let handlerError: unknown
    await b.handle('/w2w-test/bulk/1', async stream => { try {
      expect(stream).toBeInstanceOf(YamuxStream)
      const frameSender = stream as unknown as { sendFrame: (header: SentFrame, data?: unknown) => void }
      const send = frameSender.sendFrame
      frameSender.sendFrame = (header, data) => { if (header.type === WINDOW_UPDATE) updates++; send(header, data) }
      const lp = lpStream(stream)
      let bytes = 0
      for (let i = 0; i < CHUNKS; i++) bytes += (await lp.read()).byteLength
      await lp.write(new TextEncoder().encode(String(bytes)))
      await stream.close()
    } catch (err) { handlerError = err; throw err } })
    const stream = await a.dialProtocol(b.getMultiaddrs()[0]!, '/w2w-test/bulk/1')
    const lp = lpStream(stream)
    for (let i = 0; i < CHUNKS; i++) await lp.write(new Uint8Array(CHUNK).fill(i))
    const reply = await lp.read().then(r => new TextDecoder().decode(r.subarray()), err => { throw handlerError ?? err })
    expect(Number(reply)).toBe(CHUNK * CHUNKS)
    // one update per half window received (plus the stream's ACK): 5 or 6, not 160
    console.log(`window updates for ${CHUNKS} frames: ${updates}`)
    expect(updates).toBeGreaterThanOrEqual(4)
    expect(updates).toBeLessThanOrEqual(8)
  }, 20_000)
})
