-- 022_open_hours.sql: the merge appends to the open hours and folds an
-- hour once, when it has closed.
--
-- Until now every merge (every 10 seconds) folded the rows a batch
-- appended into the hour's one merged row: it read that row, added up its
-- sketches and its top-list map with the new ones and wrote it again.  An
-- hour of a link clicked every few seconds was so rewritten 360 times, and
-- the bigger the row grew (dense sketches of 2.5 kB each, a map of all
-- the hour's values), the more each merge cost: with merges every 10,000
-- clicks (bench/write_cost.sh, WRITE_COST_MERGE_EVERY=2) a click cost
-- 46-53 us where 013 paid 27.
--
-- Now the merge turns the rows batches appended to an open hour into one
-- partial row per (link, hour) and merge (sketches, counted top lists:
-- only what came since the last merge), and leaves the rows of earlier
-- merges alone.  Once the hour has closed (it started more than an hour
-- before the previous whole hour: by default, hours before the start of
-- the previous hour), the next merge folds all of its rows into one, once.
-- Readers already add up the rows of an hour (every statistic is a sum or
-- a union); stats_rows now adds up the partial rows of an hour before
-- handing them on, so a bucket sees one row per link and hour as before.
--
-- link_hourly_clicks.partial: true for a partial merged row (the merge of
-- an open hour), false for the folded row (and for appended rows, which
-- have hash arrays instead of sketches).

ALTER TABLE shortlink.link_hourly_clicks
    ADD COLUMN partial boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN shortlink.link_hourly_clicks.partial IS
    'true: a partial merged row, what one merge of an open hour merged; '
    'the hour''s rows are folded into one (partial false) once it has '
    'closed (see compact_hourly_clicks)';

-- the merge finds the closed hours that still have partial rows
CREATE INDEX link_hourly_clicks_partial
    ON shortlink.link_hourly_clicks (hour, code) WHERE partial;

DROP FUNCTION shortlink.compact_hourly_clicks(integer);

-- what only 014's merge used: it counted with stats_merge_tops (one SQL
-- query for all its pairs, over this row type); stats_tops_add was never
-- called
DROP FUNCTION shortlink.stats_merge_tops(shortlink.stats_tops_row[]);
DROP TYPE shortlink.stats_tops_row;
DROP FUNCTION shortlink.stats_tops_add(jsonb, jsonb);

-- compact_hourly_clicks of 014 with open hours: the rows batches appended
-- become a partial row per (link, hour) when the hour is open (at or
-- after p_open_from), and every row of the pair is folded into one when
-- it is not; the owner tier and the daily tiers (late rows) get what the
-- batches added, as before.  The top lists are counted in C (021), the
-- appended rows' attrs once, the folded rows' maps added once.
CREATE FUNCTION shortlink.compact_hourly_clicks(p_limit integer DEFAULT 5000,
                                                p_open_from timestamptz DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET enable_hashagg = off
AS $$
DECLARE
    epoch   CONSTANT timestamptz := timestamptz '1970-01-01 00:00:00+00';
    empty   CONSTANT shortlink.hll := shortlink.hll_empty(12, 5, -1, 1);
    n       integer;
    closed  timestamptz;
    open_from timestamptz := coalesce(p_open_from,
                                      date_bin('1 hour', now(), epoch)
                                          - interval '1 hour');
BEGIN
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'compact_hourly_clicks: p_limit must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended('shortlink.link_hourly_clicks merge', 0));

    PERFORM shortlink.stats_rollup_days();
    SELECT daily_through INTO closed FROM shortlink.hourly_compaction;

    WITH hours AS (
        -- pairs with rows appended, and closed hours with partial rows
        SELECT hour, code
          FROM (SELECT hour, code
                  FROM shortlink.link_hourly_clicks
                 WHERE visitors IS NULL
                UNION
                SELECT hour, code
                  FROM shortlink.link_hourly_clicks
                 WHERE partial AND hour < open_from) x
         ORDER BY hour, code
         LIMIT p_limit
    ), gone AS (
        -- the appended rows, and of a closed hour every row
        DELETE FROM shortlink.link_hourly_clicks h
         USING hours
         WHERE h.code = hours.code AND h.hour = hours.hour
           AND (h.visitors IS NULL OR h.hour < open_from)
        RETURNING h.*
    ), delta AS MATERIALIZED (
        -- what the batches added since the last merge
        SELECT code, hour, sum(pv) AS pv, sum(bots) AS bots,
               shortlink.hll_of(shortlink.array_cat_agg(visitor_hashes)) AS visitors,
               shortlink.hll_of(shortlink.array_cat_agg(ip_hashes)) AS ips,
               shortlink.tops_agg(NULL, attrs) AS tops
          FROM gone
         WHERE visitors IS NULL
         GROUP BY code, hour
    ), kept AS MATERIALIZED (
        -- the merged rows of a closed hour
        SELECT code, hour, sum(pv) AS pv, sum(bots) AS bots,
               shortlink.hll_union_agg(visitors) AS visitors,
               shortlink.hll_union_agg(ips) AS ips,
               shortlink.tops_sum(tops) AS tops
          FROM gone
         WHERE visitors IS NOT NULL
         GROUP BY code, hour
    ), merged AS (
        INSERT INTO shortlink.link_hourly_clicks
               (code, hour, pv, bots, visitors, ips, tops, partial)
        SELECT coalesce(d.code, k.code), coalesce(d.hour, k.hour),
               coalesce(d.pv, 0) + coalesce(k.pv, 0),
               coalesce(d.bots, 0) + coalesce(k.bots, 0),
               CASE WHEN k.code IS NULL THEN d.visitors
                    WHEN d.code IS NULL THEN k.visitors
                    ELSE shortlink.hll_union(d.visitors, k.visitors) END,
               CASE WHEN k.code IS NULL THEN d.ips
                    WHEN d.code IS NULL THEN k.ips
                    ELSE shortlink.hll_union(d.ips, k.ips) END,
               CASE WHEN k.code IS NULL THEN d.tops
                    WHEN d.code IS NULL THEN k.tops
                    ELSE shortlink.tops_total(ARRAY[d.tops, k.tops]) END,
               coalesce(d.hour, k.hour) >= open_from
          FROM delta d
          FULL JOIN kept k ON k.code = d.code AND k.hour = d.hour
        RETURNING 1
    ), daily AS (
        -- a closed day's stored figures plus the new ones (late rows; the
        -- open days are rolled up once they end)
        INSERT INTO shortlink.link_daily_clicks AS t
               (code, day, pv, bots, visitors, ips, tops)
        SELECT x.code, x.day, x.pv, x.bots, x.visitors, x.ips,
               shortlink.tops_total(ARRAY[x.tops, t.tops])
          FROM (SELECT code, date_bin('1 day', hour, epoch) AS day,
                       sum(pv) AS pv, sum(bots) AS bots,
                       shortlink.hll_union_agg(visitors) AS visitors,
                       shortlink.hll_union_agg(ips) AS ips,
                       shortlink.tops_sum(tops) AS tops
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
               shortlink.tops_sum(d.tops) AS tops
          FROM delta d
          -- (links.code has the default collation, so that its key is used)
          JOIN shortlink.links l ON l.code = d.code COLLATE "default"
         WHERE l.owner IS NOT NULL
         GROUP BY l.owner, d.hour
    ), owners AS (
        INSERT INTO shortlink.owner_hourly_clicks AS o
               (owner, hour, pv, bots, visitors, ips, tops)
        SELECT x.owner, x.hour, x.pv, x.bots, x.visitors, x.ips,
               shortlink.tops_total(ARRAY[x.tops, o.tops])
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
               shortlink.tops_total(ARRAY[x.tops, o.tops])
          FROM (SELECT owner, date_bin('1 day', hour, epoch) AS day,
                       sum(pv) AS pv, sum(bots) AS bots,
                       shortlink.hll_union_agg(visitors) AS visitors,
                       shortlink.hll_union_agg(ips) AS ips,
                       shortlink.tops_sum(tops) AS tops
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

COMMENT ON FUNCTION shortlink.compact_hourly_clicks(integer, timestamptz) IS
    'Merges the rows batches appended, for up to p_limit (code, hour) '
    'pairs: of an open hour (at or after p_open_from; NULL, the default: '
    'the start of the previous hour) into one partial row per pair '
    '(sketches, top-list counts), leaving the hour''s earlier rows alone; '
    'of a closed hour, together with all its other rows, into one row.  '
    'Closed hours with partial rows are folded likewise.  Adds what the '
    'batches added to owner_hourly_clicks and, for days already rolled up '
    '(before hourly_compaction.daily_through), to link_daily_clicks and '
    'owner_daily_clicks; first rolls up the days that ended '
    '(stats_rollup_days); oldest hours first; returns how many rows it '
    'wrote (0: nothing left to do).  record_clicks calls it every 10 '
    'seconds at most; call it in a loop until it returns 0 to merge '
    'everything, e.g. after a backlog, with p_open_from => ''infinity'' to '
    'fold the open hours too';


-- stats_rows of 014: an hour's partial rows come added up, one row per
-- link and hour as before (stats_doc adds a link's rows up one by one)
CREATE OR REPLACE FUNCTION shortlink.stats_rows(p_codes text[], p_owner text,
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
               AND h.visitors IS NOT NULL AND NOT h.partial
            UNION ALL
            SELECT h.hour, h.pv, h.bots, h.visitors, h.ips
              FROM shortlink.link_hourly_clicks h, b
             WHERE p_owner IS NULL AND h.code = ANY (p_codes)
               AND h.hour >= b.b_from AND h.hour < p_to
               AND h.visitors IS NOT NULL AND NOT h.partial
            UNION ALL
            -- the partial rows of an hour (022), added up per link first
            SELECT h.hour, sum(h.pv)::bigint, sum(h.bots)::bigint,
                   shortlink.hll_union_agg(h.visitors),
                   shortlink.hll_union_agg(h.ips)
              FROM shortlink.link_hourly_clicks h, b
             WHERE p_owner IS NULL AND h.code = ANY (p_codes) AND h.partial
               AND ((h.hour >= p_from AND h.hour < b.a_to)
                    OR (h.hour >= b.b_from AND h.hour < p_to))
             GROUP BY h.code, h.hour
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
