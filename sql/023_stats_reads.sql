-- 023_stats_reads.sql: faster reads of statistics, same figures.
--
-- stats_doc of 014 with two changes:
--
-- * the hour-of-day and weekday distributions add the rows up per UTC
--   hour before turning hours into local hours and weekdays: a tag of 200
--   links over 30 days has 143,000 hourly rows, and the zone conversion
--   of each cost 290 of the 520 ms of set_stats (bench/stats.sh, N=10M);
-- * every bucket is added up by stats_bucket_rows (the extension's
--   aggregate, 5-10 us a row) for one link and owners too, not only for
--   link sets: stats_doc's hll_union per row costs 40-80 us (it packs the
--   sketch every time), and a bucket of a local day or of an open hour
--   (022: partial rows) has many rows.

CREATE OR REPLACE FUNCTION shortlink.stats_doc(p_codes text[], p_owner text, p_from timestamptz,
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
        -- added up per bucket first (023: for one link and owners too)
        SELECT g.pv, g.bots, g.visitors, g.ips, g.t
          FROM shortlink.stats_bucket_rows(p_codes, p_owner, v_from, v_to, aligned,
                                           p_interval, p_tz) g
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
    -- (added up per UTC hour first: 023; the local hour and weekday of
    -- every row cost 2 us, 290 ms for the 143,000 rows of 200 links)
    FOR r IN
        SELECT extract(hour FROM x.hour AT TIME ZONE p_tz)::integer AS hod,
               extract(isodow FROM x.hour AT TIME ZONE p_tz)::integer AS dow,
               sum(x.pv)::bigint AS pv
          FROM (SELECT p.hour, sum(p.pv) AS pv
                  FROM shortlink.stats_pv_hours(p_codes, p_owner, v_from, v_to) p
                 GROUP BY p.hour) x
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


-- The distributions read pv of every hourly row of the range: 143,000
-- rows of 200 links over 30 days, spread over 34,000 pages of the table
-- (rows hold sketches and maps): 40-310 ms, depending on what is cached.
-- With pv in the index that readers already use, that is an index-only
-- scan of about 700 pages (closed hours are not written again, so the
-- visibility map covers them once vacuumed).
CREATE INDEX link_hourly_clicks_code_hour_pv
    ON shortlink.link_hourly_clicks (code, hour) INCLUDE (pv);
DROP INDEX shortlink.link_hourly_clicks_code_hour;
ALTER INDEX shortlink.link_hourly_clicks_code_hour_pv
    RENAME TO link_hourly_clicks_code_hour;
