#!/usr/bin/env bash
# Benchmark (2): N busybox `sleep` containers started five ways on the same engine, in one run:
#   (a) `docker run -d`, P at a time (the parallelism Cube's dispatcher uses per worker);
#   (b) `docker service create --replicas N` on a single-node swarm of the same engine;
#   (c) Cube: `cube-manager --dev` (one embedded Docker worker), N tasks submitted P at a time;
#   (d) Cube as a cluster is run: a manager serving TLS only, a `cube-worker` that joins it with a
#       worker token and speaks mTLS, `cubectl` calling with an admin token; the same N tasks;
#   (e) Cube: `cube-manager --dev` again, one `cubectl service create --replicas N`.
# Each is timed from the first request until all N containers run: for (a) when the last
# `docker run -d` returns, for (b) when `docker service ps` shows N running, for (c) when the
# manager reports N tasks RUNNING (what a user of Cube sees); (d) and (e) as (c).
#
# The five take turns for R rounds; the table gives each one's median and every round.
#
# Usage: bench/containers.sh [N] [P] [R]      (defaults: 50 8 5)
# CUBE_BENCH_NO_BUILD=1 uses the binaries already in target/release (CUBE_BENCH_BIN: another
# folder of binaries, e.g. target/debug, for a rough number without a release build).
# Writes the table to bench/RESULTS.md (section "Containers end to end") and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
P=${2:-8}
ROUNDS=${3:-5}
IMAGE=cube-test/busybox:latest
LABEL=cube.bench=containers

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l | xargs printf '%.2f'; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
# Removes every container carrying the label $1 (key=value).
rm_labelled() {
  local ids; ids=$(docker ps -aq --filter "label=$1")
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
}
cleanup() {
  docker service rm cube-bench >/dev/null 2>&1 || true
  docker swarm leave --force >/dev/null 2>&1 || true
  rm_labelled "$LABEL"
  rm_labelled cube.worker=bench-worker
  # Each round's manager and worker run in a subshell (its time is captured), so they leave
  # their pids here.
  for pid in "$STATE/worker.pid" "$STATE/manager.pid"; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  rm -rf "$STATE"
}
STATE=$(mktemp -d)
trap cleanup EXIT

command -v bc >/dev/null || { echo "bench needs bc (apt-get install bc)"; exit 1; }
bench/build-image.sh
[ -n "${CUBE_BENCH_NO_BUILD:-}" ] || cargo build --release --quiet --bin cube-manager --bin cube-worker --bin cubectl
BIN=${CUBE_BENCH_BIN:-target/release}

run_raw() {
  local start; start=$(now)
  seq "$N" | xargs -P "$P" -I{} docker run -d --label "$LABEL" "$IMAGE" sleep 300 >/dev/null
  local took; took=$(elapsed "$start" "$(now)")
  local running; running=$(docker ps -q --filter "label=$LABEL" | wc -l)
  [ "$running" -eq "$N" ] || { echo "only $running of $N raw containers run" >&2; exit 1; }
  rm_labelled "$LABEL"
  echo "$took"
}

run_swarm() {
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  local start; start=$(now)
  docker service create --detach --quiet --no-resolve-image --name cube-bench \
    --replicas "$N" --container-label "$LABEL" "$IMAGE" sleep 300 >/dev/null
  while [ "$(docker service ps cube-bench --filter desired-state=running --format '{{.CurrentState}}' | grep -c '^Running')" -lt "$N" ]; do
    sleep 0.05
  done
  local took; took=$(elapsed "$start" "$(now)")
  docker service rm cube-bench >/dev/null
  docker swarm leave --force >/dev/null
  # Swarm removes its containers asynchronously; wait so the next run starts on a quiet engine.
  while [ -n "$(docker ps -aq --filter "label=$LABEL")" ]; do sleep 0.2; done
  echo "$took"
}

# Starts the manager ($1 = dev: `--dev` with its embedded worker; secure: TLS, tokens and a
# separate `cube-worker` joined with a worker token), and exports what cubectl needs.
start_cube() {
  local DATA="$STATE/cube"
  mkdir -p "$DATA"
  if [ "$1" = dev ]; then
    "$BIN/cube-manager" --dev --dev-worker-name bench-worker --listen 127.0.0.1:0 \
      --data-dir "$DATA" >"$DATA/out" 2>"$DATA/log" &
  else
    "$BIN/cube-manager" --listen 127.0.0.1:0 --data-dir "$DATA" >"$DATA/out" 2>"$DATA/log" &
  fi
  echo "$!" >"$STATE/manager.pid"
  for _ in $(seq 100); do grep -q '^listening on' "$DATA/out" 2>/dev/null && break; sleep 0.1; done
  local address; address=$(sed -n 's/^listening on //p' "$DATA/out")
  if [ "$1" = dev ]; then
    export CUBE_MANAGER=http://$address
    unset CUBE_TOKEN
  else
    export CUBE_MANAGER=https://$address
    CUBE_TOKEN=$("$BIN/cube-manager" token admin --data-dir "$DATA")
    export CUBE_TOKEN
    "$BIN/cube-worker" --name bench-worker --listen 127.0.0.1:0 --data-dir "$DATA/worker" \
      --manager "$CUBE_MANAGER" \
      --join-token "$("$BIN/cube-manager" token worker --data-dir "$DATA")" \
      >"$DATA/worker.out" 2>"$DATA/worker.log" &
    echo "$!" >"$STATE/worker.pid"
  fi
  # Wait for the worker to be READY before the clock starts.
  for _ in $(seq 100); do "$BIN/cubectl" nodes 2>/dev/null | grep -q READY && break; sleep 0.1; done
  "$BIN/cubectl" nodes | grep -q READY || { echo "the $1 worker never became READY" >&2; exit 1; }
}
stop_cube() {
  local pid
  for pid in "$STATE/worker.pid" "$STATE/manager.pid"; do
    [ -f "$pid" ] || continue
    kill "$(cat "$pid")" 2>/dev/null || true
    while kill -0 "$(cat "$pid")" 2>/dev/null; do sleep 0.05; done
    rm -f "$pid"
  done
  rm_labelled cube.worker=bench-worker
  rm -rf "$STATE/cube"
}
# Cube on cluster $1 (see start_cube), with $2 = tasks (N `cubectl run`, P at a time) or
# service (one service of N replicas).
run_cube() {
  start_cube "$1" >&2
  local start; start=$(now)
  if [ "$2" = service ]; then
    "$BIN/cubectl" service create --detach --name cube-bench --replicas "$N" --image "$IMAGE" \
      -- sleep 300 >/dev/null
  else
    seq "$N" | xargs -P "$P" -I{} "$BIN/cubectl" run --image "$IMAGE" -- sleep 300 >/dev/null
  fi
  while [ "$("$BIN/cubectl" status --state running -o json | grep -c '"id"')" -lt "$N" ]; do
    sleep 0.05
  done
  local took; took=$(elapsed "$start" "$(now)")
  stop_cube
  echo "$took"
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

# The five ways take turns, so a slow spell of the machine falls on all of them.
raws=(); swarms=(); cubes=(); secures=(); services=()
for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS: $N containers, $P at a time"
  raws+=("$(run_raw)");     echo "   (a) docker run -d:        ${raws[-1]} s"
  swarms+=("$(run_swarm)"); echo "   (b) docker service create: ${swarms[-1]} s"
  cubes+=("$(run_cube dev tasks)");       echo "   (c) Cube --dev:            ${cubes[-1]} s"
  secures+=("$(run_cube secure tasks)"); echo "   (d) Cube, TLS and tokens:  ${secures[-1]} s"
  services+=("$(run_cube dev service)"); echo "   (e) Cube service create:   ${services[-1]} s"
done
raw=$(median "${raws[@]}"); swarm=$(median "${swarms[@]}"); cube=$(median "${cubes[@]}")
secure=$(median "${secures[@]}"); service=$(median "${services[@]}")

cores=$(nproc); mem=$(free -g | awk '/^Mem:/{print $2}')
table=$(cat <<EOF
## Containers end to end

$N busybox \`sleep\` containers on one engine ($(docker version --format '{{.Server.Version}}')), $cores cores, ${mem} GiB; $(date -u +%Y-%m-%d).
Command: \`bench/containers.sh $N $P $ROUNDS\` (the five take turns, $ROUNDS rounds).

| how | all $N running after, median of $ROUNDS | ratio | every round |
|---|---|---|---|
| (a) \`docker run -d\`, $P at a time | ${raw} s | 1.00 | ${raws[*]} |
| (b) \`docker service create --replicas $N\` | ${swarm} s | $(ratio "$swarm" "$raw") | ${swarms[*]} |
| (c) Cube (\`cube-manager --dev\`, one worker), $P \`cubectl run\` at a time | ${cube} s | $(ratio "$cube" "$raw") | ${cubes[*]} |
| (d) Cube with TLS and tokens (manager, a joined \`cube-worker\`, an admin token), the same | ${secure} s | $(ratio "$secure" "$raw") | ${secures[*]} |
| (e) Cube (\`cube-manager --dev\`), one \`cubectl service create --replicas $N\` | ${service} s | $(ratio "$service" "$raw") | ${services[*]} |

Cube/raw = $(ratio "$cube" "$raw"), Cube/Swarm = $(ratio "$cube" "$swarm"); TLS and tokens cost $(ratio "$secure" "$cube") times plaintext --dev; Cube service/Swarm service = $(ratio "$service" "$swarm").
EOF
)
echo
echo "$table"
bench/record.sh "Containers end to end" "$table"
