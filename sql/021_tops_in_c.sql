-- 021_tops_in_c.sql: the top lists are counted and added up in C (the
-- shortlink_tops extension, pgext/), not row by row in SQL.
--
-- In SQL a value cost the merge about 0.5 us (a row through the executor
-- for each of the 8 values of a click), and every map added up was
-- expanded into rows again (the merged hour's map at every merge, 1,000
-- maps for an owner's hour, a map per link and day for a tag's top lists).
-- shortlink_tops counts into a hash table (one probe a value) and builds
-- the jsonb once.  The maps and the figures do not change; only who
-- computes them.
--
-- shortlink_tops is a trusted extension: the database owner (the role
-- that runs these migrations) creates it once it is installed on the
-- database server (build.sh installs it: make -C pgext install).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions
                    WHERE name = 'shortlink_tops')
    THEN
        RAISE EXCEPTION 'shortlink needs the shortlink_tops extension'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'build and install it on the database server: '
                         'apt-get install postgresql-server-dev-15; '
                         'make -C pgext install (as root); build.sh does both';
    END IF;
END;
$$;

CREATE EXTENSION IF NOT EXISTS shortlink_tops SCHEMA shortlink;


-- the functions of 014, now calls of the extension's (CREATE OR REPLACE
-- drops their SET enable_hashagg: nothing is hashed in SQL any more)

CREATE OR REPLACE FUNCTION shortlink.stats_count_attrs(p_attrs text[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT shortlink.tops_count(p_attrs)
$$;

CREATE OR REPLACE FUNCTION shortlink.stats_tops_total(p_maps jsonb[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT shortlink.tops_total(p_maps)
$$;


-- (stats_tops_sum, collecting the maps and summing them with
-- stats_tops_total, now sums them in C too)

-- stats_top of 014: the rows' maps and attrs added up into one map by the
-- extension, then that map's values ranked
CREATE OR REPLACE FUNCTION shortlink.stats_top(p_codes text[], p_owner text,
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
          FROM (SELECT shortlink.tops_agg(r.tops, r.attrs) AS m FROM r) s,
               jsonb_each(s.m) t, jsonb_each(t.value) e
    ), ranked AS MATERIALIZED (
        SELECT list, value, n,
               row_number() OVER (PARTITION BY list
                                  ORDER BY n DESC, value COLLATE "C") AS rank
          FROM c
    )
    SELECT jsonb_object_agg(l.name, coalesce(
               (SELECT jsonb_agg(jsonb_build_object('value', x.value, 'count', x.n)
                                 ORDER BY x.rank)
                  FROM ranked x
                 WHERE x.list = l.name AND x.rank <= 10), '[]'))
      FROM unnest(shortlink.stats_lists()) l(name)
$$;
