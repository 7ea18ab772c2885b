import { describe, it, expect } from 'vitest'
import { createAnnouncer, staleAfterSeconds } from '../../src/gossip/announcer.ts'
import { signRecord, openRecord, type NodeRecord, type SignedRecord } from '../../src/gossip/record.ts'
import { makeNode, type TestNode } from './fixtures.ts'

// What leaves the node when: a content change is signed, held and published; a refresh is
// signed and held (anti-entropy spreads it) but not published; nothing new, nothing at all.

async function setup (): Promise<{ node: TestNode, state: { name: string }, held: SignedRecord[], published: NodeRecord[], announcer: ReturnType<typeof createAnnouncer> }> {
  const node = await makeNode('a')
  const state = { name: 'a' }
  const held: SignedRecord[] = []
  const published: NodeRecord[] = []
  const announcer = createAnnouncer({
    build: () => node.record({ name: state.name, issuedAt: Date.now() }),
    sign: async record => await signRecord(record, node.key),
    hold: signed => { held.push(signed) },
    publish: async envelope => { published.push((await openRecord(envelope)).record) }
  })
  return { node, state, held, published, announcer }
}

describe('announcing our record', () => {
  it('publishes changes, holds refreshes without publishing them, and skips announcements with nothing new', async () => {
    const { state, held, published, announcer } = await setup()
    await announcer.announce()
    expect(published.map(r => r.name)).toEqual(['a'])

    await announcer.announce() // nothing changed
    expect(held).toHaveLength(1)
    expect(published).toHaveLength(1)

    await announcer.announce({}, true) // a refresh
    expect(held).toHaveLength(2)
    expect(held[1]!.record.seq).toBeGreaterThan(held[0]!.record.seq)
    expect(published).toHaveLength(1)

    state.name = 'b'
    await announcer.announce({}, true) // a refresh that finds a change is published
    expect(published.map(r => r.name)).toEqual(['a', 'b'])
    await announcer.announce({ leaving: true })
    expect(published.map(r => r.leaving ?? false)).toEqual([false, false, true])
  })

  it('runs one announcement at a time, in call order, and none after close', async () => {
    const { state, held, published, announcer } = await setup()
    await Promise.all(['b', 'c', 'd'].map(async name => { await announcer.announce({ name }) }))
    expect(published.map(r => r.name)).toEqual(['b', 'c', 'd'])
    expect(held.map(s => s.record.name)).toEqual(['b', 'c', 'd'])
    expect(held.map(s => s.record.seq)).toEqual([...held.map(s => s.record.seq)].sort((x, y) => x - y))
    announcer.close()
    state.name = 'e'
    await announcer.announce({}, true)
    expect(held).toHaveLength(3)
  })

  it('calls a member stale after 3 periods plus a spread that grows with the mesh, not with the period', () => {
    // the N=250 bench held records up to 717 s old with 300 s periods: not stale
    expect(staleAfterSeconds(300, 249)).toBeGreaterThan(717)
    expect(staleAfterSeconds(300, 249)).toBe(900 + 8 * 60)
    expect(staleAfterSeconds(300, 1)).toBe(900 + 60)
    expect(staleAfterSeconds(300, 0)).toBe(900 + 60)
    // a short period still leaves anti-entropy its rounds: 4 rounds at N=10, 10 at N=1000
    expect(staleAfterSeconds(30, 9)).toBe(90 + 4 * 60)
    expect(staleAfterSeconds(30, 999)).toBe(90 + 10 * 60)
  })
})
