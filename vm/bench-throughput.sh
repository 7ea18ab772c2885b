#!/usr/bin/env bash
# iperf3 throughput over one WireGuard tunnel inside the VM: kernel WireGuard against
# wireguard-go, same two namespaces, same veth, same keys. Emulation (TCG) distorts
# absolute numbers beyond use, so the result is the ratio kernel / wireguard-go.
#
#   bash vm/bench-throughput.sh            on the host: installs iperf3 if missing, boots
#                                          the VM (vm/run.sh) and runs itself inside
#   BENCH_SECONDS=10 BENCH_ROUNDS=2        per-run length and rounds (kernel and
#                                          wireguard-go alternate each round)
#   BENCH_OUT=FILE                         also write the result as JSON to FILE (host path)
#
# Network: two namespaces made here, joined by one veth pair; underlay 198.18.0.0/24,
# tunnel 198.19.0.0/24. Nothing else is touched, and both are removed on exit.
set -euo pipefail

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-2}
[[ $SECONDS_PER_RUN =~ ^[0-9]+$ && $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || { echo 'BENCH_SECONDS and BENCH_ROUNDS must be whole numbers' >&2; exit 2; }

if [[ ${W2W_VM:-} != 1 ]]; then
  # ---- host side
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
  for bin in ip wg wireguard-go; do
    command -v "$bin" >/dev/null || { echo "bench-throughput: $bin is missing on the host (the guest runs the host's tools)" >&2; exit 125; }
  done
  if ! command -v iperf3 >/dev/null; then
    [[ $(id -u) -eq 0 ]] || { echo 'bench-throughput: iperf3 is missing: apt-get install --no-install-recommends iperf3' >&2; exit 125; }
    echo 'bench-throughput: installing iperf3 (apt-get --no-install-recommends)' >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iperf3 >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iperf3 >/dev/null; }
  fi
  out_dir=
  if [[ -n ${BENCH_OUT:-} ]]; then
    out_dir=$(mktemp -d "${TMPDIR:-/tmp}/w2w-bench.XXXXXX")
    trap 'rm -rf "$out_dir"' EXIT
  fi
  rc=0
  VM_OUT=$out_dir VM_ENV='BENCH_SECONDS BENCH_ROUNDS' VM_TIMEOUT=${VM_TIMEOUT:-900} \
    vm/run.sh bash vm/bench-throughput.sh || rc=$?
  if [[ $rc -eq 0 && -n $out_dir ]]; then
    cp "$out_dir/throughput.json" "$BENCH_OUT"
    echo "bench-throughput: wrote $BENCH_OUT" >&2
  fi
  exit "$rc"
fi

# ---- guest side (inside the VM)
A=w2bench-a
B=w2bench-b
WG_A=wgbench0
WG_B=wgbench1
cleanup() {
  ip netns pids "$A" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$B" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$A"
ip netns add "$B"
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip -n "$A" link add eth0 type veth peer name eth0 netns "$B"
ip -n "$A" addr add 198.18.0.1/24 dev eth0
ip -n "$B" addr add 198.18.0.2/24 dev eth0
ip -n "$A" link set eth0 up
ip -n "$B" link set eth0 up

key_a=$(wg genkey)
key_b=$(wg genkey)
pub_a=$(wg pubkey <<<"$key_a")
pub_b=$(wg pubkey <<<"$key_b")

# tunnel IMPL: a fresh WireGuard device pair, kernel or wireguard-go, up and handshaken.
tunnel() {
  local impl=$1 ns ifname key peer addr peer_ep
  for side in a b; do
    if [[ $side == a ]]; then ns=$A ifname=$WG_A key=$key_a peer=$pub_b addr=198.19.0.1 peer_ep=198.18.0.2:51821
    else ns=$B ifname=$WG_B key=$key_b peer=$pub_a addr=198.19.0.2 peer_ep=198.18.0.1:51820; fi
    if [[ $impl == kernel ]]; then
      ip -n "$ns" link add "$ifname" type wireguard
    else
      ip netns exec "$ns" wireguard-go "$ifname" 2>/dev/null
    fi
    ip netns exec "$ns" wg set "$ifname" private-key <(echo "$key") listen-port "$([[ $side == a ]] && echo 51820 || echo 51821)" \
      peer "$peer" endpoint "$peer_ep" allowed-ips 198.19.0.0/24
    ip -n "$ns" addr add "$addr/24" dev "$ifname"
    ip -n "$ns" link set "$ifname" mtu 1420 up
  done
  local kind
  kind=$(ip -n "$A" -d link show dev "$WG_A" | sed -n 3p | awk '{print $1}')
  [[ ($impl == kernel && $kind == wireguard) || ($impl == userspace && $kind == tun) ]] \
    || { echo "bench-throughput: $impl tunnel has link kind '$kind'" >&2; exit 1; }
  ip netns exec "$A" ping -q -c 3 -i 0.2 -W 5 198.19.0.2 >/dev/null || { echo "bench-throughput: $impl tunnel does not pass traffic" >&2; exit 1; }
}

untunnel() {
  ip -n "$A" link del "$WG_A"
  ip -n "$B" link del "$WG_B"
  # wireguard-go exits once its tun is gone
  for _ in $(seq 50); do pgrep -x wireguard-go >/dev/null || break; sleep 0.1; done
}

# iperf3 A -> B over the tunnel; prints bits per second (receiver side).
measure() {
  ip netns exec "$B" iperf3 -s -1 -B 198.19.0.2 >/dev/null 2>&1 &
  local srv=$!
  for _ in $(seq 50); do ip netns exec "$B" ss -ltn 2>/dev/null | grep -q '198.19.0.2:5201' && break; sleep 0.1; done
  local json
  json=$(ip netns exec "$A" iperf3 -c 198.19.0.2 -t "$SECONDS_PER_RUN" -O 1 -J)
  wait "$srv" || true
  node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); if (r.error) { console.error(r.error); process.exit(1) } console.log(Math.round(r.end.sum_received.bits_per_second))' <<<"$json"
}

declare -a kernel_bps user_bps
for round in $(seq "$ROUNDS"); do
  for impl in kernel userspace; do
    tunnel "$impl"
    bps=$(measure)
    untunnel
    printf 'round %d %-9s %8.1f Mbit/s (emulated: only the ratio means anything)\n' "$round" "$impl" "$(node -e "console.log($bps / 1e6)")"
    if [[ $impl == kernel ]]; then kernel_bps+=("$bps"); else user_bps+=("$bps"); fi
  done
done

# Each round measures both back to back, so its own ratio cancels slow drift (host load);
# the headline is the median of the per-round ratios.
result=$(node -e '
const k = process.argv[1].split(" ").map(Number), u = process.argv[2].split(" ").map(Number)
const ratios = k.map((x, i) => x / u[i]).sort((a, b) => a - b)
const mid = ratios.length >> 1
const median = ratios.length % 2 === 1 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2
console.log(JSON.stringify({
  ratioKernelToWireguardGo: Number(median.toFixed(2)),
  roundRatios: ratios.map(r => Number(r.toFixed(2))),
  kernelBps: k, wireguardGoBps: u, secondsPerRun: Number(process.argv[3]),
  kernel: require("fs").readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
  note: "inside a qemu TCG VM with 2 vCPUs: absolute numbers are distorted by emulation; compare the ratio only"
}))' "${kernel_bps[*]}" "${user_bps[*]}" "$SECONDS_PER_RUN")
echo "$result"
echo "throughput ratio kernel / wireguard-go over one tunnel: $(node -e 'const r = JSON.parse(process.argv[1]); console.log(`${r.ratioKernelToWireguardGo}x (median of rounds: ${r.roundRatios.join(", ")})`)' "$result") - emulated VM, ratio only"
if [[ -n ${W2W_VM_OUT:-} ]]; then echo "$result" >"$W2W_VM_OUT/throughput.json"; fi
