// CPU per libp2p connection: two hosts (src/p2p/host.ts, as a daemon builds it) in this
// process on 127.0.0.1; one dials the other N times (PSK, Noise, yamux, identify, gossipsub
// subscriptions), waits 5 ms and hangs up. Prints the process's CPU per connection, both ends
// together. V8 runs as in a daemon (no TurboFan, cmd/load-daemon.ts) unless BENCH_TURBOFAN=1.
// `npx tsx bench/connection-cost.ts [N]` (default 200). Loopback only; nothing is left behind.

import { setFlagsFromString } from 'node:v8'

if (process.env.BENCH_TURBOFAN !== '1') setFlagsFromString('--max-opt=1')
const { generateKeyPair } = await import('@libp2p/crypto/keys')
const { createHost } = await import('../src/p2p/host.ts')
const { generatePsk } = await import('../src/config/psk.ts')

const n = Number(process.argv[2] ?? 200)
const psk = generatePsk()
const makeHost = async (): Promise<Awaited<ReturnType<typeof createHost>>> => await createHost({
  privateKey: await generateKeyPair('Ed25519'), psk, listen: ['/ip4/127.0.0.1/tcp/0'], isOverlayAddress: () => false, allowLoopback: true
})
const [a, b] = [await makeHost(), await makeHost()]
try {
  const target = b.getMultiaddrs()[0]
  if (target === undefined) throw new Error('the listening host has no address')
  const connectOnce = async (): Promise<void> => {
    const connection = await a.dial(target)
    await new Promise(resolve => setTimeout(resolve, 5))
    await connection.close()
  }
  for (let i = 0; i < 20; i++) await connectOnce() // warm-up: lazy compilation, first-use setup
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < n; i++) await connectOnce()
  const cpu = process.cpuUsage(cpu0)
  const perConnectionMs = (cpu.user + cpu.system) / 1000 / n
  console.log(`[connection-cost] ${n} connections: ${perConnectionMs.toFixed(2)} ms CPU each (both ends), ${((performance.now() - t0) / n).toFixed(1)} ms wall each incl. 5 ms open`)
} finally {
  await Promise.all([a.stop(), b.stop()])
}
