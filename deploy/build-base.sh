#!/usr/bin/env bash
# Builds a local Bun base image for the Containerfile when no container
# registry can be reached (so docker.io/oven/bun cannot be pulled): a minimal
# Debian bookworm from the Debian mirror this machine already uses, the Bun
# binary from the npm registry (the package `@oven/bun-linux-<arch>` holds it),
# and a user `bun` (uid 1000, gid 1000) as in the official image.
#
#   bun run container:base [image]       # default: localhost/bun-base:<BUN_VERSION>
#   bun run container:smoke localhost/bun-base:1.4.5
#
# Needs root (debootstrap, buildah mount), debootstrap, buildah and npm.
# Environment: DEBIAN_MIRROR (default: the first Debian mirror in
# /etc/apt/sources.list*), BUN_PACKAGE (e.g. @oven/bun-linux-x64-baseline for
# CPUs without AVX2).
set -euo pipefail
cd "$(dirname "$0")/.."

# The one Bun version is pinned in .ci/run; everything else is checked against it (test/deploy/versions.test.ts).
BUN_VERSION=$(sed -n 's/^BUN_VERSION=\([0-9.]*\).*/\1/p' .ci/run)
IMAGE=${1:-localhost/bun-base:$BUN_VERSION}
SUITE=bookworm

for tool in debootstrap buildah npm; do
  command -v "$tool" >/dev/null || { echo "container:base needs $tool (apt-get install $tool)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "container:base needs root (debootstrap, buildah mount); run it with sudo" >&2; exit 1; }

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  # deb822 (*.sources: "URIs: …") or one-line ("deb URI suite …"); the first that is not the security archive.
  local found
  found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -n -e 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' |
    grep -v -- '-security' | head -1 || true)
  echo "${found:-http://deb.debian.org/debian}"
}

case "$(uname -m)" in
  x86_64) default_package=@oven/bun-linux-x64 ;;
  aarch64) default_package=@oven/bun-linux-aarch64 ;;
  *) echo "no Bun build for $(uname -m)" >&2; exit 1 ;;
esac
BUN_PACKAGE=${BUN_PACKAGE:-$default_package}

work=$(mktemp -d "${TMPDIR:-/tmp}/cachegate-base.XXXXXX")
ctr=""
cleanup() {
  [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

rootfs=$work/rootfs
echo "== debootstrap $SUITE (minbase) from $(mirror)"
# ca-certificates: upstreams whose CA is in the system store but not in Bun's bundled one still verify.
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$(mirror)" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; exit 1; }

echo "== $BUN_PACKAGE@$BUN_VERSION from the npm registry"
(cd "$work" && npm pack --silent "$BUN_PACKAGE@$BUN_VERSION" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/bin/bun
install -m 0755 "$work/package/bin/bun" "$rootfs/usr/local/bin/bun"
ln -sf bun "$rootfs/usr/local/bin/bunx"
got=$(chroot "$rootfs" /usr/local/bin/bun --version)
[ "$got" = "$BUN_VERSION" ] || { echo "the binary says Bun $got, expected $BUN_VERSION" >&2; exit 1; }

echo "== user bun (uid 1000), as in the official oven/bun image"
chroot "$rootfs" groupadd --gid 1000 bun
chroot "$rootfs" useradd --uid 1000 --gid bun --create-home --home-dir /home/bun --shell /bin/sh bun
# What an image does not need: package lists and downloaded .debs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log

echo "== $IMAGE"
# BUN_RUNTIME_TRANSPILER_CACHE_PATH=0 as in the official image: a container's cache would not outlive it.
ctr=$(buildah from scratch)
mnt=$(buildah mount "$ctr")
tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
buildah umount "$ctr" >/dev/null
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env BUN_RUNTIME_TRANSPILER_CACHE_PATH=0 \
  --workingdir /home/bun \
  --cmd /usr/local/bin/bun \
  --label org.opencontainers.image.title="bun-base" \
  --label org.opencontainers.image.description="Debian $SUITE (minbase) with Bun $BUN_VERSION, built locally by cachegate's deploy/build-base.sh" \
  --label org.opencontainers.image.version="$BUN_VERSION" \
  "$ctr"
previous=$(buildah images --quiet "$IMAGE" 2>/dev/null || true)
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
ctr=""
# A rebuild retags; the image it replaces would be left behind nameless.
[ -n "$previous" ] && buildah rmi "$previous" >/dev/null 2>&1 || true
echo "built $IMAGE ($(buildah images --format '{{.Size}}' "$IMAGE"))"
