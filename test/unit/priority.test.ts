import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// In a child process: lowering the priority of the test runner itself would slow the rest of the suite.
function inChild (body: string): Record<string, unknown> {
  const module = fileURLToPath(new URL('../../src/util/priority.ts', import.meta.url))
  const code = `import { readdirSync, readFileSync } from 'node:fs'
    import { lowerPriority } from ${JSON.stringify(module)}
    // field 19 of /proc/<pid>/task/<tid>/stat: the thread's nice value
    const nices = () => readdirSync('/proc/self/task').map(t => Number(readFileSync('/proc/self/task/' + t + '/stat', 'utf8').split(') ')[1].split(' ')[16]))
    ${body}`
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 20_000 })
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as Record<string, unknown>
}

describe('lowerPriority', () => {
  it('moves every thread of the process to nice 10, once', () => {
    const out = inChild(`const before = nices()
      const changed = lowerPriority()
      const after = nices()
      const again = lowerPriority()
      console.log(JSON.stringify({ before, changed, after, again }))`)
    const before = out.before as number[]
    expect(before.length).toBeGreaterThan(1) // Node runs several threads: all must move
    expect(before.every(n => n < 10)).toBe(true)
    expect(out.changed).toBe(before.length)
    expect((out.after as number[]).every(n => n === 10)).toBe(true)
    expect(out.again).toBe(0)
  })

  it('never raises the priority of a process that is already nicer', () => {
    const out = inChild(`lowerPriority(15)
      const changed = lowerPriority(10)
      console.log(JSON.stringify({ changed, after: nices() }))`)
    expect(out.changed).toBe(0)
    expect((out.after as number[]).every(n => n === 15)).toBe(true)
  })
})
