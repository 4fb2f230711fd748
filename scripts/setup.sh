#!/usr/bin/env bash
# Set up fmtrain on a fresh Debian machine: the Fashion-MNIST files and the Python packages.
# Idempotent; run as root (or with sudo available) from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
