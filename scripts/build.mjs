// Bundles the CLI into ESM chunks: the entry holds the command line and config; the daemon
// (libp2p and the rest) sits in a chunk loaded only by `join`/`up`, so `status`, `leave` and
// `genpsk` start fast. One read per chunk instead of hundreds of modules.
import { build } from 'esbuild'
import { rm } from 'node:fs/promises'
import { buildOptions } from './build-options.mjs'

await rm(buildOptions.outdir, { recursive: true, force: true })
await build(buildOptions)
