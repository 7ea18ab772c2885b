// A small SVG line chart (no plotting dependency): one or more series of (x, y) points on
// linear axes with ticks, a legend and point labels.

export interface Series { name: string, color: string, points: Array<{ x: number, y: number }>, dashed?: boolean }

export interface ChartOptions { title: string, xLabel: string, yLabel: string, series: Series[], width?: number, height?: number }

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** Round step (1, 2 or 5 × 10^k) giving about `count` ticks up to `max`. */
export function niceStep (max: number, count = 5): number {
  if (max <= 0) return 1
  const raw = max / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const n = raw / mag
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag
}

export function renderChart (opts: ChartOptions): string {
  const width = opts.width ?? 720
  const height = opts.height ?? 420
  const m = { left: 70, right: 190, top: 40, bottom: 55 }
  const pw = width - m.left - m.right
  const ph = height - m.top - m.bottom
  const pts = opts.series.flatMap(s => s.points)
  const xStep = niceStep(Math.max(1, ...pts.map(p => p.x)))
  const yStep = niceStep(Math.max(0.001, ...pts.map(p => p.y)))
  const xMax = Math.ceil(Math.max(1, ...pts.map(p => p.x)) / xStep) * xStep
  const yMax = Math.ceil(Math.max(0.001, ...pts.map(p => p.y)) / yStep) * yStep
  const X = (x: number): number => m.left + x / xMax * pw
  const Y = (y: number): number => m.top + ph - y / yMax * ph
  const fmt = (v: number): string => String(Math.round(v * 1000) / 1000)
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2 - m.right / 2 + m.left / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(opts.title)}</text>`
  ]
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    out.push(`<line x1="${m.left}" y1="${Y(y)}" x2="${m.left + pw}" y2="${Y(y)}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${m.left - 6}" y="${Y(y) + 4}" text-anchor="end">${fmt(y)}</text>`)
  }
  for (let x = 0; x <= xMax + 1e-9; x += xStep) {
    out.push(`<line x1="${X(x)}" y1="${m.top + ph}" x2="${X(x)}" y2="${m.top + ph + 5}" stroke="#333"/>`)
    out.push(`<text x="${X(x)}" y="${m.top + ph + 18}" text-anchor="middle">${fmt(x)}</text>`)
  }
  out.push(`<line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}" stroke="#333"/>`)
  out.push(`<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}" stroke="#333"/>`)
  out.push(`<text x="${m.left + pw / 2}" y="${height - 12}" text-anchor="middle">${esc(opts.xLabel)}</text>`)
  out.push(`<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`)
  opts.series.forEach((s, i) => {
    const sorted = [...s.points].sort((a, b) => a.x - b.x)
    if (sorted.length > 1) {
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dashed === true ? ' stroke-dasharray="6 4"' : ''} points="${sorted.map(p => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ')}"/>`)
    }
    for (const p of sorted) {
      out.push(`<circle cx="${X(p.x).toFixed(1)}" cy="${Y(p.y).toFixed(1)}" r="4" fill="${s.color}"/>`)
      out.push(`<text x="${(X(p.x) + 6).toFixed(1)}" y="${(Y(p.y) - 6).toFixed(1)}" fill="${s.color}">${fmt(p.y)}</text>`)
    }
    const ly = m.top + 10 + i * 20
    out.push(`<line x1="${m.left + pw + 15}" y1="${ly}" x2="${m.left + pw + 40}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed === true ? ' stroke-dasharray="6 4"' : ''}/>`)
    out.push(`<text x="${m.left + pw + 46}" y="${ly + 4}">${esc(s.name)}</text>`)
  })
  out.push('</svg>')
  return `${out.join('\n')}\n`
}
