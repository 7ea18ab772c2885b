import { describe, it, expect } from 'vitest'
import { niceStep, renderChart } from '../../bench/chart.ts'

describe('benchmark chart', () => {
  it('picks round tick steps', () => {
    expect(niceStep(27)).toBe(10)
    expect(niceStep(9)).toBe(2)
    expect(niceStep(0.9)).toBe(0.2)
    expect(niceStep(250)).toBe(50)
  })
  it('draws one point per value, a line per series and escapes labels', () => {
    const svg = renderChart({
      title: 'a <b>', xLabel: 'N', yLabel: 's',
      series: [
        { name: 'x&y', color: '#f00', points: [{ x: 10, y: 2 }, { x: 25, y: 5 }] },
        { name: 'z', color: '#0f0', points: [{ x: 50, y: 40 }] }
      ]
    })
    expect(svg.startsWith('<svg')).toBe(true)
    expect(svg.match(/<circle /g)).toHaveLength(3)
    expect(svg.match(/<polyline /g)).toHaveLength(1)
    expect(svg).toContain('a &lt;b&gt;')
    expect(svg).toContain('x&amp;y')
    expect(svg).not.toContain('NaN')
  })
})
