import { pino, type Logger as PinoLogger } from 'pino'

export type Logger = PinoLogger

export type LogFormat = 'auto' | 'json' | 'pretty'

/** Where log lines go: process.stdout, or anything with a write(string). */
export interface LogOutput {
  write: (line: string) => unknown
  isTTY?: boolean
}

// Secret-bearing field names: nothing logs them today; this keeps a future slip out of the logs.
const REDACT = ['psk', 'privateKey', 'wgPrivateKey', '*.psk', '*.privateKey', '*.wgPrivateKey']

/**
 * JSON lines (one event per line, easy to ship and to grep) unless the output is a terminal,
 * where a person reads it: then one readable line per event. `format` forces either.
 */
export function createLogger (level: string, format: LogFormat = 'auto', out: LogOutput = process.stdout): Logger {
  const pretty = format === 'pretty' || (format === 'auto' && out.isTTY === true)
  const opts = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, redact: { paths: REDACT, censor: '[redacted]' } }
  if (!pretty) return out === process.stdout ? pino(opts) : pino(opts, { write: (line: string) => { out.write(line) } })
  const colour = out.isTTY === true && process.env.NO_COLOR === undefined
  return pino(opts, { write: (line: string) => { out.write(`${prettyLine(line, colour)}\n`) } })
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }
const COLOURS: Record<number, string> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' }

/** One pino JSON line as "TIME LEVEL message key=value …" (no trailing newline). */
export function prettyLine (json: string, colour = false): string {
  let rec: Record<string, unknown>
  try {
    rec = JSON.parse(json) as Record<string, unknown>
  } catch {
    return json.trimEnd()
  }
  const { time, level, msg, ...fields } = rec
  const levelNum = typeof level === 'number' ? level : 30
  let name = (LEVELS[levelNum] ?? String(level)).padEnd(5)
  if (colour) name = `\x1b[${COLOURS[levelNum] ?? '0'}m${name}\x1b[0m`
  const parts = [typeof time === 'string' ? time : new Date(typeof time === 'number' ? time : Date.now()).toISOString(), name]
  if (msg !== undefined) parts.push(String(msg))
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue
    parts.push(`${key}=${fieldValue(value)}`)
  }
  return parts.join(' ')
}

/** Bare when unambiguous, else JSON (quoted strings, arrays, objects). */
function fieldValue (value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=\\]+$/.test(value) ? value : JSON.stringify(value)
  return JSON.stringify(value) ?? String(value)
}
