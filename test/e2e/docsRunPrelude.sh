# Sourced before the sh blocks test/e2e/docsRun.test.ts runs: the stand-ins README "Contributing"
# describes (relay-broker and npx relay-broker are the built CLI, agent and connect run in the
# background and return once ready, npm start is the test's stack).
set -euo pipefail
relay-broker() {
  case "${1:-}" in
    agent|connect)
      local log want
      log=$(mktemp -p "$DOCS_TMP" bg.XXXXXX)
      node "$CLI_JS" "$@" >"$log" 2>&1 &
      local pid=$!
      echo "$1 $pid" >> "$DOCS_PIDS"
      if [ "$1" = agent ]; then want=' started: '; else want='connect your client to '; fi
      for _ in $(seq 1 300); do
        grep -q "$want" "$log" && break
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "relay-broker $1 exited" >&2; return 1; }
        sleep 0.1
      done
      grep -q "$want" "$log" || { cat "$log" >&2; echo "relay-broker $1 was not ready in 30 s" >&2; return 1; }
      cat "$log"
      if [ "$1" = connect ]; then
        PRINTED_PORT=$(grep -o 'connect your client to [0-9.]*:[0-9]*' "$log" | head -1 | sed 's/.*://')
        export PRINTED_PORT
      fi
      ;;
    *) node "$CLI_JS" "$@" ;;
  esac
}
npx() { if [ "${1:-}" = relay-broker ]; then shift; relay-broker "$@"; else command npx "$@"; fi; }
npm() { if [ "${1:-}" = start ]; then echo "(npm start: the test's local stack, $API_URL)"; else command npm "$@"; fi; }
