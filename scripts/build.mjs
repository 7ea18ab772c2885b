// Bundles the CLI into ESM chunks (dist/w2wesher.mjs and dist/chunks/: each command loads only
// what it needs) and the daemon into one CommonJS file (dist/daemon.cjs), then makes the
// daemon's code cache (dist/daemon.cjs.cache, see cmd/load-daemon.ts) in a training run. One
// read per bundle instead of hundreds of modules.
import { spawnSync } from 'node:child_process'
import { build } from 'esbuild'
import { rm } from 'node:fs/promises'
import { buildOptions, daemonBuildOptions } from './build-options.mjs'

await rm(buildOptions.outdir, { recursive: true, force: true })
await Promise.all([build(buildOptions), build(daemonBuildOptions)])
// A daemon starts without the cache too, only slower: a failed training run is a warning.
const training = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/code-cache.ts'], { stdio: 'inherit' })
if (training.status !== 0) console.warn(`build: no code cache for the daemon (training run exited ${training.status ?? training.signal}); daemons will compile at start`)
