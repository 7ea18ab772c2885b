import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, ConfigError } from '../../src/config/config.ts'
import { parseBootstrap, parseListen } from '../../src/config/addresses.ts'

const hex = 'ab'.repeat(32)
let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'w2w-config-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

const load = async (flags: Record<string, unknown>, env: Record<string, string> = {}, file?: string) =>
  await loadConfig({ flags, env, file })

async function errorOf (p: Promise<unknown>): Promise<ConfigError> {
  try { await p } catch (err) { expect(err).toBeInstanceOf(ConfigError); return err as ConfigError }
  throw new Error('expected a ConfigError')
}

describe('config', () => {
  it('fills the documented defaults', async () => {
    const c = await load({ psk: hex })
    expect(c).toMatchObject({ interface: 'wesh0', wgPort: 10042, mtu: 1420, stateDir: '/var/lib/w2wesher', persistentKeepalive: 25, bootstrap: [] })
    expect(c.listen).toEqual(['/ip4/0.0.0.0/tcp/10042', '/ip6/::/tcp/10042'])
    expect(c.overlayIpv4).toBeUndefined()
  })

  it('takes flags over env over YAML', async () => {
    const file = join(dir, 'a.yaml')
    await writeFile(file, `psk: "${hex}"\nwgPort: 1000\nmtu: 1300\ninterface: yaml0\nbootstrap:\n  - 198.18.0.1:10042\n`)
    const c = await load({ wgPort: '3000' }, { W2WESHER_WG_PORT: '2000', W2WESHER_MTU: '1400' }, file)
    expect(c.wgPort).toBe(3000)
    expect(c.mtu).toBe(1400)
    expect(c.interface).toBe('yaml0')
    expect(c.bootstrap).toEqual(['/ip4/198.18.0.1/tcp/10042'])
  })

  it('takes announce addresses from flags, env and YAML, and names the field on a bad one', async () => {
    expect((await load({ psk: hex })).announce).toEqual([])
    expect((await load({ psk: hex, announce: ['203.0.113.7', '[2001:db8::1]:4000'] })).announce).toEqual([{ host: '203.0.113.7' }, { host: '2001:db8::1', port: 4000 }])
    expect((await load({ psk: hex }, { W2WESHER_ANNOUNCE: '203.0.113.7:51820,198.51.100.1' })).announce).toEqual([{ host: '203.0.113.7', port: 51820 }, { host: '198.51.100.1' }])
    const file = join(dir, 'announce.yaml')
    await writeFile(file, `psk: "${hex}"\nannounce:\n  - 203.0.113.8\n`)
    expect((await load({}, {}, file)).announce).toEqual([{ host: '203.0.113.8' }])
    const err = await errorOf(load({ psk: hex, announce: ['vm.example.com'] }))
    expect(err.field).toBe('announce')
    expect(err.message).toMatch(/^invalid announce: .*not an IP address.*--announce, W2WESHER_ANNOUNCE/)
  })

  it('names the field, and where to set it, in every error', async () => {
    expect((await errorOf(load({ psk: hex, wgPort: '70000' }))).message).toMatch(/^invalid wgPort: must be at most 65535 .*--wg-port, W2WESHER_WG_PORT/)
    expect((await errorOf(load({ psk: hex, mtu: 'big' }))).field).toBe('mtu')
    expect((await errorOf(load({ psk: hex, interface: 'much-too-long-name0' }))).field).toBe('interface')
    expect((await errorOf(load({ psk: hex, overlayIpv4: '10.0.0.0/33' }))).message).toMatch(/^invalid overlayIpv4: .*prefix length/)
    expect((await errorOf(load({ psk: hex, bootstrap: ['/ip4/1.2.3.4/udp/5'] }))).message).toMatch(/^invalid bootstrap: .*no \/tcp\//)
    expect((await errorOf(load({ psk: hex, listen: ['nonsense'] }))).field).toBe('listen')
    expect((await errorOf(load({ psk: hex.slice(4) }))).message).toMatch(/^invalid psk: hex key has 60 characters/)
    expect((await errorOf(load({}))).message).toMatch(/no network key/)
    expect((await errorOf(load({ psk: hex, pskFile: '/x' }))).message).toMatch(/not both/)
    expect((await errorOf(load({ pskFile: join(dir, 'missing') }))).message).toMatch(/^invalid pskFile: cannot read .*ENOENT/)
    expect((await errorOf(load({ psk: hex, logLevel: 'loud' }))).field).toBe('logLevel')
  })

  it('rejects unknown YAML keys and bad YAML clearly', async () => {
    const unknown = join(dir, 'unknown.yaml')
    await writeFile(unknown, `psk: "${hex}"\nwg_port: 5\n`)
    expect((await errorOf(load({}, {}, unknown))).message).toMatch(/unknown config key "wg_port"/)
    const broken = join(dir, 'broken.yaml')
    await writeFile(broken, 'psk: [\n')
    expect((await errorOf(load({}, {}, broken))).message).toMatch(/not valid YAML/)
    const list = join(dir, 'list.yaml')
    await writeFile(list, '- a\n- b\n')
    expect((await errorOf(load({}, {}, list))).message).toMatch(/mapping/)
  })

  it('has mDNS on and the DHT off by default; both switch from flags, env and YAML', async () => {
    expect(await load({ psk: hex })).toMatchObject({ mdns: true, dht: false })
    expect(await load({ psk: hex, mdns: false, dht: true })).toMatchObject({ mdns: false, dht: true })
    expect(await load({ psk: hex }, { W2WESHER_MDNS: 'off', W2WESHER_DHT: '1' })).toMatchObject({ mdns: false, dht: true })
    const file = join(dir, 'bool.yaml')
    await writeFile(file, `psk: "${hex}"\nmdns: false\ndht: yes\n`)
    expect(await load({}, {}, file)).toMatchObject({ mdns: false, dht: true })
    // a flag beats the env, which beats the file
    expect(await load({ mdns: true }, { W2WESHER_MDNS: 'false' }, file)).toMatchObject({ mdns: true })
    const bad = await errorOf(load({ psk: hex }, { W2WESHER_MDNS: 'maybe' }))
    expect(bad.field).toBe('mdns')
    expect(bad.message).toMatch(/^invalid mdns: must be true or false .*--mdns \/ --no-mdns, W2WESHER_MDNS/)
    expect((await errorOf(load({ psk: hex, dht: 2 }))).field).toBe('dht')
  })

  it('never puts the PSK into an error message', async () => {
    const secret = 'cd'.repeat(31)
    const err = await errorOf(load({ psk: secret }))
    expect(err.message).not.toContain(secret)
  })
})

describe('routes and log format', () => {
  it('takes routes from a repeatable/comma flag, the environment or a YAML list, canonical', async () => {
    expect((await load({ psk: hex })).routes).toEqual([])
    const v4 = { psk: hex, overlayIpv4: '10.223.0.0/16' }
    expect((await load({ ...v4, routes: ['10.77.0.0/24,192.168.5.0/24', 'FD77:0::/48'] })).routes).toEqual(['10.77.0.0/24', '192.168.5.0/24', 'fd77::/48'])
    expect((await load(v4, { W2WESHER_ROUTES: '10.77.0.0/24, fd77::/48' })).routes).toEqual(['10.77.0.0/24', 'fd77::/48'])
    const file = join(dir, 'routes.yaml')
    await writeFile(file, `psk: "${hex}"\noverlayIpv4: 10.223.0.0/16\nroutes:\n  - 10.77.0.0/24\n  - fd77::/48\n`)
    expect((await load({}, {}, file)).routes).toEqual(['10.77.0.0/24', 'fd77::/48'])
  })

  it('rejects a bad route with one line naming the field and the fix', async () => {
    const v4 = { psk: hex, overlayIpv4: '10.223.0.0/16' }
    const e = await errorOf(load({ ...v4, routes: ['10.77.0.1/24'] }))
    expect(e.field).toBe('routes')
    expect(e.message).toMatch(/^invalid routes: "10\.77\.0\.1\/24" has host bits set: the network is 10\.77\.0\.0\/24; set it with --route, W2WESHER_ROUTES or "routes"/)
    expect(e.message).not.toContain('\n')
    expect((await errorOf(load({ ...v4, routes: ['10.223.7.0/24'] }))).message).toMatch(/route 10\.223\.7\.0\/24 overlaps the IPv4 overlay range 10\.223\.0\.0\/16/)
    expect((await errorOf(load({ ...v4, routes: ['fd00::/8'] }))).message).toMatch(/overlaps the IPv6 overlay range fd/)
    expect((await errorOf(load({ ...v4, routes: ['0.0.0.0/0'] }))).field).toBe('routes')
    expect((await errorOf(load({ ...v4, routes: ['10.77.0.0/16', '10.77.3.0/24'] }))).message).toMatch(/10\.77\.3\.0\/24 overlaps 10\.77\.0\.0\/16/)
    expect((await errorOf(load({ psk: hex, routes: ['10.77.0.0/24'] }))).message).toMatch(/needs an IPv4 overlay \(set overlayIpv4\)/)
    expect((await errorOf(load({ ...v4, routes: ['nonsense'] }))).message).toMatch(/^invalid routes: "nonsense" is not a CIDR/)
    const many = Array.from({ length: 33 }, (_, i) => `10.${100 + i}.0.0/16`)
    expect((await errorOf(load({ ...v4, routes: many }))).message).toMatch(/at most 32 routes/)
  })

  it('log format: auto by default, json or pretty on request, nothing else', async () => {
    expect((await load({ psk: hex })).logFormat).toBe('auto')
    expect((await load({ psk: hex }, { W2WESHER_LOG_FORMAT: 'json' })).logFormat).toBe('json')
    expect((await load({ psk: hex, logFormat: 'pretty' })).logFormat).toBe('pretty')
    expect((await errorOf(load({ psk: hex, logFormat: 'colour' }))).message).toMatch(/^invalid logFormat: .*--log-format, W2WESHER_LOG_FORMAT/)
  })
})

describe('bootstrap and listen addresses', () => {
  const id = '12D3KooWHk62UNH4Z3sis1yPy7bwenEM4VbjQro1HPTx1SCFDiUK'
  it('accepts every documented form', () => {
    expect(parseBootstrap('198.18.0.1:10042').toString()).toBe('/ip4/198.18.0.1/tcp/10042')
    expect(parseBootstrap('198.18.0.1').toString()).toBe('/ip4/198.18.0.1/tcp/10042')
    expect(parseBootstrap('[2001:db8::1]:9000').toString()).toBe('/ip6/2001:db8::1/tcp/9000')
    expect(parseBootstrap('2001:db8::1').toString()).toBe('/ip6/2001:db8::1/tcp/10042')
    expect(parseBootstrap('node1.example.com:10042').toString()).toBe('/dns/node1.example.com/tcp/10042')
    expect(parseBootstrap(`198.18.0.1:10042/p2p/${id}`).toString()).toBe(`/ip4/198.18.0.1/tcp/10042/p2p/${id}`)
    expect(parseBootstrap(`/ip4/198.18.0.1/tcp/10042/p2p/${id}`).toString()).toBe(`/ip4/198.18.0.1/tcp/10042/p2p/${id}`)
  })
  it('rejects bad ones with the reason', () => {
    expect(() => parseBootstrap('198.18.0.1:99999')).toThrow(/port must be/)
    expect(() => parseBootstrap('bad_host!:1')).toThrow(/neither an IP address nor a DNS name/)
    expect(() => parseBootstrap('198.18.0.1:1/p2p/notapeer')).toThrow(/not a valid peer id/)
    expect(() => parseBootstrap('/ip4/999.1.1.1/tcp/1')).toThrow(/not a valid multiaddr/)
    expect(() => parseBootstrap('[::1')).toThrow()
  })
  it('expands a port into IPv4 and IPv6 listeners', () => {
    expect(parseListen('4001')).toEqual(['/ip4/0.0.0.0/tcp/4001', '/ip6/::/tcp/4001'])
    expect(parseListen('/ip4/198.18.0.1/tcp/4001')).toEqual(['/ip4/198.18.0.1/tcp/4001'])
    expect(() => parseListen('0')).toThrow(/port must be/)
  })

  it('reads pskAccept (list, any key format) and pskGraceSeconds, and names them in errors without echoing keys', async () => {
    const other = Buffer.alloc(32, 0xcd).toString('base64')
    const c = await load({ psk: hex, pskAccept: [`${'ef'.repeat(32)},${other}`], pskGraceSeconds: '10' })
    expect(c.pskAccept.map(k => Buffer.from(k.bytes).toString('hex'))).toEqual(['ef'.repeat(32), 'cd'.repeat(32)])
    expect(c.pskGraceSeconds).toBe(10)
    const d = await load({ psk: hex })
    expect(d.pskAccept).toEqual([])
    expect(d.pskGraceSeconds).toBe(60)
    const bad = await errorOf(load({ psk: hex }, { W2WESHER_PSK_ACCEPT: 'deadbeef' }))
    expect(bad.message).toMatch(/^invalid pskAccept: hex key has 8 characters.*--psk-accept, W2WESHER_PSK_ACCEPT/)
    expect(bad.message).not.toContain('deadbeef')
    expect((await errorOf(load({ psk: hex, pskGraceSeconds: '1' }))).message).toMatch(/^invalid pskGraceSeconds: must be at least 3/)
    const keyFile = join(dir, 'rot.key')
    await writeFile(keyFile, hex)
    expect((await load({ pskFile: keyFile })).pskFile).toBe(keyFile)
  })
})
