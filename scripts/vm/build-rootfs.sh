#!/usr/bin/env bash
# Builds the Debian 12 root file system both VM images start from: the kernel-matrix
# image (build-image.sh) and the Vagrant test box (build-box.sh).  debootstrap is the
# slow part of either, so it runs once for both and its result is cached.
#
#   scripts/vm/build-rootfs.sh OUT_DIR DEB_CACHE_DIR
#
# Writes OUT_DIR/{rootfs.tar,kernel-release}: minbase + scripts/vm/packages.txt
# (Debian's 6.1 kernel, its headers, BCC, pytest), a small initrd (virtio + ext4) and
# apt's package lists kept, so build-box.sh can add packages with apt-get.
# Environment: NSGRAPH_VM_MIRROR (a Debian mirror URL; default: the host's own
# bookworm mirror from /etc/apt, else debootstrap's default).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:?usage: build-rootfs.sh OUT_DIR DEB_CACHE_DIR}"
DEBS="${2:?usage: build-rootfs.sh OUT_DIR DEB_CACHE_DIR}"
SUITE=bookworm

log() { printf '[vm-rootfs %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[vm-rootfs] error: %s\n' "$*" >&2; exit 1; }

for tool in debootstrap chroot tar; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debootstrap e2fsprogs (scripts/setup.sh test installs them)"
done
[ "$(id -u)" -eq 0 ] || die "building the VM root file system needs root (debootstrap, chroot)"

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
# the VMs need only virtio block devices and ext4 to reach their root file system.
cat > "$ROOTFS/etc/initramfs-tools/conf.d/nsgraph-vm" <<'CONF'
MODULES=list
COMPRESS=gzip
CONF
printf '%s\n' virtio_pci virtio_blk ext4 > "$ROOTFS/etc/initramfs-tools/modules"
mount -t proc proc "$ROOTFS/proc"
mount -t sysfs sys "$ROOTFS/sys"
chroot "$ROOTFS" update-initramfs -u -k "$KREL" > "$WORK/initramfs.log" 2>&1 || {
  tail -n 20 "$WORK/initramfs.log" >&2; die "update-initramfs failed in the image"; }
umount "$ROOTFS/proc" "$ROOTFS/sys"

# Downloaded packages live in DEB_CACHE_DIR, not in every copy of the tree.
rm -f "$ROOTFS/var/cache/apt/archives/"*.deb
echo "$KREL" > "$WORK/kernel-release"
log "packing the root file system ($(du -sm "$ROOTFS" | cut -f1) MB)"
tar -C "$ROOTFS" --numeric-owner --xattrs -cf "$WORK/rootfs.tar" .
rm -rf "$ROOTFS"
mv "$WORK/rootfs.tar" "$WORK/kernel-release" "$OUT/"
log "root file system ready in $OUT"
