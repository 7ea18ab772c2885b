import { chmod, readFile, stat } from 'node:fs/promises'
import { writeFileAtomic } from '../util/fs.ts'

// A managed block in a hosts file (e.g. /etc/hosts) that maps `<name>.<domain>` to each
// member's overlay addresses. Only the lines between our marker lines are ever written;
// everything else in the file is kept byte for byte. resolv.conf is never touched.

export interface HostsEntry {
  peerId: string
  name: string
  ipv6: string
  ipv4?: string
}

export const beginMarker = (iface: string): string => `# BEGIN w2wesher ${iface}`
export const endMarker = (iface: string): string => `# END w2wesher ${iface}`

/** A DNS label: lower case letters, digits and '-', 1-63 characters. */
export function sanitizeLabel (name: string): string {
  const label = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '')
  return label === '' ? 'node' : label
}

/**
 * The block text (marker lines included, newline-terminated). Names that clash after
 * sanitising all get a short peer-id suffix, so every member writes the same names and no
 * node "wins" a name by arriving first.
 */
export function renderBlock (iface: string, domain: string, entries: HostsEntry[]): string {
  const byLabel = new Map<string, number>()
  for (const e of entries) byLabel.set(sanitizeLabel(e.name), (byLabel.get(sanitizeLabel(e.name)) ?? 0) + 1)
  const named = entries.map(e => {
    const base = sanitizeLabel(e.name)
    const suffix = sanitizeLabel(e.peerId.slice(-6))
    const label = (byLabel.get(base) ?? 0) > 1 ? `${base.slice(0, 62 - suffix.length)}-${suffix}` : base
    return { ...e, label }
  }).sort((a, b) => a.label < b.label ? -1 : a.label > b.label ? 1 : a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0)
  const lines = [beginMarker(iface), '# managed by w2wesher: edits inside this block are overwritten']
  for (const e of named) {
    const fqdn = `${e.label}.${domain}`
    lines.push(`${e.ipv6} ${fqdn}`)
    if (e.ipv4 !== undefined) lines.push(`${e.ipv4} ${fqdn}`)
  }
  lines.push(endMarker(iface))
  return lines.map(l => `${l}\n`).join('')
}

/**
 * Put `block` in place of our block in `text` (appended when there is none), or remove our
 * block when `block` is undefined. Throws when the markers are unbalanced: guessing where
 * a half-deleted block ends could eat someone's lines.
 */
export function spliceBlock (text: string, iface: string, block: string | undefined): string {
  const lines = text.split(/(?<=\n)/) // keeps each line's own terminator
  const isLine = (l: string, marker: string): boolean => l.replace(/\r?\n$/, '').trimEnd() === marker
  const begins = lines.flatMap((l, i) => isLine(l, beginMarker(iface)) ? [i] : [])
  const ends = lines.flatMap((l, i) => isLine(l, endMarker(iface)) ? [i] : [])
  if (begins.length > 1 || ends.length > 1 || begins.length !== ends.length || (begins.length === 1 && ends[0]! < begins[0]!)) {
    throw new Error(`unbalanced "${beginMarker(iface)}" / "${endMarker(iface)}" lines; fix the file by hand`)
  }
  if (begins.length === 0) {
    if (block === undefined) return text
    // our block must start on a line of its own
    const sep = text === '' || text.endsWith('\n') ? '' : '\n'
    return `${text}${sep}${block}`
  }
  const before = lines.slice(0, begins[0]).join('')
  const after = lines.slice(ends[0]! + 1).join('')
  return `${before}${block ?? ''}${after}`
}

export interface HostsWriterOptions {
  path: string
  iface: string
  domain: string
  entries: () => HostsEntry[]
  log: { info: (o: object, m: string) => void, warn: (o: object, m: string) => void }
  debounceMs?: number
}

export interface HostsWriter {
  /** Rewrite the block soon; bursts of membership changes make one write. */
  schedule: () => void
  /** Write now (after any write in progress). */
  flush: () => Promise<void>
  /** Remove our block (on leave). Later schedule() calls do nothing. */
  remove: () => Promise<void>
  /** Stop the debounce timer; the block stays (a restart keeps names working). */
  stop: () => void
}

export function createHostsWriter (opts: HostsWriterOptions): HostsWriter {
  const debounceMs = opts.debounceMs ?? 250
  let timer: NodeJS.Timeout | undefined
  let removed = false
  // every write goes through this chain: two writers racing on one file would lose updates
  let chain: Promise<void> = Promise.resolve()

  const update = async (block: string | undefined): Promise<void> => {
    let text = ''
    let mode = 0o644
    try {
      text = await readFile(opts.path, 'utf8')
      mode = (await stat(opts.path)).mode & 0o7777
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      if (block === undefined) return
    }
    const next = spliceBlock(text, opts.iface, block)
    if (next === text) return // unchanged: no write, no mtime churn
    await writeFileAtomic(opts.path, next, mode)
    // the temp file was created under the umask; give the file back its exact mode
    await chmod(opts.path, mode)
  }

  const enqueue = (block: () => string | undefined, what: string): Promise<void> => {
    chain = chain.then(async () => {
      try {
        await update(block())
      } catch (err) {
        opts.log.warn({ path: opts.path, err: String(err) }, `cannot ${what} the hosts file block`)
      }
    })
    return chain
  }
  const write = (): Promise<void> => enqueue(() => removed ? undefined : renderBlock(opts.iface, opts.domain, opts.entries()), 'update')

  return {
    schedule () {
      if (removed || timer !== undefined) return
      timer = setTimeout(() => { timer = undefined; void write() }, debounceMs)
      timer.unref()
    },
    flush: write,
    async remove () {
      removed = true
      if (timer !== undefined) { clearTimeout(timer); timer = undefined }
      await enqueue(() => undefined, 'remove')
      opts.log.info({ path: opts.path }, 'removed the hosts file block')
    },
    stop () {
      if (timer !== undefined) { clearTimeout(timer); timer = undefined }
    }
  }
}
