#!/usr/bin/env bash
# How supervisord runs one platform service (infra/stack/supervisor.sh writes the command):
#
#   service-run.sh NAME STACK_ENV_FILE PID_FILE PYTHON
#
# Loads the stack's addresses and credentials from STACK_ENV_FILE at every (re)start, so a
# restarted service sees what `stack.sh up` last wrote, records its pid and becomes the
# service (exec), so the pid supervisord watches and signals is the service itself.
set -euo pipefail
name=$1 env_file=$2 pid_file=$3 python=$4
[[ -f $env_file ]] || { echo "service-run: $env_file missing" >&2; exit 1; }
set -a
# shellcheck disable=SC1090
source "$env_file"
set +a
printf '\n===== %s starting %s =====\n' "$(date -Is)" "$name"
echo $$ >"$pid_file"
exec "$python" -m "services.$name"
