#!/usr/bin/env bash
# Unpacks wrk 4.1 (Debian) and its libluajit into .tools/ (gitignored) for
# `bench/inference.py --load-generator wrk`; .tools/ travels to the GPU machine with the checkout
# (~0.7 MB). Needs apt-get (no root: `apt-get download` only fetches the .deb files); the binary
# links libssl.so.3/libcrypto.so.3 and glibc from the host (Debian 12 / Ubuntu 24.04 have them).
# Run from the repo root:  bash bench/tools.sh
set -euo pipefail
DEST=${DEST:-.tools}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download wrk libluajit-5.1-2 >"$work/apt.log" 2>&1) || { cat "$work/apt.log" >&2; exit 1; }
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
mkdir -p "$DEST/bin" "$DEST/lib"
cp "$work/root/usr/bin/wrk" "$DEST/bin/wrk"
cp -L "$work/root/usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2" "$DEST/lib/libluajit-5.1.so.2"  # no symlink
cat > "$DEST/wrk" <<'WRAPPER'
#!/bin/sh
here=$(dirname "$0")
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/wrk" "$@"
WRAPPER
chmod +x "$DEST/wrk" "$DEST/bin/wrk"
if LD_LIBRARY_PATH="$DEST/lib" ldd "$DEST/bin/wrk" | grep -q "not found"; then
  LD_LIBRARY_PATH="$DEST/lib" ldd "$DEST/bin/wrk" >&2; exit 1
fi
"$DEST/wrk" -v 2>&1 | head -1 || true
