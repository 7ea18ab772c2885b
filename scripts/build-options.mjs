// The esbuild options of the CLI and daemon bundles, shared by scripts/build.mjs and the bundle
// test (test/unit/bundle.test.ts), which checks what lands in the code a daemon loads.
import { readFile } from 'node:fs/promises'

// libp2p's peer store sorts addresses and protocol names with String#localeCompare, only to
// keep a stable order; the first call loads ICU's collation data into the process (2.2 MiB
// of RSS per daemon, measured). Code-unit order is just as stable. A call this does not
// recognise is reported as a build warning (and fails the bundle test).
const LOCALE_COMPARE = /([\w$]+(?:\.[\w$]+)*(?:\(\))?)\.localeCompare\(([\w$]+(?:\.[\w$]+)*(?:\(\))?)\)/g
const compareCodeUnits = {
  name: 'compare-code-units',
  setup (build) {
    build.onLoad({ filter: /[\\/]node_modules[\\/]@libp2p[\\/][^\\/]+[\\/]dist[\\/].*\.js$/ }, async args => {
      // handed back even when unchanged: esbuild would otherwise read the file again
      const source = await readFile(args.path, 'utf8')
      if (!source.includes('.localeCompare(')) return { contents: source, loader: 'js' }
      const contents = source.replace(LOCALE_COMPARE, '__w2wCompareCodeUnits($1, $2)') +
        '\nfunction __w2wCompareCodeUnits (a, b) { return a < b ? -1 : a > b ? 1 : 0 }\n'
      const warnings = contents.includes('.localeCompare(') ? [{ text: `a localeCompare call left in ${args.path}` }] : []
      return { contents, loader: 'js', warnings }
    })
  }
}

// Shared by both bundles below.
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  // Minified: V8 keeps each bundle's source in memory for as long as the daemon runs. Whitespace
  // and syntax took a third off (daemon chunk import: RSS 62.1 -> 59.5 MiB); short local names
  // a quarter of the rest (daemon chunk 619 -> 459 KB, live heap -0.4 MiB). Stack traces then
  // show short names: `node --enable-source-maps` maps them back through the linked maps.
  minifyWhitespace: true,
  minifySyntax: true,
  minifyIdentifiers: true,
  // Noise's two WebAssembly ciphers, replaced by OpenSSL (see the module)
  alias: {
    '@chainsafe/as-chacha20poly1305': './src/p2p/noise-ciphers.ts',
    '@chainsafe/as-sha256': './src/p2p/noise-ciphers.ts'
  },
  plugins: [compareCodeUnits],
  logLevel: 'warning'
}

// The CLI: the command line in ESM chunks, each loaded where a command needs it, so `status`,
// `leave` and `genpsk` start fast. `join`/`up` load the daemon bundle below instead.
export const buildOptions = {
  ...common,
  entryPoints: { w2wesher: 'cmd/w2wesher.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  format: 'esm',
  // some dependencies still call require(); give the ESM bundle one
  banner: { js: "import { createRequire as __w2wCreateRequire } from 'node:module'; const require = __w2wCreateRequire(import.meta.url);" }
}

// The daemon: one CommonJS file, which cmd/load-daemon.ts compiles with V8's code cache.
// @libp2p/kad-dht (only with --dht) stays in node_modules: bundled, its unused source cost every
// daemon 2.2 MiB of RSS (measured); yaml and prom-client, lazily loaded too, cost nothing measurable.
// No import() may be left: code from V8's cache loses the dynamic-import hook of the script it
// came from (Node 20), so kad-dht, which is ESM only, comes by require() (Node >= 20.19).
export const daemonBuildOptions = {
  ...common,
  entryPoints: { daemon: 'cmd/daemon.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  external: ['@libp2p/kad-dht'],
  supported: { 'dynamic-import': false },
  // what ESM code asks of import.meta, in CommonJS terms
  define: { 'import.meta.url': '__w2wImportMetaUrl', 'import.meta.dirname': '__dirname' },
  banner: { js: "const __w2wImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" }
}
