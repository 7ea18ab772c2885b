#!/usr/bin/env bash
# Runs one command inside a throwaway qemu VM that boots a Debian kernel with WireGuard,
# over this machine's own filesystem, and exits with the command's exit status.
#
#   vm/run.sh [--] CMD [ARG...]        e.g. vm/run.sh npx vitest run test/vm
#
# How: the host's / is shared read-only into the guest over virtio-9p; a tiny initramfs
# (static busybox + the 9p/overlay modules, built here and cached in vm/.cache/) mounts it
# under a tmpfs overlay and switch_roots into it (vm/initramfs-init.sh), then
# vm/guest-init.sh mounts proc/sys/dev/tmp/run, runs the command from the caller's
# current directory, prints an exit-status marker with a per-run nonce, and powers off.
# The guest sees the same files as the host (node, node_modules, dist/, /lib/modules of
# the guest kernel, so `modprobe wireguard` and on-demand module loading work), but every
# write lands in the guest's tmpfs and is gone when the VM stops. No network device: the
# guest has only loopback and the namespaces it makes itself.
#
# Output: the guest console is streamed to stdout as it comes.
# Exit status: the command's own, or
#   124  the VM did not finish within VM_TIMEOUT seconds (it is killed)
#   125  the VM could not be set up, did not boot, or ended without the exit marker
#
# Environment knobs (all optional):
#   VM_TIMEOUT   seconds for the whole VM run, boot included (default 1800)
#   VM_MEMORY    guest memory in MiB (default 3072)
#   VM_CPUS      guest vCPUs (default 2)
#   VM_KERNEL    kernel version to boot, e.g. 6.12.117+deb12-amd64 (default: the newest
#                usable one)
#   VM_KERNEL_FROM  auto (default): an installed Debian kernel (/boot, /lib/modules) with
#                the wireguard and 9p modules, else one cached in vm/.cache/kernel-*, else
#                fetch linux-image-6.12-amd64 (or linux-image-amd64) with apt-get download
#                and unpack it there (seconds; installing the package instead would build
#                initramfs images for the host for minutes); installed: only an installed
#                one; download: never an installed one
#   VM_OUT       a host directory shared writable into the guest at /mnt/w2w-out (the
#                guest gets W2W_VM_OUT=/mnt/w2w-out): for results or logs to keep
#   VM_ENV       space-separated names of host variables to pass into the guest (CI and
#                every W2W_* variable always are)
# Needs root (reads the kernel image, installs qemu-system-x86, busybox-static, kmod, cpio
# and xz-utils with apt-get --no-install-recommends when missing).
# TCG only (`-accel tcg`): nested KVM does not work on these machines.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR="$VM_DIR/.cache"
TIMEOUT=${VM_TIMEOUT:-1800}
MEMORY=${VM_MEMORY:-3072}
CPUS=${VM_CPUS:-2}
# Modules the initramfs needs to reach the host root, in load order (dependencies first).
INITRAMFS_MODULES=(netfs 9pnet 9pnet_virtio 9p overlay)

say() { printf 'vm/run.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 125; }

[[ $# -gt 0 && $1 == -- ]] && shift
[[ $# -gt 0 ]] || { sed -n '2,35p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 125; }
[[ $TIMEOUT =~ ^[0-9]+$ && $MEMORY =~ ^[0-9]+$ && $CPUS =~ ^[0-9]+$ ]] \
  || die "VM_TIMEOUT, VM_MEMORY and VM_CPUS must be whole numbers"

# ---------------------------------------------------------------------------------------
# Host packages and the guest kernel

apt_log="$CACHE_DIR/apt.log"
apt_install() {
  [[ $(id -u) -eq 0 ]] || die "missing $*; install as root: apt-get install --no-install-recommends $*"
  say "installing $* (apt-get --no-install-recommends)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "$@" >>"$apt_log" 2>&1; then
    apt-get update -q >>"$apt_log" 2>&1 || true
    apt-get install -y -q --no-install-recommends "$@" >>"$apt_log" 2>&1 \
      || { tail -n 20 "$apt_log" >&2; die "apt-get install $* failed (log: $apt_log)"; }
  fi
}

# A kernel lives under a root R: R/boot/vmlinuz-V and R/lib/modules/V. R is empty for an
# installed kernel package, or $CACHE_DIR/kernel-V for one fetched and unpacked here.

# A module file of kernel $2 under root $1, by module name $3 (any compression), or nothing.
module_file() {
  local name=${3//_/[-_]}
  find "$1/lib/modules/$2/kernel" \( -name "$name.ko" -o -name "$name.ko.*" \) 2>/dev/null | head -n 1
}

# A kernel we can boot: readable image, modules.dep, WireGuard and 9p (modules or built in).
kernel_usable() {
  local root=$1 v=$2
  [[ -r $root/boot/vmlinuz-$v && -s $root/lib/modules/$v/modules.dep ]] || return 1
  [[ -n $(module_file "$root" "$v" wireguard) ]] || grep -qx 'CONFIG_WIREGUARD=y' "$root/boot/config-$v" 2>/dev/null || return 1
  [[ -n $(module_file "$root" "$v" 9p) ]] || grep -qx 'CONFIG_9P_FS=y' "$root/boot/config-$v" 2>/dev/null || return 1
}

# Prints "ROOT VERSION" of the kernel to boot, or nothing.
pick_kernel() {
  local v d
  if [[ ${VM_KERNEL_FROM:-auto} != download ]]; then
    for v in $(ls /lib/modules 2>/dev/null | sort -rV); do
      [[ -n ${VM_KERNEL:-} && $v != "$VM_KERNEL" ]] && continue
      if kernel_usable '' "$v"; then echo " $v"; return; fi
    done
  fi
  [[ ${VM_KERNEL_FROM:-auto} == installed ]] && return
  for d in $(ls -d "$CACHE_DIR"/kernel-*/ 2>/dev/null | sort -rV); do
    d=${d%/}
    v=${d##*/kernel-}
    [[ -n ${VM_KERNEL:-} && $v != "$VM_KERNEL" ]] && continue
    if kernel_usable "$d" "$v"; then echo "$d $v"; return; fi
  done
}

# Fetch a Debian kernel image package and unpack it into $CACHE_DIR/kernel-V: seconds,
# where installing the package would spend minutes building initramfs images for the host.
fetch_kernel() {
  local meta pkg='' tmp deb v
  for attempt in 1 2; do
    for meta in linux-image-6.12-amd64 linux-image-amd64; do
      pkg=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
      [[ -n $pkg ]] && break
    done
    [[ -n $pkg || $attempt -eq 2 ]] && break
    say 'no kernel package in the apt lists; apt-get update'
    apt-get update -q >>"$apt_log" 2>&1 || true
  done
  [[ -n $pkg ]] || die "no Debian kernel package found (linux-image-6.12-amd64 or linux-image-amd64); see $apt_log"
  [[ -n ${VM_KERNEL:-} && $pkg != "linux-image-$VM_KERNEL" ]] && die "VM_KERNEL=$VM_KERNEL is neither installed nor cached, and apt offers $pkg"
  v=${pkg#linux-image-}
  say "fetching $pkg into $CACHE_DIR/kernel-$v (apt-get download + dpkg-deb -x)"
  tmp=$(mktemp -d "$CACHE_DIR/fetch.XXXXXX")
  # apt-get download writes into the current directory
  (cd "$tmp" && apt-get download -q "$pkg") >>"$apt_log" 2>&1 || { rm -rf "$tmp"; tail -n 5 "$apt_log" >&2; die "apt-get download $pkg failed"; }
  deb=$(ls "$tmp"/*.deb)
  mkdir "$tmp/root"
  dpkg-deb -x "$deb" "$tmp/root" || { rm -rf "$tmp"; die "dpkg-deb -x $deb failed"; }
  [[ -d $tmp/root/lib/modules/$v ]] || { rm -rf "$tmp"; die "$pkg holds no lib/modules/$v"; }
  depmod -b "$tmp/root" "$v" || { rm -rf "$tmp"; die "depmod for $v failed"; }
  rm -rf "$CACHE_DIR/kernel-$v"
  mv "$tmp/root" "$CACHE_DIR/kernel-$v"
  rm -rf "$tmp"
}

mkdir -p "$CACHE_DIR"
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
{ [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
# kmod: modprobe inside the guest (the kernel calls /sbin/modprobe) and depmod here
[[ -x /sbin/modprobe && -x /sbin/depmod ]] || missing+=(kmod)
command -v cpio >/dev/null || missing+=(cpio)
command -v xz >/dev/null || missing+=(xz-utils)
[[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"

picked=$(pick_kernel)
if [[ -z $picked ]]; then
  [[ ${VM_KERNEL_FROM:-auto} != installed ]] || die "no installed kernel${VM_KERNEL:+ $VM_KERNEL} with wireguard and 9p modules (VM_KERNEL_FROM=installed)"
  fetch_kernel
  picked=$(pick_kernel)
  [[ -n $picked ]] || die "fetched a kernel package but it has no bootable image with wireguard and 9p modules"
fi
KROOT=${picked% *}
KERNEL=${picked##* }
[[ -r $KROOT/boot/vmlinuz-$KERNEL ]] || die "cannot read $KROOT/boot/vmlinuz-$KERNEL (run as root)"

# ---------------------------------------------------------------------------------------
# Initramfs: static busybox, /init, the decompressed 9p/overlay modules. Cached by kernel
# version and the hash of everything that goes in.

key=$(cat "$VM_DIR/initramfs-init.sh" /bin/busybox | sha256sum | cut -c1-12)
INITRD="$CACHE_DIR/initramfs-$KERNEL-$key.cpio.gz" # same version = same modules, wherever from
if [[ ! -s $INITRD ]]; then
  say "building $INITRD"
  build=$(mktemp -d "$CACHE_DIR/initramfs.XXXXXX")
  trap 'rm -rf "$build"' EXIT
  mkdir -p "$build/bin" "$build/lib/w2w" "$build/dev" "$build/proc" "$build/sys" "$build/mnt"
  cp /bin/busybox "$build/bin/busybox"
  install -m 0755 "$VM_DIR/initramfs-init.sh" "$build/init"
  for m in "${INITRAMFS_MODULES[@]}"; do
    f=$(module_file "$KROOT" "$KERNEL" "$m")
    case $f in
      '') continue ;; # built in (or not needed by this kernel)
      *.ko) cp "$f" "$build/lib/w2w/$m.ko" ;;
      *.ko.xz) xz -dc "$f" >"$build/lib/w2w/$m.ko" ;;
      *.ko.zst) zstd -qdc "$f" >"$build/lib/w2w/$m.ko" ;;
      *.ko.gz) gzip -dc "$f" >"$build/lib/w2w/$m.ko" ;;
      *) die "unknown module compression: $f" ;;
    esac
  done
  (cd "$build" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -1) >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  rm -rf "$build"
  trap - EXIT
  # Older images of the same kernel are stale now.
  find "$CACHE_DIR" -maxdepth 1 -name "initramfs-$KERNEL-*.cpio.gz" ! -name "${INITRD##*/}" -delete
fi

# ---------------------------------------------------------------------------------------
# The job: a bash script (on the host disk, seen by the guest through 9p) that restores
# the caller's directory and a few variables and runs the command.

mkdir -p "$CACHE_DIR/runs"
RUN_DIR=$(mktemp -d "$CACHE_DIR/runs/run.XXXXXX")
LOG="$RUN_DIR/console.log"
NONCE=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
QEMU_PID=
STREAM_PID=
cleanup() {
  local rc=$?
  if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
    say "interrupted: stopping the VM"
    kill "$QEMU_PID" 2>/dev/null || true
  fi
  if [[ -n $STREAM_PID ]]; then wait "$STREAM_PID" 2>/dev/null || true; fi
  rm -rf "$RUN_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $PWD != *[[:space:]]* && $VM_DIR != *[[:space:]]* && $RUN_DIR != *[[:space:]]* && $KROOT != *[[:space:]]* ]] \
  || die "paths with whitespace cannot be passed on the kernel command line: $PWD"
{
  echo '# written by vm/run.sh; run by vm/guest-init.sh inside the VM'
  echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb W2W_VM=1'
  pass=(CI ${VM_ENV:-})
  while IFS= read -r name; do pass+=("$name"); done < <(compgen -e | grep '^W2W_' || true)
  for name in "${pass[@]}"; do
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "VM_ENV: bad variable name '$name'"
    if [[ -v $name ]]; then printf 'export %s=%q\n' "$name" "${!name}"; fi
  done
  if [[ -n ${VM_OUT:-} ]]; then echo 'export W2W_VM_OUT=/mnt/w2w-out'; fi
  printf 'cd %q || exit 125\n' "$PWD"
  printf '%q ' "$@"
  echo
} >"$RUN_DIR/job.sh"

append="console=ttyS0 panic=-1 quiet w2wstage2=$VM_DIR/guest-init.sh w2wjob=$RUN_DIR/job.sh w2wnonce=$NONCE"
# A fetched kernel's modules are not in the host's /lib/modules: the guest mounts them there.
[[ -z $KROOT ]] || append+=" w2wmods=$KROOT/lib/modules/$KERNEL"
qemu=(
  qemu-system-x86_64
  -accel tcg,thread=multi -cpu max -smp "$CPUS" -m "$MEMORY"
  -nographic -no-reboot -nic none -device virtio-rng-pci
  -kernel "$KROOT/boot/vmlinuz-$KERNEL" -initrd "$INITRD"
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
)
if [[ -n ${VM_OUT:-} ]]; then
  mkdir -p "$VM_OUT"
  VM_OUT=$(cd "$VM_OUT" && pwd)
  qemu+=(-virtfs "local,path=$VM_OUT,mount_tag=w2wout,security_model=none,multidevs=remap")
  append+=" w2wout=1"
fi
qemu+=(-append "$append")

# ---------------------------------------------------------------------------------------
# Boot, stream the console, read the marker.

say "booting $KERNEL (TCG, $CPUS vCPUs, $MEMORY MiB, timeout ${TIMEOUT}s): $*"
start=$SECONDS
: >"$LOG"
timeout --kill-after=10 "$TIMEOUT" "${qemu[@]}" </dev/null >"$LOG" 2>&1 &
QEMU_PID=$!
# Stream the console as it grows (without SeaBIOS's terminal escapes); tail stops by
# itself once qemu (timeout) has exited.
tail -n +1 -s 0.2 -f --pid="$QEMU_PID" "$LOG" | sed -u -e 's/\r$//' -e 's/\x1bc/\n/g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[()][0-9A-Za-z]//g' &
STREAM_PID=$!
qemu_rc=0
wait "$QEMU_PID" || qemu_rc=$?
QEMU_PID=
wait "$STREAM_PID" 2>/dev/null || true
STREAM_PID=
elapsed=$((SECONDS - start))

marker=$(tr -d '\r' <"$LOG" | grep -a -o "W2W-VM-EXIT\[$NONCE\]=[0-9]*" | tail -n 1 || true)
if [[ -n $marker ]]; then
  status=${marker##*=}
  say "guest command exited with status $status (VM ran ${elapsed}s)"
  exit "$status"
fi
if [[ $qemu_rc -eq 124 || $qemu_rc -eq 137 ]]; then
  say "error: timed out after ${TIMEOUT}s (VM_TIMEOUT) without an exit marker; the VM was killed"
  exit 124
fi
reason=$(tr -d '\r' <"$LOG" | grep -a -o 'W2W-VM-BOOT-FAILED: .*' | tail -n 1 || true)
if [[ -n $reason ]]; then
  die "the VM did not boot: ${reason#W2W-VM-BOOT-FAILED: }"
elif grep -aq 'Kernel panic' "$LOG" && grep -aq 'Oops: int3' "$LOG"; then
  # a trap on an int3 the kernel left while patching its own code (static keys, toggled by
  # e.g. every ping's SO_TIMESTAMP): multi-threaded TCG can run a stale copy of the patched
  # code on the other vCPU. An emulator race, not a guest bug; a single vCPU (VM_CPUS=1, what
  # test-kernel.sh uses) avoids it, and test-kernel.sh retries once.
  say "error: the guest kernel panicked on an int3 trap (TCG code-patching race, see above); qemu exit status $qemu_rc"
  exit 126
elif grep -aq 'Kernel panic' "$LOG"; then
  die "the guest kernel panicked (see the console output above); qemu exit status $qemu_rc"
elif [[ $qemu_rc -ne 0 ]]; then
  die "qemu failed (exit status $qemu_rc) after ${elapsed}s: $(tr -d '\r' <"$LOG" | tail -n 3 | tr '\n' ' ')"
else
  die "the VM stopped after ${elapsed}s without an exit marker: the command's status is unknown"
fi
