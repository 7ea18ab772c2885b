import { describe, it, expect } from 'vitest'
import { createTokenBucket } from '../../src/util/rate.ts'

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
