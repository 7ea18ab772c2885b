import { describe, it, expect } from 'vitest'
import { generatePsk, parsePsk, pskFromBytes, rotatedSwarmKey } from '../../src/config/psk.ts'

const bytes = Uint8Array.from({ length: 32 }, (_, i) => i * 7 % 256)
const hex = Buffer.from(bytes).toString('hex')

describe('psk parsing', () => {
  it('accepts the swarm.key text, bare hex and base64, all to the same key', () => {
    const forms = [
      `/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`,
      `/key/swarm/psk/1.0.0/\r\n/base16/\r\n${hex.toUpperCase()}`,
      hex,
      `  ${hex}\n`,
      Buffer.from(bytes).toString('base64')
    ]
    for (const form of forms) expect(Buffer.from(parsePsk(form).bytes).toString('hex')).toBe(hex)
  })

  it('prints one canonical form that parses back', () => {
    const psk = generatePsk()
    expect(psk.swarmKey).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    expect(parsePsk(psk.swarmKey).bytes).toEqual(psk.bytes)
    expect(pskFromBytes(bytes).swarmKey).toBe(`/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`)
  })

  it('rejects wrong lengths and garbage with a reason, never echoing the key', () => {
    expect(() => parsePsk(hex.slice(2))).toThrow(/62 characters, need 64/)
    expect(() => parsePsk(hex + '00')).toThrow(/need 64/)
    expect(() => parsePsk(Buffer.alloc(16).toString('base64'))).toThrow(/16 bytes, need 32/)
    expect(() => parsePsk(`/key/swarm/psk/1.0.0/\n/base16/\n${hex.slice(1)}`)).toThrow(/63 characters, need 64/)
    expect(() => parsePsk('/key/swarm/psk/1.0.0/\n/base64/\nAAAA')).toThrow(/base16/)
    expect(() => parsePsk('not a key!')).toThrow(/expected a swarm.key/)
    expect(() => parsePsk('')).toThrow()
    try { parsePsk(hex.slice(2)) } catch (err) { expect((err as Error).message).not.toContain(hex.slice(2)) }
  })

  it('reads the IPv6 prefix seed a rotated swarm.key carries, which pnet ignores', () => {
    const bytes = new Uint8Array(32).fill(5)
    const text = rotatedSwarmKey(bytes, '0a0b0c0d0e0f10')
    const psk = parsePsk(text)
    expect(psk.ulaSeed).toBe('0a0b0c0d0e0f10')
    expect(Buffer.from(psk.bytes)).toEqual(Buffer.from(bytes))
    expect(parsePsk(pskFromBytes(bytes).swarmKey).ulaSeed).toBeUndefined()
  })
})
