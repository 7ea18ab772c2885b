import { describe, it, expect } from 'vitest'
import { build, type BuildResult, type Metafile, type OutputFile } from 'esbuild'
import { buildOptions, daemonBuildOptions } from '../../scripts/build-options.mjs'

// What a daemon start (`join`/`up`) loads: the CLI entry with the chunks it imports statically,
// then the daemon bundle (dist/daemon.cjs, through cmd/load-daemon.ts).

type Bundle = BuildResult & { metafile: Metafile, outputFiles: OutputFile[] }
const inMemory = { write: false, metafile: true, sourcemap: false, logLevel: 'silent' } as const
/** one in-memory build of each bundle for every test here */
let cli: Promise<Bundle> | undefined
let daemon: Promise<Bundle> | undefined
const cliBuilt = async (): Promise<Bundle> => await (cli ??= build({ ...buildOptions, ...inMemory }) as Promise<Bundle>)
const daemonBuilt = async (): Promise<Bundle> => await (daemon ??= build({ ...daemonBuildOptions, ...inMemory }) as Promise<Bundle>)

/** the CLI entry and every chunk it imports statically */
function entryOutputs (meta: Metafile): Set<string> {
  const outputs = meta.outputs
  const entry = Object.keys(outputs).find(f => outputs[f]?.entryPoint === 'cmd/w2wesher.ts')
  if (entry === undefined) throw new Error('no entry output')
  const seen = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    for (const i of outputs[file]?.imports ?? []) if (i.external !== true && i.kind === 'import-statement') visit(i.path)
  }
  visit(entry)
  return seen
}

/** the output files a daemon start loads, with the source files in them */
async function loaded (): Promise<{ files: OutputFile[], inputs: string[], daemonText: string }> {
  const [c, d] = [await cliBuilt(), await daemonBuilt()]
  const entry = [...entryOutputs(c.metafile)]
  const cliFiles = c.outputFiles.filter(f => entry.some(o => f.path.endsWith(o)))
  const daemonFile = d.outputFiles.find(f => f.path.endsWith('daemon.cjs'))
  if (daemonFile === undefined) throw new Error('no daemon.cjs output')
  const inputs = [...entry.flatMap(o => Object.keys(c.metafile.outputs[o]?.inputs ?? {})), ...Object.keys(Object.values(d.metafile.outputs)[0]?.inputs ?? {})]
  return { files: [...cliFiles, daemonFile], inputs, daemonText: daemonFile.text }
}

describe('CLI and daemon bundles', () => {
  it('keeps code a daemon does not run out of what a daemon start loads', async () => {
    const { inputs } = await loaded()
    const has = (re: RegExp): string[] => inputs.filter(i => re.test(i))
    expect(has(/src\/daemon\.ts$/)).toHaveLength(1) // the daemon bundle holds the daemon
    expect(has(/node_modules\/zod\/v4\/classic\/schemas\.js$/)).toHaveLength(1) // and zod
    // `import * as z`: zod's error-message translations and JSON-schema converters stay out
    expect(has(/node_modules\/zod\/v4\/locales\/(?!en\.js)/)).toEqual([])
    expect(has(/from-json-schema/)).toEqual([])
    // only with --dht, from node_modules: bundled, its unused source cost every daemon 2.2 MiB
    expect(has(/node_modules\/@libp2p\/kad-dht\//)).toEqual([])
  })

  it('loads no libp2p into the CLI entry: status, leave and genpsk stay fast', async () => {
    const c = await cliBuilt()
    const inputs = [...entryOutputs(c.metafile)].flatMap(o => Object.keys(c.metafile.outputs[o]?.inputs ?? {}))
    expect(inputs.some(i => i.endsWith('cmd/w2wesher.ts'))).toBe(true)
    expect(inputs.filter(i => /node_modules\/(libp2p|@libp2p|zod|pino|yaml)\//.test(i))).toEqual([])
  })

  it('leaves no import() in the daemon bundle: kad-dht comes by require()', async () => {
    // code from V8's code cache loses a script's dynamic-import hook: an import() would fail
    const { daemonText } = await loaded()
    expect(daemonText.match(/\bimport\(/g)).toBeNull()
    expect(daemonText.match(/require\("@libp2p\/[^"]+"\)/g)).toEqual(['require("@libp2p/kad-dht")'])
  })

  it('runs no WebAssembly and no ICU collation in a daemon', async () => {
    const { files, inputs } = await loaded()
    // noise's WebAssembly ciphers are aliased to OpenSSL, pnet's cipher is JavaScript
    expect(inputs.filter(i => /node_modules\/(@chainsafe\/as-|xsalsa20\/)/.test(i))).toEqual([])
    expect(inputs.filter(i => i.endsWith('src/p2p/noise-ciphers.ts'))).toHaveLength(1)
    expect([...(await cliBuilt()).warnings, ...(await daemonBuilt()).warnings].map(w => w.text)).toEqual([])
    expect(files.length).toBeGreaterThan(1)
    expect(files.filter(f => f.text.includes('WebAssembly.')).map(f => f.path)).toEqual([])
    // the entry's commander may collate its help output; nothing a running daemon calls may
    expect(files.filter(f => f.path.endsWith('daemon.cjs') && f.text.includes('.localeCompare('))).toEqual([])
  })

  it('keeps the code a daemon loads in Latin-1, which V8 holds at one byte per character', async () => {
    const { files } = await loaded()
    // (one character beyond U+00FF doubles the memory of that file's whole source)
    expect(files.map(f => ({ file: f.path.replace(/.*\//, ''), wide: f.text.match(/[^\u0000-\u00ff]/g)?.slice(0, 5) ?? [] })).filter(f => f.wide.length > 0)).toEqual([])
  })
})
