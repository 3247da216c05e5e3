#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: Debian's docker-registry (the CNCF
# distribution server), which the end-to-end tests start on loopback ports. Needs root or sudo.
set -euo pipefail

if command -v docker-registry >/dev/null 2>&1; then
    exit 0
fi

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd="sudo"
fi
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq docker-registry
# The package enables a system-wide registry on port 5000; the tests start their own instances.
$sudo_cmd systemctl disable --now docker-registry >/dev/null 2>&1 || true
