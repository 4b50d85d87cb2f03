#!/usr/bin/env bash
# Measures the desktop app under Xvfb with Mesa's software OpenGL: the time from launch to a
# usable window (its first frame drawn), and its CPU use during a 640x480 call with a bot
# through a local signal server. Uses the release build; prints one line per figure.
#   bash scripts/bench-app.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
bin=./target/release
[ -x "$bin/strangers" ] && [ -x "$bin/signal-server" ] || cargo build --release -p signal-server -p strangers

work="$(mktemp -d)"
chmod 700 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

display=":$((150 + RANDOM % 50))"
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
sleep 1
"$bin/signal-server" --listen 127.0.0.1:0 >"$work/server.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.05; done
addr="$(sed -n 's/^listening on //p' "$work/server.out" | head -1)"
"$bin/strangers" --headless --loopback --server "ws://$addr/ws" >/dev/null 2>&1 &
pids+=($!)

env_app=(env DISPLAY="$display" HOME="$work" XDG_RUNTIME_DIR="$work" LIBGL_ALWAYS_SOFTWARE=1)
# Start-up: five launches, each until the first frame is drawn.
for i in 1 2 3 4 5; do
  start=$(date +%s%N)
  "${env_app[@]}" "$bin/strangers" --server "ws://$addr/ws" --events >"$work/startup.out" 2>/dev/null &
  pid=$!
  until grep -q '"window_ready"' "$work/startup.out" 2>/dev/null; do sleep 0.005; done
  end=$(date +%s%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "startup_ms[$i] $(( (end - start) / 1000000 ))"
done

# A call: wait until the bot's video is on screen, then measure CPU over the window.
"${env_app[@]}" "$bin/strangers" --server "ws://$addr/ws" --loopback --start --events >"$work/app.out" 2>/dev/null &
app=$!
pids+=($app)
until grep -q '"video_on_screen"' "$work/app.out" 2>/dev/null; do sleep 0.05; done
sleep 3
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks "$app"); w0=$(date +%s%N)
sleep "$seconds"
t1=$(ticks "$app"); w1=$(date +%s%N)
awk -v t=$((t1 - t0)) -v hz="$hz" -v w=$((w1 - w0)) 'BEGIN { printf "app_cpu_cores %.3f (over %.1f s)\n", t / hz / (w / 1e9), w / 1e9 }'
grep '"stats"' "$work/app.out" | tail -1
