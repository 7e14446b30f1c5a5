#!/usr/bin/env bash
# Makes sure a Docker engine answers `docker info`, installing and starting one when needed.
#
#   bash scripts/ci/ensure-docker.sh
#
# - Engine already answering: does nothing.
# - Otherwise (root only): installs Debian's docker.io when dockerd is missing, starts `dockerd` in the
#   background with its output in $POSTERN_DOCKERD_LOG and waits up to $POSTERN_DOCKERD_TIMEOUT seconds
#   for `docker info`. No systemd is assumed (these machines have none).
# - Engine cannot be started: prints the tail of the dockerd log and exits non-zero. There is deliberately
#   no fallback to the machine's own PostgreSQL/Redis: tests run against containers or not at all.
#
# Environment:
#   POSTERN_DOCKERD_LOG      dockerd output (default /var/log/postern-dockerd.log)
#   POSTERN_DOCKERD_TIMEOUT  seconds to wait for the engine (default 60)
#   POSTERN_DOCKERD_PIDFILE  dockerd's pidfile (default /var/run/docker.pid); a live dockerd named there is
#                            waited for rather than started again
#   POSTERN_DOCKERD_ARGS     extra dockerd arguments, word-split (default none); with DOCKER_HOST and the
#                            two above this can point the script at a second, isolated engine
set -euo pipefail

log_file="${POSTERN_DOCKERD_LOG:-/var/log/postern-dockerd.log}"
timeout_s="${POSTERN_DOCKERD_TIMEOUT:-60}"
pid_file="${POSTERN_DOCKERD_PIDFILE:-/var/run/docker.pid}"

say() { echo "ensure-docker: $*" >&2; }
die() {
  say "ERROR: $*"
  if [ -s "$log_file" ]; then
    say "last 40 lines of $log_file:"
    tail -n 40 "$log_file" >&2
  fi
  exit 1
}
engine_up() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
report_up() { say "Docker engine is up (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"; }

if engine_up; then
  report_up
  exit 0
fi

[ "$(id -u)" = 0 ] || die "no Docker engine answers and starting one needs root (run as root, or start dockerd yourself)"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  say "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o Acquire::Retries=3 update -qq || die "apt-get update failed"
  # Recommends skipped on purpose (needrestart, git, apparmor are of no use here); cgroupfs-mount is kept
  # because there is no systemd to mount cgroups.
  apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends docker.io cgroupfs-mount ca-certificates xz-utils >/dev/null \
    || die "apt-get install docker.io failed"
fi

# A dockerd already running (Debian's package ships a SysV init script, its postinst may have started
# one; or one is still starting up) has its pid in the pidfile: wait for that one instead of racing it.
existing_pid=""
if [ -s "$pid_file" ]; then
  existing_pid="$(cat "$pid_file" 2>/dev/null || true)"
  case "$existing_pid" in
    '' | *[!0-9]*) existing_pid="" ;;
    *) [ "$(cat "/proc/$existing_pid/comm" 2>/dev/null || true)" = dockerd ] || existing_pid="" ;;
  esac
fi

if [ -z "$existing_pid" ]; then
  if ! mountpoint -q /sys/fs/cgroup 2>/dev/null && command -v cgroupfs-mount >/dev/null 2>&1; then
    say "mounting cgroups (cgroupfs-mount)"
    cgroupfs-mount || say "cgroupfs-mount failed; trying dockerd anyway"
  fi
  mkdir -p "$(dirname "$log_file")"
  say "starting dockerd (log: $log_file)"
  echo "=== ensure-docker: starting dockerd at $(date -u '+%Y-%m-%dT%H:%M:%SZ')" >>"$log_file"
  # shellcheck disable=SC2086  # POSTERN_DOCKERD_ARGS is a word list on purpose
  setsid dockerd --pidfile "$pid_file" ${POSTERN_DOCKERD_ARGS:-} >>"$log_file" 2>&1 </dev/null &
  dockerd_pid=$!
  say "dockerd pid $dockerd_pid"
else
  dockerd_pid="$existing_pid"
  say "dockerd pid $dockerd_pid (from $pid_file) is running already; waiting for it to answer"
fi

deadline=$((SECONDS + timeout_s))
until engine_up; do
  if [ -n "$dockerd_pid" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then
    die "dockerd (pid $dockerd_pid) exited before the engine answered"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    die "Docker engine did not answer within ${timeout_s}s"
  fi
  sleep 0.5
done
report_up
