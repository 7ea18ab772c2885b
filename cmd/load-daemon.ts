import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import vm from 'node:vm'

// Loads dist/daemon.cjs with V8's code cache. A daemon otherwise spends a quarter of the CPU
// of its start compiling JavaScript: the bundle's top level, then every function the first
// time it runs. The build runs three daemons in one process once (scripts/code-cache.ts) and
// keeps what V8 compiled by then in dist/daemon.cjs.cache; a start reads it back instead of
// compiling. V8 refuses a cache made by another V8 version, with other flags or for another
// source, and then compiles as usual: the cache can only make a start faster. V8 knows the
// source only by its length, so the cache file starts with the SHA-256 of the bundle it was
// made for, and a cache for another bundle is refused here.
// Node 20 has no code cache for modules (module.enableCompileCache came with Node 22), hence
// one CommonJS bundle compiled here by hand.

export type DaemonModule = typeof import('./daemon.ts')
/**
 * used: V8 took the cache; rejected: it did not (another node binary, say); absent: no cache
 * file; off: source maps are on (`node --enable-source-maps`), so Node loads the bundle itself
 */
export type CodeCacheUse = 'used' | 'rejected' | 'absent' | 'off'

export interface LoadedDaemon {
  exports: DaemonModule
  codeCache: CodeCacheUse
  /** what V8 has compiled of the bundle so far, as the cache file's bytes (the build's training run) */
  createCodeCache: () => Buffer
}

export const DAEMON_BUNDLE = 'daemon.cjs'
export const CODE_CACHE_SUFFIX = '.cache'

/** `file`: the bundle (default: dist/daemon.cjs beside the CLI); `useCache: false` compiles from source. */
export function loadDaemon (file = fileURLToPath(new URL(`./${DAEMON_BUNDLE}`, import.meta.url)), useCache = true): LoadedDaemon {
  // A daemon's JavaScript only ever handles control traffic (tunnel data is WireGuard's), so
  // V8's optimising compiler, TurboFan, is not worth what it costs each daemon: ~6 MiB of RSS
  // (its code pages and compile zones) and background CPU for start-up code that runs a few
  // thousand times. The baseline compiler is kept (docs/benchmarks.md, round 11). Set before
  // anything compiles: V8 reads it at each tier-up, and a code cache is only taken under the
  // flags it was made with.
  setFlagsFromString('--max-opt=1')
  if (process.sourceMapsEnabled) {
    // Node maps stack traces through the bundle's source map only for code it loads itself
    const exports = createRequire(import.meta.url)(file) as DaemonModule
    return { exports, codeCache: 'off', createCodeCache: () => { throw new Error('no code cache with source maps on') } }
  }
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch (err) {
    throw new Error(`cannot read the daemon bundle ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}): run npm run build`)
  }
  const digest = createHash('sha256').update(bytes).digest()
  const cache = useCache ? readCache(file + CODE_CACHE_SUFFIX) : undefined
  const forThisBundle = cache !== undefined && cache.length > digest.length && cache.subarray(0, digest.length).equals(digest)
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${bytes.toString('utf8')}\n})`, {
    filename: file,
    cachedData: forThisBundle ? cache.subarray(digest.length) : undefined
  })
  const codeCache: CodeCacheUse = cache === undefined ? 'absent' : !forThisBundle || script.cachedDataRejected === true ? 'rejected' : 'used'
  const module = { exports: {} as DaemonModule }
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void
  wrapper.call(module.exports, module.exports, createRequire(file), module, file, dirname(file))
  return { exports: module.exports, codeCache, createCodeCache: () => Buffer.concat([digest, script.createCachedData()]) }
}

function readCache (path: string): Buffer | undefined {
  try {
    return readFileSync(path)
  } catch {
    return undefined // never built, or not readable: compile instead
  }
}
