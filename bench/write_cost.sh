#!/usr/bin/env bash
#
# PostgreSQL's CPU per click of shortlink.record_clicks(): the backend's
# utime + stime (/proc/<pid>/stat) before and after writing 200,000 clicks
# over 1,000 links, every click a new visitor (and a new address), in
# batches of 5,000 and of 20,000; and with the merge of the hourly rows
# they appended (shortlink.compact_hourly_clicks(), which record_clicks
# runs every 10 seconds at most, so a run of a few seconds would leave
# most of it out), run to the end on the same connection right after.  The method of the figures in README
# "Click throughput" (sql/010); run it before and after a change to the
# write path and compare.  Nothing is asserted.
#
#   bench/write_cost.sh [repetitions=5]
#
# WRITE_COST_BATCHES="5000 20000" picks the batch sizes, WRITE_COST_CLICKS
# (200000) the clicks per run.  WRITE_COST_MERGE_EVERY=k also merges
# (compact_hourly_clicks to the end) after every k batches, inside the
# measured part: what record_clicks' merges every 10 seconds cost at a
# rate of k batches per 10 s (0, the default: no merge until the end).
#
# Each run writes the same clicks into a fresh copy of one prepared
# database (CREATE DATABASE ... TEMPLATE), on one connection: the clicks
# are prepared in advance as the arrays the flusher sends, one row per
# batch in public.bench_batches, so a run measures record_clicks() and the
# reading of its arguments, not their generation.  Before the run a
# warm-up batch of 200 clicks (other event ids) fills the backend's caches
# and plans.  The clicks lie within 200 seconds of one UTC hour, the
# current one (a flush writes clicks seconds old: one hour per link and
# batch; WRITE_COST_HOUR=closed puts them two hours back, as a backlog
# would: since sql/022 a merge folds such an hour at once, where it only
# appends to an open one),
# codes round-robin over the links, 320 user agents (browsers, OSes,
# devices, some bots), 50 referrer hosts, extra fields country (20 values)
# and language (12 values).
#
# CPU time is counted by the kernel in ticks (10 ms), so a run of a few
# seconds is good to about 0.5 %.  The machine may be busy: CPU time is
# the backend's own, but shared caches make a busy machine somewhat
# slower; compare runs made under the same load.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../build.sh
. "$BENCH_DIR/../build.sh"

REPS=${1:-5}
BATCHES=${WRITE_COST_BATCHES:-"5000 20000"}
CLICKS=${WRITE_COST_CLICKS:-200000}
MERGE_EVERY=${WRITE_COST_MERGE_EVERY:-0}
HOURS_BACK=0
[ "${WRITE_COST_HOUR:-current}" = closed ] && HOURS_BACK=2
LINKS=1000

install_packages

trap stop_services EXIT
trap 'exit 130' INT TERM

start_services 17432

SU_DSN="host=127.0.0.1 port=$PG_PORT dbname=postgres user=postgres"
TICK=$(getconf CLK_TCK)

log "preparing $CLICKS clicks over $LINKS links, batches of: $BATCHES"

psql -X -q -v ON_ERROR_STOP=1 "$SHORTLINK_DSN" >/dev/null <<SQL
INSERT INTO shortlink.links (code, url, owner)
SELECT 'w' || i, 'https://example.com/w/' || i, 'bench'
  FROM generate_series(1, $LINKS) i;

-- 320 user agents: desktop and mobile browsers of many versions, bots
CREATE TABLE public.bench_uas AS
SELECT k, CASE k % 8
    WHEN 0 THEN format('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s.0.%s.0 Safari/537.36', 80 + k % 40, k)
    WHEN 1 THEN format('Mozilla/5.0 (X11; Linux x86_64; rv:%s.0) Gecko/20100101 Firefox/%s.0', 90 + k % 30, 90 + k % 30)
    WHEN 2 THEN format('Mozilla/5.0 (iPhone; CPU iPhone OS 17_%s like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%s Mobile/15E148 Safari/604.1', k % 7, k % 5)
    WHEN 3 THEN format('Mozilla/5.0 (Linux; Android %s; Pixel %s) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s.0.0.0 Mobile Safari/537.36', 10 + k % 5, k % 9, 100 + k % 20)
    WHEN 4 THEN format('Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_%s) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.%s Safari/605.1.15', k % 8, k % 6)
    WHEN 5 THEN format('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s.0.0.0 Safari/537.36 Edg/%s.0.%s.0', 100 + k % 20, 100 + k % 20, k)
    WHEN 6 THEN format('Mozilla/5.0 (iPad; CPU OS 16_%s like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.%s Mobile/15E148 Safari/604.1', k % 6, k % 4)
    ELSE format('Mozilla/5.0 (compatible; Googlebot/2.%s; +http://www.google.com/bot.html) v%s', k % 3, k)
    END AS ua
  FROM generate_series(0, 319) k;

CREATE TABLE public.bench_clicks AS
SELECT i,
       md5('event ' || i)::uuid AS event_id,
       (extract(epoch FROM date_trunc('hour', now()) - interval '$HOURS_BACK hours')
           * 1000)::bigint + 600000 + i % 200000 AS ms,
       'w' || (1 + i % $LINKS) AS code,
       format('10.%s.%s.%s', (i >> 16) & 255, (i >> 8) & 255, i & 255) AS ip,
       u.ua,
       CASE WHEN i % 4 = 0 THEN NULL
            ELSE format('https://ref%s.example/page/%s', i % 50, i % 997)
       END AS referer,
       md5('visitor ' || i) AS visitor,
       jsonb_build_object(
           'country', (ARRAY['DE','US','FR','GB','NL','IT','ES','PL','SE','AT',
                             'CH','BE','DK','NO','FI','IE','PT','CZ','JP','BR'])[1 + i % 20],
           'language', (ARRAY['de','en-us','fr','en-gb','nl','it','es','pl',
                              'sv','de-at','ja','pt-br'])[1 + i % 12]) AS extra
  FROM generate_series(1, $CLICKS) i
  JOIN public.bench_uas u ON u.k = (i * 7919) % 320;

CREATE TABLE public.bench_batches (size integer, b integer, ids uuid[],
    ms bigint[], codes text[], ips text[], uas text[], refs text[],
    visitors text[], extra jsonb[]);

INSERT INTO public.bench_batches
SELECT s, (i - 1) / s, array_agg(event_id ORDER BY i), array_agg(ms ORDER BY i),
       array_agg(code ORDER BY i), array_agg(ip ORDER BY i),
       array_agg(ua ORDER BY i), array_agg(referer ORDER BY i),
       array_agg(visitor ORDER BY i), array_agg(extra ORDER BY i)
  FROM public.bench_clicks, unnest('{$(echo $BATCHES | tr ' ' ,)}'::int[]) s
 GROUP BY s, (i - 1) / s;

-- the warm-up batch: the same hour, other event ids and visitors
INSERT INTO public.bench_batches
SELECT 0, -1, array_agg(md5('warm-up ' || i)::uuid), array_agg(ms),
       array_agg(code), array_agg(ip), array_agg(ua), array_agg(referer),
       array_agg(md5('warm-up visitor ' || i)), array_agg(extra)
  FROM public.bench_clicks WHERE i <= 200;

-- the day's partition exists before any run, as it would in production
SELECT shortlink.ensure_click_partitions(
           (to_timestamp(min(ms) / 1000.0))::date,
           (to_timestamp(max(ms) / 1000.0))::date)
  FROM public.bench_clicks;

DROP TABLE public.bench_clicks, public.bench_uas;
VACUUM ANALYZE public.bench_batches;
ANALYZE shortlink.links;
SQL

# one run: a fresh copy of the database, the warm-up, then every batch of
# the size on one connection, one statement (transaction) each, as the
# flusher sends them, then the merge; prints CPU seconds and wall seconds
# of the batches, and CPU seconds of batches and merge
run_once() {
    local size=$1 db=bench_run out

    PGOPTIONS='-c client_min_messages=warning' \
        psql -X -q -v ON_ERROR_STOP=1 "$SU_DSN" \
        -c "DROP DATABASE IF EXISTS $db" \
        -c "CREATE DATABASE $db TEMPLATE shortlink OWNER shortlink"

    out=$RUN_DIR/run.out
    : > "$out"

    psql -X -q -At -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$PG_PORT dbname=$db user=shortlink" <<SQL >/dev/null
SELECT shortlink.record_clicks(ids, ms, codes, ips, uas, refs, visitors, extra)
  FROM public.bench_batches WHERE size = 0;
SELECT pg_backend_pid() AS pid \gset
\setenv BENCH_PID :pid
\setenv BENCH_OUT $out
\! awk '{ print \$14 + \$15 }' /proc/\$BENCH_PID/stat >> \$BENCH_OUT; date +%s.%N >> \$BENCH_OUT
$(for ((b = 0; b < (CLICKS + size - 1) / size; b++)); do
    echo "SELECT shortlink.record_clicks(ids, ms, codes, ips, uas, refs, visitors, extra) FROM public.bench_batches WHERE size = $size AND b = $b;"
    if [ "$MERGE_EVERY" -gt 0 ] && [ $(((b + 1) % MERGE_EVERY)) -eq 0 ]; then
        echo "DO \$\$ BEGIN WHILE shortlink.compact_hourly_clicks(5000) > 0 LOOP END LOOP; END \$\$;"
    fi
done)
\! awk '{ print \$14 + \$15 }' /proc/\$BENCH_PID/stat >> \$BENCH_OUT; date +%s.%N >> \$BENCH_OUT
DO \$\$
BEGIN
    -- since 022: the open hour folded too, as the first merge after it
    -- closed would, so that + merge is everything a click costs
    IF to_regprocedure('shortlink.compact_hourly_clicks(integer,timestamptz)') IS NOT NULL THEN
        WHILE shortlink.compact_hourly_clicks(5000, 'infinity') > 0 LOOP END LOOP;
    ELSE
        WHILE shortlink.compact_hourly_clicks(5000) > 0 LOOP END LOOP;
    END IF;
END
\$\$;
\! awk '{ print \$14 + \$15 }' /proc/\$BENCH_PID/stat >> \$BENCH_OUT; date +%s.%N >> \$BENCH_OUT
SQL

    # ticks and time: before, after the batches, after the merge
    awk -v tick="$TICK" 'NR == 1 { t0 = $1 } NR == 2 { w0 = $1 }
                         NR == 3 { t1 = $1 } NR == 4 { w1 = $1 }
                         NR == 5 { t2 = $1 }
                         END { printf "%.2f %.2f %.2f\n", (t1 - t0) / tick,
                                   w1 - w0, (t2 - t0) / tick }' "$out"
}

median() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }'; }

printf '\nrecord_clicks(): backend CPU per click, %s clicks over %s links, new visitors\n' \
    "$CLICKS" "$LINKS"
[ "$MERGE_EVERY" -gt 0 ] && printf 'merging after every %s batches\n' "$MERGE_EVERY"
printf 'schema: %s\n\n' "$(cd "$ROOT" && ls sql/[0-9][0-9][0-9]_*.sql | tail -1)"
printf '%-8s %-16s %-36s %8s %8s %8s\n' batch '' 'us/click per run' median min max

row() {   # batch, what, values...
    local size=$1 what=$2
    shift 2
    printf '%-8s %-16s %-36s %8s %8s %8s\n' "$size" "$what" "$*" \
        "$(printf '%s\n' "$@" | median)" \
        "$(printf '%s\n' "$@" | sort -n | head -1)" \
        "$(printf '%s\n' "$@" | sort -n | tail -1)"
}

us() { awk -v c="$1" -v n="$CLICKS" 'BEGIN { printf "%.1f", c * 1e6 / n }'; }

for size in $BATCHES; do
    runs=()
    merged=()
    for _ in $(seq "$REPS"); do
        read -r cpu wall all < <(run_once "$size")
        runs+=("$(us "$cpu")")
        merged+=("$(us "$all")")
        log "batch $size: ${cpu}s CPU, ${wall}s wall; with the merge ${all}s CPU"
    done
    row "$size" record_clicks "${runs[@]}"
    row "$size" '+ merge' "${merged[@]}"
done
