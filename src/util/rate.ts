/**
 * A token bucket: up to `burst` at once, then one per `refillMs`. Keeps bursts of network
 * input (mDNS answers, failed dials) from turning into bursts of our own work.
 */
export interface TokenBucket {
  /** true (and one token spent) when the bucket allows one more now */
  take: () => boolean
}

export function createTokenBucket (burst: number, refillMs = 1000, now: () => number = Date.now): TokenBucket {
  let tokens = burst
  let at = now()
  return {
    take () {
      const t = now()
      tokens = Math.min(burst, tokens + (t - at) / refillMs)
      at = t
      if (tokens < 1) return false
      tokens--
      return true
    }
  }
}
