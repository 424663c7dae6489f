#!/usr/bin/env bash
# `make run`: the API on the embedded SQLite store, plus an agent reporting this machine.
#
# Refuses to start when 127.0.0.1:$PORT is taken (another `make run`, or anything else).
# Ctrl-C (INT), TERM, HUP or any exit stops the agent first (it flushes its open window to the
# still-running API), waits up to 15 s for it, then stops gunicorn. Both run in process groups
# of their own so that a terminal's Ctrl-C reaches this script only, which stops them in order.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
URL="http://127.0.0.1:${PORT}"
AGENT_STOP_S=15

die() { echo "run-local: $*" >&2; exit 1; }

# 1. The port, before anything starts (a taken port once let a second agent onto the spool).
if ! python - "$PORT" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no owner
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
then
  die "port $PORT on 127.0.0.1 is already in use (another \`make run\`, or another program):
  stop it, or choose another port, e.g.  PORT=$((PORT + 1)) make run"
fi

mkdir -p var
umask 077
[ -s var/admin-token ] || python -c 'import secrets; print("fp_admin_" + secrets.token_urlsafe(32))' > var/admin-token
ADMIN="$(cat var/admin-token)"
export FLEETPULSE_ADMIN_TOKEN="$ADMIN"
export FLEETPULSE_STORAGE_URL="${FLEETPULSE_STORAGE_URL:-sqlite://$PWD/var/fleetpulse.db}"
export GUNICORN_CMD_ARGS="${GUNICORN_CMD_ARGS:---bind 127.0.0.1:${PORT}}"

gunicorn_pid=""
agent_pid=""
stopping=""
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
cleanup() {
  [ -z "$stopping" ] || return 0
  stopping=1
  # A second Ctrl-C while stopping must not end this script before gunicorn is stopped.
  trap '' INT TERM HUP
  if alive "$agent_pid"; then
    kill -TERM "$agent_pid" 2>/dev/null || true
    for _ in $(seq $((AGENT_STOP_S * 10))); do alive "$agent_pid" || break; sleep 0.1; done
    if alive "$agent_pid"; then
      echo "run-local: the agent did not stop within ${AGENT_STOP_S} s: killed" >&2
      kill -KILL "$agent_pid" 2>/dev/null || true
    fi
  fi
  if alive "$gunicorn_pid"; then
    kill -TERM "$gunicorn_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP

# Start a command in a process group of its own (the terminal's Ctrl-C then reaches this
# script only); exec keeps the pid, so $! is the command itself.
own_group=(python -c 'import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])')

# True once the socket listening on 127.0.0.1:PORT belongs to process $1 (so the answer comes
# from our gunicorn, not from whoever else may hold the port). Without /proc: true.
owns_port() {
  python - "$1" "$PORT" <<'PY'
import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
if not os.path.exists("/proc/net/tcp"):
    sys.exit(0)
inodes = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(table).read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        f = line.split()
        if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # LISTEN on PORT
            inodes.add(f"socket:[{f[9]}]")
try:
    fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
except OSError:
    sys.exit(1)
sys.exit(0 if inodes & fds else 1)
PY
}

"${own_group[@]}" gunicorn -c gunicorn.conf.py &
gunicorn_pid=$!

# 2. Wait until OUR gunicorn listens and answers; stop with its error if it dies first.
ready=""
for _ in $(seq 300); do
  if ! alive "$gunicorn_pid"; then
    status=0
    wait "$gunicorn_pid" || status=$?
    gunicorn_pid=""
    die "gunicorn exited (status $status) before answering on port $PORT: its error is above"
  fi
  if owns_port "$gunicorn_pid" &&
    python -c "import urllib.request; urllib.request.urlopen('$URL/healthz', timeout=1)" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.2
done
[ -n "$ready" ] || die "gunicorn did not answer on $URL/healthz within a minute"

HOST="$(python -c 'import re,socket; print(re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:128] or "localhost")')"
if [ ! -s var/agent-token ] || [ "$(cut -d' ' -f1 var/agent-token)" != "$HOST" ]; then
  python - "$URL" "$ADMIN" "$HOST" > var/agent-token.new <<'PY'
import json, sys, urllib.request
url, admin, host = sys.argv[1:]
req = urllib.request.Request(url + "/api/v1/tokens", data=json.dumps({"role": "agent", "host": host}).encode(),
                             headers={"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
print(host, json.load(urllib.request.urlopen(req, timeout=30))["token"])
PY
  mv var/agent-token.new var/agent-token
fi
# A reader token for the web page's link: the one kept in var/reader-token while the server still
# knows it (the metadata file may have been removed since), else a new one.
python - "$URL" "$ADMIN" <<'PY'
import json, os, sys, urllib.request
url, admin = sys.argv[1:]
path = "var/reader-token"
try:  # still known: keep it (an unknown one answers 401, which urlopen raises)
    kept = open(path).read().strip()
    check = urllib.request.Request(url + "/api/v1/hosts", headers={"Authorization": "Bearer " + kept})
    urllib.request.urlopen(check, timeout=30)
    sys.exit(0)
except OSError:  # no file, or an HTTP error
    pass
req = urllib.request.Request(url + "/api/v1/tokens", data=json.dumps({"role": "reader"}).encode(),
                             headers={"Authorization": "Bearer " + admin, "Content-Type": "application/json"})
with open(path + ".new", "w") as f:
    f.write(json.load(urllib.request.urlopen(req, timeout=30))["token"] + "\n")
os.replace(path + ".new", path)
PY
READER="$(cat var/reader-token)"

FLEETPULSE_URL="$URL" FLEETPULSE_TOKEN="$(cut -d' ' -f2 var/agent-token)" FLEETPULSE_HOST="$HOST" \
  FLEETPULSE_SPOOL_DIR="$PWD/var/spool" "${own_group[@]}" python -m agent &
agent_pid=$!

cat <<MSG

fleetpulse is running at $URL  (embedded SQLite: ${FLEETPULSE_STORAGE_URL#sqlite://})
An agent is reporting this machine as host "$HOST"; its first 30-second windows land within a minute.

  the web page:  $URL/#token=$READER
                 (signs in with a reader token, kept in var/reader-token; or open $URL/ and paste it)

  admin token:   $ADMIN   (kept in var/admin-token)
  a reader token:
    curl -s -X POST $URL/api/v1/tokens -H "Authorization: Bearer \$(cat var/admin-token)" \\
         -H 'Content-Type: application/json' -d '{"role": "reader"}'
  this machine:  curl -s -H "Authorization: Bearer \$(cat var/admin-token)" $URL/api/v1/hosts/$HOST
  a series:      curl -s -H "Authorization: Bearer \$(cat var/admin-token)" \\
                   "$URL/api/v1/series?host=$HOST&metric=cpu.percent&tag.cpu=total&start=\$(( \$(date +%s) - 600 ))&end=\$(date +%s)"
  API description: $URL/api/v1/openapi.json

Ctrl-C stops both (the agent first, so it sends what it holds; then the server).
MSG

# Until gunicorn ends, or a signal comes (the traps stop both, the agent first).
status=0
wait "$gunicorn_pid" || status=$?
gunicorn_pid=""
echo "run-local: gunicorn exited (status $status)" >&2
exit "$status"
