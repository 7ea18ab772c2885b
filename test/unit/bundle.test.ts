import { describe, it, expect } from 'vitest'
import { build, type Metafile } from 'esbuild'
import { buildOptions } from '../../scripts/build-options.mjs'

// What a daemon start (`join`/`up`) loads: the entry and the chunks it imports statically,
// plus the config, log and daemon chunks it imports dynamically, with their static imports.
function daemonInputs (meta: Metafile): Set<string> {
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
  return new Set([...seen].flatMap(f => Object.keys(outputs[f]?.inputs ?? {})))
}

describe('CLI bundle', () => {
  it('keeps code a daemon does not run out of what a daemon start loads', async () => {
    const r = await build({ ...buildOptions, write: false, metafile: true, sourcemap: false, logLevel: 'silent' })
    const inputs = daemonInputs(r.metafile)
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
})
