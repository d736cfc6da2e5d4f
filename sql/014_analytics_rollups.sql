-- 014_analytics_rollups.sql: every statistic from rollups, never from raw
-- clicks; time zones, "today", hour-of-day and weekday distributions, new
-- vs returning visitors, and statistics of a set of links (an owner's, or
-- an owner's with a tag).
--
-- Rollups (all fed by record_clicks and compact_hourly_clicks, kept
-- forever; purge_clicks never touches them):
--
--   link_hourly_clicks (010)  per link and UTC hour: pv, bots, visitor and
--       address sketches, and now the hour's top-list counts: a batch
--       appends, per (link, hour) it touches, the plain values of its
--       clicks (attrs: a two-dimensional array, one row of 8 values per
--       click, no counting); the merge of compact_hourly_clicks turns them
--       into counts (tops: {"browsers": {"Chrome": 12, ...}, ...}).
--   link_daily_clicks         per link and UTC day: the same figures for
--       the day, for closed days only: rolled up once when the day has
--       ended (stats_rollup_days, run by the merge), added to by the merge
--       only for late rows; whole closed UTC days of a range are read
--       from it (1 row a day instead of 24) where no bucket needs hours,
--       the days from hourly_compaction.daily_through on from the hours.
--   owner_hourly_clicks       per owner and UTC hour, and
--   owner_daily_clicks        per owner and UTC day: the sums of the
--       owner's links (pv, bots, the union of the sketches, top-list
--       counts), the hours added to by the merge, the days closed days
--       only, like link_daily_clicks: an owner's statistics read 24 rows
--       (or 1) a day whatever the number of links.
--
-- The write path: a click costs the batch one more 8-element array in
-- its (link, hour) row (no per-value rows, no counting in the batch); the
-- counting happens in the merge, once per (link, hour) every 10 seconds
-- at most.  Backend CPU per click, record_clicks() of 200,000 clicks over
-- 1,000 links (10 owners) in batches of 5,000, each a new visitor, 3 extra
-- fields per click (country, language, network), /proc/<backend>/stat
-- utime+stime before and after the batches, then the merge of everything
-- left run to the end, on a shared, loaded 2-core machine (compare the
-- two, not the absolute values; +-1 us between runs):
--
--                              013 (before)   014
--   merges every 10 s          15.7-19.2 us   28.7-31.4 us
--   batches, then one merge    17.5 us        24.6 us
--
-- (pairs of runs back to back, 3 pairs and 1; the machine's load varies
-- between pairs).  So a click costs 7-13 us (40-80 %) more: about 1 us
-- for the attrs in the batch, 4 us for counting 8 values per click in
-- the merge (hashed aggregation; sorting costs 5.6 us), the rest adding
-- up counts and sketches into the merged hour, the day and the owner
-- (with merges every 10 s most pairs are merged into rows merged before,
-- and their days again: per (link, hour) and merge, not per click, so it
-- weighs less the more clicks a link gets per 10 s).  The issue's bound
-- (no more than before) is NOT met.  Tried and worse: counting in the
-- batch (a jsonb map per (link, hour) row: 45 us, small groups, 3 levels
-- of aggregation); adding maps pairwise in an aggregate (quadratic in the
-- number of links of an owner); one set-based statement for all tiers
-- (the merge turns hashed aggregation off for the sketches, so it sorted
-- 8 values per click: 46 us).  Left to do: counting in C in the flusher
-- (values per link and hour of a batch), and building the daily tiers
-- once per closed day instead of at every merge (the same run without the
-- daily tiers' upserts: 22.7 us, so they are 6-9 us of it here).
--
-- Since then (helper "perf"): the daily tiers hold closed days only,
-- rolled up once per day instead of updated at every merge, and the merge
-- counts the top lists of all its pairs in one hashed query
-- (stats_merge_tops) instead of two SQL function calls per (link, hour)
-- (70-100 us each).  bench/write_cost.sh, batches of 5,000, 3 runs each,
-- median, the three schemas back to back:
--
--                                    013        014 before   014 now
--   batches, then one merge          19.1 us    26.4 us      27.9 us
--   a merge every 2 batches          21.2-25.6  71.7-91.8    52.6-55.1
--   (WRITE_COST_MERGE_EVERY=2: 10 clicks per link and merge)
--
-- So nothing measurable with one merge, about 40 % less with frequent
-- merges, and still NOT within the bound (013's cost): counting in SQL
-- costs about 1 us per distinct value per (link, hour) and merge (9 us
-- per click at 10 clicks per link and merge), expanding the merged hour's
-- map again at every merge about 4 us.  Left: counting in C in the
-- flusher, or leaving the open hour's values uncounted until it ends.
--
-- Reads (1,100,000 clicks: 1,000,000 on one link over 30 days, 100,000
-- over 999 more links of the same owner, 100 of them tagged; merged;
-- loaded machine, warm session): link 30 days by day 27-43 ms (Europe/
-- Berlin 74-81 ms: local days are read by the hour), 7 days by hour
-- 42-65 ms, 1 day by hour 15-22 ms, 365 days by day 27-39 ms (UTC; read
-- from the daily tier), owner 30 days by day 27-42 ms (Berlin 73-79 ms),
-- a tag of 100 links 30 days 259-351 ms (NOT within 100 ms: a tag reads
-- each link's rows, one sketch union per link and day, 40-80 us each).
-- Since then (helper "perf"): a tag's rows are added up per bucket by the
-- aggregate (stats_bucket_rows), the hours outside whole days are read as
-- two index ranges, and stats_doc runs with jit off (JIT compiled the
-- top-list query: 150 ms a call).  N=1000000 bench/stats.sh, back to
-- back: a tag of 200 links over 30 days 671 -> 281 ms (median), still NOT
-- within 100 ms (top lists: one jsonb map per link and day expanded; the
-- hour-of-day and weekday figures read every hourly row of the links).
-- Reads do not depend on the number of clicks, only on rows: hours or
-- days x links (dense sketches are 2.5 kB whatever the count).
--
-- Readers (link_stats, set_stats) never read shortlink.clicks: a purge of
-- raw clicks changes no statistic.  Top lists are exact counts; uv,
-- unique IPs and new/returning visitors come from the HyperLogLog
-- sketches of 010 (exact up to 320 distinct values, about 1.6 % standard
-- error beyond).
--
-- Time zones: rollups are by UTC hour.  An hour belongs to the local day,
-- local hour of day and weekday in which it starts.  For zones whose
-- offset is a whole number of hours (nearly all) that is exact, DST days
-- included (a day bucket of the day clocks go back has 25 hours, of the
-- day they go forward 23).  For zones with a half- or quarter-hour offset
-- (Asia/Kolkata, Australia/Adelaide, Asia/Kathmandu) the first 30 (45)
-- minutes of a local day are counted in the day before, since the hour
-- they fall in starts then; "today" likewise starts at the first whole
-- UTC hour after local midnight.
--
-- New vs returning visitors: a visitor is returning in a bucket when their
-- visitor id was seen on the link (the set) before the bucket began.  With
-- B the sketch of the bucket and P the union of all the link's sketches
-- before it (all history), returning = |B| + |P| - |B u P| (inclusion-
-- exclusion), clamped to 0..|B|, and new = |B| - returning; totals use the
-- whole range as B.  Exact while B u P holds at most 320 distinct
-- visitors (explicit sketches); beyond, the error is that of three
-- estimates, about 1.6 % of |B u P| each, so it is small compared with |B|
-- only when |B| is not much smaller than the link's whole audience: for a
-- bucket of 1,000 visitors on a link with 1,000,000 before it, the figure
-- is noise (standard error ~ 20,000).  README says the same.

-- --- merge everything appended so far, in the format of 010 -----------------------

DO $$
BEGIN
    WHILE shortlink.compact_hourly_clicks(5000) > 0 LOOP
    END LOOP;
END;
$$;

ALTER TABLE shortlink.link_hourly_clicks
    ADD COLUMN attrs text[],
    ADD COLUMN tops jsonb;

-- attrs is written once and read once: compressing it costs more than it
-- saves (1-2 us per click)
ALTER TABLE shortlink.link_hourly_clicks ALTER COLUMN attrs SET STORAGE EXTERNAL;

COMMENT ON COLUMN shortlink.link_hourly_clicks.attrs IS
    'Rows appended by a batch: one row of 8 values per click (a two-'
    'dimensional array): referrer host, browser, os, device, '
    'extra->>''country'', extra->>''language'', extra->>''network'', '
    'extra->>''source'' (NULL: none); counted into tops by the merge';
COMMENT ON COLUMN shortlink.link_hourly_clicks.tops IS
    'Merged rows: the hour''s top-list counts, {"referrers": {value: n}, '
    '"browsers", "os", "devices", "countries", "languages", "networks", '
    '"sources"} (lists without a value left out)';

-- the names of the top lists, in the order of the values in attrs
CREATE FUNCTION shortlink.stats_lists()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['referrers', 'browsers', 'os', 'devices', 'countries',
                 'languages', 'networks', 'sources']
$$;

-- Counting and adding up top-list counts: hashed aggregation, whatever
-- the caller's enable_hashagg (the merge turns it off for the sketches);
-- sorting the values instead costs twice as much.  Maps are added up by
-- collecting them and summing once (an aggregate that added each map to
-- the sum so far made summing n maps cost n times the size of the sum).

-- the counts of attrs arrays (concatenated) as a tops map
CREATE FUNCTION shortlink.stats_count_attrs(p_attrs text[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET enable_hashagg = on
AS $$
    SELECT coalesce(jsonb_object_agg(list, m), '{}')
      FROM (SELECT list, jsonb_object_agg(v, n) AS m
              FROM (SELECT (ARRAY['referrers', 'browsers', 'os', 'devices',
                                  'countries', 'languages', 'networks',
                                  'sources'])[(i - 1) % 8 + 1] AS list,
                           v, count(*) AS n
                      FROM unnest(p_attrs) WITH ORDINALITY u(v, i)
                     WHERE v IS NOT NULL
                     GROUP BY 1, 2) c
             GROUP BY list) l
$$;

-- the sum of tops maps (NULL elements: empty)
CREATE FUNCTION shortlink.stats_tops_total(p_maps jsonb[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET enable_hashagg = on
AS $$
    SELECT coalesce(jsonb_object_agg(list, m), '{}')
      FROM (SELECT list, jsonb_object_agg(v, n) AS m
              FROM (SELECT t.key AS list, e.key AS v, sum(e.value::bigint) AS n
                      FROM unnest(p_maps) x(j), jsonb_each(x.j) t,
                           jsonb_each(t.value) e
                     GROUP BY 1, 2) c
             GROUP BY list) l
$$;

CREATE FUNCTION shortlink.stats_tops_add(p_a jsonb, p_b jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
           WHEN p_a IS NULL OR p_a = '{}' THEN coalesce(p_b, '{}')
           WHEN p_b IS NULL OR p_b = '{}' THEN p_a
           ELSE shortlink.stats_tops_total(ARRAY[p_a, p_b])
           END
$$;

COMMENT ON FUNCTION shortlink.stats_tops_add(jsonb, jsonb) IS
    'The sum of two tops maps (see link_hourly_clicks.tops; NULL: empty)';

-- The counting of a merge, for all its (link, hour) pairs in one query
-- (hashed): per pair the counts of the batches' attrs (delta) and those
-- plus the merged row's tops (tops).  One call per merge: a call per
-- pair of stats_count_attrs and stats_tops_total cost 70-100 us each,
-- 15-20 us per click with merges every 10,000 clicks.
CREATE TYPE shortlink.stats_tops_row AS (code text, hour timestamptz,
                                         tops jsonb, attrs text[]);

CREATE FUNCTION shortlink.stats_merge_tops(p_rows shortlink.stats_tops_row[])
RETURNS TABLE (code text, hour timestamptz, tops jsonb, delta jsonb)
LANGUAGE sql STABLE PARALLEL SAFE
SET enable_hashagg = on
AS $$
    SELECT code, hour, jsonb_object_agg(list, m),
           coalesce(jsonb_object_agg(list, d) FILTER (WHERE d IS NOT NULL), '{}')
      FROM (SELECT code, hour, list, jsonb_object_agg(v, n) AS m,
                   jsonb_object_agg(v, dn) FILTER (WHERE dn IS NOT NULL) AS d
              FROM (SELECT code, hour, list, v, sum(n) AS n,
                           sum(n) FILTER (WHERE attr) AS dn
                      FROM (SELECT g.code, g.hour, t.key AS list, e.key AS v,
                                   e.value::bigint AS n, false AS attr
                              FROM unnest(p_rows) g, jsonb_each(g.tops) t,
                                   jsonb_each(t.value) e
                            UNION ALL
                            SELECT g.code, g.hour,
                                   (ARRAY['referrers', 'browsers', 'os', 'devices',
                                          'countries', 'languages', 'networks',
                                          'sources'])[(u.i - 1) % 8 + 1],
                                   u.v, 1, true
                              FROM unnest(p_rows) g,
                                   unnest(g.attrs) WITH ORDINALITY u(v, i)
                             WHERE u.v IS NOT NULL) c
                     GROUP BY 1, 2, 3, 4) g
             GROUP BY 1, 2, 3) l
     GROUP BY 1, 2
$$;

COMMENT ON FUNCTION shortlink.stats_merge_tops(shortlink.stats_tops_row[]) IS
    'The top-list counts of the rows of a merge per (code, hour): tops, '
    'the sum of the merged rows'' tops and the attrs of the appended rows; '
    'delta, the attrs'' counts alone ({} for none).  Pairs without any '
    'value are left out';

CREATE AGGREGATE shortlink.stats_tops_sum(jsonb) (
    SFUNC = array_append,
    STYPE = jsonb[],
    FINALFUNC = shortlink.stats_tops_total,
    INITCOND = '{}'
);

COMMENT ON AGGREGATE shortlink.stats_tops_sum(jsonb) IS
    'The sum of tops maps (see link_hourly_clicks.tops); {} for no rows';

-- backfill: the merged hours' counts from the raw clicks still kept
-- (hours whose clicks were purged before this migration have no top lists)
SET LOCAL enable_hashagg = off;
UPDATE shortlink.link_hourly_clicks h
   SET tops = s.tops
  FROM (SELECT code, hour,
               shortlink.stats_count_attrs(array_agg(ARRAY[
                   referer_host, browser, os, device, extra ->> 'country',
                   extra ->> 'language', extra ->> 'network',
                   extra ->> 'source'])) AS tops
          FROM (SELECT c.*, date_bin('1 hour', c.clicked_at,
                                     timestamptz '1970-01-01 00:00:00+00') AS hour
                  FROM shortlink.clicks c) c
         GROUP BY code, hour) s
 WHERE h.code = s.code AND h.hour = s.hour;


-- --- the owner tier, and the daily tiers -------------------------------------------

CREATE TABLE shortlink.owner_hourly_clicks (
    owner     text        NOT NULL,
    hour      timestamptz NOT NULL,
    pv        bigint      NOT NULL,
    bots      bigint      NOT NULL,
    visitors  shortlink.hll NOT NULL,
    ips       shortlink.hll NOT NULL,
    tops      jsonb       NOT NULL,

    PRIMARY KEY (owner, hour),
    CONSTRAINT owner_hourly_clicks_whole_hour
        CHECK (hour = date_bin('1 hour', hour, timestamptz '1970-01-01 00:00:00+00'))
);

COMMENT ON TABLE shortlink.owner_hourly_clicks IS
    'Per owner and UTC hour: the merged figures of all links the owner had '
    'when their rows were merged (soft-deleted links included: the clicks '
    'happened): sums of pv and bots, union of the sketches, sum of the '
    'tops.  Added to by compact_hourly_clicks in the statement that merges '
    'the links'' rows; links without an owner are not in it';

CREATE TABLE shortlink.link_daily_clicks (
    code      text        COLLATE "C" NOT NULL,
    day       timestamptz NOT NULL,
    pv        bigint      NOT NULL,
    bots      bigint      NOT NULL,
    visitors  shortlink.hll NOT NULL,
    ips       shortlink.hll NOT NULL,
    tops      jsonb       NOT NULL,

    PRIMARY KEY (code, day),
    CONSTRAINT link_daily_clicks_whole_day
        CHECK (day = date_bin('1 day', day, timestamptz '1970-01-01 00:00:00+00'))
);

COMMENT ON TABLE shortlink.link_daily_clicks IS
    'Per link and UTC day (day = its start): the sum of the day''s merged '
    'hourly rows (pv, bots, union of the sketches, sum of the tops), kept '
    'equal to it by compact_hourly_clicks (same statement).  Read for the '
    'whole UTC days of a range when nothing needs its hours';

CREATE TABLE shortlink.owner_daily_clicks (
    owner     text        NOT NULL,
    day       timestamptz NOT NULL,
    pv        bigint      NOT NULL,
    bots      bigint      NOT NULL,
    visitors  shortlink.hll NOT NULL,
    ips       shortlink.hll NOT NULL,
    tops      jsonb       NOT NULL,

    PRIMARY KEY (owner, day),
    CONSTRAINT owner_daily_clicks_whole_day
        CHECK (day = date_bin('1 day', day, timestamptz '1970-01-01 00:00:00+00'))
);

COMMENT ON TABLE shortlink.owner_daily_clicks IS
    'Per owner and UTC day: the sum of owner_hourly_clicks of the day, kept '
    'equal to it by compact_hourly_clicks (same statement)';

-- The daily tiers hold the closed UTC days only: the days before
-- hourly_compaction.daily_through (the start of a UTC day), rolled up once
-- when the day has ended (stats_rollup_days, run by the merge), and added
-- to by a merge only for rows of such a day that come late (a backlog).
-- Readers take the days from daily_through on from the hourly tiers.
-- Updating the day at every merge instead cost 6-9 us per click.
ALTER TABLE shortlink.hourly_compaction ADD COLUMN daily_through timestamptz;
UPDATE shortlink.hourly_compaction
   SET daily_through = date_bin('1 day', now(), timestamptz '1970-01-01 00:00:00+00');
ALTER TABLE shortlink.hourly_compaction ALTER COLUMN daily_through SET NOT NULL;

COMMENT ON COLUMN shortlink.hourly_compaction.daily_through IS
    'link_daily_clicks and owner_daily_clicks hold the UTC days before this '
    '(a day''s start), no later ones; see stats_rollup_days';

-- the roll-up reads a day's merged rows by hour (appended rows have their
-- own index)
CREATE INDEX link_hourly_clicks_merged_hour
    ON shortlink.link_hourly_clicks (hour) WHERE visitors IS NOT NULL;
CREATE INDEX owner_hourly_clicks_hour ON shortlink.owner_hourly_clicks (hour);

SET LOCAL enable_hashagg = off;

INSERT INTO shortlink.owner_hourly_clicks
SELECT l.owner, h.hour, sum(h.pv), sum(h.bots),
       shortlink.hll_union_agg(h.visitors), shortlink.hll_union_agg(h.ips),
       shortlink.stats_tops_sum(h.tops)
  FROM shortlink.link_hourly_clicks h
  JOIN shortlink.links l ON l.code = h.code
 WHERE l.owner IS NOT NULL
 GROUP BY l.owner, h.hour;

INSERT INTO shortlink.link_daily_clicks
SELECT code, date_bin('1 day', hour, timestamptz '1970-01-01 00:00:00+00'),
       sum(pv), sum(bots), shortlink.hll_union_agg(visitors),
       shortlink.hll_union_agg(ips), shortlink.stats_tops_sum(tops)
  FROM shortlink.link_hourly_clicks
 WHERE hour < (SELECT daily_through FROM shortlink.hourly_compaction)
 GROUP BY 1, 2;

INSERT INTO shortlink.owner_daily_clicks
SELECT owner, date_bin('1 day', hour, timestamptz '1970-01-01 00:00:00+00'),
       sum(pv), sum(bots), shortlink.hll_union_agg(visitors),
       shortlink.hll_union_agg(ips), shortlink.stats_tops_sum(tops)
  FROM shortlink.owner_hourly_clicks
 WHERE hour < (SELECT daily_through FROM shortlink.hourly_compaction)
 GROUP BY 1, 2;

RESET enable_hashagg;


-- --- the merge -----------------------------------------------------------------------

-- The roll-up of the days that have ended: link_daily_clicks and
-- owner_daily_clicks of the UTC days from daily_through to the start of
-- today, recomputed from the days' merged hourly rows (so a second run,
-- or a run after daily_through was moved back, changes nothing), and
-- daily_through moved to today.  Rows of those days not merged yet are
-- added to the days by the merge that merges them.  Once per day and link
-- instead of once per merge: the merges of an open day touch only the
-- hourly tiers.
CREATE FUNCTION shortlink.stats_rollup_days()
RETURNS integer
LANGUAGE plpgsql
SET enable_hashagg = off
AS $$
DECLARE
    epoch   CONSTANT timestamptz := timestamptz '1970-01-01 00:00:00+00';
    v_from  timestamptz;
    v_to    timestamptz := date_bin('1 day', now(), epoch);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('shortlink.link_hourly_clicks merge', 0));

    SELECT daily_through INTO v_from FROM shortlink.hourly_compaction FOR UPDATE;
    IF v_from >= v_to THEN
        RETURN 0;
    END IF;

    DELETE FROM shortlink.link_daily_clicks WHERE day >= v_from AND day < v_to;
    DELETE FROM shortlink.owner_daily_clicks WHERE day >= v_from AND day < v_to;

    INSERT INTO shortlink.link_daily_clicks (code, day, pv, bots, visitors, ips, tops)
    SELECT code, date_bin('1 day', hour, epoch), sum(pv), sum(bots),
           shortlink.hll_union_agg(visitors), shortlink.hll_union_agg(ips),
           shortlink.stats_tops_sum(tops)
      FROM shortlink.link_hourly_clicks
     WHERE visitors IS NOT NULL AND hour >= v_from AND hour < v_to
     GROUP BY 1, 2;

    INSERT INTO shortlink.owner_daily_clicks (owner, day, pv, bots, visitors, ips, tops)
    SELECT owner, date_bin('1 day', hour, epoch), sum(pv), sum(bots),
           shortlink.hll_union_agg(visitors), shortlink.hll_union_agg(ips),
           shortlink.stats_tops_sum(tops)
      FROM shortlink.owner_hourly_clicks
     WHERE hour >= v_from AND hour < v_to
     GROUP BY 1, 2;

    UPDATE shortlink.hourly_compaction SET daily_through = v_to;

    RETURN (extract(epoch FROM v_to - v_from) / 86400)::integer;
END;
$$;

COMMENT ON FUNCTION shortlink.stats_rollup_days() IS
    'Rolls the UTC days that ended since hourly_compaction.daily_through up '
    'into link_daily_clicks and owner_daily_clicks (recomputed from the '
    'merged hourly rows of those days) and moves daily_through to the start '
    'of today; returns the days rolled up (0: nothing to do).  Run by '
    'compact_hourly_clicks';

-- compact_hourly_clicks of 010, which now also counts the batches' attrs
-- into tops and adds what it merges to owner_hourly_clicks and, for rows
-- of closed days (late: a backlog), to link_daily_clicks and
-- owner_daily_clicks, all in one statement: a reader sees every tier
-- before the merge or every tier after it.  It first rolls up the days
-- that have ended (stats_rollup_days)
CREATE OR REPLACE FUNCTION shortlink.compact_hourly_clicks(p_limit integer DEFAULT 5000)
RETURNS integer
LANGUAGE plpgsql
SET enable_hashagg = off
AS $$
DECLARE
    epoch  CONSTANT timestamptz := timestamptz '1970-01-01 00:00:00+00';
    empty  CONSTANT shortlink.hll := shortlink.hll_empty(12, 5, -1, 1);
    n      integer;
    closed timestamptz;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'compact_hourly_clicks: p_limit must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended('shortlink.link_hourly_clicks merge', 0));

    PERFORM shortlink.stats_rollup_days();
    SELECT daily_through INTO closed FROM shortlink.hourly_compaction;

    WITH hours AS (
        SELECT DISTINCT hour, code
          FROM shortlink.link_hourly_clicks
         WHERE visitors IS NULL
         ORDER BY hour, code
         LIMIT p_limit
    ), gone AS (
        DELETE FROM shortlink.link_hourly_clicks h
         USING hours
         WHERE h.code = hours.code AND h.hour = hours.hour
        RETURNING h.*
    ), counted AS MATERIALIZED (
        -- every pair's counts in one go
        SELECT *
          FROM shortlink.stats_merge_tops(ARRAY(
                   SELECT ROW(g.code, g.hour, g.tops, g.attrs)::shortlink.stats_tops_row
                     FROM gone g))
    ), delta AS MATERIALIZED (
        -- what the batches added since the last merge
        SELECT d.*, coalesce(c.delta, '{}') AS tops,
               coalesce(c.tops, '{}') AS all_tops
          FROM (SELECT code, hour, sum(pv) AS pv, sum(bots) AS bots,
                       shortlink.hll_of(shortlink.array_cat_agg(visitor_hashes)) AS visitors,
                       shortlink.hll_of(shortlink.array_cat_agg(ip_hashes)) AS ips
                  FROM gone
                 WHERE visitors IS NULL
                 GROUP BY code, hour) d
          LEFT JOIN counted c ON c.code = d.code AND c.hour = d.hour
    ), kept AS MATERIALIZED (
        -- the merged row(s) already there
        SELECT code, hour, sum(pv) AS pv, sum(bots) AS bots,
               shortlink.hll_union_agg(visitors) AS visitors,
               shortlink.hll_union_agg(ips) AS ips
          FROM gone
         WHERE visitors IS NOT NULL
         GROUP BY code, hour
    ), merged AS (
        INSERT INTO shortlink.link_hourly_clicks
               (code, hour, pv, bots, visitors, ips, tops)
        SELECT d.code, d.hour, d.pv + coalesce(k.pv, 0), d.bots + coalesce(k.bots, 0),
               shortlink.hll_union(d.visitors, coalesce(k.visitors, empty)),
               shortlink.hll_union(d.ips, coalesce(k.ips, empty)),
               d.all_tops
          FROM delta d
          LEFT JOIN kept k ON k.code = d.code AND k.hour = d.hour
        RETURNING 1
    ), daily AS (
        -- a closed day's stored figures plus the new ones (late rows; the
        -- open days are rolled up once they end); the counts summed in
        -- one go
        INSERT INTO shortlink.link_daily_clicks AS t
               (code, day, pv, bots, visitors, ips, tops)
        SELECT x.code, x.day, x.pv, x.bots, x.visitors, x.ips,
               shortlink.stats_tops_total(x.maps || t.tops)
          FROM (SELECT code, date_bin('1 day', hour, epoch) AS day,
                       sum(pv) AS pv, sum(bots) AS bots,
                       shortlink.hll_union_agg(visitors) AS visitors,
                       shortlink.hll_union_agg(ips) AS ips,
                       array_agg(tops) AS maps
                  FROM delta
                 WHERE hour < closed
                 GROUP BY 1, 2) x
          LEFT JOIN shortlink.link_daily_clicks t ON t.code = x.code AND t.day = x.day
        ON CONFLICT (code, day) DO UPDATE
           SET pv = t.pv + excluded.pv,
               bots = t.bots + excluded.bots,
               visitors = shortlink.hll_union(t.visitors, excluded.visitors),
               ips = shortlink.hll_union(t.ips, excluded.ips),
               tops = excluded.tops
    ), od AS MATERIALIZED (
        -- the new figures per owner and hour
        SELECT l.owner, d.hour, sum(d.pv) AS pv, sum(d.bots) AS bots,
               shortlink.hll_union_agg(d.visitors) AS visitors,
               shortlink.hll_union_agg(d.ips) AS ips,
               array_agg(d.tops) AS maps
          FROM delta d
          -- (links.code has the default collation, so that its key is used)
          JOIN shortlink.links l ON l.code = d.code COLLATE "default"
         WHERE l.owner IS NOT NULL
         GROUP BY l.owner, d.hour
    ), owners AS (
        INSERT INTO shortlink.owner_hourly_clicks AS o
               (owner, hour, pv, bots, visitors, ips, tops)
        SELECT x.owner, x.hour, x.pv, x.bots, x.visitors, x.ips,
               shortlink.stats_tops_total(x.maps || o.tops)
          FROM od x
          LEFT JOIN shortlink.owner_hourly_clicks o
                 ON o.owner = x.owner AND o.hour = x.hour
        ON CONFLICT (owner, hour) DO UPDATE
           SET pv = o.pv + excluded.pv,
               bots = o.bots + excluded.bots,
               visitors = shortlink.hll_union(o.visitors, excluded.visitors),
               ips = shortlink.hll_union(o.ips, excluded.ips),
               tops = excluded.tops
    ), owner_days AS (
        INSERT INTO shortlink.owner_daily_clicks AS o
               (owner, day, pv, bots, visitors, ips, tops)
        SELECT x.owner, x.day, x.pv, x.bots, x.visitors, x.ips,
               shortlink.stats_tops_total(x.maps || o.tops)
          FROM (SELECT owner, date_bin('1 day', hour, epoch) AS day,
                       sum(pv) AS pv, sum(bots) AS bots,
                       shortlink.hll_union_agg(visitors) AS visitors,
                       shortlink.hll_union_agg(ips) AS ips,
                       shortlink.array_cat_agg(maps) AS maps
                  FROM od
                 WHERE hour < closed
                 GROUP BY 1, 2) x
          LEFT JOIN shortlink.owner_daily_clicks o ON o.owner = x.owner AND o.day = x.day
        ON CONFLICT (owner, day) DO UPDATE
           SET pv = o.pv + excluded.pv,
               bots = o.bots + excluded.bots,
               visitors = shortlink.hll_union(o.visitors, excluded.visitors),
               ips = shortlink.hll_union(o.ips, excluded.ips),
               tops = excluded.tops
    )
    SELECT count(*) INTO n FROM merged;

    RETURN n;
END;
$$;

COMMENT ON FUNCTION shortlink.compact_hourly_clicks(integer) IS
    'Merges the rows of up to p_limit (code, hour) pairs that have rows '
    'appended by batches into one row each (sums, union of the sketches, '
    'attrs counted into tops: the figures do not change) and adds what it '
    'merged to owner_hourly_clicks and, for hours of days already rolled '
    'up (before hourly_compaction.daily_through), to link_daily_clicks and '
    'owner_daily_clicks; first rolls up the days that ended '
    '(stats_rollup_days); oldest hours '
    'first; returns how many pairs it merged.  record_clicks calls it every '
    '10 seconds at most; call it in a loop until it returns 0 to merge '
    'everything, e.g. after a backlog';


-- --- the write path --------------------------------------------------------------------
--
-- record_clicks_checked of 010: the batch's hourly rows carry the attrs of
-- their clicks; all else unchanged.

CREATE OR REPLACE FUNCTION shortlink.record_clicks_checked(
    p_event_ids    uuid[],
    p_clicked_ms   bigint[],
    p_codes        text[],
    p_ips          text[],
    p_user_agents  text[],
    p_referers     text[],
    p_visitors     text[],
    p_extra        jsonb[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n         integer := cardinality(p_event_ids);
    min_ms    bigint;
    max_ms    bigint;
    days      integer[];
    missing   date[];
    d         date;
    tomorrow  date := (now() AT TIME ZONE 'UTC')::date + 1;
    inserted  integer;
    state     text;
    msg       text;
    -- the clicks left after a unique violation
    l_ids       uuid[];
    l_ms        bigint[];
    l_codes     text[];
    l_ips       text[];
    l_uas       text[];
    l_refs      text[];
    l_visitors  text[];
    l_extra     jsonb[];
BEGIN
    IF p_event_ids IS NULL OR p_clicked_ms IS NULL OR p_codes IS NULL THEN
        RAISE EXCEPTION 'record_clicks: p_event_ids, p_clicked_ms and p_codes '
                        'must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF cardinality(p_clicked_ms) <> n OR cardinality(p_codes) <> n
       OR cardinality(p_ips) <> n OR cardinality(p_user_agents) <> n
       OR cardinality(p_referers) <> n OR cardinality(p_visitors) <> n
       OR cardinality(p_extra) <> n
    THEN
        RAISE EXCEPTION 'record_clicks: arrays differ in length'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('event_ids %s, clicked_ms %s, codes %s, ips %s, '
                                  'user_agents %s, referers %s, visitors %s, extra %s',
                                  n, cardinality(p_clicked_ms), cardinality(p_codes),
                                  cardinality(p_ips), cardinality(p_user_agents),
                                  cardinality(p_referers), cardinality(p_visitors),
                                  cardinality(p_extra));
    END IF;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    IF array_position(p_event_ids, NULL) IS NOT NULL
       OR array_position(p_clicked_ms, NULL) IS NOT NULL
       OR array_position(p_codes, NULL) IS NOT NULL
    THEN
        RAISE EXCEPTION 'record_clicks: NULL in p_event_ids, p_clicked_ms or p_codes'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    SELECT min(ms), max(ms), array_agg(DISTINCT ms / 86400000)
      INTO min_ms, max_ms, days
      FROM unnest(p_clicked_ms) ms;

    IF min_ms < 946684800000
       OR max_ms > (extract(epoch FROM now()) * 1000)::bigint + 2 * 86400000
    THEN
        RAISE EXCEPTION 'record_clicks: clicked_ms out of range (% .. %)', min_ms, max_ms
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'clicked_ms is Unix time in milliseconds, at most two '
                         'days ahead of the database clock';
    END IF;

    SELECT array_agg(x.day ORDER BY x.day) INTO missing
      FROM (SELECT date '1970-01-01' + dn AS day FROM unnest(days) dn
            UNION
            SELECT tomorrow) x
     WHERE to_regclass('shortlink.clicks_p' || to_char(x.day, 'YYYYMMDD')) IS NULL;

    IF missing IS NOT NULL THEN
        FOREACH d IN ARRAY missing LOOP
            PERFORM shortlink.ensure_click_partitions(
                        d, CASE WHEN d = tomorrow THEN d + 7 ELSE d END);
        END LOOP;
    END IF;

    -- see 010; the hourly rows now also carry their clicks' attrs, one
    -- array of 8 values per click, counted later by the merge
    BEGIN
    WITH src AS (
        SELECT u.event_id,
               to_timestamp(u.ms / 1000) + (u.ms % 1000) * interval '1 millisecond'
                   AS clicked_at,
               u.code,
               nullif(u.ip, '')::inet AS ip,
               coalesce(left(u.ua, 1024), '') AS ua_key,
               coalesce(left(u.ref, 2048), '') AS ref_key,
               left(nullif(u.vis, ''), 128) AS visitor_id,
               CASE WHEN jsonb_typeof(u.ex) = 'object' AND u.ex <> '{}'
                    THEN u.ex END AS extra
          FROM unnest(p_event_ids, p_clicked_ms, p_codes, p_ips,
                      p_user_agents, p_referers, p_visitors, p_extra)
               AS u(event_id, ms, code, ip, ua, ref, vis, ex)
    ), uas AS MATERIALIZED (
        SELECT ua_key, ua,
               shortlink.ua_browser(ua) AS browser,
               shortlink.ua_os(ua)      AS os,
               shortlink.ua_device(ua)  AS device,
               shortlink.ua_is_bot(ua)  AS is_bot
          FROM (SELECT DISTINCT ua_key, nullif(ua_key, '') AS ua FROM src) d
    ), refs AS MATERIALIZED (
        SELECT ref_key, ref, shortlink.url_host(ref) AS host
          FROM (SELECT DISTINCT ref_key, nullif(ref_key, '') AS ref FROM src) d
    ), ins AS (
        INSERT INTO shortlink.clicks
               (event_id, clicked_at, code, ip, user_agent, referer,
                visitor_id, extra, referer_host, browser, os, device, is_bot)
        SELECT s.event_id, s.clicked_at, s.code, s.ip, a.ua, r.ref,
               s.visitor_id, s.extra, r.host, a.browser, a.os, a.device, a.is_bot
          FROM src s
          JOIN uas a USING (ua_key)
          JOIN refs r USING (ref_key)
        RETURNING code,
                  date_bin('1 hour', clicked_at,
                           timestamptz '1970-01-01 00:00:00+00') AS hour,
                  ip, visitor_id, is_bot,
                  ARRAY[referer_host, browser, os, device,
                        extra ->> 'country', extra ->> 'language',
                        extra ->> 'network', extra ->> 'source'] AS attrs
    ), hourly AS (
        INSERT INTO shortlink.link_hourly_clicks
               (code, hour, pv, bots, visitor_hashes, ip_hashes, attrs)
        SELECT code, hour, count(*), count(*) FILTER (WHERE is_bot),
               coalesce(array_agg(hashtextextended(visitor_id, 0))
                            FILTER (WHERE visitor_id IS NOT NULL), '{}'),
               coalesce(array_agg(hashinetextended(ip, 0))
                            FILTER (WHERE ip IS NOT NULL), '{}'),
               array_agg(attrs)
          FROM ins
         GROUP BY code, hour
    )
    SELECT count(*) INTO inserted FROM ins;
    EXCEPTION WHEN unique_violation THEN
        SELECT * INTO l_ids, l_ms, l_codes, l_ips, l_uas, l_refs, l_visitors,
                      l_extra
          FROM shortlink.clicks_not_recorded(p_event_ids, p_clicked_ms, p_codes,
                   p_ips, p_user_agents, p_referers, p_visitors, p_extra);
        IF cardinality(l_ids) = n THEN
            RAISE;
        END IF;
        RETURN shortlink.record_clicks_checked(l_ids, l_ms, l_codes, l_ips,
                   l_uas, l_refs, l_visitors, l_extra);
    END;

    IF inserted > 0
       AND (SELECT last_run FROM shortlink.hourly_compaction)
           < now() - interval '10 seconds'
    THEN
        IF pg_try_advisory_xact_lock(
               hashtextextended('shortlink.link_hourly_clicks merge', 0))
        THEN
            UPDATE shortlink.hourly_compaction SET last_run = now();
            BEGIN
                PERFORM shortlink.compact_hourly_clicks(2000);
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE,
                                        msg = MESSAGE_TEXT;
                RAISE WARNING 'record_clicks: merging the hourly rows failed '
                              '(SQLSTATE %: %); the clicks are recorded, the '
                              'rows stay unmerged', state, msg;
            END;
        END IF;
    END IF;

    RETURN inserted;
END;
$$;

COMMENT ON FUNCTION shortlink.record_clicks_checked(uuid[], bigint[], text[], text[],
                                                    text[], text[], text[], jsonb[]) IS
    'record_clicks() of 003 (see 010 for the sketches, 014 for the top-list '
    'attrs), called by record_clicks() with the clicks whose time is in '
    'range; raises 22023 for any other';


-- drop_click_sets of 010, for the owner tier too
CREATE OR REPLACE FUNCTION shortlink.drop_click_sets(p_before timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    empty  CONSTANT shortlink.hll := shortlink.hll_empty(12, 5, -1, 1);
    n      bigint;
    m      bigint;
BEGIN
    IF p_before IS NULL THEN
        RAISE EXCEPTION 'drop_click_sets: time must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE shortlink.link_hourly_clicks
       SET visitors = CASE WHEN visitors IS NULL THEN NULL ELSE empty END,
           ips = CASE WHEN ips IS NULL THEN NULL ELSE empty END,
           visitor_hashes = CASE WHEN visitor_hashes IS NULL THEN NULL ELSE '{}'::bigint[] END,
           ip_hashes = CASE WHEN ip_hashes IS NULL THEN NULL ELSE '{}'::bigint[] END
     WHERE hour < p_before
       AND (visitors <> empty OR ips <> empty
            OR visitor_hashes <> '{}' OR ip_hashes <> '{}');
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE shortlink.owner_hourly_clicks
       SET visitors = empty, ips = empty
     WHERE hour < p_before AND (visitors <> empty OR ips <> empty);
    GET DIAGNOSTICS m = ROW_COUNT;
    n := n + m;
    -- days wholly before p_before
    UPDATE shortlink.link_daily_clicks
       SET visitors = empty, ips = empty
     WHERE day + interval '1 day' <= p_before AND (visitors <> empty OR ips <> empty);
    UPDATE shortlink.owner_daily_clicks
       SET visitors = empty, ips = empty
     WHERE day + interval '1 day' <= p_before AND (visitors <> empty OR ips <> empty);
    RETURN n;
END;
$$;

COMMENT ON FUNCTION shortlink.drop_click_sets(timestamptz) IS
    'Retention for the personal data in the rollups (hash arrays, and '
    'sketches of up to 320 values hold hashes): empties the visitor and '
    'address sketches and hash arrays of hours before p_before, per link '
    'and per owner, and of the days wholly before it (pv counters and top '
    'lists are kept; uv, unique IPs '
    'and new/returning visitors of those hours become 0).  Returns the '
    'hourly rows emptied';


-- --- reading ------------------------------------------------------------------------------

-- the whole UTC days of [p_from, p_to) that the daily tiers hold (closed
-- days, before hourly_compaction.daily_through): [d_from, d_to), empty
-- when d_from >= d_to; every hour outside it is read from the hourly tiers
CREATE FUNCTION shortlink.stats_days(p_from timestamptz, p_to timestamptz,
                                     OUT d_from timestamptz, OUT d_to timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT date_bin('1 day', p_from + interval '1 day' - interval '1 microsecond',
                    timestamptz '1970-01-01 00:00:00+00'),
           least(date_bin('1 day', p_to, timestamptz '1970-01-01 00:00:00+00'),
                 (SELECT daily_through FROM shortlink.hourly_compaction))
$$;

-- the rows of a link set or an owner in [p_from, p_to), oldest first,
-- t = the start of the hour or, with p_daily, of the whole UTC days of
-- the range read from the daily tier (the merged part of a day; rows
-- appended by batches and not merged yet always come as hours).  Several
-- rows per t possible (links, rows not merged yet), not aggregated: the
-- caller adds them up per bucket (hll_union_agg per hour costs a 128 kB
-- state per group, 0.3 ms an hour; hll_union of two sketches 5-40 us).
-- p_owner not NULL: the owner tiers and the rows of the owner's links not
-- merged yet; else the links p_codes
CREATE FUNCTION shortlink.stats_rows(p_codes text[], p_owner text,
                                     p_from timestamptz, p_to timestamptz,
                                     p_daily boolean)
RETURNS TABLE (t timestamptz, pv bigint, bots bigint,
               visitors shortlink.hll, ips shortlink.hll)
LANGUAGE sql STABLE AS $$
    WITH d AS (
        SELECT CASE WHEN p_daily THEN d.d_from ELSE p_to END AS d_from,
               CASE WHEN p_daily THEN d.d_to ELSE p_to END AS d_to
          FROM shortlink.stats_days(p_from, p_to) d
    ), b AS (
        -- the hours outside the days: [p_from, a_to) and [b_from, p_to),
        -- two index ranges (a filter on the hour read every hour of the
        -- range: 144,000 rows for 200 links over 30 days)
        SELECT d.d_from, d.d_to, least(d.d_from, p_to) AS a_to,
               greatest(d.d_to, least(d.d_from, p_to)) AS b_from
          FROM d
    )
    SELECT r.*
      FROM (SELECT x.day, x.pv, x.bots, x.visitors, x.ips
              FROM shortlink.link_daily_clicks x, b
             WHERE p_owner IS NULL AND x.code = ANY (p_codes)
               AND x.day >= b.d_from AND x.day < b.d_to
            UNION ALL
            SELECT h.hour, h.pv, h.bots, h.visitors, h.ips
              FROM shortlink.link_hourly_clicks h, b
             WHERE p_owner IS NULL AND h.code = ANY (p_codes)
               AND h.hour >= p_from AND h.hour < b.a_to
               AND h.visitors IS NOT NULL
            UNION ALL
            SELECT h.hour, h.pv, h.bots, h.visitors, h.ips
              FROM shortlink.link_hourly_clicks h, b
             WHERE p_owner IS NULL AND h.code = ANY (p_codes)
               AND h.hour >= b.b_from AND h.hour < p_to
               AND h.visitors IS NOT NULL
            UNION ALL
            SELECT h.hour, h.pv, h.bots, shortlink.hll_of(h.visitor_hashes),
                   shortlink.hll_of(h.ip_hashes)
              FROM shortlink.link_hourly_clicks h
             WHERE p_owner IS NULL AND h.code = ANY (p_codes)
               AND h.hour >= p_from AND h.hour < p_to
               AND h.visitors IS NULL
            UNION ALL
            SELECT x.day, x.pv, x.bots, x.visitors, x.ips
              FROM shortlink.owner_daily_clicks x, b
             WHERE p_owner IS NOT NULL AND x.owner = p_owner
               AND x.day >= b.d_from AND x.day < b.d_to
            UNION ALL
            SELECT o.hour, o.pv, o.bots, o.visitors, o.ips
              FROM shortlink.owner_hourly_clicks o, b
             WHERE p_owner IS NOT NULL AND o.owner = p_owner
               AND o.hour >= p_from AND o.hour < b.a_to
            UNION ALL
            SELECT o.hour, o.pv, o.bots, o.visitors, o.ips
              FROM shortlink.owner_hourly_clicks o, b
             WHERE p_owner IS NOT NULL AND o.owner = p_owner
               AND o.hour >= b.b_from AND o.hour < p_to
            UNION ALL
            SELECT h.hour, h.pv, h.bots, shortlink.hll_of(h.visitor_hashes),
                   shortlink.hll_of(h.ip_hashes)
              FROM shortlink.link_hourly_clicks h
             WHERE p_owner IS NOT NULL
               -- few rows: each link by its key, never a scan of links
               AND (SELECT x.owner FROM shortlink.links x
                    WHERE x.code = h.code COLLATE "default")
                   = p_owner
               AND h.visitors IS NULL
               AND h.hour >= p_from AND h.hour < p_to) r
     ORDER BY 1
$$;

-- the rows of stats_rows added up per bucket (t: the bucket's start, an
-- hour or a local day in p_tz), oldest first: for link sets, where a
-- bucket has a row per link (a tag of 100 links over 30 days: 3,000
-- rows), the extension's aggregate unions the sketches (5-10 us a row)
-- where stats_doc's hll_union per row cost 40-80 us (it packs the sketch
-- each time); one 128 kB state per bucket, hence sorted, not hashed
CREATE FUNCTION shortlink.stats_bucket_rows(p_codes text[], p_owner text,
                                            p_from timestamptz, p_to timestamptz,
                                            p_daily boolean, p_interval text,
                                            p_tz text)
RETURNS TABLE (t timestamptz, pv bigint, bots bigint,
               visitors shortlink.hll, ips shortlink.hll)
LANGUAGE sql STABLE
SET enable_hashagg = off
AS $$
    SELECT x.b, sum(x.pv)::bigint, sum(x.bots)::bigint,
           shortlink.hll_union_agg(x.visitors), shortlink.hll_union_agg(x.ips)
      FROM (SELECT h.*,
                   CASE p_interval
                   WHEN 'hour' THEN h.t
                   ELSE ((h.t AT TIME ZONE p_tz)::date::timestamp AT TIME ZONE p_tz)
                   END AS b
              FROM shortlink.stats_rows(p_codes, p_owner, p_from, p_to, p_daily) h) x
     GROUP BY x.b
     ORDER BY x.b
$$;

-- pv per hour of a link set or an owner in [p_from, p_to) (for the
-- distributions; the sketches are not read)
CREATE FUNCTION shortlink.stats_pv_hours(p_codes text[], p_owner text,
                                         p_from timestamptz, p_to timestamptz)
RETURNS TABLE (hour timestamptz, pv bigint)
LANGUAGE sql STABLE AS $$
    SELECT h.hour, h.pv
      FROM shortlink.link_hourly_clicks h
     WHERE p_owner IS NULL AND h.code = ANY (p_codes)
       AND h.hour >= p_from AND h.hour < p_to
    UNION ALL
    SELECT o.hour, o.pv
      FROM shortlink.owner_hourly_clicks o
     WHERE p_owner IS NOT NULL AND o.owner = p_owner
       AND o.hour >= p_from AND o.hour < p_to
    UNION ALL
    SELECT h.hour, h.pv
      FROM shortlink.link_hourly_clicks h
     WHERE p_owner IS NOT NULL
       AND (SELECT x.owner FROM shortlink.links x
                    WHERE x.code = h.code COLLATE "default") = p_owner
       AND h.visitors IS NULL
       AND h.hour >= p_from AND h.hour < p_to
$$;

-- the top lists of a link set or an owner over [p_from, p_to): the daily
-- tier for the whole UTC days of the range, the hourly rows for the rest;
-- rows appended by batches and not merged yet are counted from their
-- attrs
CREATE FUNCTION shortlink.stats_top(p_codes text[], p_owner text,
                                    p_from timestamptz, p_to timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH b AS (
        -- the hours outside the days as two index ranges (see stats_rows)
        SELECT d.d_from, d.d_to, least(d.d_from, p_to) AS a_to,
               greatest(d.d_to, least(d.d_from, p_to)) AS b_from
          FROM shortlink.stats_days(p_from, p_to) d
    ), r AS (
        SELECT x.tops, NULL::text[] AS attrs
          FROM shortlink.link_daily_clicks x, b
         WHERE p_owner IS NULL AND x.code = ANY (p_codes)
           AND x.day >= b.d_from AND x.day < b.d_to
        UNION ALL
        SELECT h.tops, NULL
          FROM shortlink.link_hourly_clicks h, b
         WHERE p_owner IS NULL AND h.code = ANY (p_codes)
           AND h.hour >= p_from AND h.hour < b.a_to AND h.visitors IS NOT NULL
        UNION ALL
        SELECT h.tops, NULL
          FROM shortlink.link_hourly_clicks h, b
         WHERE p_owner IS NULL AND h.code = ANY (p_codes)
           AND h.hour >= b.b_from AND h.hour < p_to AND h.visitors IS NOT NULL
        UNION ALL
        SELECT x.tops, NULL
          FROM shortlink.owner_daily_clicks x, b
         WHERE p_owner IS NOT NULL AND x.owner = p_owner
           AND x.day >= b.d_from AND x.day < b.d_to
        UNION ALL
        SELECT o.tops, NULL
          FROM shortlink.owner_hourly_clicks o, b
         WHERE p_owner IS NOT NULL AND o.owner = p_owner
           AND o.hour >= p_from AND o.hour < b.a_to
        UNION ALL
        SELECT o.tops, NULL
          FROM shortlink.owner_hourly_clicks o, b
         WHERE p_owner IS NOT NULL AND o.owner = p_owner
           AND o.hour >= b.b_from AND o.hour < p_to
        UNION ALL
        SELECT NULL, h.attrs
          FROM shortlink.link_hourly_clicks h
         WHERE p_owner IS NULL AND h.code = ANY (p_codes)
           AND h.hour >= p_from AND h.hour < p_to AND h.visitors IS NULL
        UNION ALL
        SELECT NULL, h.attrs
          FROM shortlink.link_hourly_clicks h
         WHERE p_owner IS NOT NULL
           AND (SELECT x.owner FROM shortlink.links x
                    WHERE x.code = h.code COLLATE "default") = p_owner
           AND h.hour >= p_from AND h.hour < p_to AND h.visitors IS NULL
    ), c AS (
        SELECT t.key AS list, e.key AS value, e.value::bigint AS n
          FROM r, jsonb_each(r.tops) t, jsonb_each(t.value) e
        UNION ALL
        SELECT (shortlink.stats_lists())[(u.i - 1) % 8 + 1], u.v, 1
          FROM r, unnest(r.attrs) WITH ORDINALITY u(v, i)
         WHERE u.v IS NOT NULL
    ), ranked AS MATERIALIZED (
        SELECT list, value, n,
               row_number() OVER (PARTITION BY list
                                  ORDER BY n DESC, value COLLATE "C") AS rank
          FROM (SELECT list, value, sum(n)::bigint AS n
                  FROM c GROUP BY list, value) g
    )
    SELECT jsonb_object_agg(l.name, coalesce(
               (SELECT jsonb_agg(jsonb_build_object('value', x.value, 'count', x.n)
                                 ORDER BY x.rank)
                  FROM ranked x
                 WHERE x.list = l.name AND x.rank <= 10), '[]'))
      FROM unnest(shortlink.stats_lists()) l(name)
$$;

-- an instant as ISO 8601 in a zone: local time and offset (Z when 0)
CREATE FUNCTION shortlink.stats_iso(p_ts timestamptz, p_tz text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(x.l, 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN x.off = 0 THEN 'Z'
                   ELSE CASE WHEN x.off < 0 THEN '-' ELSE '+' END
                        || lpad((abs(x.off) / 3600)::text, 2, '0') || ':'
                        || lpad((abs(x.off) % 3600 / 60)::text, 2, '0') END
      FROM (SELECT p_ts AT TIME ZONE p_tz AS l,
                   extract(epoch FROM (p_ts AT TIME ZONE p_tz)
                                      - (p_ts AT TIME ZONE 'UTC'))::integer AS off) x
$$;

COMMENT ON FUNCTION shortlink.stats_iso(timestamptz, text) IS
    'p_ts as ISO 8601 local time in zone p_tz with its offset there, e.g. '
    '2026-10-25T00:00:00+02:00; Z for offset 0';

-- whether p_tz is a time zone name PostgreSQL knows (IANA names such as
-- Europe/Berlin, and UTC); never raises
CREATE FUNCTION shortlink.stats_tz_valid(p_tz text)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_tz IS NULL OR p_tz !~ '^[A-Za-z][A-Za-z0-9_+-]{0,30}(/[A-Za-z0-9_+-]{1,30}){0,2}$'
    THEN
        RETURN false;
    END IF;
    PERFORM now() AT TIME ZONE p_tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN
    RETURN false;
END;
$$;

COMMENT ON FUNCTION shortlink.stats_tz_valid(text) IS
    'true when p_tz is a time zone name (IANA, e.g. Europe/Berlin, or UTC) '
    'that PostgreSQL knows; false for anything else, never an error';

-- one element of a series: bucket start t, its pv and sketches (NULL:
-- no clicks), and the union of the sketches of everything before it
CREATE FUNCTION shortlink.stats_bucket(p_t timestamptz, p_tz text, p_pv bigint,
                                       p_visitors shortlink.hll, p_ips shortlink.hll,
                                       p_before shortlink.hll)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    uv   bigint;
    ret  bigint;
BEGIN
    IF p_visitors IS NULL THEN
        RETURN jsonb_build_object('t', shortlink.stats_iso(p_t, p_tz), 'pv', p_pv,
                                  'uv', 0, 'unique_ips', 0, 'new_visitors', 0,
                                  'returning_visitors', 0);
    END IF;
    uv := round(shortlink.hll_cardinality(p_visitors));
    -- |B n P| = |B| + |P| - |B u P|, within 0..|B|
    ret := greatest(0, least(uv, round(uv + shortlink.hll_cardinality(p_before)
                                       - shortlink.hll_cardinality(
                                             shortlink.hll_union(p_before, p_visitors)))));
    RETURN jsonb_build_object('t', shortlink.stats_iso(p_t, p_tz),
                              'pv', p_pv,
                              'uv', uv,
                              'unique_ips', round(shortlink.hll_cardinality(p_ips))::bigint,
                              'new_visitors', uv - ret,
                              'returning_visitors', ret);
END;
$$;

-- the statistics document of link_stats and set_stats: p_owner not NULL
-- reads the owner tier, else the links p_codes
CREATE FUNCTION shortlink.stats_doc(p_codes text[], p_owner text, p_from timestamptz,
                                    p_to timestamptz, p_interval text, p_tz text,
                                    p_who text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
-- the planner's estimates for jsonb_each and unnest (100 rows a call)
-- turn JIT on for the top lists: compiling cost 150 ms a call
SET jit = off
AS $$
DECLARE
    epoch    CONSTANT timestamptz := timestamptz '1970-01-01 00:00:00+00';
    empty    CONSTANT shortlink.hll := shortlink.hll_empty(12, 5, -1, 1);
    v_from   timestamptz;
    v_to     timestamptz;
    nb       bigint;
    cum      shortlink.hll;
    tot      shortlink.hll;
    tot_ips  shortlink.hll;
    before_n double precision;
    r        record;
    ret      bigint;
    starts   timestamptz[];
    aligned  boolean;
    bi       integer;
    b_pv     bigint := 0;
    b_v      shortlink.hll;
    b_i      shortlink.hll;
    items    jsonb[] := '{}';
    hod      bigint[] := array_fill(0::bigint, ARRAY[24]);
    wd       bigint[] := array_fill(0::bigint, ARRAY[7]);
    pv       bigint := 0;
    bots     bigint := 0;
    midnight timestamptz;
    today    jsonb;
    tot_uv   bigint;
BEGIN
    IF p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION '%: from and to must not be NULL', p_who
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_interval IS NULL OR p_interval NOT IN ('hour', 'day') THEN
        RAISE EXCEPTION '%: interval must be ''hour'' or ''day'', not %', p_who,
                        coalesce(quote_literal(p_interval), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT shortlink.stats_tz_valid(p_tz) THEN
        RAISE EXCEPTION '%: unknown time zone %', p_who,
                        coalesce(quote_literal(p_tz), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'an IANA time zone name such as Europe/Berlin, or UTC';
    END IF;

    v_from := date_bin('1 hour', p_from, epoch);
    v_to   := date_bin('1 hour', p_to, epoch);

    IF v_to < v_from THEN
        RAISE EXCEPTION '%: "to" (%) is before "from" (%)', p_who, p_to, p_from
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    nb := CASE p_interval
          WHEN 'hour' THEN extract(epoch FROM v_to - v_from)::bigint / 3600
          ELSE ((greatest(v_to - interval '1 microsecond', v_from))
                    AT TIME ZONE p_tz)::date
               - (v_from AT TIME ZONE p_tz)::date + 1 END;
    IF nb > 10000 THEN
        RAISE EXCEPTION '%: more than 10000 % buckets requested', p_who, p_interval
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use a shorter range or interval ''day''';
    END IF;

    -- the visitors seen before the range, for new vs returning (one
    -- aggregate, no groups)
    -- (clicks are from 2000 on, see record_clicks)
    SELECT shortlink.hll_union_agg(h.visitors) INTO cum
      FROM shortlink.stats_rows(p_codes, p_owner, '2000-01-01 00:00:00+00', v_from,
                                true) h;
    cum := coalesce(cum, empty);
    before_n := shortlink.hll_cardinality(cum);
    tot := empty;
    tot_ips := empty;

    -- the buckets' starts, oldest first
    IF p_interval = 'hour' THEN
        starts := ARRAY(SELECT generate_series(v_from, v_to - interval '1 microsecond',
                                               interval '1 hour'));
    ELSE
        starts := ARRAY(SELECT d::timestamp AT TIME ZONE p_tz
                          FROM generate_series(
                                   (v_from AT TIME ZONE p_tz)::date::timestamp,
                                   ((greatest(v_to - interval '1 microsecond', v_from))
                                        AT TIME ZONE p_tz)::date::timestamp,
                                   interval '1 day') d);
    END IF;
    -- day buckets that are UTC days (zone UTC, or an offset of 0 all along)
    -- read the whole days from the daily tier
    aligned := p_interval = 'day'
               AND NOT EXISTS (SELECT FROM unnest(starts) x
                                WHERE x <> date_bin('1 day', x, epoch));

    -- the rows in order, each added to its bucket (sketches by
    -- hll_union); a bucket is written out when the next one starts, its
    -- sketch set against the union of all before it
    bi := 1;
    FOR r IN
        SELECT h.pv, h.bots, h.visitors, h.ips,
               CASE p_interval
               WHEN 'hour' THEN h.t
               ELSE ((h.t AT TIME ZONE p_tz)::date::timestamp AT TIME ZONE p_tz)
               END AS t
          FROM shortlink.stats_rows(p_codes, p_owner, v_from, v_to, aligned) h
         WHERE p_owner IS NOT NULL OR cardinality(p_codes) <= 1
        UNION ALL
        -- link sets: added up per bucket first
        SELECT g.pv, g.bots, g.visitors, g.ips, g.t
          FROM shortlink.stats_bucket_rows(p_codes, p_owner, v_from, v_to, aligned,
                                           p_interval, p_tz) g
         WHERE p_owner IS NULL AND cardinality(p_codes) > 1
    LOOP
        WHILE starts[bi] < r.t LOOP
            items := array_append(items, shortlink.stats_bucket(starts[bi], p_tz,
                         b_pv, b_v, b_i, cum));
            IF b_v IS NOT NULL THEN
                cum := shortlink.hll_union(cum, b_v);
                tot := shortlink.hll_union(tot, b_v);
                tot_ips := shortlink.hll_union(tot_ips, b_i);
            END IF;
            b_pv := 0;
            b_v := NULL;
            b_i := NULL;
            bi := bi + 1;
        END LOOP;
        b_pv := b_pv + r.pv;
        b_v := CASE WHEN b_v IS NULL THEN r.visitors
                    ELSE shortlink.hll_union(b_v, r.visitors) END;
        b_i := CASE WHEN b_i IS NULL THEN r.ips
                    ELSE shortlink.hll_union(b_i, r.ips) END;
        pv := pv + r.pv;
        bots := bots + r.bots;
    END LOOP;
    WHILE bi <= cardinality(starts) LOOP
        items := array_append(items, shortlink.stats_bucket(starts[bi], p_tz,
                     b_pv, b_v, b_i, cum));
        IF b_v IS NOT NULL THEN
            cum := shortlink.hll_union(cum, b_v);
            tot := shortlink.hll_union(tot, b_v);
            tot_ips := shortlink.hll_union(tot_ips, b_i);
        END IF;
        b_pv := 0;
        b_v := NULL;
        b_i := NULL;
        bi := bi + 1;
    END LOOP;

    -- pv per local hour of the day and weekday
    FOR r IN
        SELECT extract(hour FROM x.hour AT TIME ZONE p_tz)::integer AS hod,
               extract(isodow FROM x.hour AT TIME ZONE p_tz)::integer AS dow,
               sum(x.pv)::bigint AS pv
          FROM shortlink.stats_pv_hours(p_codes, p_owner, v_from, v_to) x
         GROUP BY 1, 2
    LOOP
        hod[r.hod + 1] := hod[r.hod + 1] + r.pv;
        wd[r.dow] := wd[r.dow] + r.pv;
    END LOOP;

    -- cum is now the union of everything before the range and the range
    tot_uv := round(shortlink.hll_cardinality(tot))::bigint;
    ret := greatest(0, least(tot_uv, round(tot_uv + before_n
                                           - shortlink.hll_cardinality(cum))));

    -- today: since local midnight (the first whole UTC hour from it on)
    midnight := (now() AT TIME ZONE p_tz)::date::timestamp AT TIME ZONE p_tz;
    SELECT jsonb_build_object(
               'since', shortlink.stats_iso(midnight, p_tz),
               'pv', coalesce(sum(h.pv), 0)::bigint,
               'uv', coalesce(round(shortlink.hll_cardinality(
                         shortlink.hll_union_agg(h.visitors))), 0)::bigint,
               'unique_ips', coalesce(round(shortlink.hll_cardinality(
                                 shortlink.hll_union_agg(h.ips))), 0)::bigint)
      INTO today
      FROM shortlink.stats_rows(p_codes, p_owner,
               date_bin('1 hour', midnight + interval '1 hour'
                                  - interval '1 microsecond', epoch),
               now() + interval '3 days', false) h;

    RETURN jsonb_build_object(
        'from',     shortlink.stats_iso(v_from, p_tz),
        'to',       shortlink.stats_iso(v_to, p_tz),
        'interval', p_interval,
        'tz',       p_tz,
        'totals',   jsonb_build_object(
                        'pv', pv,
                        'uv', tot_uv,
                        'unique_ips',
                            round(shortlink.hll_cardinality(tot_ips))::bigint,
                        'bots', bots,
                        'new_visitors', tot_uv - ret,
                        'returning_visitors', ret),
        'series',   to_jsonb(items),
        'today',    today,
        'hours_of_day', to_jsonb(hod),
        'weekdays', to_jsonb(wd),
        'top',      shortlink.stats_top(p_codes, p_owner, v_from, v_to));
END;
$$;

COMMENT ON FUNCTION shortlink.stats_doc(text[], text, timestamptz, timestamptz, text,
                                        text, text) IS
    'The body of link_stats and set_stats (see them); p_who names the '
    'caller in errors';

DROP FUNCTION shortlink.link_stats(text, timestamptz, timestamptz, text);

CREATE FUNCTION shortlink.link_stats(p_code text, p_from timestamptz,
                                     p_to timestamptz, p_interval text DEFAULT 'day',
                                     p_tz text DEFAULT 'UTC')
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_code IS NULL THEN
        RAISE EXCEPTION 'link_stats: code, from and to must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN jsonb_build_object('code', p_code)
           || shortlink.stats_doc(ARRAY[p_code], NULL, p_from, p_to, p_interval,
                                  coalesce(p_tz, 'UTC'), 'link_stats');
END;
$$;

COMMENT ON FUNCTION shortlink.link_stats(text, timestamptz, timestamptz, text, text) IS
    'Statistics of one link over [p_from, p_to) as JSON, from the rollups '
    'only (a purge of raw clicks changes nothing): code, from, to (both '
    'truncated to the UTC hour, ISO 8601 in zone p_tz), interval, tz, '
    'totals {pv, uv, unique_ips, bots, new_visitors, returning_visitors}, '
    'series (every ''hour'' or ''day'' bucket, days are local days of p_tz, '
    'zeros included, oldest first: t, pv, uv, unique_ips, new_visitors, '
    'returning_visitors), today {since (local midnight), pv, uv, '
    'unique_ips}, hours_of_day (24 pv per local hour), weekdays (7 pv per '
    'ISO weekday, Monday first), top {referrers, browsers, os, devices, '
    'countries, languages, networks, sources: 10 each, [{value, count}], '
    'by count then value}.  pv, bots, top lists and distributions are exact; '
    'distinct counts come from HyperLogLog sketches (exact up to 320, else '
    'about 1.6 % standard error); new vs returning by inclusion-exclusion '
    'of sketches (see sql/014).  Raises 22023 for a bad interval, unknown '
    'time zone, to before from or more than 10000 buckets';

-- set_stats counts and finds an owner's links, soft-deleted ones included
-- (the indexes of 004 are of live links only)
CREATE INDEX links_owner ON shortlink.links (owner);

CREATE FUNCTION shortlink.set_stats(p_owner text, p_tag text, p_from timestamptz,
                                    p_to timestamptz, p_interval text DEFAULT 'day',
                                    p_tz text DEFAULT 'UTC')
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    codes  text[];
    n      integer;
BEGIN
    IF p_owner IS NULL THEN
        RAISE EXCEPTION 'set_stats: owner must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_tag IS NULL THEN
        SELECT count(*) INTO n FROM shortlink.links WHERE owner = p_owner;
        RETURN jsonb_build_object('owner', p_owner, 'tag', NULL, 'links', n)
               || shortlink.stats_doc(NULL, p_owner, p_from, p_to, p_interval,
                                      coalesce(p_tz, 'UTC'), 'set_stats');
    END IF;
    SELECT coalesce(array_agg(code), '{}') INTO codes
      FROM shortlink.links
     WHERE owner = p_owner AND tags @> ARRAY[p_tag];
    RETURN jsonb_build_object('owner', p_owner, 'tag', p_tag,
                              'links', cardinality(codes))
           || shortlink.stats_doc(codes, NULL, p_from, p_to, p_interval,
                                  coalesce(p_tz, 'UTC'), 'set_stats');
END;
$$;

COMMENT ON FUNCTION shortlink.set_stats(text, text, timestamptz, timestamptz, text, text) IS
    'Statistics of a set of links in the shape of link_stats, with owner, '
    'tag and links (how many) instead of code: p_tag NULL, all links of '
    'p_owner (soft-deleted ones included: their clicks happened), read from '
    'owner_hourly_clicks; else the owner''s links that carry tag p_tag now '
    '(soft-deleted included), read per link.  Distinct counts are over the '
    'set: a visitor of two links is one visitor, returning when seen on '
    'any link of the set before';


-- --- the API ---------------------------------------------------------------------------

-- from, to, interval and tz of a stats query: {"from", "to", "interval",
-- "tz"} or {"error": detail}
CREATE FUNCTION shortlink.api_stats_params(p_params jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    epoch   CONSTANT timestamptz := timestamptz '1970-01-01 00:00:00+00';
    v_to    timestamptz := now();
    v_from  timestamptz;
    ivl     text := coalesce(p_params ->> 'interval', 'day');
    tz      text := coalesce(p_params ->> 'tz', 'UTC');
BEGIN
    IF p_params ? 'to' THEN
        v_to := shortlink.api_parse_time(p_params ->> 'to');
        IF v_to IS NULL THEN
            RETURN jsonb_build_object('error',
                'to must be an ISO 8601 date (UTC) or timestamp with a time zone '
                '(send + as %2B)');
        END IF;
    END IF;
    v_from := v_to - interval '7 days';
    IF p_params ? 'from' THEN
        v_from := shortlink.api_parse_time(p_params ->> 'from');
        IF v_from IS NULL THEN
            RETURN jsonb_build_object('error',
                'from must be an ISO 8601 date (UTC) or timestamp with a time zone '
                '(send + as %2B)');
        END IF;
    END IF;
    IF ivl NOT IN ('hour', 'day') THEN
        RETURN jsonb_build_object('error', 'interval must be hour or day');
    END IF;
    IF NOT shortlink.stats_tz_valid(tz) THEN
        RETURN jsonb_build_object('error',
            'tz must be an IANA time zone name such as Europe/Berlin, or UTC');
    END IF;
    IF v_to < v_from THEN
        RETURN jsonb_build_object('error', 'to must not be before from');
    END IF;
    -- the count of stats_doc
    IF (CASE ivl
        WHEN 'hour' THEN extract(epoch FROM date_bin('1 hour', v_to, epoch)
                                            - date_bin('1 hour', v_from, epoch))
                         / 3600 > 10000
        ELSE ((greatest(date_bin('1 hour', v_to, epoch) - interval '1 microsecond',
                        v_from)) AT TIME ZONE tz)::date
             - (date_bin('1 hour', v_from, epoch) AT TIME ZONE tz)::date + 1
             > 10000 END) THEN
        RETURN jsonb_build_object('error',
            'more than 10000 buckets requested: use a shorter range or interval=day');
    END IF;
    RETURN jsonb_build_object('from', v_from, 'to', v_to, 'interval', ivl, 'tz', tz);
END;
$$;

COMMENT ON FUNCTION shortlink.api_stats_params(jsonb) IS
    'The from, to (default: now and 7 days before), interval (day) and tz '
    '(UTC) of a stats query as {"from", "to", "interval", "tz"}, or '
    '{"error": detail} for a 400';

-- api_stats of 004, with tz
CREATE OR REPLACE FUNCTION shortlink.api_stats(p_params jsonb, p_code text)
RETURNS shortlink.api_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p  jsonb := shortlink.api_stats_params(p_params);
BEGIN
    IF p ? 'error' THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     p ->> 'error');
    END IF;
    RETURN ROW(200, shortlink.link_stats(p_code, (p ->> 'from')::timestamptz,
                                         (p ->> 'to')::timestamptz, p ->> 'interval',
                                         p ->> 'tz'))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_stats(jsonb, text) IS
    'GET /links/{code}/stats?from=&to=&interval=&tz=: link_stats of the '
    'link; to defaults to now, from to 7 days before to, interval to day '
    '(or hour), tz to UTC; 400 for unparsable times, to before from, '
    'another interval, an unknown time zone or more than 10000 buckets';

-- GET /stats (a row of api_routes)
CREATE FUNCTION shortlink.api_set_stats(p_method text, p_match text[], p_params jsonb,
                                        p_body text, p_owner text, p_admin boolean,
                                        p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p      jsonb := shortlink.api_stats_params(p_params);
    owner  text := coalesce(p_params ->> 'owner', p_owner);
    tag    text := p_params ->> 'tag';
BEGIN
    IF owner !~ '^[^[:cntrl:]]{1,128}$' THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     'owner must be 1 to 128 characters');
    END IF;
    IF tag IS NOT NULL AND tag !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
            'tag must be 1 to 64 of A-Z a-z 0-9 _ . : -');
    END IF;
    IF p ? 'error' THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     p ->> 'error');
    END IF;
    IF owner <> p_owner AND NOT p_admin THEN
        RETURN shortlink.api_problem(403, 'not-your-links', 'forbidden',
            'only an admin key may ask for the statistics of another owner');
    END IF;
    RETURN ROW(200, shortlink.set_stats(owner, tag, (p ->> 'from')::timestamptz,
                                        (p ->> 'to')::timestamptz, p ->> 'interval',
                                        p ->> 'tz'))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_set_stats(text, text[], jsonb, text, text, boolean,
                                            text) IS
    'GET /stats?from=&to=&interval=&tz=&tag=&owner=: set_stats of the '
    'key''s owner (owner=: another owner, admin keys only, else 403), all '
    'links or those with tag=; parameters and their 400s as for '
    '/links/{code}/stats, and 400 for a malformed owner or tag';

INSERT INTO shortlink.api_routes (pattern, methods, handler, position)
VALUES ('^/stats$',
        '{"GET": ["from", "to", "interval", "tz", "tag", "owner"]}',
        'shortlink.api_set_stats', 100);


-- api_dispatch of 013 (the one re-creation 014 is allowed): tz is a query
-- parameter of /links/{code}/stats; all else is unchanged

CREATE OR REPLACE FUNCTION shortlink.api_dispatch(p_method text, p_path text, p_query text,
                                                  p_body text, p_key text, p_base_url text,
                                                  p_codes jsonb)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    v_owner  text;
    v_admin  boolean;
    v_method text;
    m        text[];
    allow    text;
    accept   text[];
    q        jsonb;
    r        shortlink.api_result;
    routes   text;
BEGIN
    IF p_key IS NULL OR p_key = '' THEN
        RETURN shortlink.api_problem(401, 'unauthorized', 'unauthorized',
            'an API key is required: send "Authorization: Bearer <key>"',
            jsonb_build_object('www_authenticate', 'Bearer realm="shortlink"'));
    END IF;
    SELECT k.owner, k.is_admin INTO v_owner, v_admin
      FROM shortlink.api_keys k
     WHERE k.key_hash = shortlink.api_key_hash(p_key) AND k.revoked_at IS NULL;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(401, 'unauthorized', 'unauthorized',
            'the API key is unknown or revoked',
            jsonb_build_object('www_authenticate',
                'Bearer realm="shortlink", error="invalid_token", '
                'error_description="unknown or revoked key"'));
    END IF;

    -- HEAD is GET without the body, which nginx leaves out
    v_method := CASE WHEN p_method = 'HEAD' THEN 'GET' ELSE p_method END;

    -- route: allowed methods, and the query parameters of each method
    IF p_path = '/links' THEN
        allow := 'GET, HEAD, POST';
        accept := CASE v_method WHEN 'GET' THEN ARRAY['cursor', 'limit', 'tag']
                                WHEN 'POST' THEN ARRAY['code_length'] END;
    ELSIF p_path = '/links/bulk' THEN
        allow := 'POST';
        accept := CASE p_method WHEN 'POST' THEN ARRAY['code_length'] END;
    ELSE
        m := regexp_match(p_path, '^/links/([0-9A-Za-z_-]{1,64})(/stats|/clicks)?$');
        IF m IS NULL THEN
            r := shortlink.api_table_route(v_method, p_path, p_query, p_body,
                                           v_owner, v_admin, p_base_url);
            IF r.status IS NOT NULL THEN
                RETURN r;
            END IF;
            SELECT string_agg(x, ', ' ORDER BY x) INTO routes
              FROM (SELECT '/links, /links/bulk, /links/{code}, /links/{code}/stats, '
                           '/links/{code}/clicks' AS x
                    UNION ALL
                    SELECT pattern FROM shortlink.api_routes) s;
            RETURN shortlink.api_problem(404, NULL, 'Not Found',
                'no such API route; routes: ' || routes);
        END IF;
        IF m[2] = '/stats' THEN
            allow := 'GET, HEAD';
            accept := CASE v_method WHEN 'GET'
                           THEN ARRAY['from', 'to', 'interval', 'tz'] END;
        ELSIF m[2] = '/clicks' THEN
            allow := 'GET, HEAD';
            accept := CASE v_method WHEN 'GET'
                           THEN ARRAY['from', 'to', 'cursor', 'limit'] END;
        ELSE
            allow := 'GET, HEAD, PATCH, DELETE';
            accept := CASE WHEN v_method IN ('GET', 'PATCH', 'DELETE')
                           THEN '{}'::text[] END;
        END IF;
    END IF;

    IF accept IS NULL THEN
        RETURN shortlink.api_problem(405, NULL, 'Method Not Allowed',
            format('%s is not allowed here; allowed: %s', left(p_method, 16), allow),
            jsonb_build_object('allow', allow));
    END IF;

    q := shortlink.api_query_params(p_query, accept);
    IF q ? 'error' THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     q ->> 'error');
    END IF;
    q := q -> 'params';

    IF p_path = '/links' THEN
        IF v_method = 'GET' THEN
            RETURN shortlink.api_list(q, v_owner, v_admin, p_base_url);
        END IF;
        RETURN shortlink.api_create(q, p_body, v_owner, p_base_url, p_codes);
    ELSIF p_path = '/links/bulk' THEN
        RETURN shortlink.api_bulk(q, p_body, v_owner, p_base_url, p_codes);
    ELSIF m[2] = '/clicks' THEN
        RETURN shortlink.api_clicks(q, m[1], v_owner, v_admin);
    END IF;
    RETURN shortlink.api_link_route(v_method, m[1], m[2] IS NOT NULL, q, p_body,
                                    v_owner, v_admin, p_base_url);
END;
$$;

COMMENT ON FUNCTION shortlink.api_dispatch(text, text, text, text, text, text, jsonb) IS
    'The body of shortlink.api(): authenticates the key (401), finds the '
    'route (404) and the method (405; HEAD is GET), decodes the query '
    '(400), and calls the route''s function; paths beyond the built-in '
    '/links routes are looked up in shortlink.api_routes';
