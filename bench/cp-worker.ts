// One worker process of bench/control-plane.ts: runs a share of the daemons (src/daemon.ts,
// unchanged) in this process, each with the in-memory WireGuard twin and a libp2p host on
// 127.0.0.1 (allowLoopback, a test/bench-only option). Talks to the parent over IPC.
//
// Bytes: every byte libp2p hands to a TCP socket in this process is counted (a wrapper on
// net.Socket#write, installed before libp2p loads): PSK/Noise/yamux framing, gossipsub,
// sync, identify, ping. TCP/IP headers are not included.

import { Socket } from 'node:net'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import '../src/polyfill.ts'

let bytesSent = 0
const write = Socket.prototype.write
Socket.prototype.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
  if (this.remotePort !== undefined && chunk instanceof Uint8Array) bytesSent += chunk.byteLength
  return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest)
} as typeof Socket.prototype.write

const { pino } = await import('pino')
const { resolveConfig } = await import('../src/config/config.ts')
const { startDaemon } = await import('../src/daemon.ts')
const { createMemoryDriver } = await import('../src/wireguard/memory.ts')
type Daemon = Awaited<ReturnType<typeof startDaemon>>

/** per daemon: [node index, members known, open connections] */
export type NodeDetail = [number, number, number]

export type ToWorker =
  | { cmd: 'start', nodes: Array<{ index: number, bootstrap: string[] }>, psk: string, total: number }
  | { cmd: 'poll' }
  | { cmd: 'profile', start: true }
  | { cmd: 'profile', start: false, file: string }
  | { cmd: 'stop' }

export type FromWorker =
  | { type: 'ready' }
  | { type: 'started', index: number, port: number, at: number }
  | { type: 'poll', members: number[], fullAt: Array<number | null>, bytesSent: number, cpuUs: number, rssBytes: number, connections: number, detail: NodeDetail[], oldestRecordMs: number[] }
  | { type: 'error', message: string }
  | { type: 'profiled' }
  | { type: 'stopped' }

const send = (msg: FromWorker): void => { process.send?.(msg) }
// BENCH_CP_LOG=debug: the daemons' logs (tagged n: index) in $TMPDIR/w2cp-<pid>.log, for diagnosis
const logLevel = process.env.BENCH_CP_LOG
const log = logLevel === undefined ? pino({ level: 'silent' }) : pino({ level: logLevel }, pino.destination(join(tmpdir(), `w2cp-${process.pid}.log`)))
// BENCH_CP_LOG_NODES=5,50: only these nodes log (debug logs of 250 daemons change what they measure)
const loggedNodes = process.env.BENCH_CP_LOG_NODES?.split(',').map(Number)
const silent = pino({ level: 'silent' })
const logFor = (index: number): typeof log => loggedNodes === undefined || loggedNodes.includes(index) ? log.child({ n: index }) : silent
// under the bench's lab directory (control-plane.ts), removed with it also when this worker is killed
const dir = mkdtempSync(join(process.env.BENCH_CP_WORKER_DIR ?? tmpdir(), 'w2cp-'))
const daemons: Daemon[] = []
const indices: number[] = []
const fullAt: Array<number | null> = []
let profiler: Session | undefined

// the bench process is gone (killed, crashed): so are we, with our daemons' state
process.on('disconnect', () => { rmSync(dir, { recursive: true, force: true }); process.exit(1) })
process.on('message', (msg: ToWorker) => {
  void handle(msg).catch(err => send({ type: 'error', message: (err as Error).stack ?? String(err) }))
})

async function handle (msg: ToWorker): Promise<void> {
  if (msg.cmd === 'start') {
    await Promise.all(msg.nodes.map(async ({ index, bootstrap }) => {
      const config = await resolveConfig({
        psk: msg.psk,
        stateDir: join(dir, `n${index}`),
        interface: `wcp${index}`,
        listen: '/ip4/127.0.0.1/tcp/0',
        name: `n${index}`,
        bootstrap,
        // BENCH_CP_MDNS=0: without mDNS (on by default, as in the daemon)
        mdns: process.env.BENCH_CP_MDNS !== '0',
        // BENCH_CP_REFRESH=s: record refresh period (default: the daemon's)
        ...(process.env.BENCH_CP_REFRESH !== undefined ? { refreshSeconds: Number(process.env.BENCH_CP_REFRESH) } : {})
      })
      const d = await startDaemon({ config, log: logFor(index), driver: createMemoryDriver({ autoHandshake: true, recordCalls: false }), allowLoopback: true, addressEvents: false })
      const slot = daemons.push(d) - 1
      indices[slot] = index
      fullAt[slot] = null
      d.membership.onChange(() => {
        if (fullAt[slot] === null && d.membership.members().length >= msg.total - 1) fullAt[slot] = Date.now()
      })
      const port = Number(d.host.getMultiaddrs()[0]?.getComponents().find(c => c.name === 'tcp')?.value ?? 0)
      send({ type: 'started', index, port, at: Date.now() })
    }))
  } else if (msg.cmd === 'poll') {
    const cpu = process.cpuUsage()
    send({
      type: 'poll',
      members: daemons.map(d => d.membership.members().length),
      fullAt: [...fullAt],
      bytesSent,
      cpuUs: cpu.user + cpu.system,
      rssBytes: process.memoryUsage.rss(),
      connections: daemons.reduce((n, d) => n + d.host.getConnections().length, 0),
      detail: daemons.map((d, i): NodeDetail => [indices[i] ?? 0, d.membership.members().length, d.host.getConnections().length]),
      // per daemon, the age of the oldest member record it holds (by its author's clock: one host here)
      oldestRecordMs: daemons.map(d => Date.now() - Math.min(Date.now(), ...d.membership.members().map(e => e.record.issuedAt)))
    })
  } else if (msg.cmd === 'profile') {
    // a CPU profile of one phase (the idle window), where --cpu-prof covers the whole run
    profiler ??= new Session()
    if (msg.start) {
      profiler.connect()
      await profiler.post('Profiler.enable')
      await profiler.post('Profiler.start')
    } else {
      const { profile } = await profiler.post('Profiler.stop')
      writeFileSync(msg.file, JSON.stringify(profile))
      profiler.disconnect()
    }
    send({ type: 'profiled' })
  } else {
    await Promise.all(daemons.map(async d => { await d.stop().catch(() => {}) }))
    rmSync(dir, { recursive: true, force: true })
    send({ type: 'stopped' })
    process.exit(0)
  }
}

send({ type: 'ready' })
