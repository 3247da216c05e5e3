#!/usr/bin/env bash
# Builds the stagger container image from a local release build, without pulling any base image:
# the image is `scratch` plus the binary, the shared libraries it links, CA certificates and a
# passwd entry. Use it where the Docker daemon cannot reach a registry; elsewhere dist/Dockerfile
# gives a conventional Debian-based image.
#
#   dist/build-local-image.sh [IMAGE_NAME]     # default name: stagger:local
set -euo pipefail
cd "$(dirname "$0")/.."

image="${1:-stagger:local}"
cargo build --release --locked -p stagger --no-default-features

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$context/state"
cp target/release/stagger "$rootfs/usr/local/bin/stagger"

# Copy every shared library the binary needs, and the dynamic loader, at their own paths.
for library in $(ldd target/release/stagger | grep -o '/[^ ]*'); do
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L "$library" "$rootfs$library"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/" 2>/dev/null || true
echo 'stagger:x:10001:10001:stagger:/var/lib/stagger:/sbin/nologin' > "$rootfs/etc/passwd"
echo 'stagger:x:10001:' > "$rootfs/etc/group"

cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/stagger/
USER 10001:10001
WORKDIR /var/lib/stagger
VOLUME ["/var/lib/stagger"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/stagger"]
CMD ["agent", "--config", "/etc/stagger/agent.toml"]
DOCKERFILE

tar -C "$context" --owner=0 --group=0 -cf "$context/context.tar" Dockerfile rootfs state
docker build -t "$image" - < "$context/context.tar"
echo "built $image"
