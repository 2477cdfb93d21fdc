#!/usr/bin/env bash
# Smoke test of the README's first command (for .ci/run): `bash scripts/dev.sh` with the
# embedded Redis and PostgreSQL in a temporary state directory; waits for /health, logs
# in with the generated admin password, runs one task to success, then Ctrl-C (SIGINT)
# and expects exit status 0 with no process of the run left behind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3} # the checks need only the standard library
TIMEOUT=${DTQ_SMOKE_TIMEOUT:-180} # seconds, setup.sh included
# Under /tmp, not mktemp's private default: as root, PostgreSQL runs as another user.
BASE=$(mktemp -d /tmp/dtq-smoke.XXXXXX)
chmod 0711 "$BASE"
STATE=$BASE/state
LOG=$BASE/dev.log
PID=

fail() {
    echo "smoke-dev: FAILED: $*" >&2
    echo "---- last lines of the dtq dev output ----" >&2
    tail -n 60 "$LOG" >&2 || true
    exit 1
}

cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        # The job's process group: setup.sh's pip too, if it is still installing.
        kill -TERM -- "-$PID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$PID" 2>/dev/null || true
    fi
    rm -rf "$BASE"
}
trap cleanup EXIT

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Without a developer's settings, as on a fresh machine.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(DTQ_|AWS_)' || true)

# Job control: the run gets a process group of its own, and SIGINT is not ignored in it
# (as it would be in a background job of a script without job control).
set -m
bash scripts/dev.sh --embedded --workers 1 --port "$PORT" --state-dir "$STATE" >"$LOG" 2>&1 &
PID=$!

"$PYTHON" - "$PORT" "$STATE" "$TIMEOUT" "$PID" <<'PY' || fail "see above"
import json, os, sys, time, urllib.error, urllib.request

port, state, timeout, pid = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
url = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + timeout


def call(method, path, body=None, token=None):
    req = urllib.request.Request(url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def wait(what, check):
    while not check():
        if not os.path.exists(f"/proc/{pid}"):
            sys.exit(f"smoke-dev: dtq dev exited while waiting for {what}")
        if time.monotonic() > deadline:
            sys.exit(f"smoke-dev: timed out waiting for {what}")
        time.sleep(0.2)


wait("/health", lambda: call("GET", "/health")[0] == 200)
creds = dict(l.split("=", 1) for l in open(f"{state}/credentials") if "=" in l and l[0] != "#")
status, body = call("POST", "/auth/login",
                    {"username": "admin", "password": creds["DTQ_ADMIN_PASSWORD"].strip()})
assert status == 200, f"login: {status}"
token = body["access_token"]
status, task = call("POST", "/tasks", {"name": "dtq.echo", "payload": {"smoke": True}}, token)
assert status == 201, f"enqueue: {status}"
wait("the task to succeed",
     lambda: (call("GET", f"/tasks/{task['id']}", token=token)[1] or {}).get("status") == "succeeded")
print(f"smoke-dev: task {task['id']} succeeded")
PY

# The whole process tree of the run (its children run in sessions of their own, so
# they are found by parentage, not by process group).
descendants() {
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child $(cut -d' ' -f22 "/proc/$child/stat" 2>/dev/null)"
        descendants "$child"
    done
}
tree=$(descendants "$PID")
[[ -n $tree ]] || fail "dtq dev has no child processes"

kill -INT "$PID"
code=0
wait "$PID" || code=$?
PID=
[[ $code == 0 ]] || fail "dtq dev exited with status $code after SIGINT"
# Same pid and start time: the very process, not a newcomer that reused the pid; a
# zombie is already dead (only waiting for init to reap it).
leftovers() {
    local pid started stat
    while read -r pid started; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r -a fields <<<"$stat"
        if [[ ${fields[0]} != Z && ${fields[19]} == "$started" ]]; then
            printf ' %s (%s)' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
        fi
    done <<<"$tree"
}
for _ in $(seq 1 10); do
    left=$(leftovers)
    [[ -n $left ]] || break
    sleep 0.2 # a process may still be exiting as dtq dev returns
done
[[ -z $left ]] || fail "processes left behind:$left"
grep -q 'DTQ is up' "$LOG" || fail "no summary block in the output"
echo "smoke-dev: ok (started, ran one task, stopped cleanly)"
