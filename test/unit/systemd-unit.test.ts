import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const UNIT = resolve('systemd/w2wesher.service')
const text = readFileSync(UNIT, 'utf8')
const directives = new Map<string, string[]>()
for (const line of text.split('\n')) {
  const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim())
  if (m !== null) directives.set(m[1]!, [...(directives.get(m[1]!) ?? []), m[2]!])
}
const one = (key: string): string | undefined => directives.get(key)?.at(-1)

describe('systemd unit', () => {
  it('runs unprivileged with only CAP_NET_ADMIN and the hardening we promise', () => {
    expect(one('User')).toBe('w2wesher')
    expect(one('AmbientCapabilities')).toBe('CAP_NET_ADMIN')
    expect(one('CapabilityBoundingSet')).toBe('CAP_NET_ADMIN')
    expect(one('NoNewPrivileges')).toBe('yes')
    expect(one('StateDirectory')).toBe('w2wesher')
    expect(one('StateDirectoryMode')).toBe('0700')
    expect(one('RuntimeDirectory')).toBeDefined()
    expect(one('ProtectSystem')).toBe('strict')
    expect(one('ProtectHome')).toBe('yes')
    expect(one('PrivateTmp')).toBe('yes')
    expect(one('RestrictAddressFamilies')?.split(/\s+/).sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX'])
    expect(one('Restart')).toBe('on-failure')
    expect(one('KillMode')).toBe('process') // seamless restarts: wireguard-go survives a stop
    for (const key of ['ProtectKernelTunables', 'ProtectKernelModules', 'ProtectControlGroups', 'RestrictNamespaces', 'RestrictSUIDSGID', 'LockPersonality']) {
      expect(one(key), key).toBe('yes')
    }
    expect(directives.has('MemoryDenyWriteExecute')).toBe(false) // V8's JIT needs W+X pages
    expect(one('User')).not.toBe('root')
  })

  it('passes systemd-analyze verify when systemd is installed', () => {
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) {
      console.warn('systemd-analyze not installed: verified the directives above only')
      return
    }
    // verify checks that ExecStart exists: point it at this checkout's build
    const dir = mkdtempSync(join(tmpdir(), 'w2w-unit-'))
    try {
      const unit = join(dir, 'w2wesher.service')
      writeFileSync(unit, text.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath} ${resolve('dist/w2wesher.mjs')}`))
      const out = spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8' })
      expect(out.status, out.stderr).toBe(0)
      expect(out.stderr.split('\n').filter(l => l.includes('w2wesher.service')), out.stderr).toEqual([])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
