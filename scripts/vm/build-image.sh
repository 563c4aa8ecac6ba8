#!/usr/bin/env bash
# Builds the kernel-matrix VM image: a Debian 12 root file system with Debian's own
# 6.1 kernel, its matching headers, BCC and pytest (scripts/vm/packages.txt).
#
#   scripts/vm/build-image.sh OUT_DIR DEB_CACHE_DIR
#
# Writes OUT_DIR/{root.img,vmlinuz,initrd.img,kernel-release}.  Called by
# scripts/vm-kernel-matrix.sh, which caches OUT_DIR under a hash of this file and the
# package list: any edit here rebuilds the image, so nothing stale is ever booted.
# Environment: NSGRAPH_VM_MIRROR (a Debian mirror URL; default: the host's own
# bookworm mirror from /etc/apt, else debootstrap's default).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:?usage: build-image.sh OUT_DIR DEB_CACHE_DIR}"
DEBS="${2:?usage: build-image.sh OUT_DIR DEB_CACHE_DIR}"
SUITE=bookworm

log() { printf '[vm-build %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[vm-build] error: %s\n' "$*" >&2; exit 1; }

for tool in debootstrap mkfs.ext4 chroot; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debootstrap e2fsprogs (scripts/setup.sh test installs them)"
done
[ "$(id -u)" -eq 0 ] || die "building the VM image needs root (debootstrap, chroot)"

host_mirror() {
  # The mirror this machine already uses for bookworm: reachable by definition, and it
  # keeps the script free of any particular mirror's name.
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    if [[ "$f" == *.sources ]]; then
      awk 'tolower($1)=="uris:"{u=$2} tolower($1)=="suites:"{for(i=2;i<=NF;i++) if($i=="bookworm" && u!="") {print u; exit}}' "$f"
    else
      awk '$1=="deb" && $0 !~ /\[/ && $3=="bookworm" {print $2; exit} $1=="deb" && $3 ~ /\]$/ && $4=="bookworm" {print $3; exit}' "$f"
    fi
  done | grep -v -e security -e '^$' | head -n 1
}

MIRROR="${NSGRAPH_VM_MIRROR:-$(host_mirror || true)}"
PKGS="$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$HERE/packages.txt" | tr -s ' \n' ',' | sed 's/,$//')"

mkdir -p "$OUT" "$DEBS"
WORK="$(mktemp -d "$OUT/.rootfs.XXXXXX")"
ROOTFS="$WORK/rootfs"
cleanup() {
  mountpoint -q "$ROOTFS/proc" 2>/dev/null && umount "$ROOTFS/proc"
  mountpoint -q "$ROOTFS/sys" 2>/dev/null && umount "$ROOTFS/sys"
  rm -rf "$WORK"
}
trap cleanup EXIT

# dpkg fsyncs every file it unpacks; the image is rebuilt from scratch after any
# failure anyway, and skipping those syncs makes the build about a minute faster.
mkdir -p "$ROOTFS/etc/dpkg/dpkg.cfg.d"
echo force-unsafe-io > "$ROOTFS/etc/dpkg/dpkg.cfg.d/nsgraph-unsafe-io"

log "debootstrap $SUITE with $(echo "$PKGS" | tr ',' ' ') (downloads ~250 MB the first time; about 2-3 minutes)"
# minbase: nothing the tests do not use.  The .deb cache makes rebuilds after a
# package-list edit mostly local.
# shellcheck disable=SC2086
debootstrap --variant=minbase --include="$PKGS" --cache-dir="$DEBS" \
  "$SUITE" "$ROOTFS" ${MIRROR:+"$MIRROR"} > "$WORK/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK/debootstrap.log" >&2
  die "debootstrap failed (log above); is the Debian mirror reachable? Set NSGRAPH_VM_MIRROR to another mirror"
}

KREL="$(find "$ROOTFS/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
if [ -z "$KREL" ] || [ ! -f "$ROOTFS/boot/vmlinuz-$KREL" ]; then
  die "no kernel in the image; is linux-image-amd64 in scripts/vm/packages.txt?"
fi
# build is an absolute link, so look through the image's eyes.
chroot "$ROOTFS" test -e "/lib/modules/$KREL/build/include" || die "linux-headers for $KREL did not install: the headers and the image must come from the same suite"
log "kernel $KREL; making a small initrd (only the virtio and ext4 modules)"

# The default initrd carries most modules and takes seconds to unpack under TCG;
# the VM needs only virtio block devices and ext4.
cat > "$ROOTFS/etc/initramfs-tools/conf.d/nsgraph-vm" <<'EOF'
MODULES=list
COMPRESS=gzip
EOF
printf '%s\n' virtio_pci virtio_blk ext4 > "$ROOTFS/etc/initramfs-tools/modules"
mount -t proc proc "$ROOTFS/proc"
mount -t sysfs sys "$ROOTFS/sys"
chroot "$ROOTFS" update-initramfs -u -k "$KREL" > "$WORK/initramfs.log" 2>&1 || {
  tail -n 20 "$WORK/initramfs.log" >&2; die "update-initramfs failed in the image"; }
umount "$ROOTFS/proc" "$ROOTFS/sys"

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
