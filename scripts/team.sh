#!/usr/bin/env bash
# The team's server pieces, each started in the background with a pid file and a log in $TEAM,
# each waited for until it answers, each stopped on its own (docs/team.md says what and why).
#
#   scripts/team.sh postgres          PostgreSQL: initdb (first time), start, wait, createdb mlflow
#   scripts/team.sh ini               write $TEAM/basic_auth.ini (the auth cache included)
#   scripts/team.sh server            the MLflow server with basic auth; waits for /health
#   scripts/team.sh user NAME         add a team member; the password is read from $MEMBER_PASSWORD
#   scripts/team.sh ray-head          this machine's Ray head (token auth)
#   scripts/team.sh ray-node          a Ray node joining $RAY_HEAD:$RAY_PORT (token auth)
#   scripts/team.sh stop PIECE...     stop ray-node, ray-head, server or postgres (only this team's)
#   scripts/team.sh status            which pieces run
#
# Settings (environment): TEAM (the folder), PGPORT, MLFLOW_PORT, MLFLOW_HOST, MLFLOW_WORKERS,
# AUTH_CACHE_SECONDS, RAY_PORT, RAY_HEAD, RAY_CPUS; MLFLOW_AUTH_ADMIN_PASSWORD and
# MLFLOW_FLASK_SERVER_SECRET_KEY for the server; RAY_AUTH_MODE=token and RAY_AUTH_TOKEN for Ray.
set -euo pipefail

TEAM=${TEAM:-/srv/fmtrain-team}
PGPORT=${PGPORT:-5432}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_HOST=${MLFLOW_HOST:-127.0.0.1}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-4}
AUTH_CACHE_SECONDS=${AUTH_CACHE_SECONDS:-300}
RAY_PORT=${RAY_PORT:-6379}
RAY_HEAD=${RAY_HEAD:-127.0.0.1}
RAY_CPUS=${RAY_CPUS:-2}

say() { echo "team: $*"; }
die() { echo "team: error: $*" >&2; exit 1; }

# PostgreSQL's programs, whatever the installed major version (the newest when several are).
pg_bin() {
  local bin
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
    bin=$(pg_config --bindir)
  else
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  fi
  [ -n "$bin" ] && [ -x "$bin/initdb" ] || die "PostgreSQL's initdb not found: install Debian's postgresql package"
  echo "$bin"
}

# PostgreSQL refuses to run as root: as root, its programs run as the postgres user.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not answer within $seconds s"
    sleep 0.5
  done
}

alive() { [ -f "$1" ] && kill -0 "$(head -1 "$1")" 2>/dev/null; }

postgres_start() {
  local bin
  bin=$(pg_bin)
  mkdir -p "$TEAM"
  [ "$(id -u)" -ne 0 ] || chown postgres "$TEAM"
  if [ ! -f "$TEAM/pg/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$TEAM/pg" -U postgres -A trust >"$TEAM/initdb.log"
  fi
  if ! as_postgres "$bin/pg_ctl" -D "$TEAM/pg" status >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" -D "$TEAM/pg" -l "$TEAM/postgres.log" -w -t 120 \
      -o "-p $PGPORT -k $TEAM -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  fi
  wait_for 120 "PostgreSQL on port $PGPORT" pg_isready -q -h 127.0.0.1 -p "$PGPORT"
  if ! as_postgres "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -lqt | cut -d'|' -f1 | grep -qw mlflow; then
    as_postgres "$bin/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres mlflow
  fi
  say "PostgreSQL ready on 127.0.0.1:$PGPORT (log $TEAM/postgres.log)"
}

write_ini() {
  mkdir -p "$TEAM"
  cat >"$TEAM/basic_auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = sqlite:///$TEAM/basic_auth.db
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = $AUTH_CACHE_SECONDS
EOF
  say "wrote $TEAM/basic_auth.ini"
}

server_start() {
  [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ] || die "set MLFLOW_AUTH_ADMIN_PASSWORD (the admin's password)"
  [ -n "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ] || die "set MLFLOW_FLASK_SERVER_SECRET_KEY (any long random string)"
  [ -f "$TEAM/basic_auth.ini" ] || write_ini
  if alive "$TEAM/mlflow.pid"; then say "the MLflow server runs already (pid $(cat "$TEAM/mlflow.pid"))"; return; fi
  # setsid: the server and its workers form one process group, which `stop server` ends.
  # MLflow's job runner (7 consumers, about 1.7 GB) runs GenAI jobs, which fmtrain never sends: off.
  # A database pool as large as the worker's request threads (40): no request waits 30 s for a
  # connection and fails when the machine is busy.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
  MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=${MLFLOW_SQLALCHEMYSTORE_POOL_SIZE:-20} \
  MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=${MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW:-20} \
  MLFLOW_AUTH_CONFIG_PATH="$TEAM/basic_auth.ini" setsid nohup mlflow server --app-name basic-auth \
    --backend-store-uri "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/mlflow" \
    --artifacts-destination "$TEAM/artifacts" --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" \
    --workers "$MLFLOW_WORKERS" >"$TEAM/mlflow.log" 2>&1 </dev/null &
  echo $! >"$TEAM/mlflow.pid"
  # A new database: MLflow creates its tables first (about a minute).
  wait_for 600 "the MLflow server on port $MLFLOW_PORT" curl -sf "http://127.0.0.1:$MLFLOW_PORT/health"
  say "MLflow server ready on http://$MLFLOW_HOST:$MLFLOW_PORT (pid $(cat "$TEAM/mlflow.pid"), log $TEAM/mlflow.log)"
}

add_user() {
  local name=${1:?usage: team.sh user NAME (password in MEMBER_PASSWORD)}
  [ -n "${MEMBER_PASSWORD:-}" ] || die "set MEMBER_PASSWORD (the new member's password)"
  MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD="$MLFLOW_AUTH_ADMIN_PASSWORD" python -c \
    "import os, sys, mlflow.server; mlflow.server.get_app_client('basic-auth', tracking_uri=sys.argv[1]).create_user(sys.argv[2], os.environ['MEMBER_PASSWORD'])" \
    "http://127.0.0.1:$MLFLOW_PORT" "$name"
  say "user $name added"
}

ray_start() {  # ray_start NAME ARGS...: a node with its own temporary folder, pid file and log
  local name=$1
  shift
  [ "${RAY_AUTH_MODE:-}" = token ] && [ -n "${RAY_AUTH_TOKEN:-}" ] \
    || die "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (the cluster's token) first"
  if alive "$TEAM/$name.pid"; then say "$name runs already (pid $(cat "$TEAM/$name.pid"))"; return; fi
  mkdir -p "$TEAM/$name"
  RAY_USAGE_STATS_ENABLED=0 setsid nohup ray start --block --temp-dir "$TEAM/$name" "$@" \
    >"$TEAM/$name.log" 2>&1 </dev/null &
  echo $! >"$TEAM/$name.pid"
  wait_for 300 "$name" grep -q "Ray runtime started" "$TEAM/$name.log"
  say "$name started (pid $(cat "$TEAM/$name.pid"), log $TEAM/$name.log)"
}

stop_group() {  # stop_group NAME [SIGNAL]: end the process group in $TEAM/NAME.pid, then what is left
  local file="$TEAM/$1.pid" signal=${2:-TERM} pid
  [ -f "$file" ] || { say "$1 is not running"; return; }
  pid=$(head -1 "$file")
  kill "-$signal" -- "-$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$file"
  say "$1 stopped"
}

stop_ray() {  # this node's processes only: its group, then any process under its temporary folder
  local name=$1 pid
  stop_group "$name"
  for pid in $(grep -l -s -F "$TEAM/$name" /proc/[0-9]*/cmdline | cut -d/ -f3); do
    kill -KILL "$pid" 2>/dev/null || true
  done
}

case "${1:-}" in
  postgres) postgres_start ;;
  ini) write_ini ;;
  server) server_start ;;
  user) shift; add_user "$@" ;;
  ray-head)
    ray_start ray-head --head --node-ip-address "$RAY_HEAD" --port "$RAY_PORT" --num-cpus "$RAY_CPUS" \
      --include-dashboard=false --disable-usage-stats ;;
  ray-node)
    ray_start ray-node --address "$RAY_HEAD:$RAY_PORT" --num-cpus "$RAY_CPUS" --disable-usage-stats ;;
  stop)
    shift
    for piece in "$@"; do
      case "$piece" in
        ray-head|ray-node) stop_ray "$piece" ;;
        server) stop_group mlflow ;;
        postgres) as_postgres "$(pg_bin)/pg_ctl" -D "$TEAM/pg" -m fast -w stop >/dev/null && say "PostgreSQL stopped" ;;
        *) die "unknown piece $piece (ray-node, ray-head, server, postgres)" ;;
      esac
    done ;;
  status)
    pg_isready -q -h 127.0.0.1 -p "$PGPORT" && say "PostgreSQL: ready" || say "PostgreSQL: down"
    for name in mlflow ray-head ray-node; do
      alive "$TEAM/$name.pid" && say "$name: running (pid $(cat "$TEAM/$name.pid"))" || say "$name: not running"
    done ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
