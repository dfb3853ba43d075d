#!/usr/bin/env bash
# Builds deploy/container/Containerfile with podman, as CI does, and checks the
# image without a container runtime:
#   - its configuration: non-root numeric user, entrypoint, exposed ports;
#   - its contents: the binary, and none of the build (no cargo, no sources);
#   - the binary runs on the image's own file system (chroot into the mounted
#     image, as the image's user): `flit --version`, then `flit serve` up to its
#     ready line, /readyz 200, and SIGTERM to exit 0.
# Running the image as a container is not done here: in the sandbox CI runs in,
# crun cannot create containers (cgroup errors), so the build itself uses
# --isolation=chroot (set FLIT_PODMAN_ISOLATION=oci where containers work).
# Base images: the official ones when Docker Hub answers; otherwise stand-ins
# made here (a bookworm root file system from deb.debian.org by mmdebstrap, and
# rust-standin.Containerfile on top of it), kept in podman's store for the next
# run. Needs root, podman, and mmdebstrap for the stand-ins.
# Usage, from anywhere: deploy/container/ci-build.sh   (FLIT_IMAGE names the image)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
image=${FLIT_IMAGE:-localhost/flit:ci}
isolation=--isolation=${FLIT_PODMAN_ISOLATION:-chroot}
# This machine's CA bundle, for a TLS-intercepting proxy between the build and
# crates.io (CI's sandbox has one): a build secret, not stored in the image.
ca_bundle=${FLIT_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
secret=()
[[ -s $ca_bundle ]] && secret=(--secret "id=ca-bundle,src=$ca_bundle")
rust_image=docker.io/library/rust:1.95-slim-bookworm
runtime_image=docker.io/library/debian:bookworm-slim
seconds() { date +%s; }
started=$(seconds)

have_or_pull() { podman image exists "$1" || podman pull -q "$1" >/dev/null 2>&1; }
if have_or_pull "$runtime_image" && have_or_pull "$rust_image"; then
    echo "== base images: $rust_image, $runtime_image"
else
    rust_image=localhost/flit-ci/rust:1.95-slim-bookworm
    runtime_image=localhost/flit-ci/debian:bookworm-slim
    echo "== base images: Docker Hub cannot be reached; stand-ins $rust_image, $runtime_image"
    if ! podman image exists "$runtime_image"; then
        work=$(mktemp -d)
        mmdebstrap --quiet --variant=minbase --mode=root bookworm "$work/rootfs.tar" http://deb.debian.org/debian
        podman import -q "$work/rootfs.tar" "$runtime_image" >/dev/null
        rm -rf "$work"
    fi
    if ! podman image exists "$rust_image"; then
        podman build "$isolation" "${secret[@]}" -q -t "$rust_image" --build-arg "DEBIAN_IMAGE=$runtime_image" \
            -f deploy/container/rust-standin.Containerfile deploy/container >/dev/null
    fi
    echo "   ready after $(($(seconds) - started)) s"
fi

echo "== podman build -f deploy/container/Containerfile -t $image ."
build_started=$(seconds)
podman build "$isolation" "${secret[@]}" --build-arg "RUST_IMAGE=$rust_image" --build-arg "RUNTIME_IMAGE=$runtime_image" \
    -f deploy/container/Containerfile -t "$image" .
echo "   built in $(($(seconds) - build_started)) s"

echo "== image configuration"
fail() { echo "error: $image: $*" >&2; exit 1; }
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[[ $user == 10001:10001 ]] || fail "user is '$user', expected 10001:10001"
entrypoint=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$image")
[[ $entrypoint == '["/usr/local/bin/flit"]' ]] || fail "entrypoint is $entrypoint"
ports=$(podman image inspect --format '{{range $port, $_ := .Config.ExposedPorts}}{{$port}} {{end}}' "$image")
for port in 4222/tcp 4224/tcp 7422/tcp 8222/tcp; do
    [[ " $ports " == *" $port "* ]] || fail "does not expose $port (exposes: $ports)"
done
echo "   user $user, entrypoint $entrypoint, ports $ports"
echo "   size $(podman image inspect --format '{{.Size}}' "$image") bytes"

echo "== the image's file system: the binary, as the image's user"
root=$(podman image mount "$image")
trap 'umount "$root/proc" 2>/dev/null || true; podman image unmount "$image" >/dev/null || true' EXIT
[[ -x $root/usr/local/bin/flit ]] || fail "no /usr/local/bin/flit"
for leftover in usr/local/cargo usr/local/rustup src; do
    [[ ! -e $root/$leftover ]] || fail "/$leftover is in the runtime image"
done
as_image_user() { chroot --userspec=10001:10001 "$root" "$@"; }
as_image_user /usr/local/bin/flit --version
mount -t proc proc "$root/proc"
output=$(mktemp)
# chroot execs flit, so $! is flit's own process id.
chroot --userspec=10001:10001 "$root" /usr/local/bin/flit serve --listen 127.0.0.1:0 --shards 1 --no-pin \
    --metrics 127.0.0.1:0 --data-dir /var/lib/flit >"$output" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q '^flit ready' "$output" && break; sleep 0.1; done
cat "$output"
grep -q '^flit ready' "$output" || { kill "$pid" 2>/dev/null; fail "flit serve did not start"; }
metrics=$(sed -n 's/.* metrics=\([^ ]*\).*/\1/p' "$output")
[[ -n $metrics ]] || { kill "$pid"; fail "no metrics= in the ready line"; }
ready=$(curl -s -o /dev/null -w '%{http_code}' "http://$metrics/readyz") || true
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
rm -f "$output"
[[ $ready == 200 ]] || fail "/readyz answered '$ready', expected 200"
[[ $status == 0 ]] || fail "flit serve exited $status after SIGTERM, expected 0"
echo "   flit serve ran from the image as 10001: ready, /readyz 200, SIGTERM: exit 0"
# Intermediate images (the builder stage, 1.2 GB) are not kept; the stand-in
# base images and the build's cache mounts (crates, compiled dependencies) are,
# for the next run on this machine.
podman image prune -f >/dev/null
echo "== deploy/container/ci-build.sh: OK in $(($(seconds) - started)) s"
