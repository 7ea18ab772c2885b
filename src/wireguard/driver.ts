// The WireGuard driver boundary. The reconciler computes what it wants and hands it here;
// this is the only layer that touches the OS (through `ip`, `wg`, `wireguard-go` and its
// control socket).

/** One peer as we want it configured. */
export interface WgPeerConfig {
  /** base64 X25519 public key */
  publicKey: string
  /** "1.2.3.4:10042" or "[2001:db8::1]:10042"; undefined = leave/unset */
  endpoint?: string
  /** normalised CIDRs, e.g. "10.223.0.7/32", "fd12:3456:789a:1::5/128" */
  allowedIps: string[]
  /** seconds; 0 = off */
  persistentKeepalive: number
}

/** One peer as the device reports it. */
export interface WgPeerState extends WgPeerConfig {
  /** unix seconds of the latest handshake; 0 = never */
  latestHandshake: number
  /** its nanoseconds, where the device tells them (wireguard-go's control socket) */
  latestHandshakeNsec?: number
  rxBytes: number
  txBytes: number
}

export interface WgInterfaceConfig {
  name: string
  /** base64 X25519 private key */
  privateKey: string
  listenPort: number
  mtu: number
  /** interface addresses with the overlay prefix length, e.g. "fd12:3456:789a:1::5/64" */
  addresses: string[]
}

/**
 * What read() reports: the WireGuard side only (what the reconciler and status use). Link
 * state, MTU and addresses are ensureInterface's business; reading them would cost an `ip`.
 */
export interface WgDevice {
  name: string
  /** '' when the device has no private key */
  publicKey: string
  listenPort: number
  /** sorted by public key */
  peers: WgPeerState[]
}

/** What setRoutes did. */
export interface RouteChange {
  added: string[]
  removed: string[]
  /** wanted, but a route to the same prefix exists that we did not install: left alone */
  skipped: string[]
}

export type WgImplementation = 'kernel' | 'userspace' | 'memory'

export interface WgDriver {
  /** Which implementation the last ensureInterface used (kernel device or wireguard-go). */
  implementation(): WgImplementation | undefined
  /**
   * Create the interface if it is missing, else adopt it; then make key, port, MTU,
   * addresses and link state match. Idempotent: changes only what differs, never peers.
   */
  ensureInterface(cfg: WgInterfaceConfig): Promise<void>
  /** The live device, or undefined when the interface does not exist. */
  read(name: string): Promise<WgDevice | undefined>
  /** Add/update and remove peers in one batch. Peers not named are not touched. */
  setPeers(name: string, upserts: WgPeerConfig[], removals: string[]): Promise<void>
  /**
   * Make the routes through `name` that w2wesher installed equal `routes` (CIDRs, IPv4 and
   * IPv6): add the missing, remove the stale. Routes somebody else made are never removed or
   * replaced, even for a prefix we want (that one is reported as skipped).
   */
  setRoutes(name: string, routes: string[]): Promise<RouteChange>
  /** Send one datagram into the tunnel towards `overlayAddress` so WireGuard handshakes now. */
  triggerHandshake(name: string, overlayAddress: string): Promise<void>
  /** Delete the interface (and with it a userspace wireguard-go process). */
  destroy(name: string): Promise<void>
}
