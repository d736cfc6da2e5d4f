-- 011_reject_click.sql: nginx files a click PostgreSQL refused.
--
-- record_clicks() sets aside the clicks it refuses (009), but an error
-- raised before it runs, such as binding the arrays (invalid UTF-8, a
-- malformed array or JSON), refuses the whole call.  nginx then halves the
-- batch itself until it finds the clicks refused one by one, and files each
-- here, its text made acceptable first (bytes PostgreSQL would refuse
-- written as \xNN), with the SQLSTATE and message as the reason.  One
-- parameter for the click: the pool's calls take at most eight.

CREATE FUNCTION shortlink.reject_click(p_click jsonb, p_reason text)
RETURNS integer
LANGUAGE sql AS $$
    SELECT shortlink.reject_clicks(
               ARRAY[(p_click ->> 'event_id')::uuid],
               ARRAY[(p_click ->> 'clicked_ms')::bigint],
               ARRAY[p_click ->> 'code'],
               ARRAY[nullif(p_click ->> 'ip', '')],
               ARRAY[nullif(p_click ->> 'user_agent', '')],
               ARRAY[nullif(p_click ->> 'referer', '')],
               ARRAY[nullif(p_click ->> 'visitor_id', '')],
               ARRAY[CASE WHEN jsonb_typeof(p_click -> 'extra') = 'object'
                           AND p_click -> 'extra' <> '{}'
                          THEN p_click -> 'extra' END],
               coalesce(p_reason, 'refused by PostgreSQL'))
$$;

COMMENT ON FUNCTION shortlink.reject_click(jsonb, text) IS
    'Puts one click into clicks_rejected (see reject_clicks) with p_reason: '
    'the click as a JSON object with event_id, clicked_ms, code, ip, '
    'user_agent, referer, visitor_id (empty: NULL) and extra (an object of '
    'the extra fields).  Called by nginx for a click PostgreSQL refused '
    'before record_clicks() could set it aside; returns 1 if it was new there';
