#!/bin/busybox sh
# Stage 1 of the VM boot (/init of the initramfs that vm/run.sh builds): load the
# 9p/overlay modules, mount the host's root read-only over virtio-9p with a tmpfs overlay
# on top, and switch_root into it, handing over to vm/guest-init.sh (named on the kernel
# command line: w2wstage2=PATH w2wjob=PATH w2wnonce=HEX, optional w2wout=1 and
# w2wmods=PATH, a host directory of this kernel's modules when they are not in /lib/modules).
# No `set -e` here or in stage 2 on purpose: if PID 1 exits the kernel panics; every
# failure instead prints a reason and powers off, and vm/run.sh reports it.
/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

fail() {
  echo "initramfs: $*"
  echo "W2W-VM-BOOT-FAILED: $*"
  poweroff -f
  sleep 5
}

stage2=
job=
nonce=
out=
mods=
for arg in $(cat /proc/cmdline); do
  case $arg in
    w2wstage2=*) stage2=${arg#w2wstage2=} ;;
    w2wjob=*) job=${arg#w2wjob=} ;;
    w2wnonce=*) nonce=${arg#w2wnonce=} ;;
    w2wout=*) out=${arg#w2wout=} ;;
    w2wmods=*) mods=${arg#w2wmods=} ;;
  esac
done
[ -n "$stage2" ] && [ -n "$job" ] && [ -n "$nonce" ] || fail "kernel command line lacks w2wstage2=/w2wjob=/w2wnonce="

for m in netfs 9pnet 9pnet_virtio 9p overlay; do
  if [ -e /lib/w2w/$m.ko ]; then
    insmod /lib/w2w/$m.ko || fail "insmod $m failed"
  fi
done

mkdir -p /mnt/lower /mnt/rw /mnt/root
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /mnt/lower \
  || fail "cannot mount the host root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 tmpfs /mnt/rw || fail "cannot mount tmpfs"
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /mnt/root \
  || fail "cannot mount the overlay root"
if [ "$out" = 1 ]; then
  # vm/run.sh shares a writable host directory (VM_OUT) as tag w2wout; it appears in
  # the guest at /mnt/w2w-out (and W2W_VM_OUT names it).
  mkdir -p /mnt/root/mnt/w2w-out
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 w2wout /mnt/root/mnt/w2w-out \
    || fail "cannot mount the output directory (9p tag w2wout)"
fi
[ -x /mnt/root/bin/busybox ] || fail "the host has no /bin/busybox (install busybox-static)"
[ -r "/mnt/root$stage2" ] || fail "stage 2 script $stage2 not found in the host root"

umount /proc /sys
mount --move /dev /mnt/root/dev || fail "cannot move /dev into the new root"
exec switch_root /mnt/root /bin/busybox sh "$stage2" "$job" "$nonce" "$mods"
