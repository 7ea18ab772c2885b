import { spawn, type ChildProcess } from 'node:child_process'

// Our underlay addresses change when a laptop roams or a DHCP lease moves. Polling the
// interface list woke an idle daemon every 2 s (at 1 s the poll was a quarter of its CPU);
// instead the kernel pushes address events over netlink to one `ip monitor address` child per
// process, and we look at the interfaces only when one arrives. `setpriv --pdeathsig` ties the
// child to this process, so it dies with us even on kill -9. Where the child cannot run (no
// `ip` or `setpriv`) or dies, we poll as before.

/** the watcher: its lines are address events; it dies when its parent dies */
export const WATCH_COMMAND = ['setpriv', '--pdeathsig', 'KILL', '--', 'ip', '-o', 'monitor', 'address']
/** events within this time are reported once (a move is a delete and an add) */
const SETTLE_MS = 50

export interface AddressWatchOptions {
  /** called after addresses may have changed; the caller reads them and compares */
  onChange: () => void
  /** poll interval while no watcher runs */
  pollMs: number
  /** a check every this often even with the watcher running, in case an event was lost */
  safetyMs: number
  /** false: no watcher, poll only (many daemons in one process: benchmarks) */
  events?: boolean
  /** tests: another watcher command */
  command?: string[]
  log?: { debug: (o: object, m: string) => void }
}

export interface AddressWatch {
  /** 'events' while the watcher runs, 'poll' otherwise */
  mode: () => 'events' | 'poll'
  stop: () => void
}

export function watchAddresses (opts: AddressWatchOptions): AddressWatch {
  const command = opts.command ?? WATCH_COMMAND
  let child: ChildProcess | undefined
  let settle: NodeJS.Timeout | undefined
  let timer: NodeJS.Timeout | undefined
  let stopped = false

  const changed = (): void => {
    if (settle === undefined) settle = setTimeout(() => { settle = undefined; if (!stopped) opts.onChange() }, SETTLE_MS)
  }
  const every = (ms: number): void => {
    if (timer !== undefined) clearInterval(timer)
    timer = setInterval(opts.onChange, ms)
    timer.unref()
  }
  const fallBack = (reason: string): void => {
    if (stopped || child === undefined) return
    child = undefined
    opts.log?.debug({ reason, pollMs: opts.pollMs }, 'no address watcher: polling the interfaces')
    every(opts.pollMs)
    opts.onChange() // whatever happened while it was down
  }

  if (opts.events === false) {
    every(opts.pollMs)
  } else {
    every(opts.safetyMs)
    const started = spawn(command[0] as string, command.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] })
    child = started
    started.on('error', err => { fallBack(err.message) })
    started.on('exit', (code, signal) => { fallBack(`watcher exited (${signal ?? `code ${String(code)}`})`) })
    started.stdout?.on('data', changed)
    // the watcher must not keep the process alive; stop() ends it
    started.unref()
    ;(started.stdout as { unref?: () => void } | null)?.unref?.()
  }

  return {
    mode: () => child === undefined ? 'poll' : 'events',
    stop () {
      stopped = true
      if (timer !== undefined) clearInterval(timer)
      if (settle !== undefined) clearTimeout(settle)
      const running = child
      child = undefined
      running?.kill('SIGKILL')
    }
  }
}
