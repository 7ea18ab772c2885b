import { describe, expect, it } from 'vitest'
import { parseFpingOutput, parsePingerOutput } from '../e2e/lab.ts'

// Output as the tools print it (fping 5.1 and iputils ping 20221126, captured on these machines).
const fpingLine = (seconds: number, seq: number): string => `[${seconds.toFixed(5)}] fd00::2 : [${seq}], 64 bytes, 0.050 ms (0.051 avg, 0% loss)`

describe('parseFpingOutput', () => {
  const start = 1_000_000
  it('counts replies and measures the longest gap, start and stop included', () => {
    const stdout = [0, 1, 2, 4].map(i => fpingLine(1000 + 0.01 + i * 0.1, i)).join('\n') + '\n'
    const stats = parseFpingOutput(stdout, '\nfd00::2 : xmt/rcv/%loss = 5/4/20%, min/avg/max = 0.045/0.051/0.057', start, start + 480)
    expect(stats.sent).toBe(5)
    expect(stats.received).toBe(4)
    expect(stats.lost).toBe(1) // seq 3
    expect(stats.longestGapMs).toBe(200) // 2 → 4
  })

  it('does not count the request still on its way at the stop as lost', () => {
    const stdout = [0, 1, 2].map(i => fpingLine(1000 + 0.01 + i * 0.1, i)).join('\n')
    const stats = parseFpingOutput(stdout, 'fd00::2 : xmt/rcv/%loss = 4/3/25%', start, start + 305)
    expect(stats).toMatchObject({ sent: 3, received: 3, lost: 0 })
  })

  it('counts a silent target as all lost, with one gap from start to stop', () => {
    const stats = parseFpingOutput('', '\nfd00::2 : xmt/rcv/%loss = 14/0/100%', start, start + 1250)
    expect(stats).toMatchObject({ sent: 13, received: 0, lost: 13, longestGapMs: 1250 })
  })
})

describe('parsePingerOutput', () => {
  it('counts replies, misses and the longest gap', () => {
    const at = (s: number): string => `[${(1000 + s).toFixed(6)}]`
    const stdout = [
      `${at(0.01)} 64 bytes from fd00::2: icmp_seq=1 ttl=64 time=0.5 ms`,
      `${at(0.3)} no answer yet for icmp_seq=2`,
      `${at(0.31)} 64 bytes from fd00::2: icmp_seq=3 ttl=64 time=0.5 ms`,
      '',
      '3 packets transmitted, 2 received, 33% packet loss, time 300ms'
    ].join('\n')
    const stats = parsePingerOutput(stdout, 1_000_000, 1_000_400)
    expect(stats).toMatchObject({ sent: 3, received: 2, lost: 1, longestGapMs: 300 })
  })
})
