// Bundles the CLI into one ESM file: one read at start-up instead of hundreds of modules.
import { build } from 'esbuild'

await build({
  entryPoints: ['cmd/w2wesher.ts'],
  outfile: 'dist/w2wesher.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  // some dependencies still call require(); give the ESM bundle one
  banner: { js: "import { createRequire as __w2wCreateRequire } from 'node:module'; const require = __w2wCreateRequire(import.meta.url);" },
  logLevel: 'warning'
})
