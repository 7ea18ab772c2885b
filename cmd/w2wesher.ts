#!/usr/bin/env node
import '../src/polyfill.ts'
import { createRequire } from 'node:module'
import { Command, Option } from 'commander'
import { generatePsk } from '../src/config/psk.ts'
import { loadDaemon } from './load-daemon.ts'
import type { RawConfig } from '../src/config/config.ts'
import type { ControlRequest } from '../src/control/socket.ts'
import type { StatusReport } from '../src/control/status.ts'

// Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage, 3 no daemon running.
// Errors are one line on stderr, prefixed "w2wesher:". Everything heavier than commander is
// imported where it is used, so `genpsk`, `status` and `leave` start fast.

// package.json sits one level up from cmd/ and from dist/ alike
const { version } = createRequire(import.meta.url)('../package.json') as { version: string }

const program = new Command('w2wesher')
  .description('Self-organising, encrypted full-mesh WireGuard overlay')
  .version(version, '-V, --version', 'print the version')
  .showHelpAfterError()
  .exitOverride(err => { process.exit(err.exitCode === 0 ? 0 : 2) })

program.command('genpsk')
  .description('print a new network key (swarm.key text) on stdout')
  .action(() => { process.stdout.write(generatePsk().swarmKey) })

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

function daemonOptions (cmd: Command): Command {
  return cmd
    .option('--config <file>', 'YAML config file (env W2WESHER_CONFIG)')
    .option('--psk <key>', 'network key (visible in ps; prefer --psk-file or W2WESHER_PSK)')
    .option('--psk-file <path>', 'file holding the network key')
    .option('--psk-accept <key>', 'extra network key accepted from dialers during a manual rotation; repeatable, comma-separated', collect)
    .option('--psk-grace-seconds <seconds>', 'how long rotate-psk keeps the old key accepted (default 60)')
    .option('--bootstrap <addr>', 'member to join through: host:port, [v6]:port, dns:port or multiaddr; repeatable, comma-separated', collect)
    .option('--state-dir <dir>', 'state directory (default /var/lib/w2wesher)')
    .option('--interface <name>', 'WireGuard interface (default wesh0)')
    .option('--listen <port|multiaddr>', 'libp2p listen port or multiaddr; repeatable (default 10042)', collect)
    .option('--wg-port <port>', 'WireGuard UDP port (default 10042)')
    .option('--overlay-ipv4 <cidr>', 'IPv4 overlay range, e.g. 10.223.0.0/16 (default: IPv6 only)')
    .option('--mtu <bytes>', 'interface MTU (default 1420)')
    .option('--name <name>', 'node name shown to others (default: hostname)')
    .option('--persistent-keepalive <seconds>', 'WireGuard PersistentKeepalive, 0 = off (default 25)')
    .option('--wireguard-go <path>', 'userspace WireGuard binary when the kernel has none')
    .addOption(new Option('--wireguard-mode <mode>', 'kernel device, userspace wireguard-go, or auto (kernel when available)').choices(['auto', 'kernel', 'userspace']))
    .option('--refresh-seconds <seconds>', 'how often the record is re-announced as a liveness signal (default 300)')
    .option('--expiry-seconds <seconds>', 'forget a member not heard from for this long (default 604800, 7 days)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error']))
    .addOption(new Option('--log-format <format>', 'log lines: readable on a terminal and JSON otherwise (auto), or always one').choices(['auto', 'json', 'pretty']))
    .option('--route <cidr>', 'subnet behind this node to route the mesh to, e.g. 10.77.0.0/24; repeatable, comma-separated', collect)
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9586 (default off)')
    .option('--hosts-file <path>', 'keep a managed block of member names in this hosts file, e.g. /etc/hosts (default off)')
    .option('--hosts-domain <domain>', 'domain of the names in the hosts file block (default wesh)')
    // --x then --no-x: commander leaves the value unset unless given, so env and YAML still apply
    .option('--mdns', 'find members on the local network by multicast DNS (default on)')
    .option('--no-mdns', 'no multicast DNS discovery')
    .option('--dht', 'kad-dht as extra peer routing among members (default off)')
    .option('--no-dht', 'no kad-dht')
    .option('--announce <ip[:port]>', 'extra WireGuard endpoint to advertise first, e.g. a cloud VM\'s public 1:1 NAT address; repeatable, comma-separated', collect)
}

interface DaemonFlags {
  config?: string
  psk?: string
  pskFile?: string
  pskAccept?: string[]
  pskGraceSeconds?: string
  bootstrap?: string[]
  stateDir?: string
  interface?: string
  listen?: string[]
  wgPort?: string
  overlayIpv4?: string
  mtu?: string
  name?: string
  persistentKeepalive?: string
  wireguardGo?: string
  wireguardMode?: string
  refreshSeconds?: string
  expirySeconds?: string
  logLevel?: string
  logFormat?: string
  route?: string[]
  metricsListen?: string
  hostsFile?: string
  hostsDomain?: string
  mdns?: boolean
  dht?: boolean
  announce?: string[]
}

async function runDaemon (flags: DaemonFlags): Promise<void> {
  const { config: file, route, ...other } = flags
  const rest = { ...other, routes: route }
  // the whole daemon, with the code cache when V8 takes it (see cmd/load-daemon.ts)
  let daemonCode
  try {
    daemonCode = loadDaemon()
  } catch (err) {
    fail(1, (err as Error).message)
  }
  const { exports: { ConfigError, createLogger, loadConfig, startDaemon }, codeCache } = daemonCode
  let config
  try {
    config = await loadConfig({ flags: rest as RawConfig, env: process.env, file: file ?? process.env.W2WESHER_CONFIG })
  } catch (err) {
    if (err instanceof ConfigError) fail(2, err.message)
    throw err
  }
  const log = createLogger(config.logLevel, config.logFormat)
  log.debug({ codeCache }, 'daemon code loaded')
  let daemon
  try {
    daemon = await startDaemon({ config, log })
  } catch (err) {
    log.fatal({ err: String(err) }, 'cannot start')
    fail(1, (err as Error).message)
  }
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'stopping; the WireGuard interface stays up')
    const force = setTimeout(() => process.exit(0), 5000)
    force.unref()
    daemon.stop().then(() => process.exit(0), () => process.exit(0))
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  // Network input must never take the daemon down: log and carry on.
  process.on('uncaughtException', err => log.error({ err: String(err), stack: err.stack }, 'uncaught exception (ignored)'))
  process.on('unhandledRejection', err => log.error({ err: String(err) }, 'unhandled rejection (ignored)'))
}

daemonOptions(program.command('join'))
  .description('run the daemon in the foreground; with no --bootstrap this node starts a new mesh')
  .action(runDaemon)

daemonOptions(program.command('up'))
  .description('run the daemon with everything from one YAML file (--config FILE)')
  .action(async (flags: DaemonFlags) => {
    if (flags.config === undefined && process.env.W2WESHER_CONFIG === undefined) fail(2, 'up needs --config FILE (or W2WESHER_CONFIG)')
    await runDaemon(flags)
  })

const DEFAULT_STATE_DIR = '/var/lib/w2wesher'
const stateDirOf = (flags: { stateDir?: string }): string => flags.stateDir ?? process.env.W2WESHER_STATE_DIR ?? DEFAULT_STATE_DIR

async function control (stateDir: string, request: ControlRequest): Promise<unknown> {
  const { requestControl, NoDaemonError } = await import('../src/control/socket.ts')
  try {
    return await requestControl(stateDir, request)
  } catch (err) {
    fail(err instanceof NoDaemonError ? 3 : 1, (err as Error).message)
  }
}

program.command('init')
  .description('create a new network: write a config file with a fresh key and print the command other nodes run to join')
  .option('--config <path>', 'where to write the config file', '/etc/w2wesher/config.yaml')
  .option('--overlay-ipv4 <cidr|off>', 'IPv4 overlay range', '10.223.0.0/16')
  .option('--state-dir <dir>', 'state directory to put in the config')
  .option('--force', 'replace an existing config file')
  .action(async (flags: { config: string, overlayIpv4: string, stateDir?: string, force?: boolean }) => {
    const { initNetwork } = await import('../src/config/init.ts')
    try {
      process.stdout.write(await initNetwork({ path: flags.config, overlayIpv4: flags.overlayIpv4, stateDir: flags.stateDir, force: flags.force === true }))
    } catch (err) {
      fail(2, (err as Error).message)
    }
  })

program.command('status')
  .description('show this node and every member, read from the running daemon')
  .option('--state-dir <dir>', 'state directory of the daemon (default /var/lib/w2wesher)')
  .option('--json', 'print the report as JSON (stable fields, see README)')
  .action(async (flags: { stateDir?: string, json?: boolean }) => {
    const report = await control(stateDirOf(flags), { cmd: 'status' }) as StatusReport
    const { formatStatus } = await import('../src/control/status.ts')
    process.stdout.write(flags.json === true ? `${JSON.stringify(report, null, 2)}
` : `${formatStatus(report)}
`)
  })

program.command('leave')
  .description('leave the mesh for good: tell every member, remove the interface, forget the mesh state')
  .option('--state-dir <dir>', 'state directory of the daemon (default /var/lib/w2wesher)')
  .action(async (flags: { stateDir?: string }) => {
    await control(stateDirOf(flags), { cmd: 'leave' })
    process.stdout.write('left the mesh\n')
  })

program.command('revoke')
  .description('revoke a member for good: every node drops its tunnel and refuses its connections; --rotate also changes the network key')
  .argument('<peer>', 'peer id or member name')
  .option('--state-dir <dir>', 'state directory of the daemon (default /var/lib/w2wesher)')
  .option('--rotate', 'then rotate the network key (rotate-psk); the revoked member never gets the new one')
  .option('--json', 'print the result as JSON')
  .action(async (peer: string, flags: { stateDir?: string, rotate?: boolean, json?: boolean }) => {
    const result = await control(stateDirOf(flags), { cmd: 'revoke', target: peer, rotate: flags.rotate === true }) as { revoked: string, name: string | null, alreadyRevoked: boolean, rotation: RotateResult | null, rotationError: string | null }
    if (flags.json === true) process.stdout.write(`${JSON.stringify(result)}\n`)
    else {
      process.stdout.write(`${result.alreadyRevoked ? 'already revoked' : 'revoked'} ${result.name ?? ''} ${result.revoked}\n`.replace('  ', ' '))
      if (result.rotation !== null) process.stdout.write(rotateText(result.rotation))
    }
    if (result.rotationError !== null) fail(1, `the member is revoked, but the key rotation did not start: ${result.rotationError}`)
  })

interface RotateResult { id: string, keyId: string, recipients: number, dropAt: string }
const rotateText = (r: RotateResult): string =>
  `network key rotation ${r.id} started: new key ${r.keyId} sent to ${r.recipients} members; the old key is refused from ${r.dropAt}\n` +
  'members that are offline now need the new key by hand (see SECURITY.md)\n'

program.command('rotate-psk')
  .description('change the network key without downtime: the new key goes to every member over the encrypted mesh')
  .option('--state-dir <dir>', 'state directory of the daemon (default /var/lib/w2wesher)')
  .option('--json', 'print the result as JSON')
  .action(async (flags: { stateDir?: string, json?: boolean }) => {
    const result = await control(stateDirOf(flags), { cmd: 'rotate-psk' }) as RotateResult
    process.stdout.write(flags.json === true ? `${JSON.stringify(result)}\n` : rotateText(result))
  })

function fail (code: number, message: string): never {
  process.stderr.write(`w2wesher: ${message}\n`)
  process.exit(code)
}

await program.parseAsync(process.argv)
