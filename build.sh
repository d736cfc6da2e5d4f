#!/usr/bin/env bash
#
# ngx_http_shortlink_module: build, test, demo.
#
#   ./build.sh            install what is missing (Debian packages), build
#                         build/ngx_http_shortlink_module.so for Debian's nginx
#   ./build.sh test [t/010-redirect.t ...]
#                         build, start a throw-away PostgreSQL and Redis on
#                         loopback, run the Test::Nginx suites, stop everything
#   ./build.sh demo [port]
#                         build, start PostgreSQL, Redis and nginx on
#                         127.0.0.1:8080 with everything configured (zone,
#                         Redis, bloom filter, click queue, API, metrics,
#                         console, GeoIP countries), sample links and
#                         clicks (demo/seed.sql) and an admin API key;
#                         Ctrl-C stops all
#
# Environment: TEST_NGINX_USE_VALGRIND=1 (suite under valgrind),
# TEST_NGINX_LIB=dir (run the suites with the Test::Nginx in dir, e.g.
# upstream's lib/, instead of t/runner/lib; without files, all of t/*.t
# but not the runner's self-test or the C unit tests), SKIP_APT=1
# (do not look for missing packages), SHORTLINK_NGINX_SRC (nginx sources,
# default /usr/share/nginx/src from nginx-dev).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$ROOT/build
NGX_SRC=${SHORTLINK_NGINX_SRC:-/usr/share/nginx/src}
MODULE_SO=$BUILD/ngx_http_shortlink_module.so

PACKAGES=(
    nginx nginx-dev build-essential
    libhiredis-dev libpq-dev libbloom-dev libmurmurhash-dev
    libqrencode-dev zlib1g-dev libssl-dev zbar-tools
    postgresql postgresql-15-hll postgresql-server-dev-15 redis-server
    libtest-base-perl libtest-longstring-perl liblist-moreutils-perl
    libtext-diff-perl liburi-perl libwww-perl libhttp-message-perl
    libipc-run-perl
    curl wrk valgrind gdb procps iproute2
    libnginx-mod-http-geoip geoip-database libjs-chart.js
    chromium chromium-driver python3-selenium
)

log() { printf '>>> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }


install_packages() {
    local missing=() p

    [ "${SKIP_APT:-}" = 1 ] && return 0

    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q 'install ok installed' || missing+=("$p")
    done

    [ ${#missing[@]} -eq 0 ] && return 0

    log "installing: ${missing[*]}"
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null

    # Debian starts the services it installs; ours run on their own ports
    # and must not collide with anything, so stop the packaged ones.
    if [ -d /run/systemd/system ]; then
        $sudo systemctl stop nginx redis-server postgresql 2>/dev/null || true
    else
        $sudo service nginx stop >/dev/null 2>&1 || true
        $sudo service redis-server stop >/dev/null 2>&1 || true
        $sudo service postgresql stop >/dev/null 2>&1 || true
    fi
}


# nginx's configure only runs again when the addon config or the flags change
build_module() {
    local src=$BUILD/nginx-src stamp flags cc_opt ld_opt

    [ -f "$NGX_SRC/conf_flags" ] || die "no nginx sources in $NGX_SRC (nginx-dev)"

    # shellcheck disable=SC1091
    . "$NGX_SRC/conf_flags"     # NGX_CONF_FLAGS=( ... ) as Debian built nginx

    cc_opt="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security"
    cc_opt="$cc_opt -fPIC -Wdate-time -D_FORTIFY_SOURCE=2"
    ld_opt="-Wl,-z,relro -Wl,-z,now -fPIC"

    stamp=$( (cat "$ROOT/config"; echo "${NGX_CONF_FLAGS[*]}" "$cc_opt" \
              "$ld_opt" "$ROOT") | md5sum | cut -d' ' -f1)

    if [ ! -f "$src/objs/Makefile" ] || [ "$(cat "$BUILD/.configured" 2>/dev/null)" != "$stamp" ]
    then
        log "configuring nginx $(sed -n 's/#define NGINX_VERSION *"\(.*\)"/\1/p' \
            "$NGX_SRC/src/core/nginx.h") with the module"
        rm -rf "$src"
        mkdir -p "$BUILD"
        cp -a "$NGX_SRC" "$src"
        (cd "$src" && ./configure "${NGX_CONF_FLAGS[@]}" \
            --with-cc-opt="$cc_opt" --with-ld-opt="$ld_opt" \
            --add-dynamic-module="$ROOT" >"$BUILD/configure.log" 2>&1) \
            || { tail -30 "$BUILD/configure.log"; die "configure failed"; }
        echo "$stamp" > "$BUILD/.configured"
    fi

    make -s -C "$src" -f objs/Makefile modules >/dev/null \
        || die "module build failed"
    cp -p "$src/objs/ngx_http_shortlink_module.so" "$MODULE_SO.tmp"
    mv -f "$MODULE_SO.tmp" "$MODULE_SO"
    log "built $MODULE_SO"
}


# C unit tests of pure functions (t/unit/*_test.c), against nginx's headers
run_unit_tests() {
    local src=$BUILD/nginx-src t bin status=0 incs

    incs="-I $src/src/core -I $src/src/event -I $src/src/event/modules"
    incs="$incs -I $src/src/os/unix -I $src/objs -I $ROOT/ngx_http_shortlink_module"
    mkdir -p "$BUILD/unit"

    for t in "$ROOT"/t/unit/*_test.c; do
        bin=$BUILD/unit/$(basename "$t" .c)
        # shellcheck disable=SC2086
        cc -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter -g $incs \
            -o "$bin" "$t" \
            "$ROOT/ngx_http_shortlink_module/ngx_http_shortlink_code.c" \
            "$ROOT/ngx_http_shortlink_module/ngx_http_shortlink_utf8.c" \
            "$ROOT/ngx_http_shortlink_module/ngx_http_shortlink_lang.c" \
            -lmurmurhash \
            || die "unit test $t does not build"
        log "unit: $(basename "$bin")"
        "$bin" | grep -v '^ok ' || status=1
    done

    return $status
}


# --- services -------------------------------------------------------------

PG_BIN=
RUN_DIR=
PG_PORT=
REDIS_PORT=

free_port() {
    local port=$1
    while ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; do
        port=$((port + 1))
    done
    echo "$port"
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# the shortlink_tops extension (pgext/, sql/021), built against the
# server's headers and installed where the server loads extensions from
# (as root: sudo otherwise), unless the installed files are these already
install_pgext() {
    local dir=$ROOT/pgext libdir extdir sudo=

    make -s -C "$dir" PG_CONFIG="$PG_BIN/pg_config" >"$RUN_DIR/pgext.log" 2>&1 \
        || { cat "$RUN_DIR/pgext.log"; die "building pgext failed"; }

    libdir=$("$PG_BIN/pg_config" --pkglibdir)
    extdir=$("$PG_BIN/pg_config" --sharedir)/extension

    cmp -s "$dir/shortlink_tops.so" "$libdir/shortlink_tops.so" \
        && cmp -s "$dir/shortlink_tops.control" "$extdir/shortlink_tops.control" \
        && cmp -s "$dir/shortlink_tops--1.0.sql" "$extdir/shortlink_tops--1.0.sql" \
        && return 0

    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo make -s -C "$dir" PG_CONFIG="$PG_BIN/pg_config" install \
        >"$RUN_DIR/pgext.log" 2>&1 \
        || { cat "$RUN_DIR/pgext.log"; die "installing pgext failed"; }
    log "installed the shortlink_tops extension in $libdir"
}

start_services() {
    local base_port=${1:-15432}

    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -x "$PG_BIN/initdb" ] || die "PostgreSQL server binaries not found"

    RUN_DIR=$(mktemp -d /tmp/shortlink.XXXXXX)
    chmod 755 "$RUN_DIR"
    mkdir "$RUN_DIR/pg"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$RUN_DIR/pg"

    install_pgext

    PG_PORT=$(free_port "$base_port")
    REDIS_PORT=$(free_port $((base_port + 1000)))

    log "PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT ($RUN_DIR)"

    as_postgres "$PG_BIN/initdb" -D "$RUN_DIR/pg/data" -U postgres -A trust \
        -E UTF8 --no-locale >"$RUN_DIR/initdb.log" 2>&1 \
        || { cat "$RUN_DIR/initdb.log"; die "initdb failed"; }

    # settings live in the data directory, so a test can stop and start
    # the server with a bare pg_ctl (t/lib/ShortlinkTest.pm)
    cat >> "$RUN_DIR/pg/data/postgresql.conf" <<EOF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RUN_DIR/pg'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF

    as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/pg/data" -l "$RUN_DIR/pg/log" \
        -w -t 30 start >/dev/null \
        || { cat "$RUN_DIR/pg/log"; die "PostgreSQL did not start"; }

    psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -c "CREATE ROLE shortlink LOGIN" \
        -c "CREATE DATABASE shortlink OWNER shortlink"

    # sql/010 needs HyperLogLog, which only a superuser can install
    psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d shortlink \
        -c "CREATE SCHEMA shortlink AUTHORIZATION shortlink" \
        -c "CREATE EXTENSION hll SCHEMA shortlink"

    SHORTLINK_DSN="host=127.0.0.1 port=$PG_PORT dbname=shortlink user=shortlink"
    "$ROOT/sql/migrate.sh" "$SHORTLINK_DSN" >/dev/null

    # a config file, so a test can stop and start Redis the same way
    cat > "$RUN_DIR/redis.conf" <<EOF
port $REDIS_PORT
bind 127.0.0.1
save ""
appendonly no
daemonize yes
pidfile $RUN_DIR/redis.pid
logfile $RUN_DIR/redis.log
dir $RUN_DIR
EOF
    redis-server "$RUN_DIR/redis.conf" || die "Redis did not start"
}

stop_services() {
    [ -n "$RUN_DIR" ] || return 0

    if [ -n "${NGINX_PID:-}" ]; then
        kill -QUIT "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null || true
    fi

    if [ -f "$RUN_DIR/redis.pid" ]; then
        kill "$(cat "$RUN_DIR/redis.pid")" 2>/dev/null || true
    fi

    if [ -f "$RUN_DIR/pg/data/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/pg/data" -m immediate \
            -w stop >/dev/null 2>&1 || true
    fi

    rm -rf "$RUN_DIR"
    RUN_DIR=
}


# --- commands -------------------------------------------------------------

cmd_test() {
    local status=0 files=("$@") lib tools prove_env

    trap stop_services EXIT
    trap 'exit 130' INT TERM

    # SHORTLINK_TEST_PORT_BASE: where the search for free PostgreSQL (and,
    # 1000 above, Redis) ports starts; give concurrent runs different ones
    start_services "${SHORTLINK_TEST_PORT_BASE:-15432}"

    export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
    export TEST_NGINX_LOAD_MODULES=$MODULE_SO
    # nginx is stopped between suites, so its port is free for a moment
    # each time: start the search at a port of this run's own (20000 to
    # 29999, below the ephemeral range), not at 1984 where any other run
    # on the machine looks first and would take it
    export TEST_NGINX_PORT=${TEST_NGINX_PORT:-$(free_port $((20000 + $$ % 10000)))}
    export TEST_NGINX_SERVROOT=$RUN_DIR/servroot
    export TEST_NGINX_PG_DSN=$SHORTLINK_DSN
    export TEST_NGINX_PG_PORT=$PG_PORT
    export TEST_NGINX_REDIS_PORT=$REDIS_PORT
    # for t/lib/ShortlinkTest.pm: stop and start PostgreSQL from a test
    export SHORTLINK_PG_BIN=$PG_BIN
    export SHORTLINK_PG_DATA=$RUN_DIR/pg/data
    export SHORTLINK_PG_LOG=$RUN_DIR/pg/log
    export SHORTLINK_REDIS_DIR=$RUN_DIR

    cd "$ROOT"

    # TEST_NGINX_LIB names another Test::Nginx lib/ (upstream's, to check
    # that the suites pass there too); the runner's self-test is ours only
    lib=${TEST_NGINX_LIB:-$ROOT/t/runner/lib}
    [ -f "$lib/Test/Nginx/Socket.pm" ] \
        || die "no Test/Nginx/Socket.pm in $lib (TEST_NGINX_LIB)"
    lib=$(cd "$lib" && pwd)
    prove_env=()

    # Upstream runs nginx as a daemon and waits for each one it stops to
    # be gone; a slow PID 1 (a sandbox) reaps orphans late.  Subreaper.pm,
    # kept next to the vendored copy (<shared>/tools beside
    # <shared>/vendor/test-nginx-*/lib), makes prove reap them itself.
    if [ -n "${TEST_NGINX_LIB:-}" ] && [ -f "$lib/../../../tools/Subreaper.pm" ]; then
        tools=$(cd "$lib/../../../tools" && pwd)
        prove_env=("PERL5LIB=$tools${PERL5LIB:+:$PERL5LIB}"
                   "PERL5OPT=${PERL5OPT:+$PERL5OPT }-MSubreaper")
    fi

    if [ ${#files[@]} -eq 0 ]; then
        files=(t/*.t)
        if [ -z "${TEST_NGINX_LIB:-}" ]; then
            files=(t/runner/selftest.t "${files[@]}")
            run_unit_tests || status=1
        fi
    fi

    log "suites with $lib"
    env "${prove_env[@]}" prove -I "$lib" -I t/lib "${files[@]}" || status=$?

    return $status
}


# --- demo -------------------------------------------------------------------

GEOIP_MODULE=/usr/lib/nginx/modules/ngx_http_geoip_module.so
CHARTJS_DIR=/usr/share/javascript/chart.js

# The console as nginx's workers can read it: the repository's console/
# itself, or a copy when they cannot (started as root, the workers run as
# nobody, who cannot enter a checkout under /root)
demo_console_dir() {
    local dir=$ROOT/console

    if [ "$(id -u)" -eq 0 ] && [ -f "$dir/index.html" ] \
        && ! runuser -u nobody -- test -r "$dir/index.html" 2>/dev/null
    then
        cp -r "$dir" "$RUN_DIR/console"
        chmod -R a+rX "$RUN_DIR/console"
        log "the workers (nobody) cannot read $dir: serving a copy"
        dir=$RUN_DIR/console
    fi

    echo "$dir"
}

# nginx.conf of the demo: every part of the module, as README describes it
demo_nginx_conf() {
    local port=$1 console=$2 ngx=$RUN_DIR/nginx secret

    # signs the cookie of password-protected links; new for every demo run
    secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')

    cat <<EOF
load_module $GEOIP_MODULE;
load_module $MODULE_SO;
daemon off;
worker_processes 2;
error_log $ngx/logs/error.log notice;
pid $ngx/logs/nginx.pid;
events { worker_connections 1024; }

http {
    # which tier answered each redirect: shm, bloom, redis, pg, ...
    log_format demo '\$remote_addr [\$time_local] "\$request" \$status '
                    '\$shortlink_code \$shortlink_cache';
    access_log $ngx/logs/access.log demo;
    client_body_temp_path $ngx/body;
    proxy_temp_path $ngx/proxy;
    fastcgi_temp_path $ngx/fastcgi;
    uwsgi_temp_path $ngx/uwsgi;
    scgi_temp_path $ngx/scgi;

    # the country of each click, from Debian's geoip-database.  Demo only:
    # X-Forwarded-For from loopback is believed, so that curl can pretend
    # to come from elsewhere; trust only your own proxies in production
    geoip_country /usr/share/GeoIP/GeoIP.dat;
    geoip_proxy   127.0.0.1;

    shortlink_postgres    "$SHORTLINK_DSN";
    shortlink_zone        links:16m;
    shortlink_redis       127.0.0.1:$REDIS_PORT;
    shortlink_bloom       capacity=100000;
    shortlink_queue       clicks:16m;
    shortlink_flush       interval=1s batch=5000;
    shortlink_click_field country \$geoip_country_code;
    shortlink_rule_country \$geoip_country_code;
    shortlink_password_secret $secret;

    server {
        listen 127.0.0.1:$port;

        # short links, and each link's QR code at /{code}/qr
        location / {
            shortlink;
            shortlink_qr on;
        }

        # link-in-bio pages: /@demo
        location /@ { shortlink_profile; }

        # the management API and /_links/health; the console calls it here
        location /_links/ {
            shortlink_api;
            allow 127.0.0.1; deny all;
        }

        location = /metrics {
            shortlink_metrics;
            allow 127.0.0.1; deny all;
        }

        # the console: static files, and Chart.js from Debian
        location = /console { return 301 /console/; }

        location /console/ {
            alias $console/;
            index index.html;
            types {
                text/html               html;
                text/css                css;
                application/javascript  js mjs;
                application/json        json;
                image/svg+xml           svg;
                image/png               png;
                image/x-icon            ico;
            }
            default_type application/octet-stream;
            add_header Content-Security-Policy "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'" always;
            add_header X-Content-Type-Options nosniff always;
            add_header Referrer-Policy no-referrer always;

            location /console/vendor/chart.js/ {
                alias $CHARTJS_DIR/;
            }
        }
    }
}
EOF
}

# the banner: where to look and what to try, every line ready to paste
demo_banner() {
    local port=$1 key=$2 base=http://127.0.0.1:$1 today tomorrow auth

    today=$(date -u +%F)
    tomorrow=$(date -u -d tomorrow +%F)
    auth="-H 'Authorization: Bearer $key'"

    cat <<EOF

ngx_http_shortlink_module is running on $base/

  Console  $base/console/
  API key  $key
           (an admin key: paste it into the console)
  Sample   links docs, pg15, changes, redis, spring-sale (tag "sample"),
           with 3,000 made-up clicks over the last 14 days (demo/seed.sql)

Create a link through the API:
  curl -s $auth \\
       -H 'Content-Type: application/json' \\
       -d '{"url": "https://nginx.org/en/docs/", "code": "try-me", "tags": ["mine"]}' \\
       $base/_links/links

Follow it, as Firefox coming from example.com (a click; the demo believes
X-Forwarded-For from loopback, so GeoIP counts it as from the UK):
  curl -si -A 'Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0' \\
       -e https://example.com/ -H 'X-Forwarded-For: 81.2.69.160' $base/try-me

Its statistics for today, by hour (the click is written within a second):
  curl -s $auth \\
       '$base/_links/links/try-me/stats?interval=hour&from=$today&to=$tomorrow'

A sample link's last 7 days:
  curl -s $auth \\
       $base/_links/links/docs/stats

A link-in-bio page (the console's Profiles page edits it), and a QR code
of a link (scans count as source "qr"):
  $base/@demo
  $base/docs/qr

Prometheus metrics, and health:
  curl -s $base/metrics
  curl -s $base/_links/health

The database:  psql "$SHORTLINK_DSN"
nginx.conf:    $RUN_DIR/nginx/conf/nginx.conf
Logs:          $RUN_DIR/nginx/logs/
Press Ctrl-C to stop nginx, Redis and PostgreSQL.
EOF
}

cmd_demo() {
    local port=${1:-8080} conf key console i

    [ -f "$GEOIP_MODULE" ] || die "no $GEOIP_MODULE (libnginx-mod-http-geoip)"
    [ -d "$CHARTJS_DIR" ] || die "no $CHARTJS_DIR (libjs-chart.js)"
    ! ss -Hltn "sport = :$port" 2>/dev/null | grep -q . \
        || die "port $port is taken; choose another: $0 demo <port>"

    trap stop_services EXIT
    trap 'exit 0' INT TERM

    start_services 15432

    log "sample links and clicks (demo/seed.sql)"
    psql -X -q -v ON_ERROR_STOP=1 "$SHORTLINK_DSN" -f "$ROOT/demo/seed.sql" \
        >/dev/null
    key=$(psql -X -q -At -v ON_ERROR_STOP=1 "$SHORTLINK_DSN" \
              -c "SELECT shortlink.create_api_key('demo-admin', true)")

    mkdir -p "$RUN_DIR/nginx/logs" "$RUN_DIR/nginx/conf"
    console=$(demo_console_dir)
    conf=$RUN_DIR/nginx/conf/nginx.conf
    demo_nginx_conf "$port" "$console" > "$conf"

    /usr/sbin/nginx -p "$RUN_DIR/nginx/" -c "$conf" &
    NGINX_PID=$!

    # ready when the API answers its health check (PostgreSQL reached)
    for i in $(seq 100); do
        kill -0 "$NGINX_PID" 2>/dev/null \
            || die "nginx did not start: $(cat "$RUN_DIR/nginx/logs/error.log")"
        curl -s -o /dev/null -m 1 -f "http://127.0.0.1:$port/_links/health" \
            && break
        [ "$i" -lt 100 ] || die "nginx does not answer on 127.0.0.1:$port"
        sleep 0.1
    done

    demo_banner "$port" "$key"
    wait "$NGINX_PID" || true
}


main() {
    local cmd=${1:-build}
    [ $# -gt 0 ] && shift

    case "$cmd" in
        build) install_packages; build_module ;;
        test)  install_packages; build_module; cmd_test "$@" ;;
        demo)  install_packages; build_module; cmd_demo "$@" ;;
        *)     die "usage: $0 [build | test [files...] | demo [port]]" ;;
    esac
}

# bench/run.sh sources this file for its functions
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
