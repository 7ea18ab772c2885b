// The daemon side of the CLI (`join`/`up`): bundled on its own into dist/daemon.cjs, which
// cmd/load-daemon.ts compiles with V8's code cache (see there). Everything a daemon runs is
// in it, except @libp2p/kad-dht (only with --dht), which comes from node_modules.
import '../src/polyfill.ts'

export { ConfigError, loadConfig } from '../src/config/config.ts'
export { createLogger } from '../src/log.ts'
export { startDaemon } from '../src/daemon.ts'
// for the build's training run (scripts/code-cache.ts): daemons without root or WireGuard
export { createMemoryDriver } from '../src/wireguard/memory.ts'
