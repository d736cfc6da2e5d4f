-- 009_click_quarantine.sql: a click PostgreSQL can never take no longer
-- blocks the queue.
--
-- record_clicks() refused a whole batch when one click's time was out of
-- range (before 2000, or more than two days ahead of the database clock:
-- a wrong clock on an nginx host, or seconds sent instead of
-- milliseconds).  nginx keeps a refused batch and sends it again, so such
-- a batch was refused forever and every click queued behind it waited
-- until the queue was full and new clicks were dropped.  Now those clicks
-- go to shortlink.clicks_rejected with the reason, the rest of the batch
-- is recorded, and a WARNING (which nginx logs) says how many.  Mistakes
-- in the call itself (arrays of different lengths, a click without event
-- id) are still errors: nginx never makes them.

CREATE TABLE shortlink.clicks_rejected (
    event_id     uuid        PRIMARY KEY,
    clicked_ms   bigint,
    code         text,
    ip           text,
    user_agent   text,
    referer      text,
    visitor_id   text,
    extra        jsonb,
    reason       text        NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE shortlink.clicks_rejected IS
    'Clicks record_clicks() could not record (reason says why), kept as '
    'they were sent so that nothing is lost silently; the primary key makes '
    'a re-sent batch add nothing twice.  Not counted in any statistic; '
    'inspect, fix and re-insert by hand, or delete';

ALTER FUNCTION shortlink.record_clicks(uuid[], bigint[], text[], text[], text[],
                                       text[], text[], jsonb[])
    RENAME TO record_clicks_checked;

COMMENT ON FUNCTION shortlink.record_clicks_checked(uuid[], bigint[], text[], text[],
                                                    text[], text[], text[], jsonb[]) IS
    'record_clicks() of 003, called by record_clicks() with the clicks whose '
    'time is in range; raises 22023 for any other';

CREATE FUNCTION shortlink.record_clicks(
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
    lo        CONSTANT bigint := 946684800000;             -- 2000-01-01
    hi        bigint := (extract(epoch FROM now()) * 1000)::bigint + 2 * 86400000;
    kept      integer;
    rejected  integer;
    ids       uuid[];
    ms        bigint[];
    codes     text[];
    ips       text[];
    uas       text[];
    refs      text[];
    visitors  text[];
    extra     jsonb[];
BEGIN
    -- the common case costs one pass over the times; a malformed call
    -- (NULLs where none may be, arrays of different lengths) goes to
    -- record_clicks_checked as it is, for its error
    IF p_clicked_ms IS NULL
       OR NOT EXISTS (SELECT FROM unnest(p_clicked_ms) t WHERE t < lo OR t > hi)
       OR array_position(p_clicked_ms, NULL) IS NOT NULL
       OR p_event_ids IS NULL OR array_position(p_event_ids, NULL) IS NOT NULL
       OR EXISTS (SELECT FROM unnest(ARRAY[cardinality(p_event_ids),
                                          cardinality(p_codes),
                                          cardinality(p_ips),
                                          cardinality(p_user_agents),
                                          cardinality(p_referers),
                                          cardinality(p_visitors),
                                          cardinality(p_extra)]) c
                   WHERE c IS DISTINCT FROM cardinality(p_clicked_ms)
                     AND c IS NOT NULL)
       OR p_codes IS NULL
    THEN
        RETURN shortlink.record_clicks_checked(p_event_ids, p_clicked_ms, p_codes,
                   p_ips, p_user_agents, p_referers, p_visitors, p_extra);
    END IF;

    INSERT INTO shortlink.clicks_rejected
           (event_id, clicked_ms, code, ip, user_agent, referer, visitor_id,
            extra, reason)
    SELECT u.e, u.t, u.c, u.i, left(u.a, 1024), left(u.r, 2048), left(u.v, 128),
           u.x,
           format('clicked_ms %s is out of range (%s .. %s: after 2000, at '
                  'most two days ahead of the database clock)', u.t, lo, hi)
      FROM unnest(p_event_ids, p_clicked_ms, p_codes, p_ips, p_user_agents,
                  p_referers, p_visitors, p_extra) AS u(e, t, c, i, a, r, v, x)
     WHERE u.t < lo OR u.t > hi
    ON CONFLICT (event_id) DO NOTHING;
    GET DIAGNOSTICS rejected = ROW_COUNT;

    SELECT coalesce(array_agg(u.e ORDER BY u.n), '{}'),
           coalesce(array_agg(u.t ORDER BY u.n), '{}'),
           coalesce(array_agg(u.c ORDER BY u.n), '{}'),
           coalesce(array_agg(u.i ORDER BY u.n), '{}'),
           coalesce(array_agg(u.a ORDER BY u.n), '{}'),
           coalesce(array_agg(u.r ORDER BY u.n), '{}'),
           coalesce(array_agg(u.v ORDER BY u.n), '{}'),
           coalesce(array_agg(u.x ORDER BY u.n), '{}')
      INTO ids, ms, codes, ips, uas, refs, visitors, extra
      FROM unnest(p_event_ids, p_clicked_ms, p_codes, p_ips, p_user_agents,
                  p_referers, p_visitors, p_extra)
           WITH ORDINALITY AS u(e, t, c, i, a, r, v, x, n)
     WHERE u.t BETWEEN lo AND hi;

    RAISE WARNING 'record_clicks: % of % clicks have a time out of range and '
                  'were put into shortlink.clicks_rejected (% new)',
                  cardinality(p_clicked_ms) - cardinality(ms),
                  cardinality(p_clicked_ms), rejected
        USING HINT = 'check the clock of the nginx hosts';

    kept := shortlink.record_clicks_checked(ids, ms, codes, ips, uas, refs,
                                            visitors, extra);
    RETURN kept;
END;
$$;

COMMENT ON FUNCTION shortlink.record_clicks(uuid[], bigint[], text[], text[],
                                            text[], text[], text[], jsonb[]) IS
    'The click flusher''s one call per batch (see record_clicks_checked for '
    'the arrays and what is recorded).  Clicks whose clicked_ms is before '
    '2000 or more than two days ahead of the database clock go to '
    'clicks_rejected with the reason (once per event id) and a WARNING; '
    'the others are recorded.  Returns how many rows were inserted into '
    'clicks';
