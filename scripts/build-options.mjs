// The esbuild options of the CLI bundle, shared by scripts/build.mjs and the bundle test
// (test/unit/bundle.test.ts), which checks what lands in the daemon's chunks.
export const buildOptions = {
  entryPoints: { w2wesher: 'cmd/w2wesher.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  // Whitespace and syntax minified, names kept: a third less source for V8 to read, parse and
  // hold (daemon chunk import: RSS 62.1 -> 59.5 MiB), while stack traces still name functions;
  // the linked maps give file positions (node --enable-source-maps).
  minifyWhitespace: true,
  minifySyntax: true,
  // some dependencies still call require(); give the ESM bundle one
  banner: { js: "import { createRequire as __w2wCreateRequire } from 'node:module'; const require = __w2wCreateRequire(import.meta.url);" },
  logLevel: 'warning'
}
