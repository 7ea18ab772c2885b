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

  it('never puts the PSK into an error message', async () => {
    const secret = 'cd'.repeat(31)
    const err = await errorOf(load({ psk: secret }))
    expect(err.message).not.toContain(secret)
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
})
