#!/usr/bin/env bash
# Installs what bridgefs and its tests need on a Debian machine (run as root), then the project
# itself into .venv.  Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# qemu-system-x86 and busybox-static: tests/vm boots a real Linux guest (its kernel is fetched
# with apt-get download by the suite itself and cached).
packages=(fuse3 inotify-tools git sqlite3 rsync qemu-system-x86 busybox-static e2fsprogs)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -e '.[test]'

# The Node watcher (chokidar, as webpack and Vite use it) the event tests run in a mount.
(cd tests/events/node && npm ci --no-audit --no-fund --silent)
