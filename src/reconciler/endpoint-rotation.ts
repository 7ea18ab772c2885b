import type { WgPeerConfig, WgPeerState } from '../wireguard/driver.ts'

// Endpoint rotation, wgpeerselector style: per peer, configure one candidate endpoint; if no
// handshake follows within the timeout, move on to the next candidate, round and round. A
// working tunnel is never disturbed, also when WireGuard itself roamed to an address that is
// no candidate at all (a NAT's mapping). Pure state plus an injected clock: unit-testable.

/** A handshake this recent means the tunnel works (WireGuard rekeys every 2 minutes while in use). */
export const WORKING_HANDSHAKE_SECONDS = 180
/**
 * How long one candidate gets. WireGuard retries an unanswered initiation after 5 s (plus up to
 * 1/3 s jitter); a poke sends one at once, so a reachable candidate answers well within this.
 */
export const DEFAULT_ATTEMPT_MS = 6000

export interface DesiredPeer extends WgPeerConfig {
  /** ordered candidate endpoints; absent = take `endpoint` as it is */
  candidates?: string[]
}

export interface EndpointView {
  candidates: string[]
  /** the endpoint under trial or in use */
  current: string | undefined
  /** full rounds through every candidate without a handshake */
  rounds: number
  /** a handshake followed the current choice */
  working: boolean
}

export interface SelectResult {
  /** the peers to configure: `endpoint` = the choice; undefined = keep what the device has */
  peers: WgPeerConfig[]
  /** peers whose new attempt should be started by a handshake now */
  attempts: string[]
}

export interface EndpointSelector {
  select: (desired: DesiredPeer[], actual: WgPeerState[], nowMs: number) => SelectResult
  /** ms from `nowMs` until the next attempt times out; undefined = nothing pending */
  nextCheckMs: (nowMs: number) => number | undefined
  describe: (publicKey: string) => EndpointView | undefined
}

export interface SelectorOptions {
  attemptMs?: number
  /** called when a peer completes a full round without any handshake, and when it recovers */
  onPathChange?: (publicKey: string, view: EndpointView) => void
}

interface PeerState {
  list: string[]
  idx: number
  current: string | undefined
  /** when the current attempt started (ms) */
  since: number
  rounds: number
  working: boolean
}

export function createEndpointSelector (opts: SelectorOptions = {}): EndpointSelector {
  const attemptMs = opts.attemptMs ?? DEFAULT_ATTEMPT_MS
  const states = new Map<string, PeerState>()

  /** A handshake after the attempt began (wg reports whole seconds: allow one). */
  const handshakeSince = (have: WgPeerState | undefined, since: number, nowMs: number): boolean =>
    have !== undefined && have.latestHandshake > 0 &&
    nowMs / 1000 - have.latestHandshake < WORKING_HANDSHAKE_SECONDS &&
    have.latestHandshake * 1000 >= since - 1000

  const recent = (have: WgPeerState | undefined, nowMs: number): have is WgPeerState & { endpoint: string } =>
    have?.endpoint !== undefined && have.latestHandshake > 0 && nowMs / 1000 - have.latestHandshake < WORKING_HANDSHAKE_SECONDS

  const start = (s: PeerState, idx: number, nowMs: number): void => {
    s.idx = idx
    s.current = s.list[idx]
    s.since = nowMs
    s.working = false
  }
  /** Take over what the device has: it works, so its handshake time is the attempt's start. */
  const adopt = (s: PeerState, have: WgPeerState & { endpoint: string }): void => {
    s.current = have.endpoint
    s.idx = Math.max(0, s.list.indexOf(have.endpoint))
    s.since = have.latestHandshake * 1000
    s.working = true
    s.rounds = 0
  }

  /** The endpoint for one peer; `attempt` is true when a new trial starts now. */
  function choose (key: string, candidates: string[], have: WgPeerState | undefined, nowMs: number): { endpoint: string | undefined, attempt: boolean } {
    let s = states.get(key)
    if (candidates.length === 0) {
      states.delete(key)
      return { endpoint: undefined, attempt: false } // nothing to try: WireGuard may still learn one by roaming
    }
    if (s === undefined) {
      s = { list: candidates, idx: 0, current: undefined, since: nowMs, rounds: 0, working: false }
      states.set(key, s)
      if (recent(have, nowMs)) { adopt(s, have); return { endpoint: s.current, attempt: false } }
      start(s, 0, nowMs)
      return { endpoint: s.current, attempt: true }
    }
    const wasWorking = s.working
    const roundsBefore = s.rounds
    let attempt = false
    if (!sameList(s.list, candidates)) {
      // The member changed its record, or a libp2p connection came or went. Keep a working
      // endpoint unless the member withdrew it (it moved away); otherwise start from the top.
      const withdrawn = have?.endpoint !== undefined && s.list.includes(have.endpoint) && !candidates.includes(have.endpoint)
      s.list = candidates
      s.rounds = 0
      if (recent(have, nowMs) && !withdrawn) adopt(s, have)
      else { start(s, 0, nowMs); attempt = true }
    } else if (handshakeSince(have, s.since, nowMs)) {
      s.working = true
      s.rounds = 0
      // WireGuard roamed (the member wrote to us from elsewhere): follow it, never fight it
      if (have?.endpoint !== undefined) s.current = have.endpoint
    } else if (nowMs - s.since >= attemptMs) {
      const next = (s.idx + 1) % s.list.length
      if (next === 0) s.rounds++
      start(s, next, nowMs)
      attempt = true
    } else {
      s.working = false
    }
    if (opts.onPathChange !== undefined && ((roundsBefore === 0 && s.rounds === 1) || (!wasWorking && s.working && roundsBefore > 0))) {
      opts.onPathChange(key, view(s))
    }
    return { endpoint: s.current, attempt }
  }

  const view = (s: PeerState): EndpointView => ({ candidates: [...s.list], current: s.current, rounds: s.rounds, working: s.working })

  return {
    select (desired, actual, nowMs) {
      const byKey = new Map(actual.map(p => [p.publicKey, p]))
      const wanted = new Set(desired.map(p => p.publicKey))
      for (const key of states.keys()) if (!wanted.has(key)) states.delete(key)
      const attempts: string[] = []
      const peers = desired.map(({ candidates, ...peer }) => {
        if (candidates === undefined) return peer
        const choice = choose(peer.publicKey, candidates, byKey.get(peer.publicKey), nowMs)
        if (choice.attempt) attempts.push(peer.publicKey)
        return { ...peer, endpoint: choice.endpoint }
      })
      return { peers, attempts }
    },
    nextCheckMs (nowMs) {
      let next: number | undefined
      for (const s of states.values()) {
        if (s.working) continue
        const due = Math.max(0, s.since + attemptMs - nowMs)
        if (next === undefined || due < next) next = due
      }
      return next
    },
    describe (publicKey) {
      const s = states.get(publicKey)
      return s === undefined ? undefined : view(s)
    }
  }
}

function sameList (a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}
