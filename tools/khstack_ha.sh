# khstack_ha.sh: the high-availability platform of 'khstack up --ha DIR'
# (issue 12), sourced by tools/khstack; do not run it. In DIR/ha:
#   etcd      one member: Patroni's consensus store (client BASE+30, peer BASE+31)
#   pg1, pg2  PostgreSQL 15 under Patroni (REST BASE+32/+33, PostgreSQL BASE+34/+35 on
#             127.0.0.1 for replication, and a socket in pgN/run as in khdb):
#             one primary and one synchronous standby (synchronous_mode), so an
#             acknowledged commit is on both; Patroni promotes the standby when
#             the primary's node is lost and restarts a PostgreSQL that crashed.
#             Cluster 1 (Patroni scope kakehashi): the router's database, gw-a's
#             and gw-b's (with the operators' tables)
#   pg3, pg4  cluster 2, the same kind of pair (scope kakehashi2, REST BASE+36/+37,
#             PostgreSQL BASE+38/+39): the database kh_gw_b2 of gw-b's tenant
#             S00001 (tenant_db), to show tenants spread over clusters
#   haproxy   TCP mode, mutual TLS passing through to the nodes: gw-a's business
#             listeners (nodes 1 and 2) on BASE+41, gw-b's on BASE+42, each node
#             checked with GET /ready on its health port every second
# The gateways and the router connect with libpq multi-host strings (both
# sockets, target_session_attrs=read-write) and follow a failover without a
# restart. Everything listens on 127.0.0.1 only; the servers run as
# $KH_PGUSER (PostgreSQL refuses root), as in khdb.

HA_PKGS="patroni etcd-server haproxy"

ha_set() {
    HA_DIR=$DIR/ha
    ETCD_CLIENT=$((BASE + 30)) ETCD_PEER=$((BASE + 31))
    LB_A=$((BASE + 41)) LB_B=$((BASE + 42))
    PGUSER_SRV=${KH_PGUSER:-postgres}
    AS_PG=(setpriv --reuid="$PGUSER_SRV" --regid="$PGUSER_SRV" --init-groups)
}

# as_pg CMD...: as the server user, in HA_DIR (setpriv execs CMD itself: a
# pid file names the server, and a signal reaches it)
as_pg() { (cd "$HA_DIR" && exec "${AS_PG[@]}" "$@"); }

ha_secret() { # NAME: a random password kept in HA_DIR/NAME.password (0600, server user)
    local f=$HA_DIR/$1.password
    [ -s "$f" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$f")
    chown "$PGUSER_SRV:" "$f"
    cat "$f"
}

# The nodes N of each cluster C (1: pg1 pg2, 2: pg3 pg4) and their ports.
ha_nodes() { if [ "${1:-1}" = 2 ]; then echo 3 4; else echo 1 2; fi; }
ha_cluster_of() { if [ "$1" -ge 3 ]; then echo 2; else echo 1; fi; }
ha_rest_port() { if [ "$1" -ge 3 ]; then echo $((BASE + 33 + $1)); else echo $((BASE + 31 + $1)); fi; }
ha_pg_port() { if [ "$1" -ge 3 ]; then echo $((BASE + 35 + $1)); else echo $((BASE + 33 + $1)); fi; }
ha_scope() { if [ "${1:-1}" = 2 ]; then echo kakehashi2; else echo kakehashi; fi; }

ha_patroni_conf() { # N: HA_DIR/pgN.yml
    local n=$1 rest pg
    rest=$(ha_rest_port "$n") pg=$(ha_pg_port "$n")
    cat >"$HA_DIR/pg$n.yml" <<EOF
# written by tools/khstack up --ha
scope: $(ha_scope "$(ha_cluster_of "$n")")
namespace: /kakehashi/
name: pg$n
restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest
etcd3:
  hosts: 127.0.0.1:$ETCD_CLIENT
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    primary_start_timeout: 0
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_log_hints: "on"
        max_connections: 120
        shared_buffers: 128MB
        timezone: Asia/Tokyo
        fsync: "on"
        synchronous_commit: "on"
  initdb:
    - encoding: UTF8
    - locale: C
    - username: khadmin
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all khadmin 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:$pg
  connect_address: 127.0.0.1:$pg
  data_dir: $HA_DIR/pg$n/data
  pgpass: $HA_DIR/pg$n/pgpass
  bin_dir: $(ha_bindir)
  use_unix_socket: true
  parameters:
    unix_socket_directories: $HA_DIR/pg$n/run
    unix_socket_permissions: "0700"
  authentication:
    superuser:
      username: khadmin
      password: $(ha_secret superuser)
    replication:
      username: replicator
      password: $(ha_secret replication)
EOF
    chown "$PGUSER_SRV:" "$HA_DIR/pg$n.yml"
    chmod 600 "$HA_DIR/pg$n.yml"
}

ha_haproxy_conf() {
    cat >"$HA_DIR/haproxy.cfg" <<EOF
# written by tools/khstack up --ha: TCP mode, so mutual TLS is between the
# business system and the node; a node is in while its GET /ready says 200.
# When no node is ready (the database is failing over) the "last" servers,
# unchecked, take the connections: the business system then hears the
# gateway's own refusal (503 KH-5002, retry) instead of a closed connection.
# A connection a node refuses (it has just died, not yet marked down) is
# retried on another node (redispatch) instead of failing the client
global
    maxconn 2000
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    default-server inter 1s fall 2 rise 2
    option allbackups
    retries 2
    option redispatch 1
frontend gw_a_business
    bind 127.0.0.1:$LB_A
    default_backend gw_a_business
backend gw_a_business
    option httpchk GET /ready
    http-check expect status 200
    server gw-a1 127.0.0.1:$A_BIZ check port $A_HEALTH
    server gw-a2 127.0.0.1:$(node_port gw-a 2 1) check port $(node_port gw-a 2 4)
    server gw-a1-last 127.0.0.1:$A_BIZ backup
    server gw-a2-last 127.0.0.1:$(node_port gw-a 2 1) backup
frontend gw_b_business
    bind 127.0.0.1:$LB_B
    default_backend gw_b_business
backend gw_b_business
    option httpchk GET /ready
    http-check expect status 200
    server gw-b1 127.0.0.1:$B_BIZ check port $B_HEALTH
    server gw-b2 127.0.0.1:$(node_port gw-b 2 1) check port $(node_port gw-b 2 4)
    server gw-b1-last 127.0.0.1:$B_BIZ backup
    server gw-b2-last 127.0.0.1:$(node_port gw-b 2 1) backup
EOF
}

# ha_start NAME READY-CMD CMD...: CMD in the background (log LOGS/NAME.log,
# pid RUNS/NAME.pid) unless it runs, then until READY-CMD succeeds (30 s)
ha_start() {
    local name=$1 ready=$2 pidf=$RUNS/$1.pid log=$LOGS/$1.log
    shift 2
    if ! { [ -f "$pidf" ] && alive "$(cat "$pidf")"; }; then
        [ ! -s "$log" ] || mv "$log" "$log.$(date +%s%N)"
        (cd "$HA_DIR" && exec setsid "$@" >>"$log" 2>&1 </dev/null) &
        echo $! >"$pidf"
    fi
    for _ in $(seq 1 300); do
        eval "$ready" && return 0
        alive "$(cat "$pidf")" || { tail -n 5 "$log" >&2; kh_die "$name exited at start (log $log)"; }
        sleep 0.1
    done
    tail -n 5 "$log" >&2
    kh_die "$name did not become ready (log $log)"
}

# ha_role N: what Patroni's REST API of node N says its PostgreSQL is
# (master or primary, replica) while it runs, else "down"
ha_role() {
    python3 - "$(ha_rest_port "$1")" <<'EOF' 2>/dev/null || echo down
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/patroni", timeout=2) as r:
    d = json.load(r)
print(d.get("role", "down") if d.get("state") == "running" else "down")
EOF
}

# ha_primary [C]: PG (khdb's folder) and KH_PGPORT of the node of cluster C
# (default 1) that is primary now
# shellcheck disable=SC2120 # khstack passes C
ha_primary() {
    local n
    for _ in $(seq 1 300); do
        for n in $(ha_nodes "${1:-1}"); do
            if [ "$(ha_role $n)" = primary ] || [ "$(ha_role $n)" = master ]; then
                # shellcheck disable=SC2034 # khstack's cluster folder
                PG=$HA_DIR/pg$n
                KH_PGPORT=$(ha_pg_port $n)
                export KH_PGPORT
                return 0
            fi
        done
        sleep 0.1
    done
    kh_die "no PostgreSQL primary in cluster ${1:-1} of $HA_DIR after 30 s (logs: $LOGS/pg*.log)"
}

# ha_conn DB ROLE [C]: the libpq string of a gateway or the router: both
# nodes of cluster C (default 1), the primary
ha_conn() {
    local a b
    read -r a b <<<"$(ha_nodes "${3:-1}")"
    printf 'host=%s,%s port=%s,%s dbname=%s user=%s target_session_attrs=read-write' \
        "$HA_DIR/pg$a/run" "$HA_DIR/pg$b/run" "$(ha_pg_port "$a")" "$(ha_pg_port "$b")" "$1" "$2"
}

ha_sync_standby() { # [C]: true once the other node of cluster C is a synchronous standby
    python3 - "$(ha_rest_port "$(ha_nodes "${1:-1}" | cut -d' ' -f1)")" <<'EOF' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/cluster", timeout=2) as r:
    d = json.load(r)
roles = sorted(m.get("role") for m in d.get("members", []) if m.get("state") in ("running", "streaming"))
sys.exit(0 if roles == ["leader", "sync_standby"] else 1)
EOF
}

# ha_status [C]: one line per PostgreSQL node of cluster C (default 1): NAME
# ROLE STATE TIMELINE (Patroni's view)
ha_status() {
    local a b
    read -r a b <<<"$(ha_nodes "${1:-1}")"
    python3 - "$(ha_rest_port "$a")" "$(ha_rest_port "$b")" <<'EOF'
import json, sys, urllib.request
for port in sys.argv[1:]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cluster", timeout=2) as r:
            d = json.load(r)
    except Exception:
        continue
    for m in sorted(d.get("members", []), key=lambda m: m.get("name")):
        print(m.get("name"), m.get("role"), m.get("state"), m.get("timeline", "-"))
    break
else:
    sys.exit("no Patroni node answers")
EOF
}

ha_up() {
    ha_set
    KH_PKGS="$KH_PKGS $HA_PKGS" kh_deps
    mkdir -p "$HA_DIR/etcd" "$HA_DIR"/pg{1,2,3,4}/run
    : >"$DIR/ha.enabled"
    # the server user owns the servers' folders and must reach DIR (as khdb)
    chown -R "$PGUSER_SRV:" "$HA_DIR"
    chmod 700 "$HA_DIR" "$HA_DIR/etcd" "$HA_DIR"/pg{1,2,3,4} "$HA_DIR"/pg{1,2,3,4}/run
    chmod o+x "$DIR"
    local p=$DIR
    while [ "$p" != / ]; do
        p=$(dirname "$p")
        runuser -u "$PGUSER_SRV" -- test -x "$p" 2>/dev/null || chmod o+x "$p"
    done
    local n c
    for n in 1 2 3 4; do ha_patroni_conf $n; done
    ha_haproxy_conf
    ha_start etcd "kh_http_ok http://127.0.0.1:$ETCD_CLIENT/health" \
        "${AS_PG[@]}" etcd --name kh-etcd --data-dir "$HA_DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
        --initial-cluster "kh-etcd=http://127.0.0.1:$ETCD_PEER" --initial-cluster-state new \
        --log-level warn
    # in each cluster the first node first: it bootstraps (initdb) and
    # leads; the second then copies it
    for n in 1 3 2 4; do
        ha_start pg$n "[ \"\$(ha_role $n)\" != down ]" "${AS_PG[@]}" patroni "$HA_DIR/pg$n.yml"
    done
    for c in 1 2; do
        for _ in $(seq 1 600); do ha_sync_standby $c && break; sleep 0.1; done
        ha_sync_standby $c ||
            kh_die "no synchronous standby in cluster $c after 60 s (logs: $LOGS/pg*.log)"
    done
    ha_primary
}

ha_down() {
    ha_set
    stop_proc haproxy
    local n
    for n in 4 3 2 1; do
        stop_proc pg$n
        # a Patroni killed before it stopped its PostgreSQL leaves it running
        if [ -f "$HA_DIR/pg$n/data/postmaster.pid" ]; then
            as_pg "$(ha_bindir)/pg_ctl" -D "$HA_DIR/pg$n/data" -m fast -w stop >/dev/null 2>&1 || true
        fi
    done
    stop_proc etcd
}

ha_bindir() {
    local d
    for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
    done
    echo /usr/lib/postgresql/15/bin
}
