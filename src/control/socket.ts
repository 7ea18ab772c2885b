import { createServer, connect, type Server } from 'node:net'
import { chmod, unlink } from 'node:fs/promises'
import { join } from 'node:path'

// The control socket: a Unix socket in the state directory (0600, never on the network).
// One JSON request line in, one JSON response line out.

export const CONTROL_SOCKET = 'control.sock'
const MAX_REQUEST_BYTES = 4096

export type ControlRequest =
  | { cmd: 'status' }
  | { cmd: 'leave' }
  | { cmd: 'revoke', target: string, rotate?: boolean }
  | { cmd: 'rotate-psk' }
const COMMANDS = new Set(['status', 'leave', 'revoke', 'rotate-psk'])
export type ControlResponse = { ok: true, data?: unknown } | { ok: false, error: string }
export type ControlHandler = (request: ControlRequest) => Promise<unknown>

export function controlSocketPath (stateDir: string): string {
  return join(stateDir, CONTROL_SOCKET)
}

export class NoDaemonError extends Error {}

/** Listen on the control socket; refuses to start when another daemon holds it. */
export async function serveControl (stateDir: string, handler: ControlHandler): Promise<Server> {
  const path = controlSocketPath(stateDir)
  if (await answers(path)) throw new Error(`another w2wesher daemon is already running with state dir ${stateDir} (${path} answers)`)
  await unlink(path).catch(() => {}) // a stale socket from a daemon that was killed
  const server = createServer(socket => {
    let buffer = ''
    socket.setEncoding('utf8')
    socket.on('error', () => {})
    socket.on('data', chunk => {
      buffer += chunk
      if (buffer.length > MAX_REQUEST_BYTES) { socket.destroy(); return }
      const newline = buffer.indexOf('\n')
      if (newline < 0) return
      const line = buffer.slice(0, newline)
      socket.removeAllListeners('data')
      void respond(line).then(response => socket.end(`${JSON.stringify(response)}\n`))
    })
  })
  const respond = async (line: string): Promise<ControlResponse> => {
    let request: ControlRequest
    try {
      request = JSON.parse(line) as ControlRequest
      if (!COMMANDS.has(request.cmd)) return { ok: false, error: `unknown command ${JSON.stringify((request as { cmd?: unknown }).cmd)}` }
      if (request.cmd === 'revoke' && (typeof request.target !== 'string' || request.target.length > 200)) return { ok: false, error: 'revoke needs a target (peer id or name)' }
    } catch {
      return { ok: false, error: 'request is not JSON' }
    }
    try {
      return { ok: true, data: await handler(request) }
    } catch (err) {
      return { ok: false, error: (err as Error).message }
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // umask-independent: only our user may talk to the daemon
    server.listen(path, () => { server.off('error', reject); resolve() })
  })
  await chmod(path, 0o600)
  return server
}

export async function requestControl (stateDir: string, request: ControlRequest, timeoutMs = 10_000): Promise<unknown> {
  const path = controlSocketPath(stateDir)
  const text = await new Promise<string>((resolve, reject) => {
    const socket = connect(path)
    let data = ''
    socket.setEncoding('utf8')
    socket.setTimeout(timeoutMs, () => { socket.destroy(); reject(new Error(`the daemon did not answer within ${timeoutMs} ms`)) })
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`))
    socket.on('data', chunk => { data += chunk })
    socket.on('end', () => resolve(data))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(new NoDaemonError(`no w2wesher daemon is running for state dir ${stateDir} (nothing listens on ${path})`))
      else if (err.code === 'EACCES') reject(new Error(`permission denied on ${path}: run as the daemon's user`))
      else reject(err)
    })
  })
  let response: ControlResponse
  try { response = JSON.parse(text) as ControlResponse } catch { throw new Error('the daemon sent an unreadable answer') }
  if (!response.ok) throw new Error(response.error)
  return response.data
}

async function answers (path: string): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = connect(path)
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}
