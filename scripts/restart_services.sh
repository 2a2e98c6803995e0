#!/usr/bin/env bash
# Restart the emotional_chat backend: the default RESTART_COMMAND of `invoke app.restart` and deploys.
# Stops the service named by the pid file, starts `python3 -m backend.app` in the background.
#   APP_PID_FILE  pid file (default .run/app.pid)      APP_LOG_FILE  its output (default .run/app.log)
#   PYTHON        interpreter (default python3)
# The service reads its settings (and the password) from config.env itself: none pass through here.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
pid_file="${APP_PID_FILE:-.run/app.pid}"
log_file="${APP_LOG_FILE:-.run/app.log}"
mkdir -p "$(dirname "$pid_file")" "$(dirname "$log_file")"

# A stale pid may belong to another program by now; a zombie has an empty cmdline.
is_our_app() {
    [[ "$1" =~ ^[0-9]+$ ]] && grep -qa 'backend\.app' "/proc/$1/cmdline" 2>/dev/null
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

nohup "${PYTHON:-python3}" -m backend.app </dev/null >>"$log_file" 2>&1 &
new_pid=$!
echo "$new_pid" >"$pid_file"
# Report a service that dies at once (port taken, bad config) here rather than as a failed health check.
sleep 0.3
if ! is_our_app "$new_pid"; then
    echo "the app exited at once: $(tail -n 1 "$log_file")" >&2
    exit 1
fi
echo "started app (pid $new_pid), log in $log_file"
