// The wireguard-go control-socket protocol (src/wireguard/uapi.ts) and the system driver's
// use of it, against a fake wireguard-go socket and fake `ip`/`wg` that record every call.
// No root, no real device.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir, type NetworkInterfaceInfo } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { generateWgKeyPair } from '../../src/wireguard/keys.ts'
import { createSystemDriver, FULL_CHECK_MS, parseProcNetDev, procNetDevLinks } from '../../src/wireguard/system.ts'
import {
  encodeSetDevice,
  encodeSetPeers,
  isLiteralEndpoint,
  keyFromHex,
  keyToHex,
  parseGetReply,
  parseSetReply,
  uapiRequest,
  UapiUnavailableError
} from '../../src/wireguard/uapi.ts'

const dev = generateWgKeyPair()
const K1 = generateWgKeyPair().publicKey
const K2 = generateWgKeyPair().publicKey
const hex = (k: string): string => keyToHex(k)

const GET = [
  `private_key=${hex(dev.privateKey)}`,
  'listen_port=10042',
  `public_key=${hex(K2)}`,
  `preshared_key=${'0'.repeat(64)}`,
  'protocol_version=1',
  'endpoint=[FD00::0002]:10043',
  'last_handshake_time_sec=1700000000',
  'last_handshake_time_nsec=12345',
  'tx_bytes=100',
  'rx_bytes=200',
  'persistent_keepalive_interval=25',
  'allowed_ip=fd00:1::2/128',
  'allowed_ip=198.18.200.2/32',
  `public_key=${hex(K1)}`,
  'endpoint=198.18.201.1:10042',
  'last_handshake_time_sec=0',
  'persistent_keepalive_interval=0',
  'errno=0',
  '',
  ''
].join('\n')

describe('uapi keys', () => {
  it('converts base64 to hex and back; rejects malformed keys without echoing them', () => {
    expect(hex(K1)).toMatch(/^[0-9a-f]{64}$/)
    expect(keyFromHex(hex(K1))).toBe(K1)
    expect(keyFromHex('ab')).toBeUndefined()
    expect(keyFromHex('G'.repeat(64))).toBeUndefined()
    expect(keyFromHex(hex(K1).toUpperCase())).toBeUndefined()
    expect(() => keyToHex('notakey')).toThrow(/^uapi: invalid key/)
    expect(() => keyToHex('notakey')).not.toThrow(/notakey/)
  })
})

describe('uapi encoder', () => {
  it('encodes a peer batch the way `wg set` would (allowed IPs replaced, keepalive 0 = off)', () => {
    const req = encodeSetPeers([
      { publicKey: K1, endpoint: '[FD00::1]:10042', allowedIps: ['fd00:1::1/128', '198.18.200.1'], persistentKeepalive: 0 },
      { publicKey: K2, allowedIps: [], persistentKeepalive: 25 }
    ], [dev.publicKey])
    expect(req).toBe([
      'set=1',
      `public_key=${hex(K1)}`, 'endpoint=[fd00::1]:10042', 'persistent_keepalive_interval=0', 'replace_allowed_ips=true',
      'allowed_ip=198.18.200.1/32', 'allowed_ip=fd00:1::1/128',
      `public_key=${hex(K2)}`, 'persistent_keepalive_interval=25', 'replace_allowed_ips=true',
      `public_key=${hex(dev.publicKey)}`, 'remove=true',
      '', ''
    ].join('\n'))
    expect(encodeSetPeers([], [])).toBeUndefined()
  })

  it('validates the batch and refuses host-name endpoints (the socket does not resolve)', () => {
    expect(() => encodeSetPeers([{ publicKey: 'x', allowedIps: [], persistentKeepalive: 0 }], [])).toThrow(/invalid public key/)
    expect(() => encodeSetPeers([{ publicKey: K1, allowedIps: ['nope'], persistentKeepalive: 0 }], [])).toThrow(/invalid allowed IP/)
    expect(() => encodeSetPeers([{ publicKey: K1, allowedIps: [], persistentKeepalive: 0 }], [K1])).toThrow(/both updated and removed/)
    expect(() => encodeSetPeers([{ publicKey: K1, endpoint: 'vpn.example.org:10042', allowedIps: [], persistentKeepalive: 0 }], [])).toThrow(/not an IP address/)
    expect(isLiteralEndpoint('198.18.0.1:1')).toBe(true)
    expect(isLiteralEndpoint('[fd00::1]:1')).toBe(true)
    expect(isLiteralEndpoint('vpn.example.org:1')).toBe(false)
  })

  it('encodes key and port; nothing when neither is given', () => {
    expect(encodeSetDevice({ privateKey: dev.privateKey, listenPort: 10042 })).toBe(`set=1\nprivate_key=${hex(dev.privateKey)}\nlisten_port=10042\n\n`)
    expect(encodeSetDevice({ listenPort: 1 })).toBe('set=1\nlisten_port=1\n\n')
    expect(encodeSetDevice({})).toBeUndefined()
    expect(() => encodeSetDevice({ listenPort: 70000 })).toThrow(/not 0-65535/)
  })
})

describe('uapi parser', () => {
  it('parses a get reply: public key derived, peers with normalised endpoint and allowed IPs', () => {
    expect(parseGetReply(GET)).toEqual({
      publicKey: dev.publicKey,
      listenPort: 10042,
      fwmark: 0,
      peers: [
        { publicKey: K2, endpoint: '[fd00::2]:10043', allowedIps: ['198.18.200.2/32', 'fd00:1::2/128'], persistentKeepalive: 25, latestHandshake: 1700000000, latestHandshakeNsec: 12345, rxBytes: 200, txBytes: 100 },
        { publicKey: K1, endpoint: '198.18.201.1:10042', allowedIps: [], persistentKeepalive: 0, latestHandshake: 0, rxBytes: 0, txBytes: 0 }
      ]
    })
  })

  it('a device without key or peers; unknown keys are skipped', () => {
    expect(parseGetReply('listen_port=0\nsome_future_key=whatever\nerrno=0\n\n')).toEqual({ publicKey: '', listenPort: 0, fwmark: 0, peers: [] })
    expect(parseGetReply('errno=0\n\n').peers).toEqual([])
  })

  const bad: Array<[string, string, RegExp]> = [
    ['empty', '', /not terminated/],
    ['no terminator', 'errno=0\n', /not terminated/],
    ['trailing bytes', 'errno=0\n\nx', /not terminated/],
    ['no errno', 'listen_port=1\n\n', /does not end with errno/],
    ['errno not last', 'errno=0\nlisten_port=1\n\n', /does not end with errno/],
    ['two errnos', 'errno=0\nerrno=0\n\n', /errno before the end/],
    ['errno non-zero', 'errno=-22\n\n', /errno=-22/],
    ['errno junk', 'errno=zero\n\n', /bad errno/],
    ['not key=value', 'listen_port\nerrno=0\n\n', /line 1: not key=value/],
    ['upper-case key', 'LISTEN_PORT=1\nerrno=0\n\n', /not key=value/],
    ['port too big', 'listen_port=65536\nerrno=0\n\n', /bad listen_port/],
    ['port negative', 'listen_port=-1\nerrno=0\n\n', /bad listen_port/],
    ['port leading zero', 'listen_port=010\nerrno=0\n\n', /bad listen_port/],
    ['bad private key', 'private_key=zz\nerrno=0\n\n', /line 1: bad private_key/],
    ['peer key first', 'endpoint=1.2.3.4:5\nerrno=0\n\n', /endpoint before any public_key/],
    ['bad public key', 'public_key=1234\nerrno=0\n\n', /bad public_key/],
    ['duplicate peer', `public_key=${hex(K1)}\npublic_key=${hex(K1)}\nerrno=0\n\n`, /listed twice/],
    ['bad endpoint', `public_key=${hex(K1)}\nendpoint=1.2.3.4\nerrno=0\n\n`, /line 2: bad endpoint/],
    ['bad allowed ip', `public_key=${hex(K1)}\nallowed_ip=1.2.3.4/33\nerrno=0\n\n`, /bad allowed_ip/],
    ['bad counter', `public_key=${hex(K1)}\nrx_bytes=1e3\nerrno=0\n\n`, /bad rx_bytes/],
    ['huge counter', `public_key=${hex(K1)}\ntx_bytes=99999999999999999999\nerrno=0\n\n`, /bad tx_bytes/],
    ['bad nsec', `public_key=${hex(K1)}\nlast_handshake_time_nsec=1000000000\nerrno=0\n\n`, /bad last_handshake_time_nsec/],
    ['bad psk', `public_key=${hex(K1)}\npreshared_key=x\nerrno=0\n\n`, /bad preshared_key/],
    ['device key in peer', `public_key=${hex(K1)}\nlisten_port=1\nerrno=0\n\n`, /listen_port after a peer/]
  ]
  it.each(bad)('rejects a malformed get reply: %s', (_name, text, re) => {
    expect(() => parseGetReply(text)).toThrow(re)
  })

  it('never echoes a private key in an error', () => {
    const secret = hex(dev.privateKey)
    for (const text of [`private_key=${secret}x\nerrno=0\n\n`, `private_key=${secret}\nlisten_port=x\nerrno=0\n\n`, `private_key=${secret}\nerrno=0\n`]) {
      let msg = ''
      try { parseGetReply(text) } catch (e) { msg = (e as Error).message }
      expect(msg).not.toBe('')
      expect(msg).not.toContain(secret.slice(0, 16))
    }
  })

  it('parses set replies: errno=0 only', () => {
    expect(() => parseSetReply('errno=0\n\n')).not.toThrow()
    expect(() => parseSetReply('errno=1\n\n')).toThrow(/errno=1/)
    expect(() => parseSetReply('listen_port=1\nerrno=0\n\n')).toThrow(/unexpected lines/)
    expect(() => parseSetReply('errno=0')).toThrow(/not terminated/)
  })
})

// ---------------------------------------------------------------------------------------
// A fake wireguard-go: a unix socket answering with whatever a test says.

let dir: string
let server: Server | undefined
/** requests the fake socket received */
let requests: string[]

function serve (name: string, answer: (request: string, sock: Socket) => void): Promise<void> {
  return new Promise((resolve) => {
    server = createServer((sock) => {
      let buf = ''
      sock.on('data', (b) => {
        buf += b.toString()
        if (buf.endsWith('\n\n')) { requests.push(buf); answer(buf, sock) }
      })
      sock.on('error', () => {})
    })
    server.listen(join(dir, `${name}.sock`), () => resolve())
  })
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'w2w-uapi-'))
  requests = []
})
afterEach(async () => {
  if (server !== undefined) await new Promise((resolve) => server!.close(resolve))
  server = undefined
  rmSync(dir, { recursive: true, force: true })
})

describe('uapiRequest', () => {
  it('sends the request and returns the reply up to its empty line, also when split in pieces', async () => {
    await serve('wgt0', (_r, sock) => {
      sock.write('listen_port=1')
      setTimeout(() => sock.write('\nerrno=0\n'), 10)
      setTimeout(() => sock.write('\n'), 20) // the terminator arrives on its own
    })
    expect(await uapiRequest(join(dir, 'wgt0.sock'), 'get=1\n\n', 2000)).toBe('listen_port=1\nerrno=0\n\n')
    expect(requests).toEqual(['get=1\n\n'])
  })

  it('missing or dead socket: UapiUnavailableError', async () => {
    await expect(uapiRequest(join(dir, 'none.sock'), 'get=1\n\n', 2000)).rejects.toBeInstanceOf(UapiUnavailableError)
    writeFileSync(join(dir, 'stale.sock'), '')
    await expect(uapiRequest(join(dir, 'stale.sock'), 'get=1\n\n', 2000)).rejects.toBeInstanceOf(UapiUnavailableError)
  })

  it('early close, silence and a flood are errors, not hangs', async () => {
    await serve('wgt0', (request, sock) => {
      if (request.startsWith('get')) sock.end('errno=0\n')
      else if (request.startsWith('set')) { /* never answers */ } else sock.write(Buffer.alloc(17 * 1024 * 1024, 'a'))
    })
    const path = join(dir, 'wgt0.sock')
    await expect(uapiRequest(path, 'get=1\n\n', 2000)).rejects.toThrow(/closed before the reply ended/)
    await expect(uapiRequest(path, 'set=1\n\n', 200)).rejects.toThrow(/no reply within 200 ms/)
    await expect(uapiRequest(path, 'flood=1\n\n', 5000)).rejects.toThrow(/reply larger than/)
  })
})

// ---------------------------------------------------------------------------------------
// The system driver on a userspace device: reads and peer changes over the socket, no process.

describe('system driver over the control socket', () => {
  /** fake `ip` and `wg` that log their argv; `ip` answers route queries with [] */
  function fakeTools (): { ip: string, wg: string, calls: () => string[] } {
    const log = join(dir, 'calls.log')
    const ip = join(dir, 'ip')
    const wg = join(dir, 'wg')
    writeFileSync(ip, `#!/bin/sh\necho "ip $*" >> '${log}'\ncase "$*" in *route*) echo '[]';; *) echo 'Cannot find device' >&2; exit 1;; esac\n`)
    writeFileSync(wg, `#!/bin/sh\necho "wg $*" >> '${log}'\necho 'Unable to access interface: Protocol not supported' >&2\nexit 1\n`)
    chmodSync(ip, 0o755)
    chmodSync(wg, 0o755)
    return { ip, wg, calls: () => existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l !== '') : [] }
  }

  it('read and setPeers use the socket and spawn nothing', async () => {
    await serve('wgt0', (request, sock) => { sock.write(request.startsWith('get=1') ? GET : 'errno=0\n\n') })
    const tools = fakeTools()
    const d = createSystemDriver({ socketDir: dir, ip: tools.ip, wg: tools.wg })
    const device = await d.read('wgt0')
    expect(device).toEqual({ name: 'wgt0', publicKey: dev.publicKey, listenPort: 10042, peers: parseGetReply(GET).peers.sort((a, b) => a.publicKey < b.publicKey ? -1 : 1) })
    await d.setPeers('wgt0', [{ publicKey: K1, endpoint: '198.18.201.1:10042', allowedIps: ['198.18.200.1/32'], persistentKeepalive: 25 }], [K2])
    expect(requests[1]).toBe(`set=1\npublic_key=${hex(K1)}\nendpoint=198.18.201.1:10042\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=198.18.200.1/32\npublic_key=${hex(K2)}\nremove=true\n\n`)
    expect(tools.calls()).toEqual([])
  })

  it('an errno from wireguard-go or a malformed reply is an error', async () => {
    await serve('wgt0', (request, sock) => { sock.write(request.startsWith('get=1') ? 'listen_port=x\nerrno=0\n\n' : 'errno=22\n\n') })
    const tools = fakeTools()
    const d = createSystemDriver({ socketDir: dir, ip: tools.ip, wg: tools.wg, linkNames: () => undefined })
    await expect(d.setPeers('wgt0', [], [K1])).rejects.toThrow(/errno=22/)
    // the malformed reply is reported; ip only confirms the interface is there (here: it says it is not)
    expect(await d.read('wgt0')).toBeUndefined()
    expect(tools.calls()).toEqual(['ip -json -d addr show dev wgt0'])
  })

  it('no socket: falls back to wg, and ip tells a missing interface from a failure', async () => {
    const tools = fakeTools()
    // the namespace's link list unknown: ip is asked
    const d = createSystemDriver({ socketDir: dir, ip: tools.ip, wg: tools.wg, linkNames: () => undefined })
    expect(await d.read('wgt1')).toBeUndefined()
    expect(tools.calls()).toEqual(['wg show wgt1 dump', 'ip -json -d addr show dev wgt1'])
  })

  it('a link the namespace does not list needs no ip to be missing; a listed one is asked about', async () => {
    const tools = fakeTools()
    const d = createSystemDriver({ socketDir: dir, ip: tools.ip, wg: tools.wg, linkNames: () => new Set(['lo', 'wgt2']) })
    expect(await d.read('wgt1')).toBeUndefined()
    expect(tools.calls()).toEqual(['wg show wgt1 dump'])
    expect(await d.read('wgt2')).toBeUndefined() // the fake ip says it is gone
    expect(tools.calls()).toEqual(['wg show wgt1 dump', 'wg show wgt2 dump', 'ip -json -d addr show dev wgt2'])
  })

  it('the link list comes from /proc/net/dev', () => {
    const sample = [
      'Inter-|   Receive                                                |  Transmit',
      ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
      '    lo: 2045039 13179    0    0    0     0          0         0  2045039 13179    0    0    0     0       0          0',
      'wg-mesh0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0',
      ''
    ].join('\n')
    expect([...parseProcNetDev(sample)]).toEqual(['lo', 'wg-mesh0'])
    // this machine's own namespace has a loopback
    expect(procNetDevLinks()?.has('lo')).toBe(true)
  })

  it('setRoutes with nothing wanted looks once, then runs no ip until a route is wanted', async () => {
    const tools = fakeTools()
    const d = createSystemDriver({ socketDir: dir, ip: tools.ip, wg: tools.wg })
    const none = { added: [], removed: [], skipped: [] }
    expect(await d.setRoutes('wgt0', [])).toEqual(none)
    const first = tools.calls()
    expect(first).toEqual(['ip -json -4 route show dev wgt0 proto 87', 'ip -json -6 route show dev wgt0 proto 87'])
    expect(await d.setRoutes('wgt0', [])).toEqual(none)
    expect(tools.calls()).toEqual(first)
    // a wanted route: it looks again (and the fake ip "adds" it)
    expect((await d.setRoutes('wgt0', ['10.66.0.0/24'])).added).toEqual(['10.66.0.0/24'])
    const n = tools.calls().length
    expect(n).toBeGreaterThan(first.length)
    // back to none: must look (to remove it), then quiet again
    await d.setRoutes('wgt0', [])
    expect(tools.calls().length).toBe(n + 2)
    await d.setRoutes('wgt0', [])
    expect(tools.calls().length).toBe(n + 2)
  })

  it('ensureInterface: one `ip` check, then getifaddrs and the socket alone until the addresses differ or the full check is due', async () => {
    await serve('wgt0', (request, sock) => { sock.write(request.startsWith('get=1') ? GET : 'errno=0\n\n') })
    const log = join(dir, 'calls.log')
    const ip = join(dir, 'ip')
    const link = JSON.stringify([{ ifname: 'wgt0', flags: ['POINTOPOINT', 'UP', 'LOWER_UP'], mtu: 1420, linkinfo: { info_kind: 'tun' }, addr_info: [{ family: 'inet6', local: 'fd00:1::1', prefixlen: 64, scope: 'global' }] }])
    writeFileSync(ip, `#!/bin/sh\necho "ip $*" >> '${log}'\necho '${link}'\n`)
    chmodSync(ip, 0o755)
    const calls = (): string[] => existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l !== '') : []
    const listing: NodeJS.Dict<NetworkInterfaceInfo[]> = {}
    const d = createSystemDriver({ socketDir: dir, ip, wg: '/nonexistent/wg', interfaceAddresses: () => listing, linkNames: () => new Set(['wgt0']) })
    const cfg = { name: 'wgt0', privateKey: dev.privateKey, listenPort: 10042, mtu: 1420, addresses: ['fd00:1::1/64'] }

    await d.ensureInterface(cfg)
    expect(calls()).toEqual(['ip -json -d addr show dev wgt0'])
    // listed up with exactly our address (link-local aside): no process, one get over the socket
    listing.wgt0 = [
      { address: 'fd00:1::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '', internal: false, cidr: 'fd00:1::1/64', scopeid: 0 },
      { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '', internal: false, cidr: 'fe80::1/64', scopeid: 5 }
    ]
    const gets = requests.length
    await d.ensureInterface(cfg)
    await d.ensureInterface(cfg)
    expect(calls()).toHaveLength(1)
    expect(requests.length).toBe(gets + 2)
    // an address missing from the listing: a full check again
    listing.wgt0 = listing.wgt0.slice(1)
    await d.ensureInterface(cfg)
    expect(calls()).toHaveLength(2)
    // listed right, but the last full check is older than FULL_CHECK_MS
    listing.wgt0 = [{ address: 'fd00:1::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '', internal: false, cidr: 'fd00:1::1/64', scopeid: 0 }]
    await d.ensureInterface(cfg)
    expect(calls()).toHaveLength(2)
    const now = Date.now()
    vi.spyOn(Date, 'now').mockReturnValue(now + FULL_CHECK_MS + 1)
    try {
      await d.ensureInterface(cfg)
    } finally {
      vi.restoreAllMocks()
    }
    expect(calls()).toHaveLength(3)
    // another config (a new address) never takes the short way
    await d.ensureInterface({ ...cfg, addresses: ['fd00:1::1/64', '198.18.200.1/24'] }).catch(() => {})
    expect(calls().length).toBeGreaterThan(3)
  })
})
