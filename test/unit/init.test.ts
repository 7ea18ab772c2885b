import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { initNetwork } from '../../src/config/init.ts'
import { loadConfig } from '../../src/config/config.ts'

const dirs: string[] = []
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

describe('w2wesher init', () => {
  it('writes a private, loadable config with a fresh key and prints the join command', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'w2w-init-')); dirs.push(dir)
    const path = join(dir, 'etc', 'config.yaml')
    const out = await initNetwork({ path, overlayIpv4: '10.50.0.0/20', force: false })
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const config = await loadConfig({ flags: {}, env: {}, file: path })
    expect(config.overlayIpv4?.cidr).toBe('10.50.0.0/20')
    const hex = Buffer.from(config.psk.bytes).toString('hex')
    expect(out).toContain(`W2WESHER_PSK=${hex} w2wesher join --bootstrap `)
    expect(out).toContain('--overlay-ipv4 10.50.0.0/20')
    // a second init never silently replaces the network key
    const before = await readFile(path, 'utf8')
    await expect(initNetwork({ path, overlayIpv4: 'off', force: false })).rejects.toThrow(/already exists; pass --force/)
    expect(await readFile(path, 'utf8')).toBe(before)
    await initNetwork({ path, overlayIpv4: 'off', force: true })
    const replaced = await loadConfig({ flags: {}, env: {}, file: path })
    expect(replaced.overlayIpv4).toBeUndefined()
    expect(Buffer.from(replaced.psk.bytes).toString('hex')).not.toBe(hex)
  })

  it('rejects a bad range naming the flag', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'w2w-init-')); dirs.push(dir)
    await expect(initNetwork({ path: join(dir, 'c.yaml'), overlayIpv4: '10.0.0.0/31', force: false })).rejects.toThrow(/^invalid --overlay-ipv4: .*\/30/)
  })
})

describe('config.example.yaml', () => {
  it('is valid and loads with every documented default', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'w2w-example-')); dirs.push(dir)
    const text = (await readFile('config.example.yaml', 'utf8')).replace('pskFile: /etc/w2wesher/swarm.key', `psk: "${'ab'.repeat(32)}"`)
    const file = join(dir, 'config.yaml')
    await (await import('node:fs/promises')).writeFile(file, text)
    const config = await loadConfig({ flags: {}, env: {}, file })
    expect(config).toMatchObject({ interface: 'wesh0', wgPort: 10042, mtu: 1420, persistentKeepalive: 25, stateDir: '/var/lib/w2wesher' })
  })
})
