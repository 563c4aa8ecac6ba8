# shellcheck shell=bash
# The VM cache shared by scripts/vm-kernel-matrix.sh and scripts/vagrant-box.sh: each
# product (the debootstrap'd root file system, the kernel-matrix image, the Vagrant
# box) lives in $CACHE/NAME-KEY, KEY being a hash of everything it is made from, so an
# edit to any input builds a new one and nothing stale is ever booted.
#
# The caller sets CACHE and calls vm_shared_rootfs first: that opens fd 9 on
# "$CACHE/.lock" and holds it shared while the caller uses a product; builds and
# prunes take it exclusively, so no run boots what is being built or removed.

VM_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# A key for the content of FILES... (and of any words on standard input, when the
# first argument is -).
vm_key() {
  cat "$@" | sha256sum | cut -c1-16
}

# vm_cached NAME KEY DONE_FILE BUILDER: makes $CACHE/NAME-KEY by calling BUILDER with
# a scratch folder unless that folder already holds DONE_FILE (VM_REBUILD=1 forces).
# Prints nothing; the product is at "$CACHE/$NAME-$KEY".
vm_cached() {
  local name="$1" key="$2" done="$3" builder="$4"
  local dir="$CACHE/$name-$key"
  if [ "${VM_REBUILD:-0}" = 1 ] || [ ! -e "$dir/$done" ]; then
    flock -u 9
    flock -x 9
    if [ "${VM_REBUILD:-0}" = 1 ] || [ ! -e "$dir/$done" ]; then
      rm -rf "$dir" "$dir.partial"
      local t0=$SECONDS
      "$builder" "$dir.partial"
      mv "$dir.partial" "$dir"
      printf '[vm-cache %s] built %s in %d s\n' "$(date +%T)" "$dir" "$((SECONDS - t0))" >&2
    fi
    touch "$dir/.last-used"
    vm_prune "$name" "$dir"
    flock -s 9
  fi
  touch "$dir/.last-used"
}

# Older keys of NAME not used for NSGRAPH_VM_KEEP_DAYS days (default 3) go: a
# checkout of another branch may still want its own, but not for ever.
vm_prune() {
  local name="$1" keep="$2" old
  for old in "$CACHE/$name"-*; do
    if [ ! -d "$old" ] || [ "$old" = "$keep" ]; then continue; fi
    case "$old" in
      *.partial) rm -rf "$old" ;;   # a build that was killed (we hold the lock)
      *) [ -n "$(find "$old/.last-used" -mtime -"${NSGRAPH_VM_KEEP_DAYS:-3}" 2>/dev/null)" ] || rm -rf "$old" ;;
    esac
  done
}

# The debootstrap'd Debian 12 root file system (build-rootfs.sh) that the kernel-matrix
# image and the Vagrant test box both start from: built once for both.  Takes the
# cache's lock (shared) and sets ROOTFS_KEY and ROOTFS_TAR.
vm_shared_rootfs() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock -s 9
  ROOTFS_KEY="$(vm_key "$VM_SCRIPTS/build-rootfs.sh" "$VM_SCRIPTS/packages.txt")"
  vm_cached rootfs "$ROOTFS_KEY" rootfs.tar _vm_build_rootfs
  # shellcheck disable=SC2034  # read by the scripts that source this file
  ROOTFS_TAR="$CACHE/rootfs-$ROOTFS_KEY/rootfs.tar"
}

_vm_build_rootfs() {
  bash "$VM_SCRIPTS/build-rootfs.sh" "$1" "$CACHE/debs"
}
