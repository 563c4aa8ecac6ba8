#!/usr/bin/env bash
# Builds the kernel-matrix VM image from the shared Debian 12 root file system
# (build-rootfs.sh: Debian's own 6.1 kernel, its matching headers, BCC and pytest).
#
#   scripts/vm/build-image.sh OUT_DIR ROOTFS_TAR
#
# Writes OUT_DIR/{root.img,vmlinuz,initrd.img,kernel-release}.  Called by
# scripts/vm-kernel-matrix.sh, which caches OUT_DIR under a hash of this file and the
# root file system's key: any edit here rebuilds the image, so nothing stale is booted.
set -euo pipefail

OUT="${1:?usage: build-image.sh OUT_DIR ROOTFS_TAR}"
TAR="${2:?usage: build-image.sh OUT_DIR ROOTFS_TAR}"

log() { printf '[vm-build %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[vm-build] error: %s\n' "$*" >&2; exit 1; }

for tool in mkfs.ext4 tar; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install e2fsprogs (scripts/setup.sh test installs it)"
done
[ "$(id -u)" -eq 0 ] || die "building the VM image needs root (file ownership in the image)"
[ -f "$TAR" ] || die "no root file system archive at $TAR (build-rootfs.sh makes it)"

mkdir -p "$OUT"
WORK="$(mktemp -d "$OUT/.image.XXXXXX")"
ROOTFS="$WORK/rootfs"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$ROOTFS"
tar -C "$ROOTFS" --numeric-owner --xattrs -xf "$TAR"
KREL="$(find "$ROOTFS/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
[ -f "$ROOTFS/boot/initrd.img-$KREL" ] || die "no initrd for $KREL in $TAR"

echo nsgraph-vm > "$ROOTFS/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 nsgraph-vm\n' > "$ROOTFS/etc/hosts"
: > "$ROOTFS/etc/fstab"

# PID 1 of the VM.  It only unpacks the project handed in on the disk with serial
# "nsgproject" and runs the project's own scripts/vm/guest-run.sh, so the run logic
# comes fresh with each run and this cached image rarely changes.
cat > "$ROOTFS/sbin/nsgraph-vm-init" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
disk_with_serial() {
  for d in /sys/block/vd*; do
    [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
  done
  return 1
}
PROJECT_DISK="$(disk_with_serial nsgproject)"
mkdir -p /opt/nsgraph
if [ -n "$PROJECT_DISK" ] && tar -xf "$PROJECT_DISK" -C /opt/nsgraph && [ -f /opt/nsgraph/scripts/vm/guest-run.sh ]; then
  exec /bin/sh /opt/nsgraph/scripts/vm/guest-run.sh
fi
echo "NSGRAPH-VM-ERROR: could not unpack the project from the disk with serial nsgproject"
echo o > /proc/sysrq-trigger
sleep 60
EOF
chmod 755 "$ROOTFS/sbin/nsgraph-vm-init"

# Nothing here is read in the VM; less to copy into the image.
rm -rf "$ROOTFS/var/cache/apt/archives/"*.deb "$ROOTFS/var/lib/apt/lists/"* \
  "$ROOTFS/usr/share/doc" "$ROOTFS/usr/share/man" "$ROOTFS/usr/share/locale"

cp "$ROOTFS/boot/vmlinuz-$KREL" "$WORK/vmlinuz"
cp "$ROOTFS/boot/initrd.img-$KREL" "$WORK/initrd.img"
echo "$KREL" > "$WORK/kernel-release"

used_mb="$(du -sm "$ROOTFS" | cut -f1)"
size_mb=$(( used_mb + used_mb / 4 + 512 ))
log "making the ext4 image (${used_mb} MB of files, ${size_mb} MB sparse disk)"
mkfs.ext4 -q -F -L nsgraph-root -d "$ROOTFS" "$WORK/root.img" "${size_mb}M" >/dev/null \
  || die "mkfs.ext4 -d failed (e2fsprogs >= 1.43 is needed for -d)"

rm -rf "$ROOTFS"
for f in root.img vmlinuz initrd.img kernel-release; do mv "$WORK/$f" "$OUT/$f"; done
log "image ready in $OUT"
