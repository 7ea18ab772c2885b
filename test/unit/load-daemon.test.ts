import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { build } from 'esbuild'
import { daemonBuildOptions } from '../../scripts/build-options.mjs'
import { CODE_CACHE_SUFFIX } from '../../cmd/load-daemon.ts'

// cmd/load-daemon.ts: the daemon bundle compiled with V8's code cache, and without it whenever
// the cache is missing, damaged or made for another bundle. Each load runs in a fresh node
// process (V8 also caches compiled scripts within a process).

const ROOT = resolve(import.meta.dirname, '..', '..')
const LOADER = join(ROOT, 'cmd', 'load-daemon.ts')
let dir: string
let bundle: string

/** loads `file` in a new process; `train`: run some of it, then write its code cache */
function load (file: string, opts: { train?: boolean, sourceMaps?: boolean } = {}): { codeCache: string, exports: string[], configError?: string } {
  const script = join(dir, `load-${Math.random().toString(36).slice(2)}.mts`)
  writeFileSync(script, `
import { writeFileSync } from 'node:fs'
import { loadDaemon } from ${JSON.stringify(LOADER)}
process.setSourceMapsEnabled(${opts.sourceMaps === true}) // tsx turns them on; a daemon runs without
const d = loadDaemon(${JSON.stringify(file)}, ${opts.train === true ? 'false' : 'true'})
let configError
try { await d.exports.loadConfig({ flags: { psk: 'not a key' }, env: {} }) } catch (err) { configError = err instanceof d.exports.ConfigError ? err.message : 'not a ConfigError' }
if (${opts.train === true}) writeFileSync(${JSON.stringify(file + CODE_CACHE_SUFFIX)}, d.createCodeCache())
console.log(JSON.stringify({ codeCache: d.codeCache, exports: Object.keys(d.exports).sort(), configError }))
`)
  return JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, encoding: 'utf8' }))
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'w2w-load-daemon-'))
  await build({ ...daemonBuildOptions, outdir: dir, sourcemap: false, logLevel: 'silent' })
  bundle = join(dir, 'daemon.cjs')
}, 60_000)
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

describe('loadDaemon', () => {
  const exportsOfTheBundle = ['ConfigError', 'createLogger', 'createMemoryDriver', 'loadConfig', 'startDaemon']

  it('compiles the bundle from source when there is no cache, and it works', () => {
    const r = load(bundle)
    expect(r.codeCache).toBe('absent')
    expect(r.exports).toEqual(exportsOfTheBundle)
    expect(r.configError).toMatch(/psk/) // the bundle's own ConfigError class
  })

  it('takes a cache made for the same bundle', () => {
    expect(load(bundle, { train: true }).codeCache).toBe('absent')
    expect(existsSync(bundle + CODE_CACHE_SUFFIX)).toBe(true)
    const r = load(bundle)
    expect(r.codeCache).toBe('used')
    expect(r.configError).toMatch(/psk/)
  })

  it('refuses a cache made for another bundle, and compiles instead', () => {
    // the same length (all V8 checks of the source) but another byte: the digest must catch it
    const other = join(dir, 'other.cjs')
    const text = readFileSync(bundle, 'utf8')
    const at = text.lastIndexOf('w2wesher')
    writeFileSync(other, text.slice(0, at) + 'W' + text.slice(at + 1))
    copyFileSync(bundle + CODE_CACHE_SUFFIX, other + CODE_CACHE_SUFFIX)
    const r = load(other)
    expect(r.codeCache).toBe('rejected')
    expect(r.configError).toMatch(/psk/)
  })

  it('refuses a damaged cache, and compiles instead', () => {
    const damaged = join(dir, 'damaged.cjs')
    copyFileSync(bundle, damaged)
    const cache = readFileSync(bundle + CODE_CACHE_SUFFIX)
    cache.fill(7, 32, 64) // the digest is right, V8's data is not
    writeFileSync(damaged + CODE_CACHE_SUFFIX, cache)
    const r = load(damaged)
    expect(r.codeCache).toBe('rejected')
    expect(r.exports).toEqual(exportsOfTheBundle)
  })

  it('leaves loading to Node when source maps are on (mapped stack traces), without the cache', () => {
    const r = load(bundle, { sourceMaps: true })
    expect(r.codeCache).toBe('off')
    expect(r.exports).toEqual(exportsOfTheBundle)
    expect(r.configError).toMatch(/psk/)
  })

  it('names the missing bundle and the fix', () => {
    const script = join(dir, 'missing.mts')
    writeFileSync(script, `import { loadDaemon } from ${JSON.stringify(LOADER)}\nprocess.setSourceMapsEnabled(false)\ntry { loadDaemon(${JSON.stringify(join(dir, 'nope.cjs'))}) } catch (err) { console.log(err.message) }\n`)
    expect(execFileSync(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, encoding: 'utf8' })).toMatch(/cannot read the daemon bundle .*nope\.cjs \(ENOENT\): run npm run build/)
  })

  // the build's own cache (scripts/code-cache.ts); npm test builds before it runs the tests
  const dist = join(ROOT, 'dist', 'daemon.cjs')
  it.skipIf(!existsSync(dist) && process.env.CI !== 'true')('takes the cache the build made', () => {
    expect(load(dist).codeCache).toBe('used')
  })
})
