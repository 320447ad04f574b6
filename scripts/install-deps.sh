#!/usr/bin/env bash
# Installs every Debian package coord needs to build and test. Idempotent: a package that is
# already present is skipped, so this is cheap to run before every build.
set -euo pipefail

packages=(
    build-essential cmake pkg-config
    capnproto libcapnp-dev
    liblmdb-dev lmdb-utils
    libboost-dev
    libabsl-dev
    libjemalloc-dev
    catch2
    libcli11-dev
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
