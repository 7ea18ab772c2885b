import { peerIdFromString } from '@libp2p/peer-id'
import type { Config } from './config/config.ts'
import { meshSeed } from './config/psk.ts'
import { loadIdentity, type Identity } from './identity/identity.ts'
import { createHost, filterLanAnswers, ipOf, queryLan, repeatLanQueries, thinLanAnswers, type Host } from './p2p/host.ts'
import { createKeeper, type Keeper } from './p2p/keeper.ts'
import { startGossip, type Gossip } from './gossip/gossip.ts'
import { createAnnouncer, staleAfterSeconds } from './gossip/announcer.ts'
import { signRecord, RECORD_VERSION, MAX_REVOKES, type NodeRecord, type RecordClaim } from './gossip/record.ts'
import { Membership } from './membership/table.ts'
import { chooseClaim, inRange, ula64, type Claim, type OverlayRange } from './membership/ipam.ts'
import { acceptedRoutes, cidrContainsIp, localRouteProblem, resolveRoutes, routeEvents, type RouteResolution } from './membership/routes.ts'
import { createReconciler, type Reconciler } from './reconciler/reconciler.ts'
import { desiredPeers } from './reconciler/desired.ts'
import { createEndpointSelector } from './reconciler/endpoint-rotation.ts'
import { interfaceAddresses, localCandidates, ObservedAddresses } from './endpoints/local.ts'
import { watchAddresses } from './endpoints/watch.ts'
import type { WgDriver, WgInterfaceConfig, WgPeerState } from './wireguard/driver.ts'
import { createSystemDriver } from './wireguard/system.ts'
import type { Logger } from './log.ts'
import { decodeEnvelope, encodeEnvelope, forgetState, loadState, saveState } from './state/store.ts'
import { serveControl } from './control/socket.ts'
import { MultiKeyProtector } from './p2p/protector.ts'
import { loadRotation, startKeys } from './p2p/rotation.ts'
import { createRotator, type Rotator } from './p2p/rotator.ts'
import { resolveRevokeTarget } from './membership/revoke.ts'
import type { RouteStatus, StatusReport } from './control/status.ts'
import type { MetricsServer } from './metrics/metrics.ts'
import { createHostsWriter, type HostsWriter } from './hosts/hosts.ts'
import { createThrottledTask } from './util/rate.ts'

// Wires the data flow together: config → identity → p2p host → gossip → membership →
// reconciler → WireGuard driver. Each arrow is one of the calls below; nothing else talks
// across layers.

/**
 * membership changes within this time are reviewed together (a sync's records arrive within a
 * few ms; at 50 ms a member put a newcomer into WireGuard 47–71 ms after the newcomer had
 * added it, so the newcomer's handshake was dropped more often)
 */
const MEMBERSHIP_REVIEW_MS = 10
const SAVE_INTERVAL_MS = 500
/** how often record refreshes alone (nothing but seq and issuedAt new) reach the dump */
const REFRESH_SAVE_MS = 60_000
/**
 * Our own interface addresses are read (getifaddrs, no process) when the kernel reports an
 * address change (src/endpoints/watch.ts), at least every UNDERLAY_CHECK_MS, and every
 * UNDERLAY_POLL_MS where no watcher can run. Polling every second was a quarter of an idle
 * daemon's CPU (0.265 against 0.20 CPU-s/min without it, N=10).
 */
const UNDERLAY_POLL_MS = 2_000
const UNDERLAY_CHECK_MS = 60_000
/** with keepalive on, WireGuard rekeys every 2 minutes: a live tunnel's last handshake is never older */
const TUNNEL_UP_SECONDS = 180

function handshakeAgeSeconds (wg: WgPeerState | undefined, nowMs: number): number | null {
  return wg === undefined || wg.latestHandshake === 0 ? null : Math.max(0, Math.round(nowMs / 1000 - wg.latestHandshake))
}

const tunnelUp = (handshakeAge: number | null): boolean => handshakeAge !== null && handshakeAge < TUNNEL_UP_SECONDS

export interface DaemonOptions {
  config: Config
  log: Logger
  /** defaults to the real system driver; tests and benchmarks pass the in-memory twin */
  driver?: WgDriver
  /** tests and benchmarks only (many daemons on 127.0.0.1); see HostOptions.allowLoopback */
  allowLoopback?: boolean
  /** false: poll our interface addresses instead of running an `ip monitor` child (benchmarks
   * with many daemons in one process) */
  addressEvents?: boolean
}

export interface Daemon {
  identity: Identity
  host: Host
  membership: Membership
  gossip: Gossip
  reconciler: Reconciler
  ranges: { ipv6: OverlayRange, ipv4?: OverlayRange }
  /** Stop networking; the WireGuard interface and its peers stay up (seamless restarts). */
  stop: () => Promise<void>
}

export async function startDaemon (opts: DaemonOptions): Promise<Daemon> {
  const { config, log } = opts
  const identity = await loadIdentity(config.stateDir)
  const self = identity.peerId
  if (identity.created) log.info({ peerId: self, stateDir: config.stateDir }, 'created a new node identity')
  // Network keys: config psk/pskAccept, unless a key rotation (rotate-psk) moved on from them.
  const loadedRotation = await loadRotation(config.stateDir)
  if (loadedRotation.status === 'corrupt') log.error({ reason: loadedRotation.reason, movedTo: loadedRotation.movedTo }, 'key rotation file is corrupt: set it aside, using the keys from the config')
  const start = startKeys(config.psk.bytes, config.pskAccept.map(k => k.bytes), loadedRotation.status === 'ok' ? loadedRotation.rotation : undefined, Date.now())
  if (loadedRotation.status === 'ok' && start.rotation === undefined) log.warn('the config holds neither key of the last key rotation: using the config key')
  // The IPv6 prefix derives from the network's first key and is kept across rotations.
  const ulaSeed = start.rotation?.ulaSeed ?? meshSeed(config.psk)
  const protector = new MultiKeyProtector(start.keys)
  protector.onUnknownKey = remoteAddr => log.debug({ remoteAddr }, 'refused a connection on an unknown network key')
  const ranges = { ipv6: ula64(Buffer.from(ulaSeed, 'hex')), ipv4: config.overlayIpv4 }
  const isOverlayAddress = (ip: string): boolean => inRange(ranges.ipv6, ip) || (ranges.ipv4 !== undefined && inRange(ranges.ipv4, ip))
  const driver = opts.driver ?? createSystemDriver({
    wireguardGo: config.wireguardGo,
    mode: config.wireguardMode,
    log: (level, msg, fields) => log[level](fields ?? {}, msg)
  })
  const membership = new Membership({ self, selfWgPublicKey: identity.wgPublicKey, ipv6Range: ranges.ipv6, ipv4Range: ranges.ipv4 })

  const loaded = await loadState(config.stateDir)
  if (loaded.status === 'corrupt') log.error({ reason: loaded.reason, movedTo: loaded.movedTo }, 'state dump is corrupt: set it aside, starting from config')
  const saved = loaded.status === 'ok' ? loaded.state : undefined
  // revocations before records: a revoked member's old records stay out
  for (const r of saved?.revoked ?? []) membership.revoke(r.peerId, r.by, r.at)

  // Saved records are re-verified like network input: a tampered dump cannot add members.
  let restored = 0
  for (const text of saved?.records ?? []) {
    const result = await membership.acceptEnvelope(decodeEnvelope(text))
    if (result.accepted) restored++
  }
  if (saved !== undefined) log.info({ members: restored }, 'restored membership from the state dump')

  // A held address is kept across restarts (chooseClaim keeps a valid current claim).
  const now = Date.now()
  const claims: { ipv6: Claim, ipv4?: Claim } = {
    ipv6: chooseClaim(ranges.ipv6, self, saved?.claims.ipv6, membership.claims(6), now),
    ipv4: ranges.ipv4 === undefined ? undefined : chooseClaim(ranges.ipv4, self, saved?.claims.ipv4, membership.claims(4), now)
  }
  log.info({ peerId: self, name: config.name, ipv6: claims.ipv6.address, ipv4: claims.ipv4?.address, interface: config.interface }, 'overlay addresses')

  const ifaceConfig = (): WgInterfaceConfig => ({
    name: config.interface,
    privateKey: identity.wgPrivateKey,
    listenPort: config.wgPort,
    mtu: config.mtu,
    addresses: [
      `${claims.ipv6.address}/${ranges.ipv6.prefixLength}`,
      ...(claims.ipv4 !== undefined && ranges.ipv4 !== undefined ? [`${claims.ipv4.address}/${ranges.ipv4.prefixLength}`] : [])
    ]
  })

  // wireguard-go takes about 0.2 s to start, in a process of its own: start it now, while this
  // one builds the libp2p host and the rest; the reconciler's first apply below (which reports
  // any failure) then finds the interface ready.
  const interfaceStarting = driver.ensureInterface(ifaceConfig()).catch(() => {})

  const host = await createHost({ privateKey: identity.libp2pKey, psk: config.psk, listen: config.listen, isOverlayAddress, allowLoopback: opts.allowLoopback, mdns: config.mdns, meshSeed: ulaSeed, dht: config.dht, protector, denyPeer: peerId => membership.isRevoked(peerId) })

  /**
   * The underlay host of each peer's newest connection (after roaming, an old one may linger
   * until it times out). One pass over the connections per reconcile: looking each member up
   * by peer id parsed every id again, a tenth of a 250-node start's CPU.
   */
  const connectedHosts = (): (peerId: string) => string | undefined => {
    const hosts = new Map<string, { ip: string, open: number }>()
    for (const connection of host.getConnections()) {
      const ip = ipOf(connection.remoteAddr)
      if (ip === undefined || isOverlayAddress(ip)) continue
      const peerId = connection.remotePeer.toString()
      const open = connection.timeline.open
      if ((hosts.get(peerId)?.open ?? -Infinity) < open) hosts.set(peerId, { ip, open })
    }
    return peerId => hosts.get(peerId)?.ip
  }

  // Routed subnets: decided from the records (the same on every node), logged when it changes.
  let routing: RouteResolution = { verdicts: [] }
  const reviewRoutes = (): void => {
    const live = membership.members().map(e => e.record)
    const us = { peerId: self, name: config.name, since: claims.ipv6.since, routes: config.routes }
    const next = resolveRoutes([us, ...live.map(r => ({ peerId: r.peerId, name: r.name, since: r.ipv6.since, routes: r.routes }))], {
      overlay: [ranges.ipv6, ...(ranges.ipv4 === undefined ? [] : [ranges.ipv4])],
      self,
      localProblem: localRouteProblem({
        ownAddresses: localIps, // kept current by the address watch below
        members: live,
        hasIpv4: claims.ipv4 !== undefined
      })
    })
    for (const e of routeEvents(routing, next, self)) log[e.level](e.fields, e.msg)
    routing = next
  }

  /** our WireGuard peers by public key; none when the device cannot be read */
  const wgPeersByKey = async (): Promise<Map<string, WgPeerState>> =>
    new Map((await driver.read(config.interface).catch(() => undefined))?.peers.map(p => [p.publicKey, p]))
  const status = async (): Promise<StatusReport> => {
    const byKey = await wgPeersByKey()
    const routeStatus = (peerId: string): RouteStatus[] => routing.verdicts.filter(v => v.peerId === peerId)
      .map(v => ({ cidr: v.cidr, accepted: v.accepted, reason: v.reason ?? null }))
    const nowMs = Date.now()
    const staleAfter = staleAfterSeconds(config.refreshSeconds, membership.size - 1)
    return {
      self: {
        peerId: self,
        name: config.name,
        interface: config.interface,
        implementation: driver.implementation() ?? null,
        wgPublicKey: identity.wgPublicKey,
        wgPort: config.wgPort,
        ipv6: claims.ipv6.address,
        ipv4: claims.ipv4?.address ?? null,
        listen: host.getMultiaddrs().map(String),
        routes: routeStatus(self)
      },
      members: membership.members().map(({ record, receivedAt }) => {
        const wg = byKey.get(record.wgPublicKey)
        const handshakeAge = handshakeAgeSeconds(wg, nowMs)
        const connected = host.getConnections(peerIdFromString(record.peerId)).length > 0
        const recordAge = Math.round((nowMs - receivedAt) / 1000)
        const tried = endpoints.describe(record.wgPublicKey)
        return {
          peerId: record.peerId,
          name: record.name,
          ipv6: record.ipv6.address,
          ipv4: record.ipv4?.address ?? null,
          endpoint: wg?.endpoint ?? null,
          handshakeAgeSeconds: handshakeAge,
          rxBytes: wg?.rxBytes ?? 0,
          txBytes: wg?.txBytes ?? 0,
          connected,
          routes: routeStatus(record.peerId),
          recordAgeSeconds: recordAge,
          candidates: tried?.candidates ?? [],
          state: recordAge > staleAfter
            ? 'stale'
            : tunnelUp(handshakeAge)
              ? 'ok'
              // every candidate tried, no handshake: say so instead of 'connecting' forever
              : (tried?.rounds ?? 0) > 0 ? 'no-direct-path' : 'connecting'
        }
      }),
      network: { ...rotator.status(), revoked: membership.revocations().map(r => ({ peerId: r.peerId, by: r.by, at: new Date(r.at).toISOString() })) }
    }
  }

  /** "k/N tunnels up", logged whenever k or N changes: the joining progress an operator watches. */
  let lastTunnels = ''
  /** Logs on change; true once every member's tunnel is up. */
  const reportTunnels = async (): Promise<boolean> => {
    // only handshake ages: a full status() would also build our multiaddrs every 30 s
    const byKey = await wgPeersByKey()
    const members = membership.members()
    const nowMs = Date.now()
    const up = members.filter(({ record }) => tunnelUp(handshakeAgeSeconds(byKey.get(record.wgPublicKey), nowMs))).length
    const text = `${up}/${members.length} tunnels up`
    if (text !== lastTunnels) {
      lastTunnels = text
      log.info({ up, members: members.length }, text)
    }
    return up === members.length
  }
  /** Check every second until all tunnels are up (at most 30 s), so progress shows as it happens. */
  let watching: NodeJS.Timeout | undefined
  const watchTunnels = (checks = 30): void => {
    if (watching !== undefined) clearTimeout(watching)
    watching = setTimeout(() => {
      watching = undefined
      void reportTunnels().then(done => { if (!done && checks > 1) watchTunnels(checks - 1) }, () => {})
    }, 1000)
    watching.unref()
  }
  const tunnelsTimer = setInterval(() => { void reportTunnels().catch(() => {}) }, 30_000)
  tunnelsTimer.unref()

  // Metrics (opt-in) read everything at scrape time; only reconcile outcomes are pushed.
  let lastMembershipChangeMs = Date.now()
  // prom-client (with its dependencies) is loaded only when metrics are on: memory and start-up
  const metricsModule = config.metricsListen === undefined ? undefined : await import('./metrics/metrics.ts')
  const metrics = metricsModule === undefined
    ? undefined
    : metricsModule.createMetrics(async () => ({
      members: (await status()).members.map(m => ({ peerId: m.peerId, name: m.name, connected: m.connected, stale: m.state === 'stale', handshakeAgeSeconds: m.handshakeAgeSeconds })),
      gossip: gossip?.stats ?? { received: 0, published: 0, rejected: {} },
      lastMembershipChangeMs
    }))

  const endpoints = createEndpointSelector({
    onPathChange: (wgPublicKey, view) => {
      const member = membership.members().find(m => m.record.wgPublicKey === wgPublicKey)?.record
      const fields = { peer: member?.peerId, name: member?.name, candidates: view.candidates }
      if (view.working) log.info({ ...fields, endpoint: view.current }, 'direct WireGuard path found')
      else log.warn(fields, 'no direct WireGuard path: no handshake on any candidate endpoint (both sides behind NATs that rewrite ports? firewall?); still trying')
    }
  })
  const reconciler = createReconciler({
    driver,
    endpoints,
    log,
    onApplied: result => {
      metrics?.reconcileApplied(result)
      // handshakes follow a reconcile by a moment: watch progress for a while after a change
      if (result.added > 0 || result.removed > 0) watchTunnels()
    },
    onFailed: () => metrics?.reconcileFailed(),
    iface: ifaceConfig,
    desired: () => {
      const connectedHost = connectedHosts()
      return desiredPeers({
        members: membership.members().map(e => e.record),
        owners: { 4: membership.owners(4), 6: membership.owners(6) },
        connectedHost,
        persistentKeepalive: config.persistentKeepalive,
        routes: peerId => acceptedRoutes(routing, peerId)
      })
    },
    routes: () => routing.verdicts.filter(v => v.accepted && v.peerId !== self).map(v => v.cidr)
  })

  // Our candidate endpoints come from config, from what members observe (identify) and from
  // our interfaces (read again on every address event): a changed underlay address is re-announced at once.
  const observed = new ObservedAddresses()
  const underlayIps = (): string[] => interfaceAddresses().filter(ip => !isOverlayAddress(ip))
  let localIps = underlayIps()
  observed.noteInterfaces(localIps)

  let seq = saved?.seq ?? 0
  const buildRecord = (): NodeRecord => {
    seq = Math.max(seq + 1, Date.now())
    const toClaim = (c: Claim): RecordClaim => ({ address: c.address, counter: c.counter, since: c.since })
    return {
      v: RECORD_VERSION,
      peerId: self,
      name: config.name,
      wgPublicKey: identity.wgPublicKey,
      ...(claims.ipv4 !== undefined ? { ipv4: toClaim(claims.ipv4) } : {}),
      ipv6: toClaim(claims.ipv6),
      wgPort: config.wgPort,
      // not the addresses of our own routed subnets: others send those into the tunnel
      endpoints: localCandidates({ wgPort: config.wgPort, announce: config.announce, observed: observed.list(), interfaces: localIps, isOverlayAddress: ip => isOverlayAddress(ip) || config.routes.some(r => cidrContainsIp(r, ip)) }),
      addrs: host.getMultiaddrs().map(ma => ma.decapsulateCode(421).toString()).slice(0, 16),
      routes: config.routes,
      ...ownRevokes(),
      seq,
      issuedAt: Date.now()
    }
  }

  let gossip: Gossip | undefined
  const announcer = createAnnouncer({
    build: buildRecord,
    sign: async record => await signRecord(record, identity.libp2pKey),
    hold: signed => { membership.setSelf(signed) },
    publish: async envelope => { await gossip?.publish(envelope) }
  })
  const announce = announcer.announce

  // Our own claims follow the deterministic collision rules: keep while we win, else move on.
  const reviewClaims = (): boolean => {
    let changed = false
    const next6 = chooseClaim(ranges.ipv6, self, claims.ipv6, membership.claims(6), Date.now())
    if (next6 !== claims.ipv6) { claims.ipv6 = next6; changed = true }
    if (ranges.ipv4 !== undefined && claims.ipv4 !== undefined) {
      const next4 = chooseClaim(ranges.ipv4, self, claims.ipv4, membership.claims(4), Date.now())
      if (next4 !== claims.ipv4) { claims.ipv4 = next4; changed = true }
    }
    if (changed) log.warn({ ipv6: claims.ipv6.address, ipv4: claims.ipv4?.address }, 'address collision lost: moved to the next overlay address')
    return changed
  }

  // State is dumped at once after a change, then at most every SAVE_INTERVAL_MS while changes
  // keep coming (a forming mesh), and on stop: a kill -9 loses at most the last interval.
  const dump = createThrottledTask(async () => {
    try {
      await saveState(config.stateDir, { seq, claims, records: membership.all().map(e => encodeEnvelope(e.envelope)), revoked: membership.revocations() })
    } catch (err) {
      log.error({ err: String(err) }, 'cannot write the state dump')
    }
  }, SAVE_INTERVAL_MS)
  const saveSoon = dump.schedule
  const saveNow = dump.flush

  // Names of members in a hosts file block (opt-in), rewritten when membership changes.
  const hosts: HostsWriter | undefined = config.hostsFile === undefined
    ? undefined
    : createHostsWriter({
      path: config.hostsFile,
      iface: config.interface,
      domain: config.hostsDomain,
      log,
      entries: () => [
        { peerId: self, name: config.name, ipv6: claims.ipv6.address, ipv4: claims.ipv4?.address },
        ...membership.members().map(({ record }) => ({ peerId: record.peerId, name: record.name, ipv6: record.ipv6.address, ipv4: record.ipv4?.address }))
      ]
    })
  // Record refreshes also fire onChange; only names and addresses count as a membership change.
  let membershipKey = ''

  let keeper: Keeper | undefined
  const known = new Set<string>()
  const onMembershipChange = (): void => {
    const members = membership.members()
    for (const { record } of members) {
      if (!known.has(record.peerId)) {
        known.add(record.peerId)
        log.info({ peer: record.peerId, name: record.name, ipv6: record.ipv6.address, ipv4: record.ipv4?.address }, 'member joined')
      }
    }
    const live = new Set(members.map(e => e.record.peerId))
    for (const peerId of known) {
      if (!live.has(peerId)) { known.delete(peerId); log.info({ peer: peerId }, 'member left') }
    }
    if (reviewClaims()) void announce()
    reviewRoutes()
    // WireGuard first, then the dials: a newcomer dials every member at once (a noise
    // handshake each), which held its event loop for ~300 ms while its tunnels waited
    const targets = new Map(members.map(e => [e.record.peerId, e.record.addrs]))
    void reconciler.runNow().catch(() => {}).finally(() => keeper?.setTargets(targets))
    saveSoon()
    const key = JSON.stringify([claims.ipv6.address, claims.ipv4?.address, members.map(({ record: r }) => [r.peerId, r.name, r.ipv6.address, r.ipv4?.address]).sort()])
    if (key !== membershipKey) {
      membershipKey = key
      lastMembershipChangeMs = Date.now()
      hosts?.schedule()
    }
  }
  // A sync brings up to N records in a row and every one fires onChange; each review above
  // walks all members (O(N) per record, O(N²) per node while a large mesh forms): review once
  // per burst instead.
  // A refresh changes nothing to review; it only needs to reach the dump, and not at once (a
  // kill -9 then restores the older record, which the next sync replaces).
  let changeTimer: NodeJS.Timeout | undefined
  const saveRefreshes = createThrottledTask(async () => { saveSoon() }, REFRESH_SAVE_MS)
  membership.onChange(({ refreshOnly }) => {
    if (refreshOnly) { saveRefreshes.schedule(); return }
    if (changeTimer === undefined) changeTimer = setTimeout(() => { changeTimer = undefined; onMembershipChange() }, MEMBERSHIP_REVIEW_MS)
  })

  // Revocation: the member leaves WireGuard (membership change → reconciler) and libp2p at once.
  membership.onRevoke(({ peerId, by }) => {
    if (peerId === self) { log.error({ by }, 'this node was revoked by another member: the mesh refuses it and it gets no new network keys'); return }
    log.warn({ peer: peerId, by }, 'member revoked')
    void host.hangUp(peerIdFromString(peerId)).catch(() => {})
    saveSoon()
  })
  const ownRevokes = (): Partial<NodeRecord> => {
    const mine = membership.revocations().filter(r => r.by === self).map(r => r.peerId).slice(-MAX_REVOKES)
    return mine.length > 0 ? { revokes: mine } : {}
  }
  const rotator: Rotator = createRotator({
    host,
    protector,
    stateDir: config.stateDir,
    self,
    log,
    extraKeys: config.pskAccept.map(k => k.bytes),
    baseKey: start.keys.dial,
    graceMs: config.pskGraceSeconds * 1000,
    ulaSeed,
    initial: start.rotation,
    pskFile: config.pskFile,
    members: () => membership.members().map(e => e.record.peerId),
    isRevoked: peerId => membership.isRevoked(peerId),
    revoked: () => membership.revocations().map(r => r.peerId),
    selfRecord: () => { const e = membership.envelope(self); return e === undefined ? undefined : encodeEnvelope(e) },
    acceptRecord: async (envelope, author) => await membership.acceptEnvelope(envelope, author)
  })
  await rotator.start()

  gossip = await startGossip({
    host,
    log,
    accept: async (envelope, author) => await membership.acceptEnvelope(envelope, author),
    digest: () => membership.digest(),
    envelope: peerId => membership.envelope(peerId),
    // it added us first: its handshake came too early, ours goes at once (see peerAddedUs)
    onAuthorSynced: peer => {
      const member = membership.get(peer)
      if (member !== undefined) reconciler.peerAddedUs(member.record.wgPublicKey)
    }
  })
  // The interface (with the peers restored from the dump) comes up before we announce and
  // dial: tunnels from the dump work before any network contact, and on a join the interface
  // is the critical path to the first packet; started side by side, each of its steps waited
  // behind the burst of work the new connections bring (measured: 2.5 s instead of 0.4 s
  // under load). The host already listens (createLibp2p starts it), so members reach a
  // starting node early: holding that back until the interface was up made a 10-node fleet
  // start slower (three runs each: all pairs handshaken 5.0, 6.0, 5.9 s → 6.1, 10.0, 6.6 s).
  // routes restored from the dump go into the first apply: a restart must not drop them
  reviewRoutes()
  await interfaceStarting
  await reconciler.runNow()
  log.info({ implementation: driver.implementation() }, 'wireguard interface ready')
  log.info({ listen: host.getMultiaddrs().map(String), mdns: config.mdns, dht: config.dht }, 'libp2p listening')
  await announce()
  // on every mDNS query on the segment (N per 5 min): a count in O(1), not a walk of the members
  thinLanAnswers(host, () => membership.size - 1)
  const stopLanQueries = config.mdns ? repeatLanQueries(host, ulaSeed) : undefined
  filterLanAnswers(host, peerId => membership.get(peerId) !== undefined)
  keeper = createKeeper({ host, self, bootstrap: config.bootstrap, log, queryLan: config.mdns ? () => { queryLan(host, ulaSeed) } : undefined })
  onMembershipChange()
  host.addEventListener('peer:connect', () => reconciler.schedule())
  host.addEventListener('self:peer:update', () => { void announce() })
  host.addEventListener('peer:identify', evt => {
    const ip = evt.detail.observedAddr === undefined ? undefined : ipOf(evt.detail.observedAddr)
    if (ip === undefined || isOverlayAddress(ip)) return
    observed.set(evt.detail.peerId.toString(), ip)
    void announce()
  })
  host.addEventListener('peer:disconnect', evt => { observed.delete(evt.detail.toString()) })
  const checkUnderlay = (): void => {
    const now = underlayIps()
    if (now.join() === localIps.join()) return
    const gone = localIps.filter(ip => !now.includes(ip))
    localIps = now
    observed.noteInterfaces(now)
    log.info({ addresses: now, gone }, 'underlay addresses changed: re-announcing')
    void announce()
    if (gone.length > 0) {
      // Connections bound to a vanished address are dead: drop them so the keeper redials
      // from the new one, and send into every tunnel so the members' WireGuard roams to us now.
      for (const c of host.getConnections()) c.abort(new Error('local address changed'))
      void reconciler.pokeAll()
      setTimeout(() => { void reconciler.pokeAll() }, 1000).unref()
    }
  }
  const addressWatch = watchAddresses({
    onChange: checkUnderlay,
    pollMs: UNDERLAY_POLL_MS,
    safetyMs: UNDERLAY_CHECK_MS,
    events: opts.addressEvents,
    log
  })

  // Liveness: a periodic refresh (jittered so members do not beat in step) tells the others
  // we are alive even when nothing changed. The first comes at a random point of the first
  // period: nodes started together (a fleet's reboot) then refresh spread out, not all at once
  // one period later.
  let refreshTimer: NodeJS.Timeout | undefined
  const scheduleRefresh = (first = false): void => {
    const share = first ? Math.random() : 0.8 + Math.random() * 0.4
    refreshTimer = setTimeout(() => { void announce({}, true).finally(scheduleRefresh) }, config.refreshSeconds * 1000 * share)
    refreshTimer.unref()
  }
  scheduleRefresh(true)

  const expire = (): void => {
    const gone = membership.expire(config.expirySeconds * 1000)
    if (gone.length > 0) log.info({ peers: gone }, 'forgot members not heard from within the expiry')
  }
  expire()
  const expiryTimer = setInterval(expire, Math.min(3_600_000, config.expirySeconds * 250))
  expiryTimer.unref()

  const control = await serveControl(config.stateDir, async request => {
    if (request.cmd === 'status') return await status()
    if (request.cmd === 'revoke') {
      const target = resolveRevokeTarget(request.target, self, membership.members().map(e => ({ peerId: e.record.peerId, name: e.record.name })))
      const name = membership.get(target)?.record.name
      const fresh = membership.revoke(target, self)
      // our signed record carries the revocation to every member (gossip now, sync later)
      await announce({}, true)
      await saveNow()
      // the revocation stands even when the rotation cannot start (one is still running)
      let rotation, rotationError
      if (request.rotate === true) {
        try { rotation = await rotator.rotate() } catch (err) { rotationError = (err as Error).message }
      }
      return { revoked: target, name: name ?? null, alreadyRevoked: !fresh, rotation: rotation ?? null, rotationError: rotationError ?? null }
    }
    if (request.cmd === 'rotate-psk') return await rotator.rotate()
    await leave()
    setTimeout(() => process.exit(0), 50)
    return { left: true }
  })


  // Started last: the endpoint must not serve before status() can answer. A bind failure is
  // fatal (the operator asked for metrics), like a bad config value.
  let metricsServer: MetricsServer | undefined
  if (metricsModule !== undefined && metrics !== undefined && config.metricsListen !== undefined) {
    metricsServer = await metricsModule.serveMetrics(metrics, config.metricsListen, err => log.warn({ err: String(err) }, 'metrics scrape failed'))
    log.info({ address: metricsServer.address }, 'serving metrics at /metrics')
  }

  /** Leave for good: tell the mesh (tombstone), remove the interface, forget the mesh state. */
  const leave = async (): Promise<void> => {
    log.info('leaving the mesh')
    await announce({ leaving: true }, true)
    announcer.close() // nothing may follow the tombstone (shutdown changes our addresses)
    // gossipsub writes asynchronously: give the tombstone a moment on the wire
    await new Promise(resolve => setTimeout(resolve, 300))
    await shutdown()
    await hosts?.remove()
    await driver.destroy(config.interface)
    await forgetState(config.stateDir)
    log.info({ interface: config.interface }, 'left the mesh; interface removed')
  }

  let stopped = false
  const shutdown = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    if (refreshTimer !== undefined) clearTimeout(refreshTimer)
    if (changeTimer !== undefined) clearTimeout(changeTimer)
    saveRefreshes.cancel()
    stopLanQueries?.()
    clearInterval(expiryTimer)
    clearInterval(tunnelsTimer)
    addressWatch.stop()
    if (watching !== undefined) clearTimeout(watching)
    control.close()
    hosts?.stop()
    await metricsServer?.close()
    keeper?.stop()
    await rotator.stop()
    reconciler.stop()
    await gossip?.stop()
    await host.stop()
  }

  return {
    identity,
    host,
    membership,
    gossip,
    reconciler,
    ranges,
    async stop () {
      if (stopped) return
      await shutdown()
      await saveNow()
    }
  }
}
