#!/usr/bin/env bash
# Installs what w2wesher's demo and tests need on Debian, as root: userspace WireGuard,
# wireguard-tools, iproute2 (namespaces), ping and fping (the restart benchmark's exact 10 Hz
# pinger), nftables; then the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for bin in wg wireguard-go ip ping fping nft; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || [ -x "/sbin/$bin" ] || missing+=("$bin")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages (missing: ${missing[*]})"
  apt-get update
  # --no-install-recommends: wireguard-tools would otherwise pull in a whole kernel image
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    wireguard-tools wireguard-go iproute2 iputils-ping fping nftables ca-certificates
else
  echo "Debian packages present: wg, wireguard-go, ip, ping, fping, nft"
fi

echo "npm ci"
npm ci --no-audit --no-fund
