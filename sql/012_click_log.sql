-- 012_click_log.sql: the access log, readable, and its retention.
--
-- link_clicks() returns the raw clicks of one link, newest first, one page
-- at a time, and GET /links/{code}/clicks exposes it (owner-scoped like
-- /links/{code}/stats).  What a click shows: its time, country
-- (extra->>'country'), browser, OS, device, referrer (host and full), bot
-- flag and a hash of its visitor id.  Never the visitor id itself and
-- never the IP address: the hash is the first 16 hex digits of
-- sha256(salt || visitor id) with a random salt made once per database
-- (click_log_settings.visitor_salt), so the same visitor has the same hash
-- on every page and link of this database, but a known visitor id cannot
-- be checked against it without the salt.
--
-- Pagination is by keyset on the primary key of shortlink.clicks (code,
-- clicked_at, event_id) (sql/010): a page is the rows of the code below
-- the cursor's (clicked_at, event_id), read backwards from the index of
-- each day partition in turn (the partitions are ordered by time, so the
-- plan is an ordered Append of backward index scans that stops after
-- limit + 1 rows).  The cost of a page does not depend on how deep it is
-- or how many clicks the link has.  EXPLAIN of a page deep in a link of
-- 1,000,000 clicks over 30 days, 50 clicks 15 days back (PostgreSQL 15,
-- auto_explain of the statement in link_clicks; partitions newer than
-- the cursor pruned when planning, 16 older ones never executed):
--
--   Sort (actual rows=50)  -- of the 50 rows, by row_number
--     ->  Subquery Scan on p
--       ->  WindowAgg -> WindowAgg
--         ->  Limit (actual time=0.037..0.071 rows=51)
--           ->  Append (actual rows=51)
--             ->  Index Scan Backward using clicks_p20261113_pkey
--                   on clicks_p20261113 c_17 (actual rows=51)
--                   Index Cond: ((code = 'big') AND (clicked_at >= ...)
--                     AND (clicked_at < ...) AND (clicked_at <= <cursor>)
--                     AND (ROW(clicked_at, event_id) < ROW(<cursor>)))
--             ->  Index Scan Backward using clicks_p20261112_pkey
--                   on clicks_p20261112 c_16 (never executed)
--             ...
--
-- The statement: 0.7 ms, 8 buffers; the whole call 2.3-2.6 ms for 50
-- rows (planning over the partitions), 7 ms for 1,000, first page or
-- deep; through shortlink.api() 5 ms and 24 ms (README, "Access log").
--
-- The cursor is opaque: unpadded base64url of "<clicked_at in Unix
-- microseconds>:<event_id>:<signature>" of the last click returned, the
-- signature a keyed hash (the secret salt) of the link's code and the
-- position.  A cursor that is not one (changed, truncated, another
-- link's) is a 400.
--
-- Retention: raw clicks are kept forever unless the admin sets a
-- retention (set_click_retention('90 days')).  purge_clicks() then drops
-- the day partitions wholly older than the retention and deletes the rows
-- of the day the limit falls in, in chunks; record_clicks() calls it every
-- 10 minutes at most.  Rollups (link_hourly_clicks) are never touched: pv,
-- uv, unique IPs and series of old days stay available.

-- --- settings ----------------------------------------------------------------

CREATE TABLE shortlink.click_log_settings (
    singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    retention     interval    CHECK (retention > interval '0'),
    visitor_salt  text        NOT NULL DEFAULT gen_random_uuid()::text,
    last_purge    timestamptz NOT NULL DEFAULT '-infinity'
);

INSERT INTO shortlink.click_log_settings DEFAULT VALUES;

COMMENT ON TABLE shortlink.click_log_settings IS
    'One row: the retention of raw clicks (NULL: forever), the secret salt '
    'of visitor hashes in the access log, and when purge_clicks last ran '
    'from record_clicks';


-- --- the access log ------------------------------------------------------------

-- the signature of a cursor: 16 hex digits of sha256 over the salt, the
-- link's code and the position
CREATE FUNCTION shortlink.click_cursor_sig(p_salt text, p_code text, p_pos text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT left(encode(sha256(convert_to(p_salt || ':' || p_code || ':' || p_pos,
                                         'UTF8')), 'hex'), 16)
$$;

CREATE FUNCTION shortlink.click_cursor(p_code text, p_clicked_at timestamptz,
                                       p_event_id uuid)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT rtrim(translate(encode(convert_to(
               pos || ':' || shortlink.click_cursor_sig(s.visitor_salt, p_code, pos),
               'UTF8'), 'base64'), E'+/\n', '-_'), '=')
      FROM shortlink.click_log_settings s,
           LATERAL (SELECT (extract(epoch FROM p_clicked_at) * 1000000)::bigint
                           || ':' || p_event_id::text AS pos) x
$$;

COMMENT ON FUNCTION shortlink.click_cursor(text, timestamptz, uuid) IS
    'Opaque access-log cursor of link p_code: unpadded base64url of '
    '"<clicked_at in Unix microseconds>:<event_id>:<signature>" of the last '
    'click returned; the signature (click_cursor_sig, keyed with the '
    'secret salt) ties it to the link and makes any change detectable';

CREATE FUNCTION shortlink.click_cursor_decode(p_code text, p_cursor text,
                                              OUT clicked_at timestamptz,
                                              OUT event_id uuid)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    raw  text;
    m    text[];
BEGIN
    IF p_cursor IS NULL OR p_cursor !~ '^[A-Za-z0-9_-]{4,200}$'
       OR length(p_cursor) % 4 = 1 THEN
        RETURN;
    END IF;
    -- escape encoding never fails: non-ASCII bytes come out as \ooo and
    -- then fail the pattern
    raw := encode(decode(translate(p_cursor, '-_', '+/')
                         || repeat('=', (4 - length(p_cursor) % 4) % 4),
                         'base64'), 'escape');
    m := regexp_match(raw, '^((-?[0-9]{1,17}):([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}'
                           '-[0-9a-f]{4}-[0-9a-f]{12})):([0-9a-f]{16})$');
    IF m IS NOT NULL
       AND m[4] = (SELECT shortlink.click_cursor_sig(s.visitor_salt, p_code, m[1])
                     FROM shortlink.click_log_settings s)
    THEN
        clicked_at := timestamptz '1970-01-01 00:00:00+00'
                      + m[2]::bigint * interval '1 microsecond';
        event_id := m[3]::uuid;
    END IF;
END;
$$;

COMMENT ON FUNCTION shortlink.click_cursor_decode(text, text) IS
    'The (clicked_at, event_id) of a cursor made by click_cursor for link '
    'p_code, both NULL when the text is not such a cursor (malformed, '
    'changed, or another link''s)';

CREATE FUNCTION shortlink.visitor_hash(p_visitor_id text)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT left(encode(sha256(convert_to(s.visitor_salt || p_visitor_id, 'UTF8')),
                       'hex'), 16)
      FROM shortlink.click_log_settings s
$$;

COMMENT ON FUNCTION shortlink.visitor_hash(text) IS
    'What the access log shows of a visitor id: 16 hex digits of '
    'sha256(salt || id), the salt secret and fixed per database; NULL for '
    'NULL';

CREATE FUNCTION shortlink.link_clicks(p_code text, p_from timestamptz,
                                      p_to timestamptz, p_cursor text DEFAULT NULL,
                                      p_limit integer DEFAULT 50)
RETURNS TABLE (clicked_at timestamptz, country text, browser text, os text,
               device text, referrer_host text, referrer text, is_bot boolean,
               visitor_hash text, next_cursor text)
LANGUAGE plpgsql STABLE
-- a plan for the actual values: the partitions after the cursor are then
-- pruned when planning, and the row comparison is estimated from the
-- statistics (a generic plan may prefer sorting the whole range)
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    -- without a cursor: after the newest possible click
    c_ts  timestamptz := 'infinity';
    c_id  uuid := 'ffffffff-ffff-ffff-ffff-ffffffffffff';
    salt  text := (SELECT s.visitor_salt FROM shortlink.click_log_settings s);
BEGIN
    IF p_code IS NULL OR p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION 'link_clicks: code, from and to must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'link_clicks: limit must be from 1 to 1000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_cursor IS NOT NULL THEN
        SELECT d.clicked_at, d.event_id INTO c_ts, c_id
          FROM shortlink.click_cursor_decode(p_code, p_cursor) d;
        IF c_id IS NULL THEN
            RAISE EXCEPTION 'link_clicks: not a cursor of link_clicks'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    -- one row more than asked, to know whether there is a next page.  The
    -- row comparison (clicked_at, event_id) < cursor is an index condition
    -- on the primary key after code = p_code, and clicked_at <= c_ts prunes
    -- the newer partitions; ordered by the partition key, the partitions
    -- are read newest first and the scan stops after p_limit + 1 rows
    RETURN QUERY
    SELECT p.clicked_at, p.country, p.browser, p.os, p.device,
           p.referer_host, p.referer, p.is_bot,
           -- visitor_hash(), inlined: 50 calls cost 1.5 ms
           left(encode(sha256(convert_to(salt || p.visitor_id, 'UTF8')), 'hex'), 16),
           CASE WHEN p.rn = p_limit AND p.more
                THEN shortlink.click_cursor(p_code, p.clicked_at, p.event_id) END
      FROM (SELECT s.*, row_number() OVER (ORDER BY s.clicked_at DESC,
                                                    s.event_id DESC) AS rn,
                   count(*) OVER () > p_limit AS more
              FROM (SELECT c.clicked_at, c.event_id, c.extra ->> 'country' AS country,
                           c.browser, c.os, c.device, c.referer_host, c.referer,
                           c.is_bot, c.visitor_id
                      FROM shortlink.clicks c
                     WHERE c.code = p_code
                       AND c.clicked_at >= p_from AND c.clicked_at < p_to
                       AND c.clicked_at <= c_ts
                       AND (c.clicked_at, c.event_id) < (c_ts, c_id)
                     ORDER BY c.clicked_at DESC, c.event_id DESC
                     LIMIT p_limit + 1) s) p
     WHERE p.rn <= p_limit
     ORDER BY p.rn;
END;
$$;

COMMENT ON FUNCTION shortlink.link_clicks(text, timestamptz, timestamptz, text, integer) IS
    'The access log of one link: its raw clicks in [p_from, p_to), newest '
    'first (ties in time by event id, descending), at most p_limit (1..1000, '
    'default 50) after the cursor p_cursor (NULL: from the newest).  Each '
    'row: time, country (extra->>''country''), browser, os, device, referrer '
    'host and referrer, bot flag, visitor_hash (see visitor_hash; never the '
    'id, never the address); next_cursor is set on the last row of a page '
    'when there are more clicks (pass it as p_cursor).  Keyset pagination on '
    'the primary key: any page is an index range scan.  Raises 22023 for a '
    'bad limit or cursor, 22004 for NULL code/from/to';

CREATE FUNCTION shortlink.api_clicks(p_params jsonb, p_code text, p_owner text,
                                     p_admin boolean)
RETURNS shortlink.api_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    l       shortlink.links;
    v_to    timestamptz := now();
    v_from  timestamptz;
    lim     integer := 50;
    items   jsonb;
    next    text;
BEGIN
    -- the same checks, in the same order, as /links/{code}/stats
    SELECT * INTO l FROM shortlink.links
     WHERE code = p_code AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(404, 'link-not-found', 'link not found',
                                     format('there is no link "%s"', p_code));
    END IF;
    IF NOT p_admin AND l.owner IS DISTINCT FROM p_owner THEN
        RETURN shortlink.api_problem(403, 'not-your-link', 'forbidden',
            format('the link "%s" belongs to another owner', p_code));
    END IF;

    IF p_params ? 'to' THEN
        v_to := shortlink.api_parse_time(p_params ->> 'to');
        IF v_to IS NULL THEN
            RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                'to must be an ISO 8601 date (UTC) or timestamp with a time zone '
                '(send + as %2B)');
        END IF;
    END IF;
    v_from := v_to - interval '7 days';
    IF p_params ? 'from' THEN
        v_from := shortlink.api_parse_time(p_params ->> 'from');
        IF v_from IS NULL THEN
            RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                'from must be an ISO 8601 date (UTC) or timestamp with a time zone '
                '(send + as %2B)');
        END IF;
    END IF;
    IF v_to < v_from THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     'to must not be before from');
    END IF;
    IF p_params ? 'limit' THEN
        IF p_params ->> 'limit' !~ '^[0-9]{1,4}$'
           OR (p_params ->> 'limit')::integer NOT BETWEEN 1 AND 1000 THEN
            RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                         'limit must be a number from 1 to 1000');
        END IF;
        lim := (p_params ->> 'limit')::integer;
    END IF;
    IF p_params ? 'cursor'
       AND (SELECT d.event_id
              FROM shortlink.click_cursor_decode(p_code, p_params ->> 'cursor') d)
           IS NULL THEN
        RETURN shortlink.api_problem(400, 'bad-cursor', 'bad cursor',
            'cursor must be a next_cursor value returned by this API');
    END IF;

    SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'clicked_at', shortlink.api_iso(c.clicked_at),
                        'country', c.country,
                        'browser', c.browser,
                        'os', c.os,
                        'device', c.device,
                        'referrer_host', c.referrer_host,
                        'referrer', c.referrer,
                        'bot', c.is_bot,
                        'visitor_hash', c.visitor_hash) ORDER BY n), '[]'),
           max(c.next_cursor)
      INTO items, next
      FROM shortlink.link_clicks(p_code, v_from, v_to, p_params ->> 'cursor', lim)
           WITH ORDINALITY AS c(clicked_at, country, browser, os, device,
                                referrer_host, referrer, is_bot, visitor_hash,
                                next_cursor, n);

    RETURN ROW(200, jsonb_build_object(
                   'code', p_code,
                   'from', shortlink.api_iso(v_from),
                   'to', shortlink.api_iso(v_to),
                   'clicks', items,
                   'next_cursor', next))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_clicks(jsonb, text, text, boolean) IS
    'GET /links/{code}/clicks?from=&to=&cursor=&limit=: link_clicks of the '
    'link as {"code", "from", "to", "clicks": [...], "next_cursor": text or '
    'null (null: nothing more)}; to defaults to now, from to 7 days before '
    'to, limit to 50 (1..1000).  404 unknown or deleted link, 403 another '
    'owner''s link (owner keys), 400 unparsable times, to before from, bad '
    'limit or cursor';


-- --- the route -----------------------------------------------------------------
--
-- api_dispatch of 008 with one more route, /links/{code}/clicks; all else
-- is unchanged (api() calls it by name, so it is replaced in place).

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
            RETURN shortlink.api_problem(404, NULL, 'Not Found',
                'no such API route; routes: /links, /links/bulk, /links/{code}, '
                '/links/{code}/stats, /links/{code}/clicks');
        END IF;
        IF m[2] = '/stats' THEN
            allow := 'GET, HEAD';
            accept := CASE v_method WHEN 'GET' THEN ARRAY['from', 'to', 'interval'] END;
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
    '(400), and calls the route''s function';


-- --- retention -----------------------------------------------------------------

CREATE FUNCTION shortlink.set_click_retention(p_retention interval)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_retention IS NOT NULL AND p_retention <= interval '0' THEN
        RAISE EXCEPTION 'set_click_retention: % is not a positive interval',
                        p_retention
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE shortlink.click_log_settings SET retention = p_retention;
END;
$$;

COMMENT ON FUNCTION shortlink.set_click_retention(interval) IS
    'How long raw clicks (the access log, and the top lists read from them) '
    'are kept, e.g. ''90 days''; NULL (the default) keeps them forever.  '
    'purge_clicks applies it; rollups are kept whatever it is';

CREATE FUNCTION shortlink.purge_clicks(p_limit integer DEFAULT 10000,
                                       p_nowait boolean DEFAULT false,
                                       OUT partitions integer, OUT deleted bigint)
LANGUAGE plpgsql AS $$
DECLARE
    ret     interval;
    cutoff  timestamptz;
    day     date;
    part    text;
BEGIN
    partitions := 0;
    deleted := 0;
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'purge_clicks: p_limit must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.retention INTO ret FROM shortlink.click_log_settings s;
    IF ret IS NULL THEN
        RETURN;
    END IF;
    cutoff := now() - ret;
    day := (cutoff AT TIME ZONE 'UTC')::date;

    -- whole days before the cutoff's day: drop their partitions (no
    -- per-row cost, no bloat).  DROP takes an ACCESS EXCLUSIVE lock on
    -- shortlink.clicks; with p_nowait the days are left for a later run
    -- when the lock is not free at once
    IF EXISTS (SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'shortlink.clicks'::regclass
                  AND c.relname ~ '^clicks_p[0-9]{8}$'
                  AND to_date(substr(c.relname, 9), 'YYYYMMDD') < day)
    THEN
        IF NOT p_nowait THEN
            partitions := shortlink.drop_click_partitions(day);
        ELSIF pg_try_advisory_xact_lock(
                  hashtextextended('shortlink.clicks partitions', 0))
        THEN
            BEGIN
                LOCK TABLE shortlink.clicks IN ACCESS EXCLUSIVE MODE NOWAIT;
                partitions := shortlink.drop_click_partitions(day);
            EXCEPTION WHEN lock_not_available THEN
                NULL;
            END;
        END IF;
    END IF;

    -- the cutoff's own day: delete its older rows, at most p_limit, by
    -- their row ids in that one partition
    part := 'clicks_p' || to_char(day, 'YYYYMMDD');
    IF to_regclass(format('shortlink.%I', part)) IS NOT NULL THEN
        EXECUTE format('DELETE FROM shortlink.%1$I WHERE ctid = ANY (ARRAY('
                       'SELECT ctid FROM shortlink.%1$I WHERE clicked_at < $1 '
                       'LIMIT $2))', part)
          USING cutoff, p_limit;
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
END;
$$;

COMMENT ON FUNCTION shortlink.purge_clicks(integer, boolean) IS
    'Applies the retention of set_click_retention to the raw clicks: drops '
    'the day partitions before the day of now() - retention and deletes up '
    'to p_limit older rows of that day itself; returns (partitions dropped, '
    'rows deleted); nothing when the retention is NULL.  Rollups are never '
    'touched.  With p_nowait (as record_clicks calls it) days are only '
    'dropped when the table lock is free at once.  For a job: '
    'SET lock_timeout = ''5s''; SELECT * FROM shortlink.purge_clicks(50000); '
    'repeated while it deletes p_limit rows';

CREATE FUNCTION shortlink.purge_clicks_due()
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    state  text;
    msg    text;
BEGIN
    -- every 10 minutes at most, the batch that finds the purge due and its
    -- lock free runs it; the others go on without waiting.  A failure is a
    -- WARNING, never a failed batch
    IF (SELECT retention IS NOT NULL
               AND last_purge < now() - interval '10 minutes'
          FROM shortlink.click_log_settings)
       AND pg_try_advisory_xact_lock(hashtextextended('shortlink.clicks purge', 0))
    THEN
        UPDATE shortlink.click_log_settings SET last_purge = now();
        BEGIN
            PERFORM shortlink.purge_clicks(10000, true);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            RAISE WARNING 'record_clicks: purging old clicks failed (SQLSTATE '
                          '%: %); the clicks are recorded', state, msg;
        END;
    END IF;
END;
$$;

COMMENT ON FUNCTION shortlink.purge_clicks_due() IS
    'Called by record_clicks after each batch: runs purge_clicks(10000, '
    'true) when a retention is set and it last ran 10 minutes ago or more';


-- record_clicks of 009, unchanged but for the call of purge_clicks_due()
-- after a batch was recorded
CREATE OR REPLACE FUNCTION shortlink.record_clicks(
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
    n         integer;
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
        n := shortlink.record_clicks_or_reject(p_event_ids, p_clicked_ms,
                   p_codes, p_ips, p_user_agents, p_referers, p_visitors, p_extra);
        PERFORM shortlink.purge_clicks_due();
        RETURN n;
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

    n := shortlink.record_clicks_or_reject(ids, ms, codes, ips, uas, refs,
                                           visitors, extra);
    PERFORM shortlink.purge_clicks_due();
    RETURN n;
END;
$$;

