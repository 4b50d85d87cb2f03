#!/usr/bin/env bash
# Runs the whole test suite: unit, property, integration and system tests. Installs what it
# needs first (scripts/setup.sh). Every test talks only to loopback or into network namespaces
# of its own (the NAT lab, as root), and cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# System tests run the real binaries: build them once, up front.
cargo build --workspace --bins
cargo test --workspace --all-targets "$@"
