import { describe, it, expect } from 'vitest'
import { convergenceMs, nodeStartCpuMs, rows, speedText, spreadOf, type Summary } from '../../bench/run.ts'
import type { ControlPlaneResult } from '../../bench/control-plane.ts'

const stamp = { date: '2026-12-07T00:00:00.000Z', loadavg: [0.5, 0.5, 0.5] }
const convergence = (runs: Array<number | null>): Summary['convergence'][string] => ({
  nodes: 10, timed: '', allHandshakesMs: runs[0] ?? null, allPairsMs: null, pairsAnswered: 90, pairs: 90, lastPair: null, allPeersMs: null,
  cpuSeconds: { daemons: 2, wireguardGo: 0.3 }, errors: [], ...stamp,
  runs: runs.map((ms, i) => ({ allHandshakesMs: ms, cpuSeconds: { daemons: 2 + i, wireguardGo: 0.3 } }))
})
const controlPlane = (runs: Array<number | null>): ControlPlaneResult => ({
  nodes: 100, workers: 5, fullMembershipMs: runs[0] ?? null, nodesFull: 100, convergeCpuS: 20, idleSeconds: 60, idleBytesPerSecPerNode: 160,
  idleCpuSPerMinPerNode: 0.07, idleCoresUsed: 0.1, rssMiBPerWorker: [], connectionsPerNode: 8, oldestRecordS: null, loadavg: [0.4],
  runs: runs.map(ms => ({ fullMembershipMs: ms, convergeCpuS: 20 }))
})

describe('benchmark report', () => {
  it('takes the median and range of repeated runs, and counts the ones that never finished', () => {
    expect(spreadOf([3000, 1000, 2000])).toEqual({ median: 2000, min: 1000, max: 3000, n: 3, failed: 0 })
    expect(spreadOf([4000, 1000, 2000, 3000])?.median).toBe(2500)
    expect(spreadOf([null, 1500, 900])).toEqual({ median: 1200, min: 900, max: 1500, n: 3, failed: 1 })
    expect(spreadOf([1000])).toBeUndefined()
    expect(spreadOf(undefined)).toBeUndefined()
  })

  it('reports a convergence size and the control plane by the median of their runs', () => {
    const s: Summary = {
      machine: { cpus: 2, node: 'v20' },
      convergence: { 10: convergence([2900, 1700, 1900]) },
      staticMesh: { 10: { allHandshakesMs: 350 } as Summary['staticMesh'][string] },
      controlPlane: { results: [controlPlane([12000, 8000, null])], ...stamp },
      errors: []
    }
    expect(convergenceMs(s.convergence['10']!)).toBe(1900)
    const [conv, cp] = rows(s)
    expect(conv?.figure).toContain('median of 3 starts')
    expect(conv?.ours).toMatch(/^1900 ms \(1700–2900\); CPU used \(medians\): daemons 3 s/)
    expect(conv?.ratio).toBe('5.4×')
    expect(cp?.ours).toMatch(/^10000 ms \(8000–12000; 1 of 3 never got there\); 160 B\/s/)
  })

  it('gives the static floor, and beside it the floor with a Node start per node when measured', () => {
    const c = convergence([1900])
    const st = (withNodeStart?: { setupMs: number, allHandshakesMs: number }): Summary['staticMesh'][string] =>
      ({ allHandshakesMs: 250, ...(withNodeStart === undefined ? {} : { withNodeStart }) }) as Summary['staticMesh'][string]
    const [plain] = rows({ machine: { cpus: 2, node: 'v20' }, convergence: { 10: c }, staticMesh: { 10: st() }, errors: [] })
    expect(plain?.floor).toBe('250 ms')
    const [withNode] = rows({ machine: { cpus: 2, node: 'v20' }, convergence: { 10: c }, staticMesh: { 10: st({ setupMs: 600, allHandshakesMs: 640 }) }, errors: [] })
    expect(withNode?.floor).toBe('250 ms; 640 ms with a bare Node start per node')
    expect(withNode?.ratio).toBe('7.6×')
  })

  it('names the machine speed each part was measured at, once per distinct value', () => {
    const at = (nodeStartCpuMs?: number): Summary['convergence'][string] => ({ ...convergence([1900]), ...(nodeStartCpuMs === undefined ? {} : { nodeStartCpuMs }) })
    const base: Summary = { machine: { cpus: 2, node: 'v20' }, convergence: {}, staticMesh: {}, errors: [] }
    expect(speedText(base)).toBe('')
    expect(speedText({ ...base, convergence: { 10: at() } })).toBe('')
    expect(speedText({ ...base, convergence: { 10: at(72), 25: at(66) }, ipam: { results: [], ...stamp, nodeStartCpuMs: 72 } }))
      .toMatch(/^; a bare Node start took 66, 72 ms of CPU /)
  })

  it('measures a bare Node start as a CPU time of some milliseconds', () => {
    const ms = nodeStartCpuMs(3)
    expect(Number.isInteger(ms)).toBe(true)
    expect(ms).toBeGreaterThan(5)
    expect(ms).toBeLessThan(5000)
  })

  it('keeps the one-run form for results without repeats', () => {
    const c = convergence([2500])
    delete c.runs
    const [conv] = rows({ machine: { cpus: 2, node: 'v20' }, convergence: { 25: c }, staticMesh: {}, errors: [] })
    expect(conv?.ours).toMatch(/^2500 ms; CPU used: daemons 2 s/)
    expect(conv?.figure).not.toContain('median')
  })
})
