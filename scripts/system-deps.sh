#!/usr/bin/env bash
# Debian packages oddeye needs beside its Python wheels. Installs them when root (or with sudo),
# otherwise says what to install. `--test` adds what only the tests need.
set -euo pipefail
need=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have_lib 'libusb-1.0.so.0' || need+=(libusb-1.0-0)          # open3d imports it
have_lib 'libGL.so.1' || need+=(libgl1)                     # open3d's renderer
if [ "${1:-}" = "--test" ]; then
  # the store tests start a real PostgreSQL server (initdb into a temp dir); the Debian package also adds user postgres
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
  # the dashboard's end-to-end test drives Debian's chromium with the Python playwright package (its driver is bundled)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  # the live tests serve generated clips as real streams (MPEG-TS over TCP) with Debian's ffmpeg
  command -v ffmpeg >/dev/null || need+=(ffmpeg)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "oddeye needs these Debian packages: ${need[*]}. Install them: apt-get install -y ${need[*]}" >&2; exit 1
fi
echo "installing system packages: ${need[*]}"
$SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${need[@]}" >/dev/null; }
