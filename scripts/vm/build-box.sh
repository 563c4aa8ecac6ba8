#!/usr/bin/env bash
# Builds the Vagrant test box (libvirt provider) from the shared Debian 12 root file
# system (build-rootfs.sh), for tests/infra/test_vagrant_up.py.  Users never need it:
# the project's Vagrantfile uses bento/ubuntu-24.04 unless NSGRAPH_VAGRANT_BOX says
# otherwise.
#
#   scripts/vm/build-box.sh OUT_DIR ROOTFS_TAR DEB_CACHE_DIR WHEELHOUSE_DIR PACKAGE...
#
# Adds PACKAGE... with apt-get (the box-packages.txt list and setup.sh's own, so
# provisioning finds them installed), a `vagrant` user with Vagrant's insecure key and
# passwordless sudo, sshd, DHCP by systemd-networkd, and WHEELHOUSE_DIR as the only
# pip index (/etc/pip.conf): the VM reaches no registry, and scripts/provision.sh runs
# unchanged.  Writes OUT_DIR/nsgraph-test.box, a box archive holding box.img (qcow2,
# the file system directly on the disk), metadata.json, a Vagrantfile and the kernel
# and initrd it boots directly (libvirt's kernel/initrd/cmdline: no boot loader).
set -euo pipefail

OUT="${1:?usage: build-box.sh OUT_DIR ROOTFS_TAR DEB_CACHE_DIR WHEELHOUSE_DIR PACKAGE...}"
TAR="${2:?usage: build-box.sh OUT_DIR ROOTFS_TAR DEB_CACHE_DIR WHEELHOUSE_DIR PACKAGE...}"
DEBS="${3:?usage: build-box.sh OUT_DIR ROOTFS_TAR DEB_CACHE_DIR WHEELHOUSE_DIR PACKAGE...}"
WHEELS="${4:?usage: build-box.sh OUT_DIR ROOTFS_TAR DEB_CACHE_DIR WHEELHOUSE_DIR PACKAGE...}"
shift 4
PACKAGES=("$@")

log() { printf '[vm-box %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[vm-box] error: %s\n' "$*" >&2; exit 1; }

for tool in mkfs.ext4 qemu-img tar chroot; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install e2fsprogs qemu-utils (scripts/setup.sh test installs them)"
done
[ "$(id -u)" -eq 0 ] || die "building the box needs root (chroot, apt-get in the image)"
[ -f "$TAR" ] || die "no root file system archive at $TAR (build-rootfs.sh makes it)"
[ -d "$WHEELS" ] || die "no wheelhouse at $WHEELS"
INSECURE_KEY="$(ruby -e 'require "vagrant"; print File.join(Vagrant.source_root.to_s, "keys", "vagrant.pub")' 2>/dev/null || true)"
[ -f "$INSECURE_KEY" ] || die "cannot find Vagrant's insecure public key (keys/vagrant.pub of the vagrant gem); is vagrant installed?"

mkdir -p "$OUT" "$DEBS/partial"
WORK="$(mktemp -d "$OUT/.box.XXXXXX")"
ROOTFS="$WORK/rootfs"
unmount_all() {
  local m
  for m in var/cache/apt/archives dev/pts dev sys proc; do
    mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount "$ROOTFS/$m"
  done
  return 0
}
cleanup() { unmount_all; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$ROOTFS"
tar -C "$ROOTFS" --numeric-owner --xattrs -xf "$TAR"
KREL="$(find "$ROOTFS/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
[ -f "$ROOTFS/boot/initrd.img-$KREL" ] || die "no initrd for $KREL in $TAR"

log "adding ${PACKAGES[*]} to Debian's $KREL root file system"
mount -t proc proc "$ROOTFS/proc"
mount -t sysfs sys "$ROOTFS/sys"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/pts "$ROOTFS/dev/pts"
# The .deb cache debootstrap filled: packages shared with the root file system and
# with earlier builds are not downloaded again.
mount --bind "$DEBS" "$ROOTFS/var/cache/apt/archives"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# No service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
if ! { chroot "$ROOTFS" apt-get update -qq &&
       DEBIAN_FRONTEND=noninteractive chroot "$ROOTFS" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } > "$WORK/apt.log" 2>&1; then
  tail -n 30 "$WORK/apt.log" >&2
  die "apt-get in the box failed (log above); is the Debian mirror reachable?"
fi
rm -f "$ROOTFS/usr/sbin/policy-rc.d"

log "vagrant user, sshd, networking, pip's wheelhouse"
chroot "$ROOTFS" useradd --create-home --shell /bin/bash vagrant
install -d -m 700 -o 1000 -g 1000 "$ROOTFS/home/vagrant/.ssh"
install -m 600 -o 1000 -g 1000 "$INSECURE_KEY" "$ROOTFS/home/vagrant/.ssh/authorized_keys"
[ "$(stat -c %u "$ROOTFS/home/vagrant")" = "$(chroot "$ROOTFS" id -u vagrant)" ] || die "the vagrant user is not uid 1000 in the box"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$ROOTFS/etc/sudoers.d/vagrant"
chmod 440 "$ROOTFS/etc/sudoers.d/vagrant"
# No reverse lookups of the management network's addresses: there is no DNS there.
echo 'UseDNS no' > "$ROOTFS/etc/ssh/sshd_config.d/nsgraph-box.conf"
cat > "$ROOTFS/etc/systemd/network/80-nsgraph-box.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
chroot "$ROOTFS" systemctl enable systemd-networkd.service ssh.service docker.service >/dev/null 2>&1
# Nothing waits for "online": Vagrant waits for sshd itself.
chroot "$ROOTFS" systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1
echo nsgraph-box > "$ROOTFS/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 nsgraph-box\n' > "$ROOTFS/etc/hosts"
echo '/dev/vda / ext4 defaults 0 1' > "$ROOTFS/etc/fstab"
: > "$ROOTFS/etc/resolv.conf"
mkdir -p "$ROOTFS/var/cache/nsgraph/wheelhouse"
cp "$WHEELS"/*.whl "$ROOTFS/var/cache/nsgraph/wheelhouse/"
cat > "$ROOTFS/etc/pip.conf" <<'PIP'
# The Vagrant test box reaches no package registry: pip installs from the wheels
# the box was built with (scripts/vm/build-box.sh).
[global]
no-index = true
find-links = /var/cache/nsgraph/wheelhouse
PIP
unmount_all
rm -rf "$ROOTFS/var/lib/apt/lists/"* "$ROOTFS/usr/share/doc" "$ROOTFS/usr/share/man" "$ROOTFS/usr/share/locale"

BOX="$WORK/box"
mkdir -p "$BOX"
cp "$ROOTFS/boot/vmlinuz-$KREL" "$BOX/vmlinuz"
cp "$ROOTFS/boot/initrd.img-$KREL" "$BOX/initrd.img"
used_mb="$(du -sm "$ROOTFS" | cut -f1)"
# Room for the project, its virtualenv, Docker's demo image and logs.
size_mb=$(( used_mb + 3072 ))
log "making the disk (${used_mb} MB of files, ${size_mb} MB virtual)"
mkfs.ext4 -q -F -L nsgraph-root -d "$ROOTFS" "$WORK/root.img" "${size_mb}M" >/dev/null \
  || die "mkfs.ext4 -d failed (e2fsprogs >= 1.43 is needed for -d)"
rm -rf "$ROOTFS"
qemu-img convert -O qcow2 "$WORK/root.img" "$BOX/box.img"
rm -f "$WORK/root.img"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' $(( (size_mb + 1023) / 1024 )) > "$BOX/metadata.json"
cat > "$BOX/Vagrantfile" <<'VF'
# The nsgraph test box (scripts/vm/build-box.sh): Debian 12, booted straight into the
# kernel and initrd shipped beside this file; its disk holds the file system directly.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.join(__dir__, "vmlinuz")
    libvirt.initrd = File.join(__dir__, "initrd.img")
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 quiet"
    libvirt.disk_bus = "virtio"
    libvirt.graphics_type = "none"
    libvirt.video_type = "none"
  end
end
VF
echo "$KREL" > "$BOX/kernel-release"
tar -C "$BOX" -cf "$OUT/nsgraph-test.box" .
cp "$BOX/kernel-release" "$OUT/kernel-release"
log "box ready: $OUT/nsgraph-test.box ($(du -sm "$OUT/nsgraph-test.box" | cut -f1) MB)"
