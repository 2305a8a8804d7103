#!/usr/bin/env bash
# Installs what bridgefs and its tests need on a Debian machine (run as root), then the project
# itself into .venv.  Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(fuse3 inotify-tools git sqlite3 rsync)
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
