#!/usr/bin/env bash
#
# Redirect throughput: the module against a bare `return 302`, same nginx,
# same run, one worker, wrk on loopback.  Prints requests/s of each and the
# ratio.  Nothing here is asserted; the numbers go into notes and issues.
#
#   bench/run.sh [links=10000] [seconds=10] [connections=50]
#
# This measures the PostgreSQL path (every request is a lookup): the
# cache tiers are not built yet.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../build.sh
. "$BENCH_DIR/../build.sh"

LINKS=${1:-10000}
SECONDS_PER_RUN=${2:-10}
CONNS=${3:-50}

install_packages
build_module

trap stop_services EXIT
trap 'exit 130' INT TERM

start_services 16432

psql -X -q "$SHORTLINK_DSN" -c "
    INSERT INTO shortlink.links (code, url)
    SELECT 'b' || i, 'https://example.com/target/' || i
      FROM generate_series(1, $LINKS) AS i;
    ANALYZE shortlink.links;"

PORT=$(free_port 18080)
NGX=$RUN_DIR/nginx
mkdir -p "$NGX/logs" "$NGX/conf"

cat > "$NGX/conf/nginx.conf" <<CONF
load_module $MODULE_SO;
daemon off;
worker_processes 1;
worker_rlimit_nofile 4096;
error_log $NGX/logs/error.log warn;
pid $NGX/logs/nginx.pid;
events { worker_connections 2048; }
http {
    access_log off;
    client_body_temp_path $NGX/body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    keepalive_requests 1000000;

    shortlink_postgres "$SHORTLINK_DSN" pool=8;

    server {
        listen 127.0.0.1:$PORT;
        location /plain/ { return 302 https://example.com/target/1; }
        location / { shortlink; }
    }
}
CONF

/usr/sbin/nginx -p "$NGX/" -c "$NGX/conf/nginx.conf" &
NGINX_PID=$!
sleep 0.5

cat > "$RUN_DIR/random.lua" <<LUA
local n = $LINKS
local prefix = "/"
function init(args)
    if args[1] then prefix = args[1] end
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
request = function()
    return wrk.format("GET", prefix .. "b" .. math.random(n))
end
LUA

run_wrk() {   # name, path prefix -> requests/s
    local out rps non3xx
    out=$(wrk -t1 -c"$CONNS" -d"${SECONDS_PER_RUN}s" -s "$RUN_DIR/random.lua" \
              "http://127.0.0.1:$PORT/" -- "$2" 2>&1)
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
    non3xx=$(awk '/Non-2xx or 3xx/ { print $5 }' <<<"$out")
    printf '%-28s %12s req/s  (non-2xx/3xx: %s)\n' "$1" "$rps" "${non3xx:-0}" >&2
    echo "$rps"
}

# warm-up: connections opened, pages faulted in
wrk -t1 -c"$CONNS" -d2s -s "$RUN_DIR/random.lua" "http://127.0.0.1:$PORT/" \
    >/dev/null 2>&1 || true

plain=$(run_wrk "return 302" /plain/)
module=$(run_wrk "shortlink (PostgreSQL)" /)

awk -v a="$module" -v b="$plain" \
    'BEGIN { printf "ratio shortlink/return-302:  %.3f\n", a / b }'

grep -E '\[(alert|crit|error)\]' "$NGX/logs/error.log" | head -5 >&2 || true
