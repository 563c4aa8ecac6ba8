#!/usr/bin/env bash
# The Vagrant test box: builds it (once, cached) and adds it to Vagrant, for
# tests/infra/test_vagrant_up.py.  Users do not need it: the Vagrantfile's default box
# is bento/ubuntu-24.04; this one exists because no box can be downloaded in CI.
#
#   scripts/vagrant-box.sh [--rebuild]
#
# Prints the box's name on standard output (give it to the Vagrantfile as
# NSGRAPH_VAGRANT_BOX); progress goes to standard error.  The box is Debian 12 from
# the kernel matrix's debootstrap'd root file system (scripts/vm/build-rootfs.sh, built
# once for both), plus scripts/vm/box-packages.txt, setup.sh's BASE_PACKAGES and a
# wheelhouse of the project's Python dependencies, so provisioning runs offline.
# It is cached under $NSGRAPH_VM_CACHE keyed by everything it is made from.
# Environment: NSGRAPH_VM_CACHE (/var/cache/nsgraph/vm), VAGRANT_HOME (where the box is
# added; default $NSGRAPH_VM_CACHE/vagrant-home, so the user's own boxes are untouched),
# NSGRAPH_VM_MIRROR (Debian mirror for the build).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VMDIR="$REPO/scripts/vm"
CACHE="${NSGRAPH_VM_CACHE:-/var/cache/nsgraph/vm}"
export VAGRANT_HOME="${VAGRANT_HOME:-$CACHE/vagrant-home}"
REBUILD=0

log() { printf '[vagrant-box %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[vagrant-box] error: %s\n' "$*" >&2; exit "${2:-1}"; }

case "${1:-}" in
  "") ;;
  --rebuild) REBUILD=1 ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (see --help)" 2 ;;
esac
[ "$(id -u)" -eq 0 ] || die "run me as root: building the box needs debootstrap and chroot"
for tool in vagrant debootstrap qemu-img mkfs.ext4 flock sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing: scripts/setup.sh test installs it"
done

# shellcheck source=scripts/vm/cache.sh
. "$VMDIR/cache.sh"
vm_shared_rootfs

# What provisioning installs: set-up's own package list (so its apt_install finds
# nothing missing) and the project's Python dependencies plus its build backend.
mapfile -t SETUP_PACKAGES < <(sed -n '/^BASE_PACKAGES=(/,/)/p' "$REPO/scripts/setup.sh" | tr -d '()' \
  | sed 's/BASE_PACKAGES=//' | tr -s ' \n' '\n' | sed '/^$/d')
[ "${#SETUP_PACKAGES[@]}" -gt 3 ] || die "could not read BASE_PACKAGES from scripts/setup.sh"
mapfile -t BOX_PACKAGES < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$VMDIR/box-packages.txt")
mapfile -t REQUIREMENTS < <(/usr/bin/python3 - "$REPO/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    meta = tomllib.load(f)
for req in meta["build-system"]["requires"] + meta["project"]["dependencies"] + ["wheel"]:
    print(req)
PY
)

WHEELS_KEY="$(printf '%s\n' "${REQUIREMENTS[@]}" | vm_key -)"
build_wheels() {
  # Wheels for Debian 12's Python 3.11 whatever Python this host has.
  log "downloading the wheelhouse: ${REQUIREMENTS[*]}"
  /usr/bin/python3 -m pip download --disable-pip-version-check -q -d "$1" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any "${REQUIREMENTS[@]}"
}
vm_cached wheels "$WHEELS_KEY" . build_wheels

BOX_KEY="$(printf '%s\n' "$ROOTFS_KEY" "$WHEELS_KEY" "${SETUP_PACKAGES[@]}" | vm_key - "$VMDIR/build-box.sh" "$VMDIR/box-packages.txt")"
build_box() {
  bash "$VMDIR/build-box.sh" "$1" "$ROOTFS_TAR" "$CACHE/debs" "$CACHE/wheels-$WHEELS_KEY" \
    "${BOX_PACKAGES[@]}" "${SETUP_PACKAGES[@]}"
}
VM_REBUILD="$REBUILD" vm_cached box "$BOX_KEY" nsgraph-test.box build_box

NAME="nsgraph-test-$BOX_KEY"
# Vagrant's box store is shared by every run: add and prune under the exclusive lock.
if [ "$REBUILD" -eq 1 ] || ! vagrant box list --machine-readable 2>/dev/null | grep -q ",box-name,$NAME\$"; then
  flock -u 9
  flock -x 9
  log "vagrant box add --name $NAME (VAGRANT_HOME=$VAGRANT_HOME)"
  vagrant box add --force --name "$NAME" "$CACHE/box-$BOX_KEY/nsgraph-test.box" >&2
  for old in $(vagrant box list --machine-readable 2>/dev/null | awk -F, '$3=="box-name" && $4 ~ /^nsgraph-test-/ {print $4}'); do
    [ "$old" = "$NAME" ] || [ -d "$CACHE/box-${old#nsgraph-test-}" ] || vagrant box remove --force --all "$old" >&2 || true
  done
  flock -s 9
fi
echo "$NAME"
