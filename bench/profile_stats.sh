#!/usr/bin/env bash
#
# Read times of a profile's statistics (shortlink.profile_stats(), the SQL
# under GET /profiles/{username}/stats, sql/015): a profile of ENTRIES
# links (default 100) with N clicks (default 1,000,000) over the last 30
# days, written through record_clicks() in batches of 20,000: a third of
# them views of the page (code _p<id>, kind profile_view), the rest clicks
# on the entries' links, half of those marked source "profile" (from the
# page), the other half not.  The rollups are merged and vacuumed, then
# each read runs RUNS times (default 7).  Target: < 100 ms, like a link's
# statistics (issue "Analytics that answer in milliseconds").
#
#   bench/profile_stats.sh                    # 1,000,000 clicks
#   N=200000 ENTRIES=20 bench/profile_stats.sh
#
# Starts its own throw-away PostgreSQL like ./build.sh test (build.sh's
# start_services) and stops it at the end.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../build.sh
. "$BENCH_DIR/../build.sh"

N=${N:-1000000}
ENTRIES=${ENTRIES:-100}
BATCH=${BATCH:-20000}
RUNS=${RUNS:-7}

install_packages

trap stop_services EXIT
trap 'exit 130' INT TERM

start_services 19432

sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$SHORTLINK_DSN" "$@"; }

sql <<SQL
INSERT INTO shortlink.links (code, url, owner)
SELECT 'e' || i, 'https://example.com/e/' || i, 'bench-owner'
  FROM generate_series(1, $ENTRIES) i;
INSERT INTO shortlink.profiles (username, owner, display_name)
     VALUES ('bench', 'bench-owner', 'Bench');
INSERT INTO shortlink.profile_entries (profile_id, position, link_code, title)
SELECT p.id, i - 1, 'e' || i, 'Entry ' || i
  FROM shortlink.profiles p, generate_series(1, $ENTRIES) i
 WHERE p.username = 'bench';

CREATE PROCEDURE public.bench_load(p_n bigint, p_batch integer, p_view text,
                                   p_entries integer, p_start_ms bigint,
                                   p_span_ms bigint)
LANGUAGE plpgsql AS \$\$
DECLARE
    j0  bigint := 0;
BEGIN
    WHILE j0 < p_n LOOP
        PERFORM shortlink.record_clicks(a.ids, a.ms, a.codes, a.ips, a.uas,
                                        a.refs, a.visitors, a.extra)
          FROM (SELECT array_agg(md5('bench event ' || j)::uuid) AS ids,
                       array_agg(p_start_ms + j * p_span_ms / p_n) AS ms,
                       array_agg(CASE WHEN j % 3 = 0 THEN p_view
                                      ELSE 'e' || (1 + j % p_entries) END) AS codes,
                       array_agg(format('10.%s.%s.%s', (j >> 16) & 255,
                                        (j >> 8) & 255, j & 255)) AS ips,
                       array_agg('Mozilla/5.0 (X11; Linux x86_64; rv:121.0) '
                                 'Gecko/20100101 Firefox/121.0'::text) AS uas,
                       array_agg(CASE WHEN j % 3 = 0
                                      THEN 'https://social.example/u/' || j % 50
                                      ELSE 'https://sho.rt/@bench' END) AS refs,
                       array_agg(md5('bench visitor ' || j % 100000)) AS visitors,
                       array_agg(CASE WHEN j % 3 = 0
                                      THEN '{"kind": "profile_view"}'::jsonb
                                      WHEN j % 2 = 0
                                      THEN '{"source": "profile"}'::jsonb
                                      ELSE '{}'::jsonb END) AS extra
                  FROM generate_series(j0, least(j0 + p_batch, p_n) - 1) j) a;
        COMMIT;
        j0 := j0 + p_batch;
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

id=$(sql -c "SELECT id FROM shortlink.profiles WHERE username = 'bench'")

log "loading $N clicks: views of _p$id and clicks on $ENTRIES entries"
start=$(date +%s)
sql -c "CALL public.bench_load($N, $BATCH, '_p$id', $ENTRIES,
            (extract(epoch FROM now() - interval '30 days') * 1000)::bigint,
            30::bigint * 86400000 - 60000)"
load_s=$(( $(date +%s) - start ))

# merged and vacuumed, as a running flusher and autovacuum leave them
start=$(date +%s)
sql -c "DO \$\$ BEGIN
            WHILE shortlink.compact_hourly_clicks(5000) > 0 LOOP END LOOP;
        END \$\$"
sql -c "VACUUM (ANALYZE)" 2>/dev/null || true
merge_s=$(( $(date +%s) - start ))

printf '\nprofile statistics: %s clicks over 30 days, %s entries\n' "$N" "$ENTRIES"
printf 'loaded in %s s, merged and vacuumed in %s s; %s runs each, ms\n\n' \
    "$load_s" "$merge_s" "$RUNS"
printf '%-36s %9s %9s %9s  %s\n' read median max target ''

codes="ARRAY(SELECT ''e'' || i FROM generate_series(1, $ENTRIES) i)"
for what in "profile_stats, 1 d" "profile_stats, 7 d" "profile_stats, 30 d" \
            "  its link_stats of the views, 30 d" \
            "  its profile_source_clicks, 30 d"
do
    case $what in
    profile_stats*)
        days=${what#profile_stats, }; days=${days% d}
        q="SELECT shortlink.profile_stats($id, now() - interval ''$days days'', now(), ''UTC'')" ;;
    *link_stats*)
        q="SELECT shortlink.link_stats(''_p$id'', now() - interval ''30 days'', now(), ''day'', ''UTC'')" ;;
    *)
        q="SELECT count(*) FROM shortlink.profile_source_clicks($codes, date_trunc(''hour'', now() - interval ''30 days''), date_trunc(''hour'', now()))" ;;
    esac
    read -r med max < <(sql -F ' ' -c "
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), max(ms)
          FROM public.bench_time('$q', $RUNS)")
    verdict=$(awk -v m="$med" 'BEGIN { print (m < 100) ? "ok" : "SLOW" }')
    printf '%-36s %9s %9s %9s  %s\n' "$what" "$med" "$max" "< 100" "$verdict"
done

# the figures are right: views and entry clicks from the rollups equal the
# clicks loaded (the whole range)
sql -c "
    SELECT format('check: views %s (loaded %s), entry clicks from the page %s (loaded %s)',
                  s -> 'views', (SELECT count(*) FROM shortlink.clicks WHERE code = '_p$id'),
                  s -> 'clicks',
                  (SELECT count(*) FROM shortlink.clicks
                    WHERE code <> '_p$id' AND extra ->> 'source' = 'profile'))
      FROM shortlink.profile_stats($id, now() - interval '31 days', now() + interval '1 hour') s"
