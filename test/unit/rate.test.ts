import { describe, it, expect, vi } from 'vitest'
import { createThrottledTask, createTokenBucket } from '../../src/util/rate.ts'

describe('token bucket', () => {
  it('allows a burst, then one per refill interval, never more than the burst', () => {
    let t = 0
    const bucket = createTokenBucket(3, 1000, () => t)
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false])
    t = 999
    expect(bucket.take()).toBe(false)
    t = 1000
    expect([bucket.take(), bucket.take()]).toEqual([true, false])
    t = 100_000 // a long quiet spell refills to the burst only
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false])
  })
})

describe('throttled task', () => {
  const setup = (): { runs: number[], task: ReturnType<typeof createThrottledTask>, release: () => void } => {
    const runs: number[] = []
    let gate: (() => void) | undefined
    const task = createThrottledTask(async () => {
      runs.push(Date.now())
      if (runs.length === 1) await new Promise<void>(resolve => { gate = resolve })
    }, 500)
    return { runs, task, release: () => gate?.() }
  }

  it('runs the first request at once, folds later ones into one run per interval', async () => {
    vi.useFakeTimers({ now: 0 })
    try {
      const { runs, task, release } = setup()
      task.schedule()
      await vi.advanceTimersByTimeAsync(0)
      expect(runs).toEqual([0])
      release()
      for (let i = 0; i < 10; i++) { task.schedule(); await vi.advanceTimersByTimeAsync(40) }
      expect(runs).toEqual([0])
      await vi.advanceTimersByTimeAsync(100)
      expect(runs).toEqual([0, 500]) // ten requests in 400 ms: one more run, at the interval's end
      await vi.advanceTimersByTimeAsync(5000)
      expect(runs).toEqual([0, 500])
      task.schedule()
      await vi.advanceTimersByTimeAsync(0)
      expect(runs).toEqual([0, 500, 5500]) // quiet for longer than the interval: at once again
    } finally { vi.useRealTimers() }
  })

  it('never overlaps runs; flush runs now and cancel drops a scheduled run', async () => {
    vi.useFakeTimers({ now: 0 })
    try {
      const { runs, task, release } = setup()
      const first = task.flush()
      const second = task.flush() // waits for the first, which is still running
      await vi.advanceTimersByTimeAsync(1000)
      expect(runs).toEqual([0])
      release()
      await first
      await second
      expect(runs).toEqual([0, 1000])
      task.schedule()
      task.cancel()
      await vi.advanceTimersByTimeAsync(5000)
      expect(runs).toEqual([0, 1000])
    } finally { vi.useRealTimers() }
  })
})
