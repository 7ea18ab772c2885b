import { describe, it, expect } from 'vitest'
import { mkdtemp, readFile, writeFile, chmod, stat, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHostsWriter, renderBlock, sanitizeLabel, spliceBlock, type HostsEntry } from '../../src/hosts/hosts.ts'

const entries: HostsEntry[] = [
  { peerId: '12D3KooWBbbbbbbbbbbbbbbbb', name: 'Beta', ipv6: 'fd00::2', ipv4: '10.223.0.2' },
  { peerId: '12D3KooWAaaaaaaaaaaaaaaaa', name: 'alpha', ipv6: 'fd00::1' }
]
const ORIGINAL = '127.0.0.1\tlocalhost\n# keep me  \n::1 localhost ip6-localhost\r\n\n192.0.2.1 other.example # trailing\n'

describe('hosts block', () => {
  it('renders sorted, sanitised names for every address', () => {
    expect(renderBlock('wesh0', 'wesh', entries)).toBe([
      '# BEGIN w2wesher wesh0',
      '# managed by w2wesher: edits inside this block are overwritten',
      'fd00::1 alpha.wesh',
      'fd00::2 beta.wesh',
      '10.223.0.2 beta.wesh',
      '# END w2wesher wesh0',
      ''
    ].join('\n'))
  })

  it('sanitises names into DNS labels', () => {
    expect(sanitizeLabel('My_Laptop.local')).toBe('my-laptop-local')
    expect(sanitizeLabel('--')).toBe('node')
    expect(sanitizeLabel('x'.repeat(80))).toHaveLength(63)
  })

  it('disambiguates clashing names deterministically, whatever the order', () => {
    const clash: HostsEntry[] = [
      { peerId: '12D3KooWxxxxxxQ1', name: 'web', ipv6: 'fd00::a' },
      { peerId: '12D3KooWyyyyyyQ2', name: 'WEB', ipv6: 'fd00::b' },
      { peerId: '12D3KooWzzzzzzQ3', name: 'db', ipv6: 'fd00::c' }
    ]
    const block = renderBlock('wesh0', 'wesh', clash)
    expect(block).toContain('fd00::a web-xxxxq1.wesh')
    expect(block).toContain('fd00::b web-yyyyq2.wesh')
    expect(block).toContain('fd00::c db.wesh')
    expect(renderBlock('wesh0', 'wesh', [...clash].reverse())).toBe(block)
  })

  it('appends to a file without a block, keeping every other byte', () => {
    const block = renderBlock('wesh0', 'wesh', entries)
    const out = spliceBlock(ORIGINAL, 'wesh0', block)
    expect(out).toBe(ORIGINAL + block)
    // no trailing newline: the block still starts on its own line
    expect(spliceBlock('a b', 'wesh0', block)).toBe(`a b\n${block}`)
    expect(spliceBlock('', 'wesh0', block)).toBe(block)
  })

  it('replaces only its own block, in place, and is idempotent', () => {
    const other = '# BEGIN w2wesher wesh1\nfd00::9 x.wesh\n# END w2wesher wesh1\n'
    const start = `${ORIGINAL}${renderBlock('wesh0', 'wesh', entries.slice(0, 1))}tail line\n${other}`
    const block = renderBlock('wesh0', 'wesh', entries)
    const once = spliceBlock(start, 'wesh0', block)
    expect(once).toBe(`${ORIGINAL}${block}tail line\n${other}`)
    expect(spliceBlock(once, 'wesh0', block)).toBe(once)
  })

  it('removes the block and nothing else', () => {
    const block = renderBlock('wesh0', 'wesh', entries)
    expect(spliceBlock(`${ORIGINAL}${block}after\n`, 'wesh0', undefined)).toBe(`${ORIGINAL}after\n`)
    expect(spliceBlock(ORIGINAL, 'wesh0', undefined)).toBe(ORIGINAL)
  })

  it('refuses unbalanced markers instead of guessing', () => {
    expect(() => spliceBlock(`${ORIGINAL}# BEGIN w2wesher wesh0\nx\n`, 'wesh0', 'b\n')).toThrow(/unbalanced/)
    expect(() => spliceBlock('# END w2wesher wesh0\n# BEGIN w2wesher wesh0\n', 'wesh0', undefined)).toThrow(/unbalanced/)
  })
})

describe('hosts writer', () => {
  it('writes atomically, keeps the file mode, and removes the block', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'w2w-hosts-'))
    try {
      const path = join(dir, 'hosts')
      await writeFile(path, ORIGINAL)
      await chmod(path, 0o640)
      const logs: string[] = []
      const log = { info: (_o: object, m: string) => logs.push(m), warn: (_o: object, m: string) => logs.push(m) }
      let current = entries
      const writer = createHostsWriter({ path, iface: 'wesh0', domain: 'wesh', log, entries: () => current, debounceMs: 10 })
      await writer.flush()
      expect(await readFile(path, 'utf8')).toBe(ORIGINAL + renderBlock('wesh0', 'wesh', entries))
      expect((await stat(path)).mode & 0o777).toBe(0o640)
      current = entries.slice(1)
      writer.schedule()
      await new Promise(resolve => setTimeout(resolve, 50))
      await writer.flush()
      expect(await readFile(path, 'utf8')).toBe(ORIGINAL + renderBlock('wesh0', 'wesh', current))
      await writer.remove()
      expect(await readFile(path, 'utf8')).toBe(ORIGINAL)
      expect((await stat(path)).mode & 0o777).toBe(0o640)
      writer.schedule() // after leave: nothing comes back
      await new Promise(resolve => setTimeout(resolve, 30))
      expect(await readFile(path, 'utf8')).toBe(ORIGINAL)
      expect(logs.filter(m => m.startsWith('cannot'))).toEqual([])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
