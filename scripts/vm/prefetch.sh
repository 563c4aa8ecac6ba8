#!/usr/bin/env bash
# Builds the VM cache's products ahead of the tests that boot them, so a cold machine
# overlaps the slow debootstrap and image builds with the tests that come first.
#
#   scripts/vm/prefetch.sh [image] [box]
#
# image: the kernel matrix's Debian 12 image (scripts/vm-kernel-matrix.sh --build-only),
# also booted by the fleet tests; box: the Vagrant test box (scripts/vagrant-box.sh).
# Both share one debootstrap'd root file system and the cache's lock
# (scripts/vm/cache.sh), so a test that needs a product while it is being built waits
# for it instead of building it twice.  tests/conftest.py starts this at the beginning
# of a run that selects such tests, at the lowest CPU and I/O priority.  Exit status:
# 0 when everything asked for is ready, 1 when a build failed (the test that needs it
# then builds it again and shows why), 2 on bad usage.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
log() { printf '[vm-prefetch %s] %s\n' "$(date +%T)" "$*" >&2; }

[ $# -gt 0 ] || { echo "usage: $0 [image] [box]" >&2; exit 2; }
for what in "$@"; do
  case "$what" in
    image|box) ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown product '$what' (image or box)" >&2; exit 2 ;;
  esac
done

T0=$SECONDS
rc=0
for what in "$@"; do
  case "$what" in
    image) bash "$REPO/scripts/vm-kernel-matrix.sh" --build-only || { rc=1; log "the image build failed"; } ;;
    box) bash "$REPO/scripts/vagrant-box.sh" >/dev/null || { rc=1; log "the box build failed"; } ;;
  esac
done
log "done in $((SECONDS - T0)) s (exit $rc)"
exit "$rc"
