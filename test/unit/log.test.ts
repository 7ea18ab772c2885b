import { describe, it, expect } from 'vitest'
import { createLogger, prettyLine } from '../../src/log.ts'

/** A fake stdout that keeps what is written. */
function sink (isTTY: boolean): { lines: string[], write: (s: string) => void, isTTY: boolean } {
  const lines: string[] = []
  return { lines, isTTY, write: (s: string) => { lines.push(...s.split('\n').filter(l => l !== '')) } }
}

describe('logs', () => {
  it('writes JSON lines when the output is not a terminal', () => {
    const out = sink(false)
    createLogger('info', 'auto', out).info({ peer: 'p1', up: 2 }, 'member joined')
    expect(out.lines).toHaveLength(1)
    expect(JSON.parse(out.lines[0]!)).toMatchObject({ level: 30, msg: 'member joined', peer: 'p1', up: 2 })
  })

  it('writes one readable line on a terminal: time, level, message, key=value', () => {
    const out = sink(true)
    process.env.NO_COLOR = '1'
    try {
      const log = createLogger('debug', 'auto', out)
      log.warn({ route: '10.77.0.128/25', reason: 'overlaps 10.77.0.0/24', n: 3, list: ['a', 'b'], ok: true }, 'our route is refused')
      log.debug('quiet')
    } finally {
      delete process.env.NO_COLOR
    }
    expect(out.lines).toHaveLength(2)
    expect(out.lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN  our route is refused route=10\.77\.0\.128\/25 reason="overlaps 10\.77\.0\.0\/24" n=3 list=\["a","b"\] ok=true$/)
    expect(out.lines[1]).toMatch(/Z DEBUG quiet$/)
  })

  it('forces either format, and colours only a terminal', () => {
    const json = sink(true)
    createLogger('info', 'json', json).info('x')
    expect(JSON.parse(json.lines[0]!)).toMatchObject({ msg: 'x' })
    const pretty = sink(false)
    createLogger('info', 'pretty', pretty).error({ err: 'boom\nsecond line' }, 'failed')
    expect(pretty.lines).toHaveLength(1) // a newline in a value stays escaped: one event, one line
    expect(pretty.lines[0]).toMatch(/ ERROR failed err="boom\\nsecond line"$/)
    expect(pretty.lines[0]).not.toContain('\x1b[')
    const colour = sink(true)
    createLogger('info', 'pretty', colour).info('hi')
    expect(colour.lines[0]).toContain('\x1b[32mINFO ')
  })

  it('never shows secrets, in either format', () => {
    const secret = 'c2VjcmV0LWtleS1tYXRlcmlhbC0wMTIzNDU2Nzg5YWI='
    for (const format of ['json', 'pretty'] as const) {
      const out = sink(false)
      createLogger('info', format, out).info({ psk: secret, privateKey: secret, nested: { wgPrivateKey: secret } }, 'config')
      expect(out.lines.join('\n')).not.toContain(secret)
      expect(out.lines.join('\n')).toContain('[redacted]')
    }
  })

  it('passes a line that is not JSON through unchanged', () => {
    expect(prettyLine('not json\n')).toBe('not json')
    expect(prettyLine('{"level":60,"time":"2026-01-01T00:00:00.000Z","msg":"down"}')).toBe('2026-01-01T00:00:00.000Z FATAL down')
  })
})
