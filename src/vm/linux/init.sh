#!/bin/busybox sh
# isolab's init for the Linux guest: PID 1 of a real kernel that QEMU boots.
#
# It runs twice, as two stages. The kernel starts it as /init on the initramfs
# (stage 1). Stage 1 moves the system into a tmpfs and execs this script again
# there, as PID 1 still (stage 2), which mounts what the steps need, runs the
# commands in /isolab/commands one after another, prints their output between
# markers the host reads back (src/vm/linux/console.rs), and powers off.
#
# Every line for the host starts with "isolab-guest: ". Output of the commands is
# framed by "begin N", "stdout N", "stderr N" and "end N exit CODE".

export PATH=/isolab/bin:/bin
say() { echo "isolab-guest: $*"; }
fail() {
    say "error: $*"
    # Ending PID 1 panics the kernel; with panic=-1 it reboots, and QEMU, started
    # with -no-reboot, exits instead. The host then shows this console.
    exit 1
}

if [ "$1" != tmpfs ]; then
    # Stage 1. The kernel unpacked our cpio archive into "rootfs", the first mount
    # of all, the one every other mount hangs from. pivot_root(2) cannot take that
    # mount away: it refuses (EINVAL) when the current root has no parent mount,
    # because the initial rootfs can never be unmounted or moved. The container
    # steps pivot_root into their box, and pivot_root also wants the root it
    # leaves to be a real mount, so they would fail here. runc has the same
    # problem when it is itself started from an initramfs, and its --no-pivot mode
    # gives up pivot_root for a MS_MOVE and a chroot. We do what initramfs-based
    # systems do instead: copy the system into a tmpfs and switch_root into it,
    # which deletes the initramfs's files, moves the tmpfs onto "/" and chroots
    # there. From then on "/" is an ordinary mount, and pivot_root works in the box.
    mount -t tmpfs -o mode=0755 tmpfs /newroot || fail "mount tmpfs on /newroot"
    cp -a /bin /etc /lib /lib64 /isolab /init /newroot/ || fail "copy the system into the tmpfs"
    mkdir -p -m 0755 /newroot/dev && mkdir -p -m 0555 /newroot/proc /newroot/sys &&
        mkdir -p -m 1777 /newroot/tmp || fail "mkdir the mount points"
    exec switch_root /newroot /init tmpfs
    fail "switch_root /newroot /init"
fi

# Stage 2: "/" is the tmpfs. What the probe and the container steps expect.
mount -t proc proc /proc || fail "mount proc on /proc"
mount -t sysfs sysfs /sys || fail "mount sysfs on /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs on /dev"
# cgroup v2 only: this kernel mounts no v1 hierarchy, so the host is "pure v2", as
# on current distributions. The root cgroup hands memory, pids and cpu to its
# children, as systemd does at boot.
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mount cgroup2 on /sys/fs/cgroup"
echo "+memory +pids +cpu" >/sys/fs/cgroup/cgroup.subtree_control ||
    fail "enable +memory +pids +cpu in /sys/fs/cgroup/cgroup.subtree_control"
hostname isolab-guest

# A box's root for the container steps, at /rootfs: the rootfs builder's output, as
# the steps get it on the host.
mkdir /rootfs && cp -a /bin /etc /lib /lib64 /rootfs/ &&
    mkdir -m 0755 /rootfs/dev && mkdir -m 0555 /rootfs/proc /rootfs/sys &&
    mkdir -m 1777 /rootfs/tmp || fail "build the box's rootfs at /rootfs"

# From here the console carries only our lines: kernel messages (the OOM killer's
# report, for one) would otherwise land in the middle of a command's output.
dmesg -n 1

say "up $(cut -d ' ' -f 1 /proc/uptime) s after the kernel started"
say "kernel $(uname -r)"
say "cgroup2 controllers $(cat /sys/fs/cgroup/cgroup.controllers)"
say "cgroup2 subtree_control $(cat /sys/fs/cgroup/cgroup.subtree_control)"

# Print a file, then a newline if it did not end with one, so that the next
# marker starts a line of its own.
show() {
    cat "$1"
    [ -n "$(tail -c 1 "$1")" ] && echo
    rm -f "$1"
}

for script in /isolab/commands/*; do
    [ -f "$script" ] || continue
    n=${script##*/}
    say "begin $n"
    (cd / && sh "$script") </dev/null >/tmp/stdout 2>/tmp/stderr
    code=$?
    say "stdout $n"
    show /tmp/stdout
    say "stderr $n"
    show /tmp/stderr
    say "end $n exit $code"
done
say "done"
poweroff -f
