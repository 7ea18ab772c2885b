import { describe, it, expect, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { writeFileAtomic, ensurePrivateDir } from '../../src/util/fs.ts'

const dirs: string[] = []
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

describe('atomic state writes', () => {
  it('writes 0600 files in a 0700 directory', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'w2w-atomic-'))
    dirs.push(parent)
    const dir = join(parent, 'state')
    await ensurePrivateDir(dir)
    await writeFileAtomic(join(dir, 'f'), 'x')
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    expect((await stat(join(dir, 'f'))).mode & 0o777).toBe(0o600)
  })

  it('leaves the old or the new file, never a torn one, when killed with SIGKILL mid-write', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'w2w-atomic-'))
    dirs.push(dir)
    const target = join(dir, 'state.json')
    await writeFile(target, JSON.stringify({ n: -1, pad: '' }))
    const script = join(dir, 'writer.mts') // .mts: ESM outside the package
    // a writer that rewrites a 2 MB JSON file as fast as it can
    await writeFile(script, `
      import { writeFileAtomic } from '${resolve('src/util/fs.ts')}'
      const pad = 'x'.repeat(2_000_000)
      for (let n = 0; ; n++) await writeFileAtomic(${JSON.stringify(target)}, JSON.stringify({ n, pad }))
    `)
    let kills = 0
    let written = 0
    for (let round = 0; round < 8; round++) {
      const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: 'ignore' })
      // wait until this writer is rewriting the file, then kill it at a random moment
      const seen = (JSON.parse(await readFile(target, 'utf8')) as { n: number }).n
      for (let i = 0; i < 200; i++) {
        await new Promise(r => setTimeout(r, 50))
        if ((JSON.parse(await readFile(target, 'utf8')) as { n: number }).n !== seen) break
      }
      await new Promise(r => setTimeout(r, Math.random() * 60))
      child.kill('SIGKILL')
      await new Promise(r => child.once('exit', r))
      kills++
      const parsed = JSON.parse(await readFile(target, 'utf8')) as { n: number, pad: string }
      expect(typeof parsed.n).toBe('number')
      expect(parsed.pad.length === 0 || parsed.pad.length === 2_000_000).toBe(true)
      if (parsed.n >= 0) written++
    }
    expect(kills).toBe(8)
    expect(written).toBeGreaterThan(0) // the writer really was writing when it died
    // temp files of interrupted writes may remain; they never replace the state file
    const leftovers = (await readdir(dir)).filter(f => f.endsWith('.tmp'))
    expect(leftovers.every(f => f.startsWith('.state.json.'))).toBe(true)
  }, 60_000)
})
