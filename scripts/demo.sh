#!/usr/bin/env bash
# Builds and starts a local Strangers signal server on 127.0.0.1:8686. Installs what it needs
# first (scripts/setup.sh). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release -p signal-server
exec ./target/release/signal-server --listen "${STRANGERS_LISTEN:-127.0.0.1:8686}" "$@"
