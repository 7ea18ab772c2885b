import { readFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import * as z from 'zod'
import { meshSeed, parsePsk, type Psk } from './psk.ts'
import { DEFAULT_PORT, parseBootstrap, parseListen } from './addresses.ts'
import { ipv4Range, ula64, type OverlayRange } from '../membership/ipam.ts'
import { canonicalRoute, cidrsOverlap, MAX_ROUTES, routeProblem } from '../membership/routes.ts'
import { parseListenAddress, type ListenAddress } from '../metrics/listen.ts'
import { parseAnnounce, type AnnounceAddress } from '../endpoints/local.ts'

// Configuration comes from flags > environment > YAML file > defaults. Every value is
// validated once here; an error names the field and every place it can be set.

export class ConfigError extends Error {
  constructor (readonly field: string, message: string) {
    super(message)
  }
}

/** The fields, with the flag, environment variable and YAML key that set each. */
const FIELDS = {
  psk: { flag: '--psk', env: 'W2WESHER_PSK' },
  pskFile: { flag: '--psk-file', env: 'W2WESHER_PSK_FILE' },
  pskAccept: { flag: '--psk-accept', env: 'W2WESHER_PSK_ACCEPT' },
  pskGraceSeconds: { flag: '--psk-grace-seconds', env: 'W2WESHER_PSK_GRACE_SECONDS' },
  bootstrap: { flag: '--bootstrap', env: 'W2WESHER_BOOTSTRAP' },
  stateDir: { flag: '--state-dir', env: 'W2WESHER_STATE_DIR' },
  interface: { flag: '--interface', env: 'W2WESHER_INTERFACE' },
  listen: { flag: '--listen', env: 'W2WESHER_LISTEN' },
  wgPort: { flag: '--wg-port', env: 'W2WESHER_WG_PORT' },
  overlayIpv4: { flag: '--overlay-ipv4', env: 'W2WESHER_OVERLAY_IPV4' },
  mtu: { flag: '--mtu', env: 'W2WESHER_MTU' },
  name: { flag: '--name', env: 'W2WESHER_NAME' },
  persistentKeepalive: { flag: '--persistent-keepalive', env: 'W2WESHER_PERSISTENT_KEEPALIVE' },
  wireguardGo: { flag: '--wireguard-go', env: 'W2WESHER_WIREGUARD_GO' },
  wireguardMode: { flag: '--wireguard-mode', env: 'W2WESHER_WIREGUARD_MODE' },
  refreshSeconds: { flag: '--refresh-seconds', env: 'W2WESHER_REFRESH_SECONDS' },
  expirySeconds: { flag: '--expiry-seconds', env: 'W2WESHER_EXPIRY_SECONDS' },
  logLevel: { flag: '--log-level', env: 'W2WESHER_LOG_LEVEL' },
  logFormat: { flag: '--log-format', env: 'W2WESHER_LOG_FORMAT' },
  routes: { flag: '--route', env: 'W2WESHER_ROUTES' },
  metricsListen: { flag: '--metrics-listen', env: 'W2WESHER_METRICS_LISTEN' },
  hostsFile: { flag: '--hosts-file', env: 'W2WESHER_HOSTS_FILE' },
  hostsDomain: { flag: '--hosts-domain', env: 'W2WESHER_HOSTS_DOMAIN' },
  mdns: { flag: '--mdns / --no-mdns', env: 'W2WESHER_MDNS' },
  dht: { flag: '--dht / --no-dht', env: 'W2WESHER_DHT' },
  announce: { flag: '--announce', env: 'W2WESHER_ANNOUNCE' }
} as const

export type Field = keyof typeof FIELDS
export type RawConfig = Partial<Record<Field, unknown>>

export interface Config {
  psk: Psk
  /** where psk came from when it is a file: a key rotation rewrites it */
  pskFile?: string
  /** further keys accepted from dialers (a manual rotation window); we dial with psk */
  pskAccept: Psk[]
  /** how long the old key stays accepted after a key rotation (w2wesher rotate-psk) starts */
  pskGraceSeconds: number
  bootstrap: string[]
  stateDir: string
  interface: string
  listen: string[]
  wgPort: number
  overlayIpv4?: OverlayRange
  mtu: number
  name: string
  persistentKeepalive: number
  wireguardGo: string
  wireguardMode: 'auto' | 'kernel' | 'userspace'
  refreshSeconds: number
  expirySeconds: number
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error'
  /** auto: readable lines on a TTY, JSON otherwise */
  logFormat: 'auto' | 'json' | 'pretty'
  /** subnets behind this node, announced to the mesh (canonical CIDRs) */
  routes: string[]
  /** Prometheus endpoint address; undefined = off */
  metricsListen?: ListenAddress
  /** hosts file holding our managed name block; undefined = off */
  hostsFile?: string
  hostsDomain: string
  /** find members on the local segment by multicast DNS */
  mdns: boolean
  /** kad-dht as extra peer routing for members whose addresses gossip did not bring */
  dht: boolean
  /** extra WireGuard endpoints our record lists first (e.g. a cloud VM's 1:1 NAT address) */
  announce: AnnounceAddress[]
}

const list = z.preprocess(
  v => typeof v === 'string' ? v.split(',') : typeof v === 'number' ? [v] : Array.isArray(v) ? v.flatMap(x => typeof x === 'string' ? x.split(',') : [x]) : v,
  z.array(z.union([z.string(), z.number()])).transform(a => a.map(x => String(x).trim()).filter(x => x !== ''))
)
const int = (min: number, max: number): z.ZodType<number> => z.preprocess(
  v => typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v,
  z.number({ error: 'must be a whole number' }).int('must be a whole number').min(min, `must be at least ${min}`).max(max, `must be at most ${max}`)
) as z.ZodType<number>
const BOOLEANS: Record<string, boolean> = { true: true, yes: true, on: true, 1: true, false: false, no: false, off: false, 0: false }
const bool = z.preprocess(
  v => typeof v === 'string' ? BOOLEANS[v.trim().toLowerCase()] ?? v : typeof v === 'number' ? BOOLEANS[String(v)] ?? v : v,
  z.boolean({ error: 'must be true or false' })
)

const schema = z.object({
  psk: z.string().optional(),
  pskFile: z.string().min(1).optional(),
  pskAccept: list.default([]),
  pskGraceSeconds: int(3, 86_400).default(60),
  bootstrap: list.default([]),
  stateDir: z.string().min(1).default('/var/lib/w2wesher'),
  interface: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, 'must be 1-15 characters of letters, digits, "_", "." or "-"').default('wesh0'),
  listen: list.default([]),
  wgPort: int(1, 65535).default(DEFAULT_PORT),
  overlayIpv4: z.string().optional(),
  mtu: int(1280, 9000).default(1420),
  name: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/, 'must be a hostname label (letters, digits, ".", "_", "-")').optional(),
  persistentKeepalive: int(0, 65535).default(25),
  wireguardGo: z.string().min(1).default('wireguard-go'),
  wireguardMode: z.enum(['auto', 'kernel', 'userspace']).default('auto'),
  refreshSeconds: int(10, 86_400).default(300),
  expirySeconds: int(60, 10 * 365 * 86_400).default(7 * 86_400),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
  logFormat: z.enum(['auto', 'json', 'pretty']).default('auto'),
  routes: list.default([]),
  metricsListen: z.string().optional(),
  hostsFile: z.string().min(1, 'must be a file path').optional(),
  hostsDomain: z.string().regex(/^(?=.{1,200}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, 'must be a DNS domain such as "wesh" or "mesh.example"').transform(d => d.toLowerCase()).default('wesh'),
  mdns: bool.default(true),
  dht: bool.default(false),
  announce: list.default([])
}).strict()

export interface ConfigSources {
  flags: RawConfig
  env: Record<string, string | undefined>
  /** YAML file path (from --config / W2WESHER_CONFIG) */
  file?: string
}

export async function loadConfig (sources: ConfigSources): Promise<Config> {
  const fromFile = sources.file === undefined ? {} : await readYaml(sources.file)
  const fromEnv: RawConfig = {}
  for (const [field, where] of Object.entries(FIELDS) as Array<[Field, typeof FIELDS[Field]]>) {
    const value = sources.env[where.env]
    if (value !== undefined && value !== '') fromEnv[field] = value
  }
  const flags = Object.fromEntries(Object.entries(sources.flags).filter(([, v]) => v !== undefined))
  return await resolveConfig({ ...fromFile, ...fromEnv, ...flags })
}

/** Validate merged raw values into a Config. */
export async function resolveConfig (raw: Record<string, unknown>): Promise<Config> {
  const parsed = schema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0] ?? ''
      throw new ConfigError(key, `unknown config key "${key}" (see config.example.yaml for the valid keys)`)
    }
    const field = String(issue.path[0] ?? '') as Field
    throw fieldError(field, issue.message, raw[field])
  }
  const c = parsed.data
  if (c.psk !== undefined && c.pskFile !== undefined) throw new ConfigError('psk', 'give either psk (--psk, W2WESHER_PSK) or pskFile (--psk-file, W2WESHER_PSK_FILE), not both')
  let pskText = c.psk
  if (c.pskFile !== undefined) {
    try {
      pskText = await readFile(c.pskFile, 'utf8')
    } catch (err) {
      throw fieldError('pskFile', `cannot read "${c.pskFile}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  if (pskText === undefined) throw new ConfigError('psk', 'no network key: pass --psk-file PATH (or --psk KEY, W2WESHER_PSK, psk/pskFile in YAML); make one with "w2wesher genpsk"')
  const psk = attempt(c.pskFile !== undefined ? 'pskFile' : 'psk', () => parsePsk(pskText))
  const pskAccept = c.pskAccept.map(k => attempt('pskAccept', () => parsePsk(k)))
  const bootstrap = c.bootstrap.map(b => attempt('bootstrap', () => parseBootstrap(b).toString()))
  const listen = c.listen.length === 0 ? parseListen(DEFAULT_PORT) : c.listen.flatMap(l => attempt('listen', () => parseListen(l)))
  const overlayIpv4 = c.overlayIpv4 === undefined || c.overlayIpv4 === '' || c.overlayIpv4 === 'off'
    ? undefined
    : attempt('overlayIpv4', () => ipv4Range(c.overlayIpv4!))
  const routes = attempt('routes', () => checkRoutes(c.routes, psk, overlayIpv4))
  return {
    psk,
    ...(c.pskFile !== undefined ? { pskFile: c.pskFile } : {}),
    pskAccept,
    pskGraceSeconds: c.pskGraceSeconds,
    bootstrap,
    stateDir: c.stateDir,
    interface: c.interface,
    listen,
    wgPort: c.wgPort,
    overlayIpv4,
    mtu: c.mtu,
    name: c.name ?? sanitizeName(hostname()),
    persistentKeepalive: c.persistentKeepalive,
    wireguardGo: c.wireguardGo,
    wireguardMode: c.wireguardMode,
    refreshSeconds: c.refreshSeconds,
    expirySeconds: c.expirySeconds,
    logLevel: c.logLevel,
    logFormat: c.logFormat,
    routes,
    metricsListen: c.metricsListen === undefined || c.metricsListen === '' || c.metricsListen === 'off'
      ? undefined
      : attempt('metricsListen', () => parseListenAddress(c.metricsListen!)),
    hostsFile: c.hostsFile,
    hostsDomain: c.hostsDomain,
    mdns: c.mdns,
    dht: c.dht,
    announce: c.announce.map(a => attempt('announce', () => parseAnnounce(a)))
  }
}

/** Our own routes: network addresses, clear of the overlay, reserved ranges and each other. */
function checkRoutes (texts: string[], psk: Psk, overlayIpv4: OverlayRange | undefined): string[] {
  if (texts.length > MAX_ROUTES) throw new Error(`at most ${MAX_ROUTES} routes (got ${texts.length})`)
  const overlay = [ula64(Buffer.from(meshSeed(psk), 'hex')), ...(overlayIpv4 === undefined ? [] : [overlayIpv4])]
  const routes: string[] = []
  for (const text of texts) {
    const route = canonicalRoute(text)
    const problem = routeProblem(route, overlay)
    if (problem !== undefined) throw new Error(`route ${route} ${problem}`)
    // Replies from the subnet reach us from our overlay address; without an IPv4 one, the
    // other side's WireGuard drops them.
    if (!route.includes(':') && overlayIpv4 === undefined) throw new Error(`IPv4 route ${route} needs an IPv4 overlay (set overlayIpv4)`)
    const clash = routes.find(r => cidrsOverlap(r, route))
    if (clash !== undefined) throw new Error(`route ${route} overlaps ${clash}, also listed`)
    routes.push(route)
  }
  return routes
}

async function readYaml (path: string): Promise<RawConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError('config', `cannot read config file "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  // Loaded only with a config file: flags and environment alone never pay for the parser.
  // yaml is CommonJS: the bundle's dynamic import gives only its default export.
  const yaml = await import('yaml') as typeof import('yaml') & { default?: typeof import('yaml') }
  const parseYaml = yaml.default?.parse ?? yaml.parse
  let data: unknown
  try {
    data = parseYaml(text)
  } catch (err) {
    throw new ConfigError('config', `config file "${path}" is not valid YAML: ${(err as Error).message.split('\n')[0]}`)
  }
  if (data === null || data === undefined) return {}
  if (typeof data !== 'object' || Array.isArray(data)) throw new ConfigError('config', `config file "${path}" must be a YAML mapping of keys to values`)
  return data as RawConfig
}

function attempt<T> (field: Field, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw fieldError(field, (err as Error).message)
  }
}

function fieldError (field: Field, message: string, value?: unknown): ConfigError {
  const where = FIELDS[field]
  const shown = value === undefined || field === 'psk' || field === 'pskAccept' ? '' : ` (got ${JSON.stringify(value)})`
  const fix = where === undefined ? '' : `; set it with ${where.flag}, ${where.env} or "${field}" in the YAML file`
  return new ConfigError(field, `invalid ${field}: ${message}${shown}${fix}`)
}

function sanitizeName (host: string): string {
  const name = host.split('.')[0]!.replace(/[^A-Za-z0-9_-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63)
  return name === '' ? 'node' : name
}
