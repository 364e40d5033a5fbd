#!/usr/bin/env bash
# Installs the Debian packages fleetmend and its lab need (with --test: the test
# suite's), only those missing.
# Idempotent and quiet when everything is already there, so `make` stays fast.
set -euo pipefail

packages=(python3 python3-venv python3-pip python3-apt openssh-server openssh-client rsync iproute2 util-linux procps)
# `--test`: what only the test suite needs (a real headless browser renders the drill
# report; real PostgreSQL servers, started inside lab hosts, test the postgres image)
if [ "${1:-}" = "--test" ]; then packages=(chromium postgresql-15); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "fleetmend: these Debian packages are missing: ${missing[*]}" >&2
  echo "hint: run 'make' as root, or install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "fleetmend: apt-get not found; install by hand: ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
if [[ " ${missing[*]} " == *" postgresql-15 "* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  # the tests make their own clusters in lab hosts: no default cluster, no server
  # left running on this machine
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
