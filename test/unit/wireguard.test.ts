import { execFileSync } from 'node:child_process'
import { describe, it, expect } from 'vitest'
import { clampWgPrivateKey, generateWgKeyPair, isWgKey, wgPublicKeyFromPrivate } from '../../src/wireguard/keys.ts'
import {
  buildWgSetArgv,
  cidrContains,
  compareCidr,
  normaliseAllowedIps,
  normaliseCidr,
  normaliseEndpoint,
  normaliseInterfaceAddress,
  normaliseIp,
  parseIpJson,
  parseWgDump
} from '../../src/wireguard/parse.ts'
import { createMemoryDriver } from '../../src/wireguard/memory.ts'
import { CommandError, runCommand } from '../../src/wireguard/system.ts'

const K1 = 'FkOhL7YOvq1i6Y1P5X/hVVz/KKxlWUQyBeBjAS7E6D4='
const K2 = 'brDb9zmFDZMgU4gbHuuHad2LE5gqcGxo9fMnJLOd3zY='
const K3 = '7IWOZrj39xnFyvXadHDwms/Jd4m2zHcFfnZXTbxTlm0='

function hasWg (): boolean {
  try {
    execFileSync('wg', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

describe('keys', () => {
  it('generates 32-byte base64 keys whose public part derives from the private part', () => {
    for (let i = 0; i < 50; i++) {
      const k = generateWgKeyPair()
      expect(isWgKey(k.privateKey)).toBe(true)
      expect(isWgKey(k.publicKey)).toBe(true)
      expect(Buffer.from(k.privateKey, 'base64')).toHaveLength(32)
      expect(wgPublicKeyFromPrivate(k.privateKey)).toBe(k.publicKey)
      // generated keys are already clamped, like `wg genkey`
      expect(clampWgPrivateKey(k.privateKey)).toBe(k.privateKey)
    }
  })

  it('generates distinct keys', () => {
    const a = generateWgKeyPair()
    const b = generateWgKeyPair()
    expect(a.privateKey).not.toBe(b.privateKey)
    expect(a.publicKey).not.toBe(b.publicKey)
  })

  it('matches a known X25519 vector (RFC 7748 6.1, Alice)', () => {
    const priv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64')
    const pub = Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex').toString('base64')
    expect(wgPublicKeyFromPrivate(priv)).toBe(pub)
    // clamping does not change the public key
    expect(wgPublicKeyFromPrivate(clampWgPrivateKey(priv))).toBe(pub)
  })

  it.runIf(hasWg())('agrees with `wg pubkey`', () => {
    const k = generateWgKeyPair()
    const viaWg = execFileSync('wg', ['pubkey'], { input: `${k.privateKey}\n` }).toString().trim()
    expect(viaWg).toBe(k.publicKey)
  })

  it('isWgKey accepts only canonical base64 of exactly 32 bytes', () => {
    expect(isWgKey(K1)).toBe(true)
    expect(isWgKey('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')).toBe(true)
    expect(isWgKey('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=')).toBe(false) // non-canonical padding bits
    expect(isWgKey('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==')).toBe(false) // 31 bytes
    expect(isWgKey('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')).toBe(false) // 33 bytes
    expect(isWgKey('')).toBe(false)
    expect(isWgKey(`${K1}\n`)).toBe(false)
    expect(isWgKey(K1.replace('/', '_'))).toBe(false) // base64url is not what wg speaks
  })

  it('rejects a bad private key without echoing it', () => {
    expect(() => wgPublicKeyFromPrivate('secret-but-wrong')).toThrow(/invalid WireGuard private key/)
    try {
      wgPublicKeyFromPrivate('secret-but-wrong')
    } catch (e) {
      expect((e as Error).message).not.toContain('secret-but-wrong')
    }
  })
})

describe('address normalisation', () => {
  it('formats IPs the way wg/ip print them', () => {
    expect(normaliseIp('FD00:0:0::1')).toBe('fd00::1')
    expect(normaliseIp('fd00:0000:0000:0000:0000:0000:0000:0001')).toBe('fd00::1')
    expect(normaliseIp('2001:db8:0:1:0:0:0:1')).toBe('2001:db8:0:1::1')
    expect(normaliseIp('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1') // first longest run
    expect(normaliseIp('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1') // single 0 not compressed
    expect(normaliseIp('::')).toBe('::')
    expect(normaliseIp('::1')).toBe('::1')
    expect(normaliseIp('fd00::')).toBe('fd00::')
    expect(normaliseIp('::ffff:10.0.0.1')).toBe('::ffff:10.0.0.1')
    expect(normaliseIp('10.1.2.3')).toBe('10.1.2.3')
    for (const bad of ['10.1.2', '10.1.2.256', '010.1.2.3', 'fd00::1::2', 'fd00:1:2:3:4:5:6:7:8', 'g::1', '']) {
      expect(() => normaliseIp(bad), bad).toThrow()
    }
  })

  it('normalises allowed IPs: host bits cleared, default prefix, sorted, deduplicated', () => {
    expect(normaliseCidr('10.1.2.3/24')).toBe('10.1.2.0/24')
    expect(normaliseCidr('10.1.2.3')).toBe('10.1.2.3/32')
    expect(normaliseCidr('FD00:0::1')).toBe('fd00::1/128')
    expect(normaliseCidr('fd12:3456:789a:1::5/64')).toBe('fd12:3456:789a:1::/64')
    expect(normaliseCidr('0.0.0.0/0')).toBe('0.0.0.0/0')
    expect(normaliseCidr('10.255.255.255/9')).toBe('10.128.0.0/9')
    expect(() => normaliseCidr('10.0.0.1/33')).toThrow(/prefix length/)
    expect(() => normaliseCidr('fd00::1/129')).toThrow(/prefix length/)
    expect(normaliseAllowedIps(['fd00::2/128', '10.0.0.10/32', 'fd00::1/128', '10.0.0.9/32', '10.0.0.9'])).toEqual([
      '10.0.0.9/32', '10.0.0.10/32', 'fd00::1/128', 'fd00::2/128'
    ])
    expect(compareCidr('10.0.0.0/8', '10.0.0.0/16')).toBeLessThan(0)
  })

  it('keeps host bits of interface addresses and requires a prefix', () => {
    expect(normaliseInterfaceAddress('FD00:1:0::1/64')).toBe('fd00:1::1/64')
    expect(normaliseInterfaceAddress('198.18.200.1/24')).toBe('198.18.200.1/24')
    expect(() => normaliseInterfaceAddress('198.18.200.1')).toThrow(/missing \/prefix/)
  })

  it('normalises endpoints', () => {
    expect(normaliseEndpoint('1.2.3.4:10042')).toBe('1.2.3.4:10042')
    expect(normaliseEndpoint('[FD00:0::1]:10042')).toBe('[fd00::1]:10042')
    expect(normaliseEndpoint('[fe80::1%eth0]:5')).toBe('[fe80::1%eth0]:5')
    expect(normaliseEndpoint('vpn.example.org:51820')).toBe('vpn.example.org:51820')
    for (const bad of ['1.2.3.4', '1.2.3.4:0', '1.2.3.4:65536', 'fd00::1:10042', '[fd00::1]10042', '[10.0.0.1]:5', 'a b:5']) {
      expect(() => normaliseEndpoint(bad), bad).toThrow(/invalid endpoint/)
    }
  })

  it('checks containment', () => {
    expect(cidrContains('fd00:1::/64', 'fd00:1::5')).toBe(true)
    expect(cidrContains('fd00:1::5/128', 'fd00:1::5/64')).toBe(true)
    expect(cidrContains('fd00:1::5/128', 'fd00:1::6')).toBe(false)
    expect(cidrContains('10.0.0.0/8', 'fd00::1')).toBe(false)
    expect(cidrContains('10.0.0.0/8', '10.200.1.1')).toBe(true)
  })
})

describe('parseWgDump', () => {
  it('parses the interface line and peers, with (none), off and several allowed IPs', () => {
    const text = [
      'uOIYs1gzDtVRoLHC6ThY/s7mXZ6gjbxGRBHUBnEU4Fo=\tpvZOctMzbYVCvCS8PNZpI7GEecya4EblpoGDYprccwg=\t10042\toff',
      `${K1}\t(none)\t198.18.1.1:51820\t10.1.2.0/24,fd00::1/128,10.0.0.1/32,fd00::2/128\t1795457457\t180\t92\t25`,
      `${K2}\t(none)\t(none)\t(none)\t0\t0\t0\toff`,
      `${K3}\tpvZOctMzbYVCvCS8PNZpI7GEecya4EblpoGDYprccwg=\t[fd00::1]:5\tfd00:1::5/128\t0\t0\t0\toff`,
      ''
    ].join('\n')
    const d = parseWgDump(text)
    expect(d.privateKey).toBe('uOIYs1gzDtVRoLHC6ThY/s7mXZ6gjbxGRBHUBnEU4Fo=')
    expect(d.publicKey).toBe('pvZOctMzbYVCvCS8PNZpI7GEecya4EblpoGDYprccwg=')
    expect(d.listenPort).toBe(10042)
    expect(d.fwmark).toBe(0)
    expect(d.peers).toEqual([
      {
        publicKey: K1,
        endpoint: '198.18.1.1:51820',
        allowedIps: ['10.0.0.1/32', '10.1.2.0/24', 'fd00::1/128', 'fd00::2/128'],
        persistentKeepalive: 25,
        latestHandshake: 1795457457,
        rxBytes: 180,
        txBytes: 92
      },
      { publicKey: K2, allowedIps: [], persistentKeepalive: 0, latestHandshake: 0, rxBytes: 0, txBytes: 0 },
      {
        publicKey: K3,
        endpoint: '[fd00::1]:5',
        allowedIps: ['fd00:1::5/128'],
        persistentKeepalive: 0,
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0
      }
    ])
    expect('endpoint' in d.peers[1]!).toBe(false)
  })

  it('parses a fresh device without key and peers, and a hex fwmark', () => {
    const d = parseWgDump('(none)\t(none)\t52601\t0xca6c\n')
    expect(d.privateKey).toBeUndefined()
    expect(d.publicKey).toBe('')
    expect(d.listenPort).toBe(52601)
    expect(d.fwmark).toBe(0xca6c)
    expect(d.peers).toEqual([])
  })

  it('rejects malformed dumps', () => {
    expect(() => parseWgDump('')).toThrow(/empty/)
    expect(() => parseWgDump('a\tb\tc')).toThrow(/4 fields/)
    expect(() => parseWgDump(`(none)\t(none)\t1\toff\n${K1}\t(none)\t(none)`)).toThrow(/8 fields/)
    expect(() => parseWgDump(`(none)\t(none)\t1\toff\nnotakey\t(none)\t(none)\t(none)\t0\t0\t0\toff`)).toThrow(/public key/)
    expect(() => parseWgDump(`(none)\t(none)\tx\toff`)).toThrow(/listen-port/)
  })
})

describe('parseIpJson', () => {
  it('reads mtu, up, kind and global addresses (no link-local)', () => {
    const json = JSON.stringify([{
      ifindex: 2,
      ifname: 'w2wty0',
      flags: ['POINTOPOINT', 'MULTICAST', 'NOARP', 'UP', 'LOWER_UP'],
      mtu: 1420,
      linkinfo: { info_kind: 'tun', info_data: { type: 'tun' } },
      addr_info: [
        { family: 'inet6', local: 'fd00:1::1', prefixlen: 64, scope: 'global' },
        { family: 'inet', local: '198.18.200.1', prefixlen: 24, scope: 'global' },
        { family: 'inet6', local: 'fe80::72c1:35f4:6319:f09e', prefixlen: 64, scope: 'link' }
      ]
    }])
    expect(parseIpJson(json)).toEqual({
      name: 'w2wty0', mtu: 1420, up: true, kind: 'tun', addresses: ['198.18.200.1/24', 'fd00:1::1/64']
    })
    const down = parseIpJson(JSON.stringify([{ ifname: 'wg0', mtu: 1420, flags: ['POINTOPOINT', 'NOARP'], linkinfo: { info_kind: 'wireguard' } }]))
    expect(down).toEqual({ name: 'wg0', mtu: 1420, up: false, kind: 'wireguard', addresses: [] })
    expect(() => parseIpJson('[]')).toThrow()
    expect(() => parseIpJson('nope')).toThrow(/invalid JSON/)
  })
})

describe('buildWgSetArgv', () => {
  it('batches upserts and removals into one wg set', () => {
    const argv = buildWgSetArgv('wg0', [
      { publicKey: K1, endpoint: '[FD00::0:1]:10042', allowedIps: ['fd00:1::2/128', '10.1.0.2'], persistentKeepalive: 25 },
      { publicKey: K2, allowedIps: ['fd00:1::3/128'], persistentKeepalive: 0 }
    ], [K3])
    expect(argv).toEqual([
      'set', 'wg0',
      'peer', K1, 'endpoint', '[fd00::1]:10042', 'allowed-ips', '10.1.0.2/32,fd00:1::2/128', 'persistent-keepalive', '25',
      'peer', K2, 'allowed-ips', 'fd00:1::3/128', 'persistent-keepalive', 'off',
      'peer', K3, 'remove'
    ])
  })

  it('gives an empty allowed-ips list explicitly (clears it) and only removals when asked', () => {
    expect(buildWgSetArgv('wg0', [{ publicKey: K1, allowedIps: [], persistentKeepalive: 0 }], [])).toEqual([
      'set', 'wg0', 'peer', K1, 'allowed-ips', '', 'persistent-keepalive', 'off'
    ])
    expect(buildWgSetArgv('wg0', [], [K1, K2])).toEqual(['set', 'wg0', 'peer', K1, 'remove', 'peer', K2, 'remove'])
  })

  it('returns undefined when there is nothing to do', () => {
    expect(buildWgSetArgv('wg0', [], [])).toBeUndefined()
  })

  it('rejects bad input before anything runs', () => {
    expect(() => buildWgSetArgv('wg0', [{ publicKey: 'x', allowedIps: [], persistentKeepalive: 0 }], [])).toThrow(/invalid public key/)
    expect(() => buildWgSetArgv('wg0', [
      { publicKey: K1, allowedIps: [], persistentKeepalive: 0 },
      { publicKey: K1, allowedIps: [], persistentKeepalive: 0 }
    ], [])).toThrow(/twice/)
    expect(() => buildWgSetArgv('wg0', [{ publicKey: K1, allowedIps: [], persistentKeepalive: 0 }], [K1])).toThrow(/both/)
    expect(() => buildWgSetArgv('wg0', [{ publicKey: K1, allowedIps: ['10.0.0.1/40'], persistentKeepalive: 0 }], [])).toThrow(/prefix/)
    expect(() => buildWgSetArgv('wg0', [{ publicKey: K1, allowedIps: [], persistentKeepalive: -1 }], [])).toThrow(/keepalive/)
    expect(() => buildWgSetArgv('wg0', [{ publicKey: K1, endpoint: 'nope', allowedIps: [], persistentKeepalive: 0 }], [])).toThrow(/endpoint/)
    expect(() => buildWgSetArgv('bad name', [], [K1])).toThrow(/interface name/)
    expect(() => buildWgSetArgv('sixteen-chars-xx', [], [K1])).toThrow(/interface name/)
  })
})

describe('runCommand', () => {
  it('names the command and its stderr on failure, and times out', async () => {
    await expect(runCommand('sh', ['-c', 'echo boom >&2; exit 3'], { timeoutMs: 5000 })).rejects.toThrow(/^sh -c .* failed \(exit 3\): boom$/)
    await expect(runCommand('/nonexistent/cmd', [], { timeoutMs: 5000 })).rejects.toThrow(/\/nonexistent\/cmd failed \(failed to start\): .*ENOENT/)
    // wireguard-go: a banner on stderr, its error on stdout; other commands' stdout (wg show
    // prints the private key) never reaches a message
    const goLike = ['-c', 'echo "ERROR: Failed to create TUN device: permission denied"; echo "│ banner │" >&2; exit 1']
    await expect(runCommand('sh', goLike, { timeoutMs: 5000, stdoutExplains: true }))
      .rejects.toThrow(/^sh -c .* failed \(exit 1\): ERROR: Failed to create TUN device: permission denied$/)
    await expect(runCommand('sh', goLike, { timeoutMs: 5000 })).rejects.toThrow(/^sh -c .* failed \(exit 1\)$/)
    const e = await runCommand('sleep', ['5'], { timeoutMs: 100 }).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(CommandError)
    expect((e as CommandError).timedOut).toBe(true)
    expect((e as Error).message).toMatch(/sleep 5 failed \(timed out\)/)
  })

  it('pipes input on stdin', async () => {
    const { stdout } = await runCommand('cat', [], { timeoutMs: 5000, input: 'secret\n' })
    expect(stdout).toBe('secret\n')
  })
})

describe('memory driver', () => {
  const keyA = generateWgKeyPair()
  const cfg = { name: 'w2wmem0', privateKey: keyA.privateKey, listenPort: 10042, mtu: 1380, addresses: ['FD00:1::1/64', '198.18.200.1/24'] }

  it('creates, reads deep copies, and is idempotent', async () => {
    const d = createMemoryDriver()
    expect(await d.read('w2wmem0')).toBeUndefined()
    await d.ensureInterface(cfg)
    expect(d.implementation()).toBe('memory')
    const dev = await d.read('w2wmem0')
    expect(dev).toEqual({ name: 'w2wmem0', publicKey: keyA.publicKey, listenPort: 10042, peers: [] })
    expect(d.devices.get('w2wmem0')).toMatchObject({ mtu: 1380, up: true, addresses: ['198.18.200.1/24', 'fd00:1::1/64'] })
    dev!.peers.push({ publicKey: keyA.publicKey, allowedIps: [], persistentKeepalive: 0, latestHandshake: 0, rxBytes: 0, txBytes: 0 })
    expect((await d.read('w2wmem0'))!.peers).toEqual([])

    await d.ensureInterface({ ...cfg, addresses: ['198.18.200.1/24', 'fd00:1::1/64'] })
    expect(d.calls).toEqual([
      { op: 'ensureInterface', name: 'w2wmem0', changed: ['created', 'privateKey', 'listenPort', 'mtu', 'up', 'addresses'] },
      { op: 'ensureInterface', name: 'w2wmem0', changed: [] }
    ])
    await d.ensureInterface({ ...cfg, mtu: 1420, addresses: ['fd00:1::1/64'] })
    expect(d.calls.at(-1)).toEqual({ op: 'ensureInterface', name: 'w2wmem0', changed: ['mtu', 'addresses'] })
  })

  it('upserts and removes peers, keeps handshakes and untouched peers, records calls', async () => {
    const d = createMemoryDriver({ now: () => 1000 })
    await d.ensureInterface(cfg)
    await d.setPeers('w2wmem0', [
      { publicKey: K1, endpoint: '198.18.201.2:10042', allowedIps: ['fd00:1::2/128'], persistentKeepalive: 0 },
      { publicKey: K2, endpoint: '198.18.201.3:10042', allowedIps: ['fd00:1::3/128'], persistentKeepalive: 0 }
    ], [])
    d.simulateHandshake('w2wmem0', K1, 900)
    d.simulateHandshake('w2wmem0', K2)
    d.clearCalls()

    // update K1 without endpoint (leave as is), remove K2, add K3; K2's absence and K1's handshake checked below
    await d.setPeers('w2wmem0', [
      { publicKey: K1, allowedIps: ['fd00:1::2/128', '198.18.200.2/32'], persistentKeepalive: 25 },
      { publicKey: K3, allowedIps: [], persistentKeepalive: 0 }
    ], [K2])
    const dev = (await d.read('w2wmem0'))!
    const byKey = new Map(dev.peers.map((p) => [p.publicKey, p]))
    expect(byKey.has(K2)).toBe(false)
    expect(byKey.get(K1)).toEqual({
      publicKey: K1, endpoint: '198.18.201.2:10042', allowedIps: ['198.18.200.2/32', 'fd00:1::2/128'],
      persistentKeepalive: 25, latestHandshake: 900, rxBytes: 0, txBytes: 0
    })
    expect(byKey.get(K3)!.latestHandshake).toBe(0)
    expect(d.touchedPeers('w2wmem0')).toEqual(new Set([K1, K2, K3]))

    d.clearCalls()
    await d.setPeers('w2wmem0', [], [])
    await d.setPeers('w2wmem0', [], [K2]) // removing an absent peer is a no-op, like wg
    expect(d.calls).toEqual([{ op: 'setPeers', name: 'w2wmem0', upserts: [], removals: [K2] }])
    expect(d.touchedPeers().has(K1)).toBe(false)

    // ensureInterface never touches peers
    await d.ensureInterface({ ...cfg, mtu: 1300 })
    expect((await d.read('w2wmem0'))!.peers).toHaveLength(2)
  })

  it('validates like the system driver', async () => {
    const d = createMemoryDriver()
    await expect(d.ensureInterface({ ...cfg, privateKey: 'x' })).rejects.toThrow(/private key/)
    await expect(d.ensureInterface({ ...cfg, addresses: ['10.0.0.1'] })).rejects.toThrow(/prefix/)
    await expect(d.setPeers('w2wmem0', [{ publicKey: K1, allowedIps: [], persistentKeepalive: 0 }], [])).rejects.toThrow(/does not exist/)
    await d.ensureInterface(cfg)
    await expect(d.setPeers('w2wmem0', [{ publicKey: 'bad', allowedIps: [], persistentKeepalive: 0 }], [])).rejects.toThrow(/public key/)
    await expect(d.triggerHandshake('w2wmem0', 'not-an-ip')).rejects.toThrow(/not an IP/)
  })

  it('auto-handshakes on trigger and on a new keepalive when asked', async () => {
    const d = createMemoryDriver({ autoHandshake: true, now: () => 4242 })
    await d.ensureInterface(cfg)
    await d.setPeers('w2wmem0', [
      { publicKey: K1, endpoint: '198.18.201.2:10042', allowedIps: ['fd00:1::2/128'], persistentKeepalive: 0 },
      { publicKey: K2, endpoint: '198.18.201.3:10042', allowedIps: ['fd00:1::3/128'], persistentKeepalive: 25 },
      { publicKey: K3, allowedIps: ['fd00:1::4/128'], persistentKeepalive: 0 }
    ], [])
    let peers = new Map((await d.read('w2wmem0'))!.peers.map((p) => [p.publicKey, p.latestHandshake]))
    expect(peers).toEqual(new Map([[K1, 0], [K2, 4242], [K3, 0]]))
    await d.triggerHandshake('w2wmem0', 'fd00:1::2')
    await d.triggerHandshake('w2wmem0', 'fd00:1::4') // no endpoint: nothing happens
    peers = new Map((await d.read('w2wmem0'))!.peers.map((p) => [p.publicKey, p.latestHandshake]))
    expect(peers).toEqual(new Map([[K1, 4242], [K2, 4242], [K3, 0]]))
  })

  it('finds the peer to poke by an address inside a routed subnet too, and records nothing when told not to', async () => {
    const d = createMemoryDriver({ autoHandshake: true, now: () => 99, recordCalls: false })
    await d.ensureInterface(cfg)
    await d.setPeers('w2wmem0', [
      { publicKey: K1, endpoint: '198.18.201.2:10042', allowedIps: ['fd00:1::2/128'], persistentKeepalive: 0 },
      { publicKey: K2, endpoint: '198.18.201.3:10042', allowedIps: ['fd00:1::3/128', '10.50.0.0/24'], persistentKeepalive: 0 }
    ], [])
    await d.triggerHandshake('w2wmem0', '10.50.0.7')
    const peers = new Map((await d.read('w2wmem0'))!.peers.map((p) => [p.publicKey, p.latestHandshake]))
    expect(peers).toEqual(new Map([[K1, 0], [K2, 99]]))
    expect(d.calls).toEqual([])
  })

  it('a new private key resets sessions; destroy removes; failures can be injected', async () => {
    const d = createMemoryDriver({ now: () => 7 })
    await d.ensureInterface(cfg)
    await d.setPeers('w2wmem0', [{ publicKey: K1, allowedIps: [], persistentKeepalive: 0 }], [])
    d.simulateHandshake('w2wmem0', K1)
    const other = generateWgKeyPair()
    await d.ensureInterface({ ...cfg, privateKey: other.privateKey })
    const dev = (await d.read('w2wmem0'))!
    expect(dev.publicKey).toBe(other.publicKey)
    expect(dev.peers[0]!.latestHandshake).toBe(0)

    d.failNext('setPeers', new Error('injected'))
    await expect(d.setPeers('w2wmem0', [], [K1])).rejects.toThrow('injected')
    await d.setPeers('w2wmem0', [], [K1])

    await d.destroy('w2wmem0')
    await d.destroy('w2wmem0')
    expect(await d.read('w2wmem0')).toBeUndefined()
    expect(d.calls.filter((c) => c.op === 'destroy')).toEqual([
      { op: 'destroy', name: 'w2wmem0', existed: true },
      { op: 'destroy', name: 'w2wmem0', existed: false }
    ])
  })
})
