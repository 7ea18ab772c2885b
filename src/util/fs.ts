import { access, chmod, constants, mkdir, open, rename, rm, stat } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import { randomBytes } from 'node:crypto'

/** Create a private directory (0700), or tighten an existing one we own. */
export async function ensurePrivateDir (path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 })
  const info = await stat(path)
  if (!info.isDirectory()) throw new Error(`${path} exists and is not a directory`)
  try {
    await access(path, constants.R_OK | constants.W_OK | constants.X_OK)
  } catch {
    throw new Error(`${path} is owned by uid ${info.uid} and not writable by this user (uid ${process.getuid?.() ?? '?'}): chown it to the daemon's user`)
  }
  if ((info.mode & 0o077) !== 0) await chmod(path, 0o700)
}

/**
 * Replace `path` atomically: temp file in the same directory, fsync, rename, fsync the
 * directory. A crash at any point leaves either the old file or the new one, never a mix.
 */
export async function writeFileAtomic (path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = dirname(path)
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  const file = await open(temp, 'wx', mode)
  try {
    await file.writeFile(data)
    await file.sync()
  } catch (err) {
    await file.close().catch(() => {})
    await rm(temp, { force: true })
    throw err
  }
  await file.close()
  try {
    await rename(temp, path)
  } catch (err) {
    await rm(temp, { force: true })
    throw err
  }
  const dirHandle = await open(dir, 'r')
  try { await dirHandle.sync() } finally { await dirHandle.close() }
}
