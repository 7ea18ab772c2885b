import { describe, it, expect } from 'vitest'
import { simulate } from '../../bench/ipam-sim.ts'
import { ipv4Range, ula64 } from '../../src/membership/ipam.ts'

// The allocation simulation of bench/ipam-sim.ts, small enough for CI: 2,000 nodes in a /16
// collide often (birthday bound), claims arrive late and shuffled, and none may end up shared.

describe('IP allocation simulation', () => {
  it('leaves no duplicate among 2,000 nodes in a /16, whatever order claims arrive in', () => {
    for (const seed of [1, 2]) {
      const r = simulate({ nodes: 2000, range: ipv4Range('10.223.0.0/16'), seed })
      expect(r.duplicates).toBe(0)
      expect(r.orderIndependent).toBe(true)
      // the run must have exercised collisions: some nodes moved past counter 0
      expect(r.initialCollisions).toBeGreaterThan(0)
      expect(Object.keys(r.counters).map(Number).some(c => c >= 1)).toBe(true)
      expect(Object.values(r.counters).reduce((a, b) => a + b, 0)).toBe(2000)
    }
  })

  it('needs no counter beyond 0 for 2,000 nodes in the IPv6 /64', () => {
    const r = simulate({ nodes: 2000, range: ula64(new Uint8Array(7).fill(9)), seed: 3 })
    expect(r.duplicates).toBe(0)
    expect(r.counters).toEqual({ 0: 2000 })
  })
})
