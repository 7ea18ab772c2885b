import { describe, it, expect } from 'vitest'
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { watchAddresses } from '../../src/endpoints/watch.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const alive = (pid: number): boolean => {
  try { return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')) } catch { return false }
}
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0

describe('address watch', () => {
  it('reports a burst of events once, and each later event', async () => {
    let calls = 0
    const watch = watchAddresses({
      onChange: () => { calls++ },
      pollMs: 10_000,
      safetyMs: 60_000,
      command: ['sh', '-c', 'echo del; echo add; sleep 0.4; echo add2; exec sleep 60']
    })
    try {
      await sleep(250)
      expect(calls).toBe(1)
      expect(watch.mode()).toBe('events')
      await sleep(500)
      expect(calls).toBe(2)
    } finally { watch.stop() }
  })

  it('polls when the watcher cannot start or dies', async () => {
    let calls = 0
    const missing = watchAddresses({ onChange: () => { calls++ }, pollMs: 50, safetyMs: 60_000, command: ['/nonexistent/w2wesher-watch'] })
    try {
      await sleep(300)
      expect(missing.mode()).toBe('poll')
      expect(calls).toBeGreaterThanOrEqual(3)
    } finally { missing.stop() }
    const stopped = calls
    await sleep(150)
    expect(calls).toBe(stopped) // stop() ends the polling too

    let later = 0
    const dying = watchAddresses({ onChange: () => { later++ }, pollMs: 50, safetyMs: 60_000, command: ['sh', '-c', 'sleep 0.2'] })
    try {
      expect(dying.mode()).toBe('events')
      await sleep(500)
      expect(dying.mode()).toBe('poll')
      expect(later).toBeGreaterThanOrEqual(3)
    } finally { dying.stop() }
  })

  it.skipIf(!hasSetpriv)('does not outlive a process killed with SIGKILL', async () => {
    const module = fileURLToPath(new URL('../../src/endpoints/watch.ts', import.meta.url))
    // a parent that starts the watcher (here: setpriv --pdeathsig KILL -- sleep) and reports its pid
    const code = `import { watchAddresses } from ${JSON.stringify(module)}
      watchAddresses({ onChange: () => {}, pollMs: 1000, safetyMs: 60000, command: ['setpriv', '--pdeathsig', 'KILL', '--', 'sleep', '120'] })
      setInterval(() => {}, 1000)
      console.log('ready')`
    const parent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      await new Promise<void>((resolve, reject) => {
        parent.stdout.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve() })
        parent.on('exit', code => { reject(new Error(`parent exited early (${String(code)})`)) })
      })
      let watcher: number | undefined
      for (let i = 0; i < 50 && watcher === undefined; i++) {
        const children = readFileSync(`/proc/${parent.pid!}/task/${parent.pid!}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
        watcher = children.find(pid => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('sleep'))
        if (watcher === undefined) await sleep(50)
      }
      expect(watcher).toBeDefined()
      expect(alive(watcher!)).toBe(true)
      parent.kill('SIGKILL')
      for (let i = 0; i < 40 && alive(watcher!); i++) await sleep(50)
      expect(alive(watcher!)).toBe(false)
    } finally { parent.kill('SIGKILL') }
  })
})
