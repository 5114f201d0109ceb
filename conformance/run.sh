#!/usr/bin/env bash
# Runs a Node SDK conformance script against a freshly started emulator on 127.0.0.1:443 (the Node
# service SDK always connects to port 443; binding it needs root, as in CI) with its device side on
# 127.0.0.1:8883. Usage: conformance/run.sh [BIN [FLEET SCRIPT]]: the rollout binary (default
# bin/rollout), the fleet file and the script (default: the service SDK's conformance.js on the
# thermostats fleet). Run from the repository root after `npm ci` beside the script.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-bin/rollout}"
fleet="${2:-testdata/fleets/thermostats.yaml}"
script="${3:-conformance/conformance.js}"
work="$(mktemp -d)"
emu_pid=""
cleanup() {
  if [ -n "$emu_pid" ]; then kill "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" emulator --fleet "$fleet" --listen 127.0.0.1:443 --mqtt-listen 127.0.0.1:8883 \
  --cert-dir "$work/ca" --duration 10m >"$work/out" 2>"$work/err" &
emu_pid=$!

for _ in $(seq 1 100); do
  if grep -q '^NODE_EXTRA_CA_CERTS=' "$work/out" 2>/dev/null; then break; fi
  if ! kill -0 "$emu_pid" 2>/dev/null; then
    echo "conformance: the emulator did not start:" >&2; cat "$work/err" >&2; exit 1
  fi
  sleep 0.1
done
if ! grep -q '^NODE_EXTRA_CA_CERTS=' "$work/out"; then
  echo "conformance: the emulator did not print its CA file" >&2; cat "$work/err" >&2; exit 1
fi

IOTHUB_CONNECTION_STRING="$(sed -n 's/^IOTHUB_CONNECTION_STRING=//p' "$work/out")"
NODE_EXTRA_CA_CERTS="$(sed -n 's/^NODE_EXTRA_CA_CERTS=//p' "$work/out")"
export IOTHUB_CONNECTION_STRING NODE_EXTRA_CA_CERTS
case "$IOTHUB_CONNECTION_STRING" in
  HostName=localhost\;*) ;;
  *) echo "conformance: unexpected connection string host" >&2; exit 1 ;;
esac
node "$script"
