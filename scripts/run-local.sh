#!/usr/bin/env bash
# `make run`: the API on the embedded SQLite store, plus an agent reporting this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
URL="http://127.0.0.1:${PORT}"
mkdir -p var
umask 077
[ -s var/admin-token ] || python -c 'import secrets; print("fp_admin_" + secrets.token_urlsafe(32))' > var/admin-token
ADMIN="$(cat var/admin-token)"
export FLEETPULSE_ADMIN_TOKEN="$ADMIN"
export FLEETPULSE_STORAGE_URL="${FLEETPULSE_STORAGE_URL:-sqlite://$PWD/var/fleetpulse.db}"
export GUNICORN_CMD_ARGS="${GUNICORN_CMD_ARGS:---bind 127.0.0.1:${PORT}}"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

gunicorn -c gunicorn.conf.py &
pids+=($!)
for _ in $(seq 100); do
  python -c "import urllib.request,sys; urllib.request.urlopen('$URL/healthz', timeout=1)" 2>/dev/null && break
  sleep 0.2
done

HOST="$(python -c 'import re,socket; print(re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:128] or "localhost")')"
if [ ! -s var/agent-token ] || [ "$(cut -d' ' -f1 var/agent-token)" != "$HOST" ]; then
  python - "$URL" "$ADMIN" "$HOST" > var/agent-token <<'PY'
import json, sys, urllib.request
url, admin, host = sys.argv[1:]
req = urllib.request.Request(url + "/api/v1/tokens", data=json.dumps({"role": "agent", "host": host}).encode(),
                             headers={"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
print(host, json.load(urllib.request.urlopen(req))["token"])
PY
fi
FLEETPULSE_URL="$URL" FLEETPULSE_TOKEN="$(cut -d' ' -f2 var/agent-token)" FLEETPULSE_HOST="$HOST" \
  FLEETPULSE_SPOOL_DIR="$PWD/var/spool" python -m agent &
pids+=($!)

cat <<MSG

fleetpulse is running at $URL  (embedded SQLite: ${FLEETPULSE_STORAGE_URL#sqlite://})
An agent is reporting this machine as host "$HOST"; its first 30-second windows land within a minute.

  admin token:   $ADMIN   (kept in var/admin-token)
  a reader token:
    curl -s -X POST $URL/api/v1/tokens -H "Authorization: Bearer \$(cat var/admin-token)" \\
         -H 'Content-Type: application/json' -d '{"role": "reader"}'
  this machine:  curl -s -H "Authorization: Bearer \$(cat var/admin-token)" $URL/api/v1/hosts/$HOST
  a series:      curl -s -H "Authorization: Bearer \$(cat var/admin-token)" \\
                   "$URL/api/v1/series?host=$HOST&metric=cpu.percent&tag.cpu=total&start=\$(( \$(date +%s) - 600 ))&end=\$(date +%s)"
  API description: $URL/api/v1/openapi.json

Ctrl-C stops both.
MSG
wait "${pids[0]}"
