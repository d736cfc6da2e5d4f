#!/usr/bin/env bash
#
# How fast the statistics answer at volume (issue 12): loads N clicks on
# one link over the last 30 days, plus clicks on 999 other links of the
# same owner, through shortlink.record_clicks() in batches of 20,000, then
# times each read several times in one session and prints the median and
# the maximum (the first, cold run included) against the target of
# 100 ms (50 ms for a page of the access log).  Nothing is asserted.
#
#   bench/stats.sh                 N=10,000,000
#   N=1000000 bench/stats.sh       a quicker run
#
# Environment: N (clicks on the big link, default 10000000), PER_LINK
# (clicks on each of the 999 others, default N / 10000, at least 1),
# BATCH (20000), RUNS (timed runs per read, default 7), TZ_NAME (the zone
# of the tz rows, Europe/Berlin), UNMERGED=1 (time the reads before the
# hourly rows the load appended are merged; by default they are merged
# first, and the time it took is printed).
#
# The reads:
#   link_stats of the big link: 30 days by day, 7 days by hour, 1 day by
#   hour, 365 days by day (UTC), and 30 days by day in TZ_NAME;
#   set_stats of the owner's 1,000 links, 30 days by day, and of the 200
#   with tag "campaign";
#   a page of 50 of link_clicks (the access log) from a cursor in the
#   middle of the 30 days.
# Before migration 014 link_stats has no time zone argument and there is
# no set_stats: those rows then say "n/a" and the others use the old
# four-argument link_stats.
#
# The clicks, in time order (as the flusher writes them), evenly spread
# over 30 days up to a minute ago: the other links' clicks interleaved
# with the big link's; 60 % from a pool of returning visitors (one fifth
# as many as the clicks), 39 % new ones, 1 % without visitor id or
# address (Do Not Track); 320 user agents (one in eight a bot), a quarter
# without referrer, 200 referrer hosts; extra fields country (40 values),
# language (30), and source "qr" on one click in 20.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../build.sh
. "$BENCH_DIR/../build.sh"

N=${N:-10000000}
PER_LINK=${PER_LINK:-$(( N / 10000 > 0 ? N / 10000 : 1 ))}
BATCH=${BATCH:-20000}
RUNS=${RUNS:-7}
TZ_NAME=${TZ_NAME:-Europe/Berlin}
OTHERS=999

install_packages

trap stop_services EXIT
trap 'exit 130' INT TERM

start_services 18432

sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$SHORTLINK_DSN" "$@"; }

log "schema: $(cd "$ROOT" && ls sql/[0-9][0-9][0-9]_*.sql | tail -1)"

sql <<SQL
INSERT INTO shortlink.links (code, url, owner, tags)
SELECT 's' || i, 'https://example.com/s/' || i, 'bench-owner',
       CASE WHEN i <= 200 THEN '{campaign}'::text[] ELSE '{}' END
  FROM generate_series(1, $OTHERS + 1) i;
ANALYZE shortlink.links;

CREATE TABLE public.bench_uas (k integer PRIMARY KEY, ua text NOT NULL);
INSERT INTO public.bench_uas
SELECT k, CASE k % 8
    WHEN 0 THEN format('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s.0.%s.0 Safari/537.36', 80 + k % 40, k)
    WHEN 1 THEN format('Mozilla/5.0 (X11; Linux x86_64; rv:%s.0) Gecko/20100101 Firefox/%s.0', 90 + k % 30, 90 + k % 30)
    WHEN 2 THEN format('Mozilla/5.0 (iPhone; CPU iPhone OS 17_%s like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%s Mobile/15E148 Safari/604.1', k % 7, k % 5)
    WHEN 3 THEN format('Mozilla/5.0 (Linux; Android %s; Pixel %s) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s.0.0.0 Mobile Safari/537.36', 10 + k % 5, k % 9, 100 + k % 20)
    WHEN 4 THEN format('Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_%s) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.%s Safari/605.1.15', k % 8, k % 6)
    WHEN 5 THEN format('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s.0.0.0 Safari/537.36 Edg/%s.0.%s.0', 100 + k % 20, 100 + k % 20, k)
    WHEN 6 THEN format('Mozilla/5.0 (iPad; CPU OS 16_%s like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.%s Mobile/15E148 Safari/604.1', k % 6, k % 4)
    ELSE format('Mozilla/5.0 (compatible; Googlebot/2.%s; +http://www.google.com/bot.html) v%s', k % 3, k)
    END
  FROM generate_series(0, 319) k;

-- click j of t (0-based): its time, link, visitor, address, headers
CREATE PROCEDURE public.bench_load(p_n bigint, p_m bigint, p_batch integer,
                                   p_start_ms bigint, p_span_ms bigint)
LANGUAGE plpgsql AS \$\$
DECLARE
    t     bigint := p_n + p_m;
    pool  bigint := greatest((p_n + p_m) / 5, 1);
    j0    bigint := 0;
    b     integer := 0;
BEGIN
    WHILE j0 < t LOOP
        PERFORM shortlink.record_clicks(a.ids, a.ms, a.codes, a.ips, a.uas,
                                        a.refs, a.visitors, a.extra)
          FROM (SELECT array_agg(md5('bench event ' || j)::uuid) AS ids,
                       array_agg(p_start_ms + j * p_span_ms / t) AS ms,
                       array_agg(CASE WHEN (j + 1) * p_m / t > j * p_m / t
                                      THEN 's' || (2 + (j * 7) % 999)
                                      ELSE 's1' END) AS codes,
                       array_agg(CASE WHEN v.id IS NULL THEN NULL
                                      ELSE format('10.%s.%s.%s', (v.id >> 16) & 255,
                                                  (v.id >> 8) & 255, v.id & 255)
                                 END) AS ips,
                       array_agg(u.ua) AS uas,
                       array_agg(CASE WHEN j % 4 = 0 THEN NULL
                                      ELSE format('https://ref%s.example/p/%s',
                                                  j % 200, j % 997) END) AS refs,
                       array_agg(CASE WHEN v.id IS NULL THEN NULL
                                      ELSE md5('bench visitor ' || v.id) END) AS visitors,
                       array_agg(jsonb_strip_nulls(jsonb_build_object(
                           'country', 'C' || (j * 13) % 40,
                           'language', 'l' || (j * 17) % 30,
                           'source', CASE WHEN j % 20 = 0 THEN 'qr' END))) AS extra
                  FROM generate_series(j0, least(j0 + p_batch, t) - 1) j
                  JOIN public.bench_uas u ON u.k = (j * 7919) % 320
                 CROSS JOIN LATERAL (
                       SELECT CASE WHEN j % 100 = 99 THEN NULL
                                   WHEN j % 10 < 6 THEN (j * 2654435761) % pool
                                   ELSE pool + j END AS id) v) a;
        COMMIT;
        j0 := j0 + p_batch;
        b := b + 1;
        IF b % 50 = 0 THEN
            RAISE NOTICE 'bench: % of % clicks', j0, t;
        END IF;
    END LOOP;
END;
\$\$;

CREATE FUNCTION public.bench_time(p_sql text, p_runs integer)
RETURNS TABLE (ms numeric)
LANGUAGE plpgsql AS \$\$
DECLARE
    t0  timestamptz;
BEGIN
    FOR i IN 1 .. p_runs LOOP
        t0 := clock_timestamp();
        EXECUTE p_sql;
        ms := round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1);
        RETURN NEXT;
    END LOOP;
END;
\$\$;
SQL

M=$(( OTHERS * PER_LINK ))
log "loading $N clicks on s1 and $M on s2..s1000 (batches of $BATCH)"
start=$(date +%s)

sql -c "CALL public.bench_load($N, $M, $BATCH,
            (extract(epoch FROM now() - interval '30 days') * 1000)::bigint,
            30::bigint * 86400000 - 60000)" 2>&1 \
    | sed 's/^.*NOTICE:  bench: /    /' >&2

load_s=$(( $(date +%s) - start ))

# record_clicks merges the hourly rows of at most so many (link, hour)s
# every 10 s: enough for clicks as they come, not for 30 days loaded in
# minutes.  A flusher that keeps running merges the backlog; here it is
# merged at once, as the reads would find it a while after such a load
# (UNMERGED=1 skips this, to time reads of unmerged rows)
merge_s=skipped
if [ "${UNMERGED:-0}" != 1 ]; then
    start=$(date +%s)
    sql -c "DO \$\$ BEGIN
                WHILE shortlink.compact_hourly_clicks(5000) > 0 LOOP END LOOP;
            END \$\$"
    merge_s="$(( $(date +%s) - start )) s"
fi
# and vacuumed, as autovacuum would have by then (the merge leaves the
# rows it replaced dead)
start=$(date +%s)
sql -c "VACUUM (ANALYZE)" 2>/dev/null || true
vacuum_s=$(( $(date +%s) - start ))

have_tz=$(sql -c "SELECT to_regprocedure('shortlink.link_stats(text,timestamptz,timestamptz,text,text)') IS NOT NULL")
have_set=$(sql -c "SELECT to_regprocedure('shortlink.set_stats(text,text,timestamptz,timestamptz,text,text)') IS NOT NULL")

# the click in the middle of the 30 days, for the access log's cursor
cursor=$(sql -c "
    SELECT shortlink.click_cursor('s1', clicked_at, event_id)
      FROM shortlink.clicks
     WHERE code = 's1' AND clicked_at >= now() - interval '15 days'
     ORDER BY clicked_at, event_id LIMIT 1")

ls_call() {   # days, interval[, tz]
    if [ "$have_tz" = t ]; then
        echo "SELECT shortlink.link_stats('s1', now() - interval '$1 days', now(), '$2', '${3:-UTC}')"
    elif [ -z "${3:-}" ]; then
        echo "SELECT shortlink.link_stats('s1', now() - interval '$1 days', now(), '$2')"
    fi
}

set_call() {   # tag or NULL
    [ "$have_set" = t ] || return 0
    echo "SELECT shortlink.set_stats('bench-owner', $1, now() - interval '30 days', now(), 'day', 'UTC')"
}

declare -a names calls targets
add() { names+=("$1"); calls+=("$2"); targets+=("${3:-100}"); }

add "link_stats 30 d by day"            "$(ls_call 30 day)"
add "link_stats 7 d by hour"            "$(ls_call 7 hour)"
add "link_stats 1 d by hour"            "$(ls_call 1 hour)"
add "link_stats 365 d by day"           "$(ls_call 365 day)"
add "link_stats 30 d by day, $TZ_NAME"  "$(ls_call 30 day "$TZ_NAME")"
add "set_stats owner, 1,000 links, 30 d" "$(set_call NULL)"
add "set_stats tag, 200 links, 30 d"    "$(set_call "'campaign'")"
add "link_clicks page of 50, mid-range" \
    "SELECT count(*) FROM shortlink.link_clicks('s1', now() - interval '30 days', now(), '$cursor', 50)" \
    50

rows=$(sql -c "SELECT count(*), count(*) FILTER (WHERE code = 's1') FROM shortlink.clicks")
size=$(sql -c "SELECT pg_size_pretty(pg_database_size(current_database()))")

printf '\nstatistics reads: %s clicks on one link, %s on 999 others (rows: %s), one owner\n' \
    "$N" "$M" "${rows/|/, on s1: }"
printf 'loaded in %s s, merged in %s, vacuumed in %s s; database %s\n' \
    "$load_s" "$merge_s" "$vacuum_s" "$size"
printf '%s runs each, ms (the first run included); ok: the median is below\n' "$RUNS"
printf 'the target, SLOW: it is not\n\n'
printf '%-40s %9s %9s %9s  %s\n' read median max target ''

for i in "${!names[@]}"; do
    if [ -z "${calls[$i]}" ]; then
        printf '%-40s %9s %9s %9s\n' "${names[$i]}" n/a n/a "< ${targets[$i]}"
        continue
    fi
    q=${calls[$i]//\'/\'\'}
    read -r med max < <(sql -F ' ' -c "
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), max(ms)
          FROM public.bench_time('$q', $RUNS)")
    verdict=$(awk -v m="$med" -v t="${targets[$i]}" 'BEGIN { print (m < t) ? "ok" : "SLOW" }')
    printf '%-40s %9s %9s %9s  %s\n' "${names[$i]}" "$med" "$max" "< ${targets[$i]}" "$verdict"
done
