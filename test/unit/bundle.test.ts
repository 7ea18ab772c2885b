import { describe, it, expect } from 'vitest'
import { build, type BuildResult, type Metafile, type OutputFile } from 'esbuild'
import { buildOptions } from '../../scripts/build-options.mjs'

// What a daemon start (`join`/`up`) loads: the entry and the chunks it imports statically,
// plus the config, log and daemon chunks it imports dynamically, with their static imports.
function daemonOutputs (meta: Metafile): Set<string> {
  const outputs = meta.outputs
  const entry = Object.keys(outputs).find(f => outputs[f]?.entryPoint === 'cmd/w2wesher.ts')
  if (entry === undefined) throw new Error('no entry output')
  const seen = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    for (const i of outputs[file]?.imports ?? []) {
      if (i.external === true) continue
      const name = i.path.replace(/.*\//, '')
      // dynamic imports a daemon start follows; the rest (metrics, kad-dht, status, init) stay unloaded
      if (i.kind === 'import-statement' || (i.kind === 'dynamic-import' && /^(config|log|daemon)-/.test(name))) visit(i.path)
    }
  }
  visit(entry)
  return seen
}

function daemonInputs (meta: Metafile): Set<string> {
  return new Set([...daemonOutputs(meta)].flatMap(f => Object.keys(meta.outputs[f]?.inputs ?? {})))
}

/** one in-memory build of the CLI for every test here */
type Bundle = BuildResult & { metafile: Metafile, outputFiles: OutputFile[] }
let bundle: Promise<Bundle> | undefined
const built = async (): Promise<Bundle> => {
  bundle ??= build({ ...buildOptions, write: false, metafile: true, sourcemap: false, logLevel: 'silent' }) as Promise<Bundle>
  return await bundle
}

/** the output files a daemon start loads */
function loadedFiles (r: Bundle): OutputFile[] {
  const loaded = [...daemonOutputs(r.metafile)]
  return r.outputFiles.filter(f => loaded.some(o => f.path.endsWith(o)))
}

describe('CLI bundle', () => {
  it('keeps code a daemon does not run out of what a daemon start loads', async () => {
    const inputs = daemonInputs((await built()).metafile)
    const has = (re: RegExp): string[] => [...inputs].filter(i => re.test(i))
    expect(has(/src\/daemon\.ts$/)).toHaveLength(1) // the walk reaches the daemon
    expect(has(/node_modules\/zod\/v4\/classic\/schemas\.js$/)).toHaveLength(1) // and zod
    // `import * as z`: zod's error-message translations and JSON-schema converters stay out
    expect(has(/node_modules\/zod\/v4\/locales\/(?!en\.js)/)).toEqual([])
    expect(has(/from-json-schema/)).toEqual([])
    // loaded only when a config file is read, when metrics are on, or when the DHT is on
    expect(has(/node_modules\/yaml\//)).toEqual([])
    expect(has(/node_modules\/prom-client\//)).toEqual([])
    expect(has(/node_modules\/@libp2p\/kad-dht\//)).toEqual([])
  })

  it('runs no WebAssembly and no ICU collation in a daemon', async () => {
    const r = await built()
    const inputs = [...daemonInputs(r.metafile)]
    // noise's WebAssembly ciphers are aliased to OpenSSL, pnet's cipher is JavaScript
    expect(inputs.filter(i => /node_modules\/(@chainsafe\/as-|xsalsa20\/)/.test(i))).toEqual([])
    expect(inputs.filter(i => i.endsWith('src/p2p/noise-ciphers.ts'))).toHaveLength(1)
    expect(r.warnings.map(w => w.text)).toEqual([])
    const files = loadedFiles(r)
    expect(files.length).toBeGreaterThan(3)
    expect(files.filter(f => f.text.includes('WebAssembly.')).map(f => f.path)).toEqual([])
    // the entry's commander may collate its help output; nothing a running daemon calls may
    const chunks = files.filter(f => f.path.includes('/chunks/'))
    expect(chunks.filter(f => f.text.includes('.localeCompare(')).map(f => f.path)).toEqual([])
  })

  it('keeps the code a daemon loads in Latin-1, which V8 holds at one byte per character', async () => {
    const files = loadedFiles(await built())
    expect(files.length).toBeGreaterThan(3)
    // (one character beyond U+00FF doubles the memory of that chunk's whole source)
    expect(files.map(f => ({ file: f.path.replace(/.*\//, ''), wide: f.text.match(/[^\u0000-\u00ff]/g)?.slice(0, 5) ?? [] })).filter(f => f.wide.length > 0)).toEqual([])
  })
})
