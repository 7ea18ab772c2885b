# Stage 2 of the VM boot, run as PID 1 by the host's static busybox after switch_root
# (see vm/run.sh): the root is the host's filesystem (9p, read-only) under a tmpfs overlay.
# Runs the job file that vm/run.sh wrote, prints the exit-status marker, powers off.
# PID 1 must never exit (the kernel would panic), so every path ends in poweroff.
# usage (from the initramfs): busybox sh guest-init.sh JOB_FILE NONCE [MODULES_DIR]
bb=/bin/busybox
job=$1
nonce=$2
mods=${3:-}

finish() {
  # Whatever the job left running would keep writing to the console: stop it first, so
  # the marker is the last line and nothing interleaves with it.
  $bb kill -TERM -1 2>/dev/null
  $bb sleep 0.3
  $bb kill -KILL -1 2>/dev/null
  $bb sync
  # On a line of its own, whatever the job's last output line lacked.
  echo
  echo "W2W-VM-EXIT[$nonce]=$1"
  $bb sync
  $bb poweroff -f
  $bb sleep 5 # poweroff -f does not return; keep PID 1 alive if it somehow does
}

$bb mount -t proc proc /proc 2>/dev/null
$bb mount -t sysfs sysfs /sys 2>/dev/null
$bb grep -q '^[^ ]* /dev ' /proc/mounts || $bb mount -t devtmpfs devtmpfs /dev
$bb mkdir -p /dev/pts /dev/shm
# What udev/systemd would add: bash's <(...) and many tools need /dev/fd and friends.
[ -e /dev/fd ] || $bb ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || $bb ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || $bb ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || $bb ln -s /proc/self/fd/2 /dev/stderr
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# Fresh /tmp and /run, unless the checkout (and so the job file) lives there: a tmpfs would
# hide it. The overlay root keeps them writable either way.
case $job in
  /tmp/*) ;;
  *) $bb mount -t tmpfs -o mode=1777 tmpfs /tmp ;;
esac
case $job in
  /run/*) ;;
  *) $bb mount -t tmpfs -o mode=0755 tmpfs /run ;;
esac
$bb mkdir -p /run/lock /run/wireguard /run/netns
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
exec </dev/null >/dev/console 2>&1

# A kernel that vm/run.sh fetched into its cache has its modules there, not in the host's
# /lib/modules: put them where modprobe (and the kernel's on-demand loading) looks.
if [ -n "$mods" ]; then
  $bb mkdir -p "/lib/modules/$($bb uname -r)"
  $bb mount --bind "$mods" "/lib/modules/$($bb uname -r)" || echo "guest-init: cannot mount $mods on /lib/modules"
fi

# Static device nodes of modules (/dev/net/tun, /dev/fuse, ...), as systemd-tmpfiles
# makes them at boot from modules.devname: opening one loads its module on demand.
$bb sed -n 's/^\([^# ][^ ]*\) \([^ ]*\) \([cb]\)\([0-9]*\):\([0-9]*\)$/\2 \3 \4 \5/p' \
  "/lib/modules/$($bb uname -r)/modules.devname" 2>/dev/null |
  while read -r node type major minor; do
    [ -e "/dev/$node" ] && continue
    case $node in */*) $bb mkdir -p "/dev/${node%/*}" ;; esac
    mode=0600
    [ "$node" = net/tun ] && mode=0666
    $bb mknod -m "$mode" "/dev/$node" "$type" "$major" "$minor"
  done

$bb hostname w2w-vm
$bb ip link set lo up

if [ ! -r "$job" ]; then
  echo "guest-init: job file $job is not readable in the guest"
  finish 125
fi

# The job runs in its own session (setsid); its output goes through a pipe, not straight
# to the console, so no program takes the console for a terminal (no progress redraws,
# no cursor escapes in the log).
{ $bb setsid /bin/bash "$job"; echo $? >/run/w2w-job-status; } 2>&1 | $bb cat
finish "$($bb cat /run/w2w-job-status 2>/dev/null || echo 125)"
