// The build's training run for the daemon's code cache (see cmd/load-daemon.ts): three daemons
// from dist/daemon.cjs in this process, with the in-memory WireGuard twin, meet on 127.0.0.1
// (no mDNS, no DHT: nothing leaves loopback) until each knows the other two. What V8 compiled
// by then (start-up, config, Noise, yamux, identify, gossipsub, sync, reconcile) is written to
// dist/daemon.cjs.cache. Run by scripts/build.mjs: `node --import tsx scripts/code-cache.ts`.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { CODE_CACHE_SUFFIX, DAEMON_BUNDLE, loadDaemon } from '../cmd/load-daemon.ts'
import { writeFileAtomic } from '../src/util/fs.ts'

const NODES = 3
const TIMEOUT_MS = 30_000

const bundle = resolve(import.meta.dirname, '..', 'dist', DAEMON_BUNDLE)
// tsx turns source maps on, and with them the loader leaves the bundle to Node; a daemon runs without
process.setSourceMapsEnabled(false)
const started = performance.now()
const daemon = loadDaemon(bundle, false)
const { createLogger, createMemoryDriver, loadConfig, startDaemon } = daemon.exports
const dir = mkdtempSync(join(tmpdir(), 'w2w-code-cache-'))
const daemons: Array<Awaited<ReturnType<typeof startDaemon>>> = []
const deadline = setTimeout(() => { console.error(`code cache: the training daemons did not meet within ${TIMEOUT_MS} ms`); process.exit(1) }, TIMEOUT_MS)
try {
  writeFileSync(join(dir, 'swarm.key'), `${'ab'.repeat(32)}\n`, { mode: 0o600 })
  const log = createLogger('info', 'json', { write: () => true })
  let bootstrap: string[] = []
  for (let i = 1; i <= NODES; i++) {
    // node 1 from a YAML file, as `up --config` reads one; the others from flags, as `join` does
    const file = join(dir, `n${i}.yaml`)
    if (i === 1) writeFileSync(file, `pskFile: ${join(dir, 'swarm.key')}\nname: n1\n`)
    const config = await loadConfig({
      flags: { stateDir: join(dir, `n${i}`), interface: `wcc${i}`, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, bootstrap, ...(i === 1 ? {} : { pskFile: join(dir, 'swarm.key'), name: `n${i}` }) },
      env: {},
      file: i === 1 ? file : undefined
    })
    const d = await startDaemon({ config, log, driver: createMemoryDriver({ autoHandshake: true, recordCalls: false }), allowLoopback: true, addressEvents: false })
    daemons.push(d)
    if (i === 1) {
      const port = d.host.getMultiaddrs()[0]?.getComponents().find(c => c.name === 'tcp')?.value
      if (port === undefined) throw new Error('the first training daemon listens on no TCP port')
      bootstrap = [`127.0.0.1:${port}`]
    }
  }
  while (!daemons.every(d => d.membership.members().length === NODES - 1)) await new Promise(resolve => setTimeout(resolve, 50))
  const metAfter = performance.now() - started
  // a little longer: the reconciler's second pass, liveness frames, a refresh of the records
  await new Promise(resolve => setTimeout(resolve, 1500))
  const cache = daemon.createCodeCache()
  await writeFileAtomic(bundle + CODE_CACHE_SUFFIX, cache, 0o644)
  console.log(`code cache: ${Math.round(cache.length / 1024)} KiB in ${bundle + CODE_CACHE_SUFFIX} (${NODES} daemons met after ${Math.round(metAfter)} ms)`)
} finally {
  clearTimeout(deadline)
  await Promise.all(daemons.map(async d => { await d.stop().catch(() => {}) }))
  rmSync(dir, { recursive: true, force: true })
}
