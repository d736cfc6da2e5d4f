#!/usr/bin/env bash
#
# Redirect throughput of the module against a bare `return 302`, in the same
# run, the same nginx, one worker, wrk on loopback.  Prints requests/s for
# each case and its ratio to `return 302`.  Nothing here is asserted: the
# numbers go into notes and issues.
#
#   bench/run.sh [seconds=10] [connections=50]
#
# Cases (each on its own port of the same one-worker nginx):
#   return-302        location / { return 302 ...; }             the ceiling
#   hot-1k            1,000 codes, all in the shared-memory zone (L1)
#   rules             hot-1k with three redirect rules per link (device,
#                     language + country, query), none matching: every
#                     rule is evaluated, then the link's url (018)
#   wide-100k         100,000 codes, zone large enough to hold them all
#   unknown           random unknown codes, refused by the bloom filter; the
#                     PostgreSQL lookups made meanwhile are counted
#   redis-only        no zone: every request is a Redis GET (L2)
#   postgres-only     no zone, no Redis: every request is a PostgreSQL query
#   record            hot-1k with every click queued, nothing flushed during
#                     the run (a 1 GB queue, flush interval=1h): what
#                     recording a click costs the redirect itself
#   clicks            hot-1k with every click queued and flushed; then the
#                     backlog left is timed as it drains (flush rows/s)
#   flush             the flush alone: clicks queued while record_clicks()
#                     waits on a lock, then the backlog timed as it drains
#                     with nothing else running (rows/s into PostgreSQL)
#   sustained         60 s at full speed with clicks: redirects vs rows in
#                     PostgreSQL, drops, and the flush lag meanwhile
#   profile           a profile page of 20 entries from the zone
#                     (shortlink_profile) against the same bytes as a static
#                     file with the same headers, both in one nginx, one
#                     worker; the ratio printed is to the static file
#
# BENCH_FLUSH sets shortlink_flush for the click cases (default "interval=1s
# batch=5000", so parallel= is half of pool=8; e.g. BENCH_FLUSH="parallel=1").
# Set BENCH_CASES="hot-1k unknown" to run only some (default: all but
# sustained, which takes a few minutes).

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../build.sh
. "$BENCH_DIR/../build.sh"

SECONDS_PER_RUN=${1:-10}
CONNS=${2:-50}
CASES=${BENCH_CASES:-"hot-1k rules wide-100k unknown redis-only postgres-only record clicks flush"}
LINKS=100000
FLUSH=${BENCH_FLUSH:-"interval=1s batch=5000"}

install_packages
build_module

trap stop_services EXIT
trap 'exit 130' INT TERM

start_services 16432

psql -X -q "$SHORTLINK_DSN" -c "
    INSERT INTO shortlink.links (code, url)
    SELECT 'b' || i, 'https://example.com/target/' || i
      FROM generate_series(1, $LINKS) AS i;
    INSERT INTO shortlink.links (code, url, rules)
    SELECT 'r' || i, 'https://example.com/target/' || i, jsonb_build_array(
        jsonb_build_object('device', 'ios', 'url', 'https://example.com/ios/' || i),
        jsonb_build_object('language', 'de', 'country', 'AT',
                           'url', 'https://example.com/at/' || i),
        jsonb_build_object('query', jsonb_build_object('name', 'v', 'value', 'b'),
                           'url', 'https://example.com/b/' || i))
      FROM generate_series(1, 1000) AS i;
    ANALYZE shortlink.links;"

BASE=$(free_port 18080)
NGX=$RUN_DIR/nginx
mkdir -p "$NGX/logs" "$NGX/conf"

# one nginx per set of tiers, one worker each; the first also serves the
# bare `return 302` on $BASE
gen_conf() {   # name, port, tier directives...
    local name=$1 port=$2
    shift 2
    cat > "$NGX/conf/$name.conf" <<CONF
load_module $MODULE_SO;
daemon off;
worker_processes 1;
worker_cpu_affinity 01;
worker_rlimit_nofile 8192;
error_log $NGX/logs/$name.error.log warn;
pid $NGX/logs/$name.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGX/body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    keepalive_requests 10000000;

    shortlink_postgres "$SHORTLINK_DSN" pool=8;
$(printf '    %s\n' "$@")
    server {
        listen 127.0.0.1:$port;
        location / { shortlink; }
        location = /metrics { shortlink_metrics; }
    }
$( [ "$name" = all ] && printf '    server {\n        listen 127.0.0.1:%s;\n        location / { return 302 https://example.com/target/1; }\n    }\n' "$BASE")
}
CONF
}

gen_conf all $((BASE + 1)) \
    "shortlink_zone links:64m ttl=1h negative_ttl=10s;" \
    "shortlink_redis 127.0.0.1:$REDIS_PORT;" \
    "shortlink_bloom capacity=200000 error=0.001;" \
    'shortlink_rule_country $http_x_country;'
gen_conf redis $((BASE + 2)) "shortlink_redis 127.0.0.1:$REDIS_PORT;"
gen_conf pg $((BASE + 3))
gen_conf clicks $((BASE + 4)) \
    "shortlink_zone links:64m ttl=1h;" \
    "shortlink_queue clicks:32m;" \
    "shortlink_flush $FLUSH timeout=60s;"

gen_conf record $((BASE + 5)) \
    "shortlink_zone links:64m ttl=1h;" \
    "shortlink_queue clicks:1024m;" \
    "shortlink_flush interval=1h;"

NGINX_PIDS=()
for name in all redis pg clicks record; do
    /usr/sbin/nginx -p "$NGX/" -c "$NGX/conf/$name.conf" &
    NGINX_PIDS+=($!)
done
trap 'kill ${NGINX_PIDS[*]} 2>/dev/null; stop_services' EXIT
sleep 1

# nginx's worker runs on CPU 0 and wrk on CPU 1, so that the two never
# compete for one core (which made runs differ by 30%)
WRK="wrk"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    WRK="taskset -c 1 wrk"
fi

# lua for wrk: random codes from a range, or each code once in order
cat > "$RUN_DIR/codes.lua" <<'LUA'
local prefix, n, mode = "b", 1000, "random"
local i = 0
function init(args)
    prefix = args[1] or prefix
    n = tonumber(args[2] or n)
    mode = args[3] or mode
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
request = function()
    local k
    if mode == "seq" then
        i = i + 1
        k = i
    elseif prefix == "zz" then
        k = math.random(1, 2000000000)
    else
        k = math.random(n)
    end
    return wrk.format("GET", "/" .. prefix .. k)
end
LUA

wrk_rate() {   # port, prefix, n, mode, seconds, connections
    local out
    out=$($WRK -t1 -c"$6" -d"${5}s" -s "$RUN_DIR/codes.lua" \
              "http://127.0.0.1:$1/" -- "$2" "$3" "$4" 2>&1)
    awk '/^Requests\/sec/ { rps = $2 }
         /Non-2xx or 3xx/ { bad = $5 }
         END { printf "%s %s\n", rps, bad + 0 }' <<<"$out"
}

warm() {       # port, prefix, n: ask for every code once
    local c=$(( $3 < 100 ? 1 : 20 ))
    wrk -t1 -c"$c" -d"$(( $3 / 5000 + 2 ))s" -s "$RUN_DIR/codes.lua" \
        "http://127.0.0.1:$1/" -- "$2" "$3" seq >/dev/null 2>&1 || true
}

declare -A RATE

report() {     # case, port, prefix, n
    local r
    r=$(wrk_rate "$2" "$3" "$4" random "$SECONDS_PER_RUN" "$CONNS")
    RATE[$1]=${r% *}
    printf '%-14s %12s req/s  ratio %s  non-3xx %s\n' "$1" "${r% *}" \
        "$(awk -v a="${r% *}" -v b="${RATE[return-302]}" 'BEGIN { printf "%.3f", a / b }')" \
        "${r#* }"
}

# lookups sent to PostgreSQL, from the module's own counter
pg_lookups() {     # port
    curl -s "http://127.0.0.1:$1/metrics" \
        | awk '/^shortlink_postgresql_lookups_total / { print $2 }'
}

count_lookups() {  # port, command...
    local before after port=$1
    shift
    before=$(pg_lookups "$port")
    "$@"
    after=$(pg_lookups "$port")
    printf '%-14s PostgreSQL lookups during the run: %s\n' "" $((after - before))
}

profile_rate() {   # port, uri: requests/s and non-2xx over a third of the run
    $WRK -t1 -c"$CONNS" -d"$(( (SECONDS_PER_RUN + 2) / 3 ))s" \
         "http://127.0.0.1:$1$2" 2>&1 \
        | awk '/^Requests\/sec/ { rps = $2 } /Non-2xx/ { bad = $5 }
               END { printf "%s %s\n", rps, bad + 0 }'
}

# profile: one page of 20 entries, from the zone and as a static file with
# the same headers, in the same one-worker nginx (no click queue: views
# are not recorded, as redirects in hot-1k are not)
bench_profile() {
    local port=$((BASE + 6)) page=$NGX/html/static/bench.html a b round
    psql -X -q "$SHORTLINK_DSN" -c "
        UPDATE shortlink.links SET owner = 'bench'
         WHERE code IN (SELECT 'b' || i FROM generate_series(1, 20) i);
        INSERT INTO shortlink.profiles (username, owner, display_name, bio)
        VALUES ('bench', 'bench', 'Bench <Profile>',
                'Twenty links, \"quoted\" & escaped.');
        INSERT INTO shortlink.profile_entries (profile_id, position,
                                               link_code, title)
        SELECT p.id, i, 'b' || i, 'Link number ' || i || ' <&>'
          FROM shortlink.profiles p, generate_series(1, 20) i
         WHERE p.username = 'bench';"
    mkdir -p "$NGX/html/static"
    cat > "$NGX/conf/profile.conf" <<CONF
load_module $MODULE_SO;
daemon off;
worker_processes 1;
worker_cpu_affinity 01;
worker_rlimit_nofile 8192;
error_log $NGX/logs/profile.error.log warn;
pid $NGX/logs/profile.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGX/body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    keepalive_requests 10000000;
    shortlink_postgres "$SHORTLINK_DSN" pool=8;
    shortlink_zone profiles:8m ttl=1h;
    server {
        listen 127.0.0.1:$port;
        location / { shortlink; }
        location /@ { shortlink_profile ttl=1h; }
        location /static/ {
            root $NGX/html;
            default_type "text/html; charset=utf-8";
            add_header Cache-Control "public, max-age=60";
            add_header Content-Security-Policy "STATIC_CSP";
            add_header X-Content-Type-Options nosniff;
            add_header Referrer-Policy same-origin;
        }
    }
}
CONF
    /usr/sbin/nginx -p "$NGX/" -c "$NGX/conf/profile.conf" &
    NGINX_PIDS+=($!)
    sleep 1
    curl -s -o "$page" "http://127.0.0.1:$port/@bench"
    sed -i "s|STATIC_CSP|$(curl -sI "http://127.0.0.1:$port/@bench" \
        | tr -d '\r' | sed -n 's/^Content-Security-Policy: //p' \
        | sed 's/[|&]/\\&/g')|" "$NGX/conf/profile.conf"
    kill -HUP "${NGINX_PIDS[-1]}"
    sleep 1
    printf '%-14s page of %s bytes, %s entries\n' profile \
        "$(stat -c %s "$page")" "$(grep -c '<li>' "$page")"
    $WRK -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/@bench" >/dev/null 2>&1
    # alternated, three rounds: the machine's load drifts during a run,
    # and each ratio is of two measurements made back to back
    for round in 1 2 3; do
        a=$(profile_rate "$port" /static/bench.html)
        b=$(profile_rate "$port" /@bench)
        printf '%-14s %12s req/s  non-2xx %s\n' profile-static "${a% *}" \
            "${a#* }"
        printf '%-14s %12s req/s  ratio to static %s  non-2xx %s\n' \
            profile "${b% *}" \
            "$(awk -v a="${b% *}" -v b="${a% *}" \
                   'BEGIN { printf "%.3f", a / b }')" "${b#* }"
    done
}

# the ceiling, measured first and once more at the end
wrk_rate "$BASE" b 1000 random 2 "$CONNS" >/dev/null
r=$(wrk_rate "$BASE" b 1000 random "$SECONDS_PER_RUN" "$CONNS")
RATE[return-302]=${r% *}
printf '%-14s %12s req/s\n' return-302 "${r% *}"

for case in $CASES; do
    case "$case" in
    hot-1k)
        warm $((BASE + 1)) b 1000
        report hot-1k $((BASE + 1)) b 1000 ;;
    rules)
        warm $((BASE + 1)) r 1000
        report rules $((BASE + 1)) r 1000 ;;
    wide-100k)
        warm $((BASE + 1)) b "$LINKS"
        report wide-100k $((BASE + 1)) b "$LINKS" ;;
    unknown)
        count_lookups $((BASE + 1)) report unknown $((BASE + 1)) zz 0 ;;
    redis-only)
        warm $((BASE + 2)) b 1000
        report redis-only $((BASE + 2)) b 1000 ;;
    postgres-only)
        report postgres-only $((BASE + 3)) b "$LINKS" ;;
    profile)
        bench_profile ;;
    record)
        warm $((BASE + 5)) b 1000
        report record $((BASE + 5)) b 1000
        printf '%-14s clicks queued: %s, dropped: %s\n' "" \
            "$(curl -s "http://127.0.0.1:$((BASE + 5))/metrics" \
               | awk '/^shortlink_click_queue_clicks / { print $2 }')" \
            "$(curl -s "http://127.0.0.1:$((BASE + 5))/metrics" \
               | awk '/^shortlink_clicks_total\{state="dropped"\}/ { print $2 }')" ;;
    esac
done

# clicks: rows in PostgreSQL, the backlog's drain rate, the flush lag

clicks_rows() {
    psql -X -At "$SHORTLINK_DSN" -c "SELECT count(*) FROM shortlink.clicks"
}

clicks_lag() {
    psql -X -At "$SHORTLINK_DSN" -c "SELECT coalesce(round(extract(epoch FROM
        now() - max(clicked_at)) * 1000), -1) FROM shortlink.clicks"
}

drain() {      # label: time how fast the backlog reaches PostgreSQL
    local last=-1 now t0 r0 n=0
    r0=$(clicks_rows)
    t0=$(date +%s.%N)
    while :; do
        sleep 1
        now=$(clicks_rows)
        [ "$now" = "$last" ] && break
        last=$now
        n=$((n + 1))
    done
    awk -v a="$r0" -v b="$last" -v t0="$t0" -v t1="$(date +%s.%N)" -v n="$n" \
        -v l="$1" 'BEGIN { if (n > 1) printf "%-14s %d rows drained at %.0f rows/s\n", l, b - a, (b - a) / (t1 - t0 - 1) }'
}

dropped() {
    grep -o 'dropped since start)' "$NGX/logs/clicks.error.log" >/dev/null 2>&1 \
        && grep -o '([0-9]* dropped since start)' "$NGX/logs/clicks.error.log" \
           | tail -1 | tr -dc 0-9 || echo 0
}

queued() {
    curl -s "http://127.0.0.1:$((BASE + 4))/metrics" \
        | awk '/^shortlink_click_queue_clicks / { print $2 }'
}

for case in $CASES; do
    case "$case" in
    flush)
        sleep 3
        # the flush blocks on the lock (timeout=60s above) while wrk fills
        # the queue; then the backlog drains with the machine to itself
        psql -X -q "$SHORTLINK_DSN" -c "BEGIN" \
            -c "LOCK TABLE shortlink.link_hourly_clicks" \
            -c "SELECT pg_sleep(9)" -c "COMMIT" >/dev/null &
        lpid=$!
        $WRK -t1 -c"$CONNS" -d8s -s "$RUN_DIR/codes.lua" \
            "http://127.0.0.1:$((BASE + 4))/" -- b 1000 random >/dev/null 2>&1
        r0=$(clicks_rows)
        backlog=$(queued)
        wait $lpid
        t0=$(date +%s.%N)
        while [ "$(queued)" != 0 ]; do
            sleep 0.1
        done
        awk -v a="$r0" -v b="$(clicks_rows)" -v q="$backlog" -v t0="$t0" \
            -v t1="$(date +%s.%N)" 'BEGIN { printf "%-14s %d queued clicks drained at %.0f rows/s\n", "flush", q, (b - a) / (t1 - t0) }' ;;
    clicks)
        warm $((BASE + 4)) b 1000
        sleep 3
        report clicks $((BASE + 4)) b 1000
        drain clicks-drain
        printf '%-14s clicks dropped: %s\n' "" "$(dropped)" ;;
    sustained)
        sleep 3
        before=$(clicks_rows)
        wrk -t1 -c"$CONNS" -d60s -s "$RUN_DIR/codes.lua" \
            "http://127.0.0.1:$((BASE + 4))/" -- b 1000 random \
            > "$RUN_DIR/sustained.txt" 2>&1 &
        wpid=$!
        lags=""
        for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
            sleep 5
            lags="$lags $(clicks_lag)"
        done
        wait $wpid || true
        drain sustained-drain
        after=$(clicks_rows)
        sent=$(awk '/requests in/ { print $1 }' "$RUN_DIR/sustained.txt")
        printf '%-14s %s redirects in 60 s (%s req/s)\n' sustained "$sent" \
            "$(awk '/^Requests\/sec/ { print $2 }' "$RUN_DIR/sustained.txt")"
        printf '%-14s flush lag samples (ms, every 5 s):%s\n' "" "$lags"
        printf '%-14s rows written: %d; dropped: %s\n' \
            "" $((after - before)) "$(dropped)" ;;
    esac
done

r=$(wrk_rate "$BASE" b 1000 random "$SECONDS_PER_RUN" "$CONNS")
printf '%-14s %12s req/s  (again, at the end)\n' return-302 "${r% *}"

for f in "$NGX"/logs/*.error.log; do
    grep -E '\[(alert|crit|error)\]' "$f" | head -5 >&2 || true
done
