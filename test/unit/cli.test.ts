import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

// The built CLI (npm test builds before it runs the tests).
const ROOT = resolve(import.meta.dirname, '..', '..')
const BIN = join(ROOT, 'dist', 'w2wesher.mjs')
const built = existsSync(BIN) || process.env.CI === 'true'

describe.skipIf(!built)('w2wesher CLI', () => {
  it('prints the package version with --version and -V', () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    expect(version).toMatch(/^\d+\.\d+\.\d+/)
    for (const flag of ['--version', '-V']) expect(execFileSync(process.execPath, [BIN, flag], { encoding: 'utf8' })).toBe(`${version}\n`)
  })
})
