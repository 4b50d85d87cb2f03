#!/usr/bin/env bash
# Builds Strangers and opens the desktop app together with a local signal server and a bot
# stranger waiting in the queue: press Start (or Esc) and you meet it at once. Installs what it
# needs first (scripts/setup.sh). Closing the window stops the server and the bots.
#
#   bash scripts/demo.sh                  # one bot
#   BOTS=3 bash scripts/demo.sh           # three bots: Next takes you from one to the next
#   STRANGERS_LISTEN=127.0.0.1:9000 bash scripts/demo.sh
#
# Without a display (a server over ssh) the server and bots run until Ctrl-C, and the window
# can be opened from a machine that has one: strangers --server ws://HOST:PORT/ws
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release -p signal-server -p strangers

listen="${STRANGERS_LISTEN:-127.0.0.1:8686}"
url="ws://$listen/ws"
bots="${BOTS:-1}"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

./target/release/signal-server --listen "$listen" >/dev/null &
pids+=($!)
host="${listen%:*}"
port="${listen##*:}"
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
echo "demo: signal server on $url"

for i in $(seq "$bots"); do
  # A bot sends a test pattern and a tone, says hello, and after each stranger waits for the next.
  ./target/release/strangers --headless --loopback --server "$url" \
    --tone-hz $((300 + 60 * i)) --say "Hi, I am demo bot $i. You see my test pattern and hear my tone." \
    >/dev/null 2>&1 &
  pids+=($!)
done
echo "demo: $bots bot(s) waiting in the queue"

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "demo: no display here; open the window elsewhere with: strangers --server ws://HOST:$port/ws"
  echo "demo: Ctrl-C stops the server and the bots"
  wait
else
  # --loopback: the bots run on this machine, so loopback addresses are the shortest path.
  ./target/release/strangers --server "$url" --loopback "$@"
fi
