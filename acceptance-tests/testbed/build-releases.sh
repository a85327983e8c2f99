#!/usr/bin/env bash
# Build the test bed's release tarballs:
#
#   build-releases.sh OUTDIR
#
# Writes OUTDIR/artifortress-{v1,v2,broken}.tar.gz and OUTDIR/SHA256SUMS (sha256sum format).
# Each tarball has one top directory artifortress-<version>/ with VERSION,
# bin/artifortress-testbed-api, bin/artifortress-testbed-worker and bin/artifortress (control
# script). The "broken" release's API never becomes ready (TESTBED_FAULT_NEVER_READY=1 is set by
# its control script, after the env file, so it cannot be overridden).
#
# Also, per role, OUTDIR/artifortress-{api,worker}-{v1,v2,broken}.tar.gz (in SHA256SUMS too): the
# real service ships two `dotnet publish` outputs, the API and the worker (its
# docs/29-deployment-howto-production.md, "Release Artifact Preparation", lines 26-29;
# deploy/kind/Dockerfile.api and Dockerfile.worker, lines 14-16, publish one each), which artifortress_release takes as api_artifact / worker_artifact and unpacks as
# releases/<version>/api/ and releases/<version>/worker/. Each has one top directory
# artifortress-<role>-<version>/ with VERSION, that role's binary only and bin/artifortress (the
# same control script, told that its release is one level deeper).
#
# The binaries must already be built; they are taken from $TESTBED_BIN_DIR (default: target/debug
# under the repository root) and stripped (TESTBED_STRIP=0 keeps them as they are).
# Reproducible: sorted entries, fixed mtime ($SOURCE_DATE_EPOCH, default 1700000000), owner 0:0,
# normalised modes, gzip without name/timestamp.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
bin_dir=${TESTBED_BIN_DIR:-$repo_root/target/debug}
epoch=${SOURCE_DATE_EPOCH:-1700000000}
strip_bins=${TESTBED_STRIP:-1}

for b in artifortress-testbed-api artifortress-testbed-worker; do
  if [ ! -x "$bin_dir/$b" ]; then
    echo "build-releases.sh: $bin_dir/$b not found; build first (cargo build -p acceptance-tests --bins)" >&2
    exit 1
  fi
done

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

umask 022
for b in artifortress-testbed-api artifortress-testbed-worker; do
  if [ "$strip_bins" = 1 ] && command -v strip >/dev/null 2>&1; then
    strip -o "$work/$b" "$bin_dir/$b"
  else
    cp "$bin_dir/$b" "$work/$b"
  fi
done

# pack NAME: $work/stage/NAME as OUTDIR/NAME.tar.gz, reproducibly.
pack() {
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=gnu \
    --mode='u+rwX,go+rX,go-w' -C "$work/stage" -cf - "$1" |
    gzip -n -6 >"$out/$1.tar.gz.tmp"
  mv "$out/$1.tar.gz.tmp" "$out/$1.tar.gz"
}

for version in v1 v2 broken; do
  d="$work/stage/artifortress-$version"
  mkdir -p "$d/bin"
  printf '%s\n' "$version" >"$d/VERSION"
  install -m 0755 "$work/artifortress-testbed-api" "$d/bin/artifortress-testbed-api"
  install -m 0755 "$work/artifortress-testbed-worker" "$d/bin/artifortress-testbed-worker"
  if [ "$version" = broken ]; then
    release_env='[ "$role" = api ] \&\& export TESTBED_FAULT_NEVER_READY=1  # broken release: never ready'
  else
    release_env='# (no release-specific environment)'
  fi
  sed "s|# @@RELEASE_ENV@@|$release_env|" "$here/artifortress-control.sh" >"$d/bin/artifortress"
  chmod 0755 "$d/bin/artifortress"
  pack "artifortress-$version"
  for role in api worker; do
    d="$work/stage/artifortress-$role-$version"
    mkdir -p "$d/bin"
    printf '%s\n' "$version" >"$d/VERSION"
    install -m 0755 "$work/artifortress-testbed-$role" "$d/bin/artifortress-testbed-$role"
    sed -e "s|# @@RELEASE_ENV@@|$release_env|" \
      -e 's|# @@LAYOUT@@|root_dir="$release_dir/../../.."  # a role archive: releases/<version>/<role>|' \
      "$here/artifortress-control.sh" >"$d/bin/artifortress"
    chmod 0755 "$d/bin/artifortress"
    pack "artifortress-$role-$version"
  done
done

(cd "$out" && sha256sum artifortress-v1.tar.gz artifortress-v2.tar.gz artifortress-broken.tar.gz \
  artifortress-api-v1.tar.gz artifortress-api-v2.tar.gz artifortress-api-broken.tar.gz \
  artifortress-worker-v1.tar.gz artifortress-worker-v2.tar.gz artifortress-worker-broken.tar.gz \
  >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
cat "$out/SHA256SUMS"
