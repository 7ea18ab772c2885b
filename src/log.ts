import { pino, type Logger as PinoLogger } from 'pino'

export type Logger = PinoLogger

/** JSON lines on stdout: one event per line, easy to ship and to grep. */
export function createLogger (level: string): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime })
}
