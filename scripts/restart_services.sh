#!/usr/bin/env bash
# Restart the emotional_chat backend: the default RESTART_COMMAND of `invoke app.restart` and deploys.
# Stops the service named by the pid file, starts `python3 -m backend.app` in the background, and
# waits until it listens (it logs "serving URL") or exits, which is then reported with its cause.
#   APP_PID_FILE  pid file (default .run/app.pid)      APP_LOG_FILE  its output (default .run/app.log)
#   PYTHON        interpreter (default python3)        APP_START_SECONDS  wait at most this long (default 30)
# The service inherits what app.restart hands over: the password on the pipe named by
# MYSQL_PASSWORD_FD and APP_START_ID. Run by hand, it reads the password from config.env.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
pid_file="${APP_PID_FILE:-.run/app.pid}"
log_file="${APP_LOG_FILE:-.run/app.log}"
start_seconds="${APP_START_SECONDS:-30}"
mkdir -p "$(dirname "$pid_file")" "$(dirname "$log_file")"

# A stale pid may belong to another program by now; a zombie has an empty cmdline.
is_our_app() {
    [[ "$1" =~ ^[0-9]+$ ]] && grep -qa 'backend\.app' "/proc/$1/cmdline" 2>/dev/null
}
# Our child, before or after it has become the app, and not yet a zombie. (Its cmdline would not
# do: it reads empty for a moment while the child execs.)
running() {
    local state
    state="$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != "Z" ]]
}

old_pid="$(cat "$pid_file" 2>/dev/null || true)"
if is_our_app "$old_pid"; then
    kill -TERM "$old_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        is_our_app "$old_pid" || break
        sleep 0.1
    done
    if is_our_app "$old_pid"; then
        kill -KILL "$old_pid" 2>/dev/null || true
        echo "app (pid $old_pid) ignored SIGTERM for 10 s: killed"
    else
        echo "stopped app (pid $old_pid)"
    fi
fi

# What the new service logs starts after this offset.
log_start=$(( $(stat -c %s "$log_file" 2>/dev/null || echo 0) + 1 ))
new_log() { tail -c "+$log_start" "$log_file" 2>/dev/null || true; }

nohup "${PYTHON:-python3}" -m backend.app </dev/null >>"$log_file" 2>&1 &
new_pid=$!
echo "$new_pid" >"$pid_file"

deadline=$(( SECONDS + start_seconds ))
until new_log | grep -q '^serving '; do
    if ! running "$new_pid"; then
        cause="$(new_log | grep -v '^[[:space:]]*$' | tail -n 1 || true)"
        echo "the app exited before listening: ${cause:-nothing in $log_file}" >&2
        exit 1
    fi
    if (( SECONDS >= deadline )); then
        echo "the app (pid $new_pid) is not listening after $start_seconds s: see $log_file" >&2
        exit 1
    fi
    sleep 0.1
done
echo "started app (pid $new_pid), log in $log_file"
