#!/usr/bin/env bash
# Makes sure a docker daemon answers, for the container image's test: starts dockerd (vfs
# storage, which works inside another container) when none does. Silent when one answers;
# otherwise says why and exits 1. A daemon it starts is left running, its PID in
# ${CHR_VMM_DOCKERD_PID:-/tmp/chr-vmm-dockerd.pid}, for the caller to stop (scripts/test.sh does).
set -euo pipefail
pidfile=${CHR_VMM_DOCKERD_PID:-/tmp/chr-vmm-dockerd.pid}
rm -f "$pidfile"
docker info >/dev/null 2>&1 && exit 0
command -v dockerd >/dev/null || { echo "[dockerd] no dockerd: scripts/install-deps.sh installs docker.io" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "[dockerd] dockerd needs root" >&2; exit 1; }
log=${TMPDIR:-/tmp}/chr-vmm-dockerd.log
echo "[dockerd] starting dockerd (log: $log)" >&2
nohup dockerd --storage-driver=vfs </dev/null >"$log" 2>&1 &
echo $! > "$pidfile"
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "[dockerd] dockerd did not answer within 30 s; see $log" >&2
exit 1
