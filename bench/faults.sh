#!/usr/bin/env bash
#
# Fault matrix: a wrk load on hot codes with every click recorded, while
# PostgreSQL is restarted, Redis is stopped and started, a worker is
# SIGKILLed, nginx is reloaded and requests with poison headers are sent;
# then the click queue is left to drain and every redirect answered is
# looked for in PostgreSQL.  Prints the redirects answered, the rows written
# and rejected, lost, duplicated and dropped clicks, the timeline of the
# faults and how every worker exited.  Exits 1 when a click was lost,
# duplicated or dropped, the queue did not drain, or a worker died on a
# signal this script did not send.
#
#   bench/faults.sh [seconds=60] [connections=32]
#
# One nginx as deployed: 2 workers, zone (ttl=5s, so that lookups reach
# Redis and PostgreSQL during the run), Redis, bloom filter, click queue
# and flush, metrics, an extra click field from a request header; plus an
# extra click field `rid` = $request_id, also written to the access log,
# so that every 302 answered can be found among the rows by its id.
#
# Faults, at fixed fractions of the run (at 60 s: 5, 15, 25, 30, 40 s):
#   pg       PostgreSQL stopped (pg_ctl -m fast), started FAULTS_OUTAGE
#            seconds later (default 5)
#   redis    Redis stopped (SIGTERM), started FAULTS_OUTAGE seconds later
#   poison   a burst of requests whose User-Agent, Referer, Cookie or
#            X-Campaign (the extra field "campaign") is invalid UTF-8,
#            raw bytes, control characters or over-long
#   kill     SIGKILL to one worker (the master starts another)
#   reload   nginx -s reload
#
# Environment: FAULTS_SKIP="poison ..." leaves faults out;
# FAULTS_DELAY_MS (default 5) is each connection's pause between requests,
# which bounds the load (about 32 x 1000/(5 + latency) requests/s) so that
# PostgreSQL keeps up on a small machine; FAULTS_DRAIN (default 45) bounds
# the wait for the queue to drain, in seconds; SKIP_APT=1.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../build.sh
. "$BENCH_DIR/../build.sh"

DURATION=${1:-60}
CONNS=${2:-32}
DELAY_MS=${FAULTS_DELAY_MS:-5}
DRAIN=${FAULTS_DRAIN:-45}
OUTAGE=${FAULTS_OUTAGE:-5}
SKIP=" ${FAULTS_SKIP:-} "
CODES=1000

[ "$DURATION" -ge 30 ] || die "faults.sh: a run of at least 30 seconds"
[ $((OUTAGE * 12)) -lt $((DURATION * 2)) ] \
    || die "faults.sh: FAULTS_OUTAGE must be under a sixth of the run"

skipped() { [[ $SKIP == *" $1 "* ]]; }

install_packages
build_module

NGINX_PID=
WRK_PID=
SAMPLER_PID=

alive() {      # pid: running, not a zombie waiting to be reaped
    local s
    s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $s != Z* ]]
}

stop_nginx() {
    [ -n "$NGINX_PID" ] || return 0
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    # the workers' last flush is bounded by shortlink_flush timeout= (10s)
    for _ in $(seq 150); do
        alive "$NGINX_PID" || break
        sleep 0.1
    done
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
}

cleanup() {
    local p
    for p in "$WRK_PID" "$SAMPLER_PID"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    stop_nginx
    stop_services
}

trap cleanup EXIT
trap 'exit 130' INT TERM

start_services 17432

psql -X -q "$SHORTLINK_DSN" -c "
    INSERT INTO shortlink.links (code, url)
    SELECT 'f' || i, 'https://example.com/hot/' || i
      FROM generate_series(1, $CODES) AS i
    UNION ALL
    SELECT 'poison', 'https://example.com/poison'"

PORT=$(free_port 18180)
NGX=$RUN_DIR/nginx
CONF=$NGX/conf/nginx.conf
mkdir -p "$NGX/logs" "$NGX/conf"

cat > "$CONF" <<CONF
load_module $MODULE_SO;
daemon off;
worker_processes 2;
worker_rlimit_nofile 8192;
error_log $NGX/logs/error.log notice;
pid $NGX/logs/nginx.pid;
events { worker_connections 4096; }
http {
    log_format faults '\$status \$request_id';
    access_log $NGX/logs/access.log faults;
    client_body_temp_path $NGX/body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;

    shortlink_postgres "$SHORTLINK_DSN" pool=8;
    shortlink_zone links:16m ttl=5s;
    shortlink_redis 127.0.0.1:$REDIS_PORT;
    shortlink_bloom capacity=100000;
    shortlink_queue clicks:32m;
    shortlink_flush interval=1s batch=5000;
    shortlink_click_field campaign \$http_x_campaign;
    shortlink_click_field rid \$request_id;

    server {
        listen 127.0.0.1:$PORT;
        location / { shortlink; }
        location = /metrics { shortlink_metrics; access_log off; }
    }
}
CONF

/usr/sbin/nginx -p "$NGX/" -c "$CONF" &
NGINX_PID=$!

for _ in $(seq 100); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT/metrics" && break
    alive "$NGINX_PID" || die "nginx did not start: $(cat "$NGX/logs/error.log")"
    sleep 0.1
done

metric() {     # name as printed, e.g. shortlink_clicks_total{state="dropped"}
    curl -s -m 2 "http://127.0.0.1:$PORT/metrics" 2>/dev/null \
        | awk -v k="$1" '$1 == k { print $2 }' || true
}

worker_pids() {
    ps -o pid=,args= --ppid "$NGINX_PID" 2>/dev/null \
        | awk '/nginx: worker process$/ { printf "%s%s", s, $1; s = " " }'
}

# wrk: random hot codes, a returning visitor's cookie, varying User-Agent
# and Referer, the extra field's header; each connection pauses DELAY_MS
cat > "$RUN_DIR/faults.lua" <<'LUA'
local n, pause = 1000, 5
local vids = {}
local uas = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "Mozilla/5.0 (Windows NT 10.0) Gecko/20100101 Firefox/121.0 Édition spéciale",
}
local refs = {
    "https://news.example.org/story/",
    "https://www.google.com/search?q=",
    "https://t.co/",
    "https://example.com/blog/ünïcode/",
}
local campaigns = { "spring", "newsletter", "été-2026", "" }

function init(args)
    n = tonumber(args[1] or n)
    pause = tonumber(args[2] or pause)
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    for i = 1, 500 do
        vids[i] = string.format("%08x%08x%08x%08x",
                                math.random(0, 0x7fffffff),
                                math.random(0, 0x7fffffff),
                                math.random(0, 0x7fffffff),
                                math.random(0, 0x7fffffff))
    end
end

function delay()
    return pause
end

request = function()
    local h = {
        ["User-Agent"] = uas[math.random(#uas)],
        ["Referer"] = refs[math.random(#refs)] .. math.random(1000),
        ["Cookie"] = "sl_vid=" .. vids[math.random(#vids)],
    }
    local c = campaigns[math.random(#campaigns)]
    if c ~= "" then
        h["X-Campaign"] = c
    end
    return wrk.format("GET", "/f" .. math.random(n), h)
end
LUA

# the poison burst: one connection per request, raw bytes as they are, all
# for the code "poison" (so that their rows can be told apart); prints how
# many requests got each status
cat > "$RUN_DIR/poison.pl" <<'PERL'
use strict;
use warnings;
use IO::Socket::INET;

my ($port) = @ARGV;

my @values = (
    "\xc3\xc3",                     # a lead byte where a continuation goes
    "\xf8\x90\x80\x80",             # 0xF8 is no lead byte
    "ok\xc3",                       # cut at the end
    "abc\xe2\x82",
    "\xc0\xaf",                     # overlong '/'
    "\xe0\x80\xaf",
    "\xed\xa0\x80",                 # a surrogate
    "\xf4\x90\x80\x80",             # above U+10FFFF
    "\xfe\xff\xfe",
    "\x80\xbf\x80",                 # continuations alone
    "\x01\x02\x03\x07\x08\x0b\x0c\x1b[31m\x7f end",
    "\xc2\x85\xc2\x9b",             # C1 controls, valid UTF-8
    "A" x 4000 . "\xc3\xc3",        # over-long values
    "\xc3" x 4000,
    "x" . ("\xc3\xa9" x 1500),      # valid; any cut at an odd byte splits it
    "x" . ("\xf0\x9f\x98\x80" x 900),
);

srand(10);
for (1 .. 20) {                     # raw bytes 0x80-0xff
    push @values, join '', map { chr(0x80 + int rand 0x80) } 0 .. rand 200;
}
for (1 .. 10) {                     # any byte but NUL, CR, LF
    push @values, join '', map {
        my $c;
        do { $c = 1 + int rand 255 } while $c == 10 || $c == 13;
        chr $c;
    } 0 .. rand 200;
}

my @headers = (
    sub { "User-Agent: $_[0]" },
    sub { "Referer: $_[0]" },
    sub { "Cookie: sl_vid=$_[0]" },
    sub { "Cookie: $_[0]" },
    sub { "X-Campaign: $_[0]" },
);

my %status;

for my $h (@headers) {
    for my $v (@values) {
        my $req = "GET /poison HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  . $h->($v) . "\r\nConnection: close\r\n\r\n";
        my $st = eval {
            local $SIG{ALRM} = sub { die "timeout\n" };
            alarm 5;
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $port, Proto => 'tcp')
                or die "connect\n";
            binmode $s;
            print $s $req;
            my ($buf, $r) = ('');
            while ($r = sysread($s, $buf, 4096, length $buf)) {}
            alarm 0;
            $buf =~ m{^HTTP/1\.[01] (\d{3})} ? $1 : 'no-answer';
        };
        alarm 0;
        $st //= $@ =~ /timeout/ ? 'timeout' : 'error';
        $status{$st}++;
    }
}

print join(' ', map { "$_:$status{$_}" } sort keys %status), "\n";
PERL

# --- the run --------------------------------------------------------------

TIMELINE=$RUN_DIR/timeline
: > "$TIMELINE"
T0=

now() { awk -v t0="$T0" -v t="$(date +%s.%N)" 'BEGIN { printf "%5.1f", t - t0 }'; }

event() {
    printf '  %s s  %s\n' "$(now)" "$*" >> "$TIMELINE"
    log "$(now) s: $*"
}

sleep_until() {    # seconds after T0
    sleep "$(awk -v t0="$T0" -v o="$1" -v t="$(date +%s.%N)" \
             'BEGIN { d = t0 + o - t; print (d > 0 ? d : 0) }')"
}

queued() { echo "queue $(metric shortlink_click_queue_clicks)"; }

fault_pg() {       # at
    sleep_until "$1"
    event "PostgreSQL: stop (pg_ctl -m fast); $(queued)"
    as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/pg/data" -m fast -w stop \
        >/dev/null 2>&1 || event "PostgreSQL: pg_ctl stop failed"
    event "PostgreSQL: stopped"
    sleep_until $(($1 + OUTAGE))
    event "PostgreSQL: start; $(queued)"
    as_postgres "$PG_BIN/pg_ctl" -D "$RUN_DIR/pg/data" -l "$RUN_DIR/pg/log" \
        -w -t 30 start >/dev/null 2>&1 || event "PostgreSQL: pg_ctl start failed"
    event "PostgreSQL: accepting connections"
}

fault_redis() {    # at
    local pid
    sleep_until "$1"
    pid=$(cat "$RUN_DIR/redis.pid")
    event "Redis: stop (SIGTERM to $pid); $(queued)"
    kill "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    event "Redis: stopped"
    sleep_until $(($1 + OUTAGE))
    redis-server "$RUN_DIR/redis.conf" || event "Redis: did not start"
    event "Redis: started (pid $(cat "$RUN_DIR/redis.pid" 2>/dev/null)); $(queued)"
}

fault_poison() {   # at
    sleep_until "$1"
    event "poison: burst starts; $(queued)"
    event "poison: answered $(perl "$RUN_DIR/poison.pl" "$PORT")"
}

KILLED=

fault_kill() {     # at
    local before
    sleep_until "$1"
    before=$(worker_pids)
    KILLED=${before%% *}
    [ -n "$KILLED" ] || { event "kill: no worker found"; return; }
    kill -KILL "$KILLED"
    event "kill: SIGKILL to worker $KILLED (workers were $before); $(queued)"
    sleep 1
    event "kill: workers now $(worker_pids)"
}

fault_reload() {   # at
    local before
    sleep_until "$1"
    before=$(worker_pids)
    if /usr/sbin/nginx -p "$NGX/" -c "$CONF" -s reload 2>>"$RUN_DIR/reload.log"
    then
        event "reload: nginx -s reload (workers were $before); $(queued)"
    else
        event "reload: nginx -s reload failed: $(cat "$RUN_DIR/reload.log")"
    fi
    sleep 2
    event "reload: workers now $(worker_pids)"
}

sampler() {
    local t
    for t in $(seq 5 5 $((DURATION + DRAIN))); do
        sleep_until "$t"
        printf '%s:%s ' "$t" "$(metric shortlink_click_queue_clicks)" \
            >> "$RUN_DIR/samples"
    done
}

log "load: ${DURATION}s, $CONNS connections pausing ${DELAY_MS} ms," \
    "$CODES hot codes, nginx on 127.0.0.1:$PORT; skipped:${SKIP% }"

T0=$(date +%s.%N)
wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$RUN_DIR/faults.lua" \
    "http://127.0.0.1:$PORT/" -- "$CODES" "$DELAY_MS" > "$RUN_DIR/wrk.txt" 2>&1 &
WRK_PID=$!
sampler &
SAMPLER_PID=$!
event "load starts"

at() { echo $((DURATION * $1 / 12)); }

skipped pg     || fault_pg "$(at 1)"
skipped redis  || fault_redis "$(at 3)"
skipped poison || fault_poison "$(at 5)"
skipped kill   || fault_kill "$(at 6)"
skipped reload || fault_reload "$(at 8)"

wait "$WRK_PID" || true
WRK_PID=
event "load ends"

last=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$PORT/f1" \
       || true)
event "a known code after the load: $last"

# the queue drains; clicks dropped by a full queue are not in it
drained=no
for _ in $(seq $((DRAIN * 2))); do
    q=$(metric shortlink_click_queue_clicks)
    if [ "$q" = 0 ]; then
        drained=yes
        break
    fi
    sleep 0.5
done
q=$(metric shortlink_click_queue_clicks)
event "drain: queue $q ($( [ $drained = yes ] && echo drained || echo "not drained after ${DRAIN}s"))"

kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=

dropped=$(metric 'shortlink_clicks_total{state="dropped"}')
enqueued=$(metric 'shortlink_clicks_total{state="enqueued"}')
flushed=$(metric 'shortlink_clicks_total{state="flushed"}')
batches_ok=$(metric 'shortlink_flush_batches_total{result="committed"}')
batches_failed=$(metric 'shortlink_flush_batches_total{result="failed"}')
nginx_alive=$(alive "$NGINX_PID" && echo yes || echo no)

# --- accounting -------------------------------------------------------------

# every 302 the module answered has its click queued (or dropped) before
# the response, and its access-log line written after it
awk '$1 == 302 { print $2 }' "$NGX/logs/access.log" > "$RUN_DIR/answered"

read -r answered written written_ids rejected all_ids missing unlogged \
       poison_written poison_rejected < <(
    psql -X -q -At -F ' ' "$SHORTLINK_DSN" <<SQL
CREATE TEMP TABLE answered (rid text);
\copy answered FROM '$RUN_DIR/answered'
CREATE TEMP TABLE rows AS
    SELECT event_id, extra->>'rid' AS rid FROM shortlink.clicks
    UNION ALL
    SELECT event_id, extra->>'rid' FROM shortlink.clicks_rejected;
ANALYZE answered;
ANALYZE rows;
SELECT (SELECT count(*) FROM answered),
       (SELECT count(*) FROM shortlink.clicks),
       (SELECT count(DISTINCT event_id) FROM shortlink.clicks),
       (SELECT count(*) FROM shortlink.clicks_rejected),
       (SELECT count(DISTINCT event_id) FROM rows),
       (SELECT count(*) FROM answered a
         WHERE NOT EXISTS (SELECT 1 FROM rows r WHERE r.rid = a.rid)),
       (SELECT count(*) FROM rows r
         WHERE NOT EXISTS (SELECT 1 FROM answered a WHERE a.rid = r.rid)),
       (SELECT count(*) FROM shortlink.clicks WHERE code = 'poison'),
       (SELECT count(*) FROM shortlink.clicks_rejected WHERE code = 'poison');
SQL
)

dropped=${dropped:-0}
lost=$((missing - dropped))
duplicated=$((written + rejected - all_ids))
net=$((answered - written - rejected - dropped))

# every worker exit: the one SIGKILL sent here, graceful exits at reload
# (code 0), and nothing else
crashes=$(awk -v killed="${KILLED:-none}" '
    / exited on signal / {
        for (i = 1; i <= NF; i++) if ($i == "process") pid = $(i + 1)
        for (i = 1; i <= NF; i++) if ($i == "signal") sig = $(i + 1) + 0
        if (pid == killed && sig == 9) next
        print
    }
    / exited with (fatal )?code / && !/ exited with code 0$/ { print }' \
    "$NGX/logs/error.log")
exits=$(grep -cE 'exited (on signal|with)' "$NGX/logs/error.log" || true)

wrk_sent=$(awk '/requests in/ { print $1 }' "$RUN_DIR/wrk.txt")
wrk_errors=$(awk '/Socket errors/ { sub(/^ *Socket errors: */, ""); print }' \
             "$RUN_DIR/wrk.txt")

printf '\nfaults: %s s of wrk (%s connections, %s ms pauses), 2 workers, %s hot codes; skipped:%s\n' \
    "$DURATION" "$CONNS" "$DELAY_MS" "$CODES" "${SKIP% }"
printf 'timeline (seconds from the start of the load):\n'
cat "$TIMELINE"
printf '  queue every 5 s: %s\n' "$(cat "$RUN_DIR/samples" 2>/dev/null)"
printf '\n'
printf '%-44s %s\n' \
    "wrk requests completed" "${wrk_sent:-?}${wrk_errors:+ (socket errors: $wrk_errors)}" \
    "redirects answered (302s in access.log)" "$answered" \
    "rows written (shortlink.clicks)" "$written" \
    "rows rejected (shortlink.clicks_rejected)" "$rejected" \
    "dropped (shortlink_clicks_total dropped)" "$dropped" \
    "still queued (some may be written already)" "$q" \
    "poison clicks written / rejected" "$poison_written / $poison_rejected" \
    "lost" "$lost" \
    "duplicated" "$duplicated" \
    "flush batches committed / failed" "$batches_ok / $batches_failed" \
    "clicks enqueued / flushed (metrics)" "$enqueued / $flushed"
printf '\n'
printf 'lost: 302s whose request id is in neither table (%s), minus those\n' "$missing"
printf '  dropped (%s). answered - written - rejected - dropped = %s; the\n' "$dropped" "$net"
printf '  difference is %s rows whose request left no access-log line (a\n' "$unlogged"
printf '  SIGKILLed worker queued the click before the kill, the log line\n'
printf '  comes after the response) and %s duplicates.\n' "$duplicated"
printf 'duplicated: rows in both tables minus distinct event ids (%s in\n' "$((written - written_ids))"
printf '  shortlink.clicks alone).\n'
printf 'worker exits in error.log: %s; SIGKILLed here: %s; unexpected: %s\n' \
    "$exits" "${KILLED:-none}" "$( [ -n "$crashes" ] && echo "$crashes" | wc -l || echo none)"
[ -n "$crashes" ] && printf '  %s\n' "$crashes"
printf 'nginx master alive at the end: %s\n' "$nginx_alive"

printf 'error.log, [error] and above, by message (counts):\n'
grep -E '\[(error|crit|alert|emerg)\]' "$NGX/logs/error.log" \
    | sed -E 's/^[0-9\/]+ [0-9:]+ //; s/[0-9]+#[0-9]+: (\*[0-9]+ )?//;
              s/\b[0-9]+\b/N/g; s/, client: .*//' \
    | cut -c1-150 | sort | uniq -c | sort -rn | head -12 | sed 's/^/  /'

status=0
reasons=
[ "$lost" -gt 0 ] && { status=1; reasons="$reasons lost"; }
[ "$lost" -lt 0 ] && { status=1; reasons="$reasons more-rows-than-answered"; }
[ "$duplicated" -ne 0 ] && { status=1; reasons="$reasons duplicated"; }
[ "$dropped" -ne 0 ] && { status=1; reasons="$reasons dropped"; }
[ "$drained" = yes ] || { status=1; reasons="$reasons not-drained"; }
[ -z "$crashes" ] || { status=1; reasons="$reasons worker-crashed"; }
[ "$nginx_alive" = yes ] || { status=1; reasons="$reasons nginx-gone"; }
[ "$last" = 302 ] || { status=1; reasons="$reasons no-redirect-after-load"; }

if [ $status -eq 0 ]; then
    printf 'result: PASS\n'
else
    printf 'result: FAIL:%s\n' "$reasons"
fi

exit $status
