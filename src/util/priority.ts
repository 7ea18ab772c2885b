import { readdirSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'

/**
 * The daemon's CPU priority once its interface is up: below the data plane and the host's own
 * work, so that the bursts of a (re)start (handshakes with every member) wait for them rather
 * than delay their packets. Restart benchmark (10 Hz ping while a daemon restarts, 2 cores,
 * 15 restarts each in alternating runs): longest reply gap median 113 ms (worst 117–136 ms
 * per run) at nice 0, 109 ms (113–115 ms) at nice 10.
 */
export const DAEMON_NICE = 10

/**
 * Raises the nice value of every thread of this process to `nice` (on Linux each thread has
 * its own; threads started later inherit it). Raising needs no privilege; a thread already at
 * `nice` or above is left alone. Returns how many threads changed.
 */
export function lowerPriority (nice = DAEMON_NICE): number {
  let threads: number[]
  try {
    threads = readdirSync('/proc/self/task').map(Number)
  } catch {
    threads = [0] // no /proc: this thread only
  }
  let changed = 0
  for (const tid of threads) {
    try {
      if (getPriority(tid) >= nice) continue
      setPriority(tid, nice)
      changed++
    } catch {
      // the thread ended meanwhile, or the system refuses: priority is an optimisation only
    }
  }
  return changed
}
