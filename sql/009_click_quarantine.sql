-- 009_click_quarantine.sql: a click PostgreSQL can never take no longer
-- blocks the queue.
--
-- nginx keeps a refused batch and sends it again, so a batch that
-- record_clicks() refuses for its data was refused forever: every click
-- queued behind it waited, and once the queue was full new clicks were
-- dropped.  The known case is a click time out of range (before 2000, or
-- more than two days ahead of the database clock: a wrong clock on an
-- nginx host, or seconds sent instead of milliseconds); any other data
-- error (class 22) or broken constraint (class 23) would do the same.
--
-- Now such clicks go to shortlink.clicks_rejected with the reason and the
-- rest of the batch is recorded; a WARNING (which nginx logs) says so.
-- Times are checked first (one pass); any other refusal is narrowed down
-- by halving the batch until the clicks refused one by one are found
-- (only on failure: about log2(batch) extra passes).  Mistakes in the
-- call itself (arrays of different lengths, a click without event id)
-- are still errors: nginx never makes them.

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

CREATE FUNCTION shortlink.reject_clicks(
    p_event_ids    uuid[],
    p_clicked_ms   bigint[],
    p_codes        text[],
    p_ips          text[],
    p_user_agents  text[],
    p_referers     text[],
    p_visitors     text[],
    p_extra        jsonb[],
    p_reason       text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    rejected  integer;
BEGIN
    INSERT INTO shortlink.clicks_rejected
           (event_id, clicked_ms, code, ip, user_agent, referer, visitor_id,
            extra, reason)
    SELECT u.e, u.t, u.c, u.i, left(u.a, 1024), left(u.r, 2048), left(u.v, 128),
           u.x, p_reason
      FROM unnest(p_event_ids, p_clicked_ms, p_codes, p_ips, p_user_agents,
                  p_referers, p_visitors, p_extra) AS u(e, t, c, i, a, r, v, x)
    ON CONFLICT (event_id) DO NOTHING;
    GET DIAGNOSTICS rejected = ROW_COUNT;

    RAISE WARNING 'record_clicks: % clicks put into shortlink.clicks_rejected '
                  '(% new): %', cardinality(p_event_ids), rejected, p_reason;

    RETURN rejected;
END;
$$;

COMMENT ON FUNCTION shortlink.reject_clicks(uuid[], bigint[], text[], text[], text[],
                                            text[], text[], jsonb[], text) IS
    'Puts clicks (arrays as for record_clicks) into clicks_rejected with '
    'p_reason, once per event id, and raises a WARNING; returns how many '
    'were new there';

CREATE FUNCTION shortlink.record_clicks_or_reject(
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
    n      integer := cardinality(p_event_ids);
    half   integer;
    state  text;
    msg    text;
BEGIN
    BEGIN
        RETURN shortlink.record_clicks_checked(p_event_ids, p_clicked_ms, p_codes,
                   p_ips, p_user_agents, p_referers, p_visitors, p_extra);
    EXCEPTION
        WHEN unique_violation THEN
            RAISE;          -- handled inside; never a reason to set clicks aside
        WHEN data_exception OR integrity_constraint_violation THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    END;

    IF n <= 1 THEN
        PERFORM shortlink.reject_clicks(p_event_ids, p_clicked_ms, p_codes, p_ips,
                    p_user_agents, p_referers, p_visitors, p_extra,
                    format('SQLSTATE %s: %s', state, msg));
        RETURN 0;
    END IF;

    -- which clicks?  each half on its own (its failure rolled back alone)
    half := n / 2;
    RETURN shortlink.record_clicks_or_reject(p_event_ids[1:half],
               p_clicked_ms[1:half], p_codes[1:half], p_ips[1:half],
               p_user_agents[1:half], p_referers[1:half], p_visitors[1:half],
               p_extra[1:half])
         + shortlink.record_clicks_or_reject(p_event_ids[half + 1:n],
               p_clicked_ms[half + 1:n], p_codes[half + 1:n], p_ips[half + 1:n],
               p_user_agents[half + 1:n], p_referers[half + 1:n],
               p_visitors[half + 1:n], p_extra[half + 1:n]);
END;
$$;

COMMENT ON FUNCTION shortlink.record_clicks_or_reject(uuid[], bigint[], text[],
                                                      text[], text[], text[],
                                                      text[], jsonb[]) IS
    'record_clicks_checked(); when it refuses the clicks for their data '
    '(SQLSTATE class 22 or 23, but not a unique violation), the batch is '
    'halved until the clicks refused on their own are found: those go to '
    'clicks_rejected with the SQLSTATE and message, the others are recorded.  '
    'Returns how many rows were inserted into clicks';

CREATE FUNCTION shortlink.clicks_by_time(
    p_event_ids    uuid[],
    p_clicked_ms   bigint[],
    p_codes        text[],
    p_ips          text[],
    p_user_agents  text[],
    p_referers     text[],
    p_visitors     text[],
    p_extra        jsonb[],
    p_lo           bigint,
    p_hi           bigint,
    p_inside       boolean)
RETURNS TABLE (event_ids uuid[], clicked_ms bigint[], codes text[], ips text[],
               user_agents text[], referers text[], visitors text[], extra jsonb[])
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(u.e ORDER BY u.n), '{}'),
           coalesce(array_agg(u.t ORDER BY u.n), '{}'),
           coalesce(array_agg(u.c ORDER BY u.n), '{}'),
           coalesce(array_agg(u.i ORDER BY u.n), '{}'),
           coalesce(array_agg(u.a ORDER BY u.n), '{}'),
           coalesce(array_agg(u.r ORDER BY u.n), '{}'),
           coalesce(array_agg(u.v ORDER BY u.n), '{}'),
           coalesce(array_agg(u.x ORDER BY u.n), '{}')
      FROM unnest(p_event_ids, p_clicked_ms, p_codes, p_ips, p_user_agents,
                  p_referers, p_visitors, p_extra)
           WITH ORDINALITY AS u(e, t, c, i, a, r, v, x, n)
     WHERE (u.t BETWEEN p_lo AND p_hi) = p_inside
$$;

COMMENT ON FUNCTION shortlink.clicks_by_time(uuid[], bigint[], text[], text[], text[],
                                             text[], text[], jsonb[], bigint, bigint,
                                             boolean) IS
    'The clicks (arrays as for record_clicks, in order) whose clicked_ms is '
    'between p_lo and p_hi (p_inside) or outside it (NOT p_inside)';

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
    ids       uuid[];
    ms        bigint[];
    codes     text[];
    ips       text[];
    uas       text[];
    refs      text[];
    visitors  text[];
    extra     jsonb[];
BEGIN
    -- a malformed call (NULLs where none may be, arrays of different
    -- lengths) goes to record_clicks_checked as it is, for its error
    IF p_clicked_ms IS NULL OR p_event_ids IS NULL OR p_codes IS NULL
       OR array_position(p_clicked_ms, NULL) IS NOT NULL
       OR array_position(p_event_ids, NULL) IS NOT NULL
       OR EXISTS (SELECT FROM unnest(ARRAY[cardinality(p_event_ids),
                                          cardinality(p_codes),
                                          cardinality(p_ips),
                                          cardinality(p_user_agents),
                                          cardinality(p_referers),
                                          cardinality(p_visitors),
                                          cardinality(p_extra)]) c
                   WHERE c IS DISTINCT FROM cardinality(p_clicked_ms)
                     AND c IS NOT NULL)
    THEN
        RETURN shortlink.record_clicks_checked(p_event_ids, p_clicked_ms, p_codes,
                   p_ips, p_user_agents, p_referers, p_visitors, p_extra);
    END IF;

    -- the common case costs one pass over the times
    IF NOT EXISTS (SELECT FROM unnest(p_clicked_ms) t WHERE t < lo OR t > hi) THEN
        RETURN shortlink.record_clicks_or_reject(p_event_ids, p_clicked_ms,
                   p_codes, p_ips, p_user_agents, p_referers, p_visitors, p_extra);
    END IF;

    SELECT * INTO ids, ms, codes, ips, uas, refs, visitors, extra
      FROM shortlink.clicks_by_time(p_event_ids, p_clicked_ms, p_codes, p_ips,
               p_user_agents, p_referers, p_visitors, p_extra, lo, hi, false);

    PERFORM shortlink.reject_clicks(ids, ms, codes, ips, uas, refs, visitors, extra,
        format('clicked_ms is out of range (%s .. %s: after 2000, at most two '
               'days ahead of the database clock; check the clock of the nginx '
               'hosts)', lo, hi));

    SELECT * INTO ids, ms, codes, ips, uas, refs, visitors, extra
      FROM shortlink.clicks_by_time(p_event_ids, p_clicked_ms, p_codes, p_ips,
               p_user_agents, p_referers, p_visitors, p_extra, lo, hi, true);

    RETURN shortlink.record_clicks_or_reject(ids, ms, codes, ips, uas, refs,
                                             visitors, extra);
END;
$$;

COMMENT ON FUNCTION shortlink.record_clicks(uuid[], bigint[], text[], text[],
                                            text[], text[], text[], jsonb[]) IS
    'The click flusher''s one call per batch (see record_clicks_checked for '
    'the arrays and what is recorded).  Clicks whose clicked_ms is before '
    '2000 or more than two days ahead of the database clock, and clicks the '
    'database refuses for their data (record_clicks_or_reject), go to '
    'clicks_rejected with the reason (once per event id) and a WARNING; the '
    'others are recorded.  Returns how many rows were inserted into clicks';
