#!/usr/bin/env bash
# Set up fmtrain on a fresh Debian machine: the Fashion-MNIST files, the Debian packages the
# tests drive (Chromium and its driver, PostgreSQL for the team server), and fmtrain with its
# Python packages (the extras for JAX, Ray and the team server included) in the virtual
# environment .venv of this checkout (a stock Debian Python refuses system-wide pip installs).
# Idempotent; run as root or with sudo available, from anywhere. Then: . .venv/bin/activate
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    [ -n "${APT_UPDATED:-}" ] || { $SUDO apt-get update -qq; APT_UPDATED=1; }
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

apt_install dataset-fashion-mnist chromium chromium-driver postgresql
python3 -m venv --help >/dev/null 2>&1 && python3 -c "import ensurepip" 2>/dev/null \
  || apt_install python3-venv
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,jax,ray,team]"
echo "fmtrain is set up in $(pwd)/.venv; enter it with: . .venv/bin/activate"
