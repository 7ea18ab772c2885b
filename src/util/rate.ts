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

/**
 * A task run soon after it is asked for, but not more often than once per `intervalMs`: the
 * first request after a quiet spell runs at once, requests in between fold into one run at the
 * end of the interval. Runs never overlap, so a later run always finishes after an earlier one.
 * `run` reports its own errors: a scheduled run that throws is dropped, a flushed one rejects.
 */
export interface ThrottledTask {
  /** ask for a run (at once when none ran in the last interval) */
  schedule: () => void
  /** run now, whatever is scheduled; resolves when this run is done */
  flush: () => Promise<void>
  /** drop a scheduled run */
  cancel: () => void
}

export function createThrottledTask (run: () => Promise<void>, intervalMs: number, now: () => number = Date.now): ThrottledTask {
  let timer: NodeJS.Timeout | undefined
  let lastStart = -Infinity
  let running: Promise<void> = Promise.resolve()
  const cancel = (): void => {
    if (timer !== undefined) { clearTimeout(timer); timer = undefined }
  }
  const flush = async (): Promise<void> => {
    cancel()
    lastStart = now()
    running = running.catch(() => {}).then(run)
    await running
  }
  return {
    schedule () {
      if (timer === undefined) timer = setTimeout(() => { timer = undefined; flush().catch(() => {}) }, Math.max(0, lastStart + intervalMs - now()))
    },
    flush,
    cancel
  }
}
