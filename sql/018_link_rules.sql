-- 018_link_rules.sql: what decides a redirect beyond the url: redirect
-- rules, visit limits with a fallback URL.
--
-- Redirect rules: an ordered list per link; the first rule whose
-- conditions all hold picks the target, else the link's url.
--
-- Conditions (all optional, at least one per rule): device (ios, android,
-- desktop: from the User-Agent), language (Accept-Language names it with
-- q > 0), country (the value of shortlink_rule_country in nginx), query
-- (a query parameter equal to a value), from / until (a time window).
-- nginx decides from the cached link, so resolve() hands the rules over
-- in a compact text form (link_rules_encode()) that the zone and Redis keep
-- as they are; ngx_http_shortlink_rules.c reads it.
--
-- Changing the rules updates the row: links_touch bumps the version and
-- links_notify announces it, so every node drops its cached copy.
--
-- Visit limits: after max_visits recorded clicks the link stops
-- redirecting to its url.  The count comes from the click pipeline's
-- rollup, shortlink.link_hourly_clicks: a trigger on it (record_clicks
-- itself is not touched) sums the link's clicks when a batch adds some and
-- marks the link exhausted once the sum reaches max_visits; that update
-- bumps the version and notifies every node like any change.  Overshoot:
-- clicks still queued in nginx when the limit is reached, at most one
-- flush interval times the link's click rate, per node (plus the time a
-- batch takes to commit and the notification to arrive).
--
-- Fallback: a link that is expired, disabled or exhausted and has a
-- fallback_url redirects there (302) instead of answering 404; resolve()
-- returns that row with the fallback as its url and no rules.
--
-- The API gets GET and PUT /links/{code}/rules and /links/{code}/limits as
-- rows of shortlink.api_routes (013); api_dispatch, api_check_link and
-- api_link_json are left as they are.

ALTER TABLE shortlink.links ADD COLUMN rules jsonb NOT NULL DEFAULT '[]';

COMMENT ON COLUMN shortlink.links.rules IS
    'Redirect rules, in order: [{"url": ..., "device": "ios"|"android"|'
    '"desktop", "language": "de", "country": "AT", "query": {"name": ..., '
    '"value": ...}, "from": ISO 8601, "until": ISO 8601}]; see '
    'shortlink.link_rules_problems() for what is allowed';


-- what is wrong with a rules value, as [{pointer, detail}]; [] when nothing
CREATE FUNCTION shortlink.link_rules_problems(p_rules jsonb, p_ptr text DEFAULT '')
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    errs   jsonb[] := '{}';
    rule   jsonb;
    k      text;
    v      jsonb;
    ptr    text;
    t      text;
    conds  integer;
    t_from timestamptz;
    t_until timestamptz;
    allowed CONSTANT text[] := ARRAY['url', 'device', 'language', 'country',
                                     'query', 'from', 'until'];
BEGIN
    IF p_rules IS NULL OR jsonb_typeof(p_rules) <> 'array' THEN
        RETURN jsonb_build_array(jsonb_build_object('pointer', p_ptr,
            'detail', 'must be an array of rule objects'));
    END IF;
    IF jsonb_array_length(p_rules) > 16 THEN
        RETURN jsonb_build_array(jsonb_build_object('pointer', p_ptr,
            'detail', 'must have at most 16 rules'));
    END IF;

    FOR i IN 0 .. jsonb_array_length(p_rules) - 1 LOOP
        rule := p_rules -> i;
        IF jsonb_typeof(rule) <> 'object' THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/' || i,
                'detail', 'a rule must be an object');
            CONTINUE;
        END IF;

        conds := 0;
        t_from := NULL;
        t_until := NULL;

        FOR k, v IN SELECT e.key, e.value FROM jsonb_each(rule) e ORDER BY e.key LOOP
            ptr := p_ptr || '/' || i || '/' || replace(replace(k, '~', '~0'), '/', '~1');
            t := CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}' END;

            IF k <> ALL (allowed) THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'unknown field; known: ' || array_to_string(allowed, ', '));
                CONTINUE;
            END IF;

            IF k <> 'url' THEN
                conds := conds + 1;
            END IF;

            CASE k
            WHEN 'url' THEN
                IF t IS NULL THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be a string');
                ELSIF octet_length(t) > 8192 THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be at most 8192 bytes long');
                ELSIF t !~ '^[!-~]+$' THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must not be empty nor contain spaces, control characters '
                        'or non-ASCII characters (percent-encode them)');
                ELSIF t !~* '^https?://[^/?#]' THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be an absolute http:// or https:// URL');
                END IF;

            WHEN 'device' THEN
                IF t IS NULL OR t NOT IN ('ios', 'android', 'desktop') THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be one of "ios", "android", "desktop"');
                END IF;

            WHEN 'language' THEN
                IF t IS NULL OR t !~ '^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$'
                   OR length(t) > 35 THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be a language tag such as "de" or "pt-BR" '
                        '(at most 35 characters)');
                END IF;

            WHEN 'country' THEN
                IF t IS NULL OR t !~ '^[A-Za-z0-9_-]{1,32}$' THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be 1 to 32 of the characters A-Z a-z 0-9 _ - '
                        '(e.g. "DE"; compared case-insensitively)');
                END IF;

            WHEN 'query' THEN
                IF jsonb_typeof(v) <> 'object'
                   OR (SELECT count(*) FROM jsonb_object_keys(v) x
                        WHERE x NOT IN ('name', 'value')) > 0
                   OR jsonb_typeof(v -> 'name') IS DISTINCT FROM 'string'
                   OR jsonb_typeof(v -> 'value') IS DISTINCT FROM 'string'
                THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be an object {"name": string, "value": string}');
                ELSIF (v ->> 'name') !~ '^[A-Za-z0-9_.-]{1,64}$' THEN
                    errs := errs || jsonb_build_object('pointer', ptr || '/name',
                        'detail', 'must be 1 to 64 of the characters A-Z a-z 0-9 _ . -');
                ELSIF (v ->> 'value') !~ '^[A-Za-z0-9_.~-]*$'
                      OR length(v ->> 'value') > 256 THEN
                    errs := errs || jsonb_build_object('pointer', ptr || '/value',
                        'detail', 'must be at most 256 of the characters '
                                  'A-Z a-z 0-9 _ . ~ - (compared as sent)');
                END IF;

            WHEN 'from', 'until' THEN
                IF t IS NULL OR shortlink.api_parse_time(t) IS NULL
                   OR shortlink.api_parse_time(t) < 'epoch'::timestamptz
                   OR shortlink.api_parse_time(t) >= '9999-01-01Z'::timestamptz
                THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be an ISO 8601 timestamp with a time zone between '
                        '1970 and 9998, e.g. 2030-01-31T12:00:00Z');
                ELSIF k = 'from' THEN
                    t_from := shortlink.api_parse_time(t);
                ELSE
                    t_until := shortlink.api_parse_time(t);
                END IF;
            END CASE;
        END LOOP;

        IF NOT rule ? 'url' THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/' || i || '/url',
                'detail', 'is required');
        END IF;
        IF conds = 0 THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/' || i,
                'detail', 'a rule needs at least one condition: device, '
                          'language, country, query, from, until');
        END IF;
        IF t_from IS NOT NULL AND t_until IS NOT NULL AND t_until <= t_from THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/' || i || '/until',
                'detail', 'must be after from');
        END IF;
    END LOOP;

    IF cardinality(errs) = 0
       AND octet_length(shortlink.link_rules_encode(p_rules)) > 16384 THEN
        errs := errs || jsonb_build_object('pointer', p_ptr,
            'detail', 'the rules are too long (at most 16384 bytes encoded)');
    END IF;

    RETURN to_jsonb(errs);
END;
$$;


-- the text nginx reads (ngx_http_shortlink_rules.c); NULL for no rules
CREATE FUNCTION shortlink.link_rules_encode(p_rules jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT string_agg(E'\n' || concat_ws(' ',
               'd=' || (r ->> 'device'),
               'l=' || (r ->> 'language'),
               'c=' || (r ->> 'country'),
               'q=' || (r -> 'query' ->> 'name') || '=' || (r -> 'query' ->> 'value'),
               'f=' || floor(extract(epoch FROM
                            shortlink.api_parse_time(r ->> 'from')))::bigint,
               'u=' || floor(extract(epoch FROM
                            shortlink.api_parse_time(r ->> 'until')))::bigint,
               't=' || (r ->> 'url')),
           '' ORDER BY n)
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_rules) = 'array'
                                     THEN p_rules ELSE '[]' END)
           WITH ORDINALITY AS x(r, n)
$$;

COMMENT ON FUNCTION shortlink.link_rules_problems(jsonb, text) IS
    'Checks a rules value: an array of at most 16 objects, each with url '
    '(as links.url) and at least one condition: device (ios, android, '
    'desktop), language (a language tag), country (1-32 of A-Za-z0-9_-), '
    'query {name: 1-64 of A-Za-z0-9_.-, value: 0-256 of A-Za-z0-9_.~-}, '
    'from / until (ISO 8601 with a zone, until after from); at most 16384 '
    'bytes encoded.  Returns [{pointer, detail}] (RFC 6901 pointers under '
    'p_ptr), [] when valid';
COMMENT ON FUNCTION shortlink.link_rules_encode(jsonb) IS
    'The rules as nginx reads them: per rule a LF, then "d=", "l=", "c=", '
    '"q=name=value", "f=epoch", "u=epoch" (those present), then "t=url", '
    'separated by spaces; NULL for no rules.  See '
    'ngx_http_shortlink_module/ngx_http_shortlink_rules.c';

ALTER TABLE shortlink.links ADD CONSTRAINT links_rules_valid
    CHECK (shortlink.link_rules_problems(rules) = '[]'::jsonb);


-- --- visit limits and the fallback ---------------------------------------

ALTER TABLE shortlink.links
    ADD COLUMN max_visits bigint,
    ADD COLUMN fallback_url text,
    ADD COLUMN exhausted_at timestamptz,
    ADD CONSTRAINT links_max_visits_positive
        CHECK (max_visits > 0),
    ADD CONSTRAINT links_fallback_url_scheme
        CHECK (fallback_url ~* '^https?://[^/?#]'),
    ADD CONSTRAINT links_fallback_url_length
        CHECK (octet_length(fallback_url) <= 8192),
    ADD CONSTRAINT links_fallback_url_printable
        CHECK (fallback_url ~ '^[!-~]+$'),
    ADD CONSTRAINT links_exhausted_limited
        CHECK (exhausted_at IS NULL OR max_visits IS NOT NULL);

COMMENT ON COLUMN shortlink.links.max_visits IS
    'After this many recorded clicks the link stops redirecting to its url '
    '(NULL: no limit); see exhausted_at';
COMMENT ON COLUMN shortlink.links.fallback_url IS
    'Where the link sends visitors while it is expired, disabled or '
    'exhausted, instead of a 404 (same rules as url; NULL: none)';
COMMENT ON COLUMN shortlink.links.exhausted_at IS
    'Set (by the trigger on link_hourly_clicks) when the recorded clicks '
    'reached max_visits; cleared when max_visits is raised above them or '
    'removed';

CREATE INDEX links_limited ON shortlink.links (code) WHERE max_visits IS NOT NULL;


-- the recorded clicks of a link: the rollup's rows, merged or not
CREATE FUNCTION shortlink.link_visits(p_code text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(pv), 0)::bigint
      FROM shortlink.link_hourly_clicks
     WHERE code = p_code
$$;

COMMENT ON FUNCTION shortlink.link_visits(text) IS
    'Clicks of a link recorded so far (bots included), from '
    'link_hourly_clicks';


-- A batch of clicks was recorded: the limited links among them that are
-- not exhausted yet are checked.  The merge of compact_hourly_clicks
-- inserts rows too (with sketches, visitors NOT NULL); it moves counts,
-- it adds none, and is skipped.
CREATE FUNCTION shortlink.link_visits_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    c      text;
    state  text;
    msg    text;
BEGIN
    FOR c IN SELECT l.code
               FROM shortlink.links l
              WHERE l.max_visits IS NOT NULL
                AND l.exhausted_at IS NULL
                AND l.code IN (SELECT n.code FROM new_rows n
                                WHERE n.visitors IS NULL)
              ORDER BY l.code
    LOOP
        -- batches of two nodes at once: the second waits, then sees the
        -- first's rows (a new snapshot per statement)
        PERFORM pg_advisory_xact_lock(
                    hashtextextended('shortlink.link_visits:' || c, 0));
        -- never fails the batch: the clicks must be recorded whatever
        -- happens here; the next batch of the link tries again
        BEGIN
            UPDATE shortlink.links l
               SET exhausted_at = now()
             WHERE l.code = c
               AND l.exhausted_at IS NULL
               AND l.max_visits <= shortlink.link_visits(c);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            RAISE WARNING 'link_visits_check: link "%" not marked exhausted '
                          '(SQLSTATE %: %)', c, state, msg;
        END;
    END LOOP;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.link_visits_check() IS
    'After a batch of clicks: marks the limited links it touched exhausted '
    'once link_visits() reaches max_visits (the update notifies nginx)';

CREATE TRIGGER link_visits_check
    AFTER INSERT ON shortlink.link_hourly_clicks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shortlink.link_visits_check();


-- max_visits set, changed or removed: exhausted_at follows at once
CREATE FUNCTION shortlink.links_limit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.max_visits IS NULL THEN
        NEW.exhausted_at := NULL;
    ELSIF TG_OP = 'INSERT' OR NEW.max_visits IS DISTINCT FROM OLD.max_visits THEN
        NEW.exhausted_at := CASE
            WHEN shortlink.link_visits(NEW.code) >= NEW.max_visits
            THEN coalesce(NEW.exhausted_at, now()) END;
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION shortlink.links_limit() IS
    'Keeps exhausted_at true when max_visits changes: set when the clicks '
    'recorded reach the new limit, cleared otherwise';

CREATE TRIGGER links_limit
    BEFORE INSERT OR UPDATE OF max_visits ON shortlink.links
    FOR EACH ROW EXECUTE FUNCTION shortlink.links_limit();


-- resolve() of 006 plus the encoded rules and the fallback

DROP FUNCTION shortlink.resolve(text);

CREATE FUNCTION shortlink.resolve(p_code text)
RETURNS TABLE (url text, redirect_status smallint, expires_epoch bigint,
               version bigint, forward_query boolean, rules text)
LANGUAGE sql STABLE AS $$
    SELECT l.url, l.redirect_status,
           extract(epoch FROM l.expires_at)::bigint, l.version,
           l.forward_query, shortlink.link_rules_encode(l.rules)
      FROM shortlink.links l
     WHERE l.code = p_code
       AND l.enabled
       AND l.deleted_at IS NULL
       AND (l.expires_at IS NULL OR l.expires_at > now())
       AND l.exhausted_at IS NULL
    UNION ALL
    SELECT l.fallback_url, 302::smallint, NULL::bigint, l.version, false, NULL
      FROM shortlink.links l
     WHERE l.code = p_code
       AND l.fallback_url IS NOT NULL
       AND l.deleted_at IS NULL
       AND NOT (l.enabled
                AND (l.expires_at IS NULL OR l.expires_at > now())
                AND l.exhausted_at IS NULL)
$$;

COMMENT ON FUNCTION shortlink.resolve(text) IS
    'Target of a followable link (enabled, not deleted, not expired, not '
    'exhausted); for a link that is not followable but has a fallback_url, '
    'the fallback (302, never expires, no rules); else no row; expires_epoch is NULL for links that never expire; '
    'version is the row''s version, kept with every cached copy; '
    'forward_query: append the visitor''s query string to the target; '
    'rules: the redirect rules encoded (link_rules_encode()), NULL for none';


-- GET / PUT /links/{code}/rules

CREATE FUNCTION shortlink.api_link_rules(p_method text, p_match text[], p_params jsonb,
                                         p_body text, p_owner text, p_admin boolean,
                                         p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    l     shortlink.links;
    doc   jsonb;
    errs  jsonb;
BEGIN
    IF p_method = 'PUT' THEN
        SELECT * INTO l FROM shortlink.links
         WHERE code = p_match[1] AND deleted_at IS NULL FOR UPDATE;
    ELSE
        SELECT * INTO l FROM shortlink.links
         WHERE code = p_match[1] AND deleted_at IS NULL;
    END IF;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(404, 'link-not-found', 'link not found',
                                     format('there is no link "%s"', p_match[1]));
    END IF;
    IF NOT p_admin AND l.owner IS DISTINCT FROM p_owner THEN
        RETURN shortlink.api_problem(403, 'not-your-link', 'forbidden',
            format('the link "%s" belongs to another owner', p_match[1]));
    END IF;

    IF p_method = 'PUT' THEN
        doc := shortlink.api_parse_json(p_body);
        IF doc IS NULL THEN
            RETURN shortlink.api_problem(400, 'malformed-json', 'malformed JSON',
                                         'the request body is missing or not valid JSON');
        END IF;
        IF jsonb_typeof(doc) <> 'array' THEN
            RETURN shortlink.api_problem(400, 'not-an-array', 'body is not an array',
                'the request body must be a JSON array of rules ([] removes them)');
        END IF;
        errs := shortlink.link_rules_problems(doc);
        IF jsonb_array_length(errs) > 0 THEN
            RETURN shortlink.api_field_problem(errs);
        END IF;
        UPDATE shortlink.links x SET rules = doc
         WHERE x.code = l.code
        RETURNING x.* INTO l;
    END IF;

    RETURN ROW(200, jsonb_build_object('code', l.code, 'rules', l.rules,
                                       'version', l.version))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_link_rules(text, text[], jsonb, text, text, boolean, text) IS
    'GET /links/{code}/rules: {code, rules, version}; PUT: replaces the '
    'rules with the body (a JSON array, [] removes them), 200 as GET, 400 '
    'not JSON / not an array, 422 invalid rules (pointers into the array); '
    '404 unknown or deleted link, 403 another owner''s link';

INSERT INTO shortlink.api_routes (pattern, methods, handler, position)
VALUES ('^/links/([0-9A-Za-z_-]{1,64})/rules$', '{"GET": [], "PUT": []}',
        'shortlink.api_link_rules', 100);


-- GET / PUT /links/{code}/limits

CREATE FUNCTION shortlink.api_link_limits(p_method text, p_match text[], p_params jsonb,
                                          p_body text, p_owner text, p_admin boolean,
                                          p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    l     shortlink.links;
    doc   jsonb;
    errs  jsonb[] := '{}';
    k     text;
    v     jsonb;
    t     text;
BEGIN
    IF p_method = 'PUT' THEN
        SELECT * INTO l FROM shortlink.links
         WHERE code = p_match[1] AND deleted_at IS NULL FOR UPDATE;
    ELSE
        SELECT * INTO l FROM shortlink.links
         WHERE code = p_match[1] AND deleted_at IS NULL;
    END IF;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(404, 'link-not-found', 'link not found',
                                     format('there is no link "%s"', p_match[1]));
    END IF;
    IF NOT p_admin AND l.owner IS DISTINCT FROM p_owner THEN
        RETURN shortlink.api_problem(403, 'not-your-link', 'forbidden',
            format('the link "%s" belongs to another owner', p_match[1]));
    END IF;

    IF p_method = 'PUT' THEN
        doc := shortlink.api_parse_json(p_body);
        IF doc IS NULL THEN
            RETURN shortlink.api_problem(400, 'malformed-json', 'malformed JSON',
                                         'the request body is missing or not valid JSON');
        END IF;
        IF jsonb_typeof(doc) <> 'object' THEN
            RETURN shortlink.api_problem(400, 'not-an-object', 'body is not an object',
                'the request body must be a JSON object {"max_visits": ..., '
                '"fallback_url": ...}');
        END IF;
        FOR k, v IN SELECT e.key, e.value FROM jsonb_each(doc) e ORDER BY e.key LOOP
            t := CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}' END;
            IF k = 'max_visits' THEN
                IF jsonb_typeof(v) <> 'null'
                   AND (jsonb_typeof(v) <> 'number' OR v::numeric <> trunc(v::numeric)
                        OR v::numeric < 1 OR v::numeric > 9223372036854775807) THEN
                    errs := errs || jsonb_build_object('pointer', '/max_visits',
                        'detail', 'must be a whole number of at least 1, or null');
                END IF;
            ELSIF k = 'fallback_url' THEN
                IF jsonb_typeof(v) = 'null' THEN
                    NULL;
                ELSIF t IS NULL OR octet_length(t) > 8192 OR t !~ '^[!-~]+$'
                      OR t !~* '^https?://[^/?#]' THEN
                    errs := errs || jsonb_build_object('pointer', '/fallback_url',
                        'detail', 'must be an absolute http:// or https:// URL of '
                                  'printable ASCII (at most 8192 bytes), or null');
                END IF;
            ELSE
                errs := errs || jsonb_build_object('pointer',
                    '/' || replace(replace(k, '~', '~0'), '/', '~1'),
                    'detail', 'unknown field; known: max_visits, fallback_url');
            END IF;
        END LOOP;
        IF cardinality(errs) > 0 THEN
            RETURN shortlink.api_field_problem(to_jsonb(errs));
        END IF;
        UPDATE shortlink.links x SET
            max_visits = CASE WHEN doc ? 'max_visits'
                              THEN (doc ->> 'max_visits')::bigint ELSE x.max_visits END,
            fallback_url = CASE WHEN doc ? 'fallback_url'
                                THEN doc ->> 'fallback_url' ELSE x.fallback_url END
         WHERE x.code = l.code
        RETURNING x.* INTO l;
    END IF;

    RETURN ROW(200, jsonb_build_object(
        'code', l.code, 'max_visits', l.max_visits, 'fallback_url', l.fallback_url,
        'visits', shortlink.link_visits(l.code),
        'exhausted_at', shortlink.api_iso(l.exhausted_at),
        'version', l.version))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_link_limits(text, text[], jsonb, text, text, boolean, text) IS
    'GET /links/{code}/limits: {code, max_visits, fallback_url, visits '
    '(recorded clicks), exhausted_at, version}; PUT sets the fields the '
    'object names (null removes), 200 as GET, 400 not JSON / not an object, '
    '422 invalid fields; 404 unknown or deleted link, 403 another owner''s';

INSERT INTO shortlink.api_routes (pattern, methods, handler, position)
VALUES ('^/links/([0-9A-Za-z_-]{1,64})/limits$', '{"GET": [], "PUT": []}',
        'shortlink.api_link_limits', 100);


-- --- password-protected links ---------------------------------------------
--
-- The password is hashed and checked here, with pgcrypto's crypt() and
-- bcrypt (gen_salt('bf')), never in an nginx worker: bcrypt is meant to
-- cost CPU and would block the event loop.  nginx only learns that a link
-- has a password (resolve().password) and asks check_link_password() when
-- a visitor submits the form.  pgcrypto is a trusted extension (PostgreSQL
-- 13+): the owner of the database may create it; else a superuser must.

DO $$
DECLARE
    schema  name;
BEGIN
    SELECT n.nspname INTO schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgcrypto';

    IF schema IS NULL THEN
        BEGIN
            CREATE EXTENSION pgcrypto SCHEMA shortlink;
        EXCEPTION
            WHEN insufficient_privilege OR undefined_file THEN
                RAISE EXCEPTION 'shortlink needs the pgcrypto extension in schema '
                                'shortlink (password-protected links)'
                    USING ERRCODE = 'feature_not_supported',
                          HINT = format('as the database owner or a superuser, run '
                                        'in database %s: CREATE EXTENSION pgcrypto '
                                        'SCHEMA shortlink;', current_database());
        END;
    ELSIF schema <> 'shortlink' THEN
        RAISE EXCEPTION 'the pgcrypto extension is in schema %, shortlink needs it '
                        'in schema shortlink', schema
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'ALTER EXTENSION pgcrypto SET SCHEMA shortlink; '
                         '(its functions are then called shortlink.crypt() ...)';
    END IF;
END;
$$;

ALTER TABLE shortlink.links
    ADD COLUMN password_hash text,
    ADD CONSTRAINT links_password_bcrypt
        CHECK (password_hash ~ '^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$');

COMMENT ON COLUMN shortlink.links.password_hash IS
    'bcrypt hash (crypt(password, gen_salt(''bf''))) of the password '
    'visitors must give; NULL: no password.  Set it with '
    'shortlink.set_link_password()';

CREATE TABLE shortlink.link_password_failures (
    code          text        PRIMARY KEY REFERENCES shortlink.links (code)
                              ON UPDATE CASCADE ON DELETE CASCADE,
    window_start  timestamptz NOT NULL,
    failures      integer     NOT NULL,

    CONSTRAINT link_password_failures_positive CHECK (failures > 0)
);

COMMENT ON TABLE shortlink.link_password_failures IS
    'Wrong passwords per link in the current window (see '
    'check_link_password); kept apart from links so that a failure does '
    'not change the link''s version';


CREATE FUNCTION shortlink.set_link_password(p_code text, p_password text)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF p_password IS NOT NULL
       AND (char_length(p_password) NOT BETWEEN 1 AND 256
            OR p_password ~ '[\x01-\x1f\x7f]') THEN
        RAISE EXCEPTION 'a link password must be 1 to 256 characters without '
                        'control characters'
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE shortlink.links
       SET password_hash = CASE WHEN p_password IS NOT NULL
                                THEN shortlink.crypt(p_password,
                                                     shortlink.gen_salt('bf', 10)) END
     WHERE code = p_code AND deleted_at IS NULL;
    DELETE FROM shortlink.link_password_failures WHERE code = p_code;
    RETURN FOUND;
END;
$$;

COMMENT ON FUNCTION shortlink.set_link_password(text, text) IS
    'Sets (bcrypt, cost 10) or, with NULL, removes the password of a live '
    'link and forgets its failed attempts; false when there is no such link';


-- 10 wrong passwords in 5 minutes lock a link's form for the rest of the
-- window; a locked link checks nothing, so guessing gains nothing
CREATE FUNCTION shortlink.check_link_password(p_code text, p_password text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    max_failures  CONSTANT integer := 10;
    window_len    CONSTANT interval := interval '5 minutes';
    h             text;
    f             shortlink.link_password_failures;
BEGIN
    SELECT l.password_hash INTO h
      FROM shortlink.links l
     WHERE l.code = p_code AND l.deleted_at IS NULL;
    IF h IS NULL OR p_password IS NULL THEN
        RETURN false;
    END IF;

    -- one check at a time per link (until commit), so concurrent guesses
    -- cannot race past the count
    PERFORM pg_advisory_xact_lock(hashtextextended('shortlink.password:' || p_code, 0));
    SELECT * INTO f FROM shortlink.link_password_failures
     WHERE code = p_code;
    IF FOUND AND f.window_start > now() - window_len
       AND f.failures >= max_failures THEN
        RETURN NULL;
    END IF;

    IF shortlink.crypt(p_password, h) = h THEN
        RETURN true;
    END IF;

    INSERT INTO shortlink.link_password_failures AS x (code, window_start, failures)
    VALUES (p_code, now(), 1)
    ON CONFLICT (code) DO UPDATE
       SET window_start = CASE WHEN x.window_start > now() - window_len
                               THEN x.window_start ELSE now() END,
           failures = CASE WHEN x.window_start > now() - window_len
                           THEN x.failures + 1 ELSE 1 END;
    RETURN false;
END;
$$;

COMMENT ON FUNCTION shortlink.check_link_password(text, text) IS
    'true: the password of the live link p_code; false: wrong (counted), '
    'or no such link or no password; NULL: refused without checking, the '
    'link had 10 wrong passwords within 5 minutes (the window starts at '
    'the first of them).  Checks of one link run one at a time';


-- resolve() again: the same rows, plus whether the link has a password
-- (a fallback row never has one), and 017's 410 for a link the target
-- policy blocks

DROP FUNCTION shortlink.resolve(text);

CREATE FUNCTION shortlink.resolve(p_code text)
RETURNS TABLE (url text, redirect_status smallint, expires_epoch bigint,
               version bigint, forward_query boolean, rules text,
               password boolean)
LANGUAGE sql STABLE AS $$
    SELECT l.url,
           CASE WHEN l.blocked_by IS NULL THEN l.redirect_status
                ELSE 410::smallint END,
           extract(epoch FROM l.expires_at)::bigint, l.version,
           l.forward_query,
           CASE WHEN l.blocked_by IS NULL
                THEN shortlink.link_rules_encode(l.rules) END,
           l.blocked_by IS NULL AND l.password_hash IS NOT NULL
      FROM shortlink.links l
     WHERE l.code = p_code
       AND l.enabled
       AND l.deleted_at IS NULL
       AND (l.expires_at IS NULL OR l.expires_at > now())
       AND l.exhausted_at IS NULL
    UNION ALL
    SELECT l.fallback_url, 302::smallint, NULL::bigint, l.version, false, NULL,
           false
      FROM shortlink.links l
     WHERE l.code = p_code
       AND l.fallback_url IS NOT NULL
       AND l.deleted_at IS NULL
       AND NOT (l.enabled
                AND (l.expires_at IS NULL OR l.expires_at > now())
                AND l.exhausted_at IS NULL)
$$;

COMMENT ON FUNCTION shortlink.resolve(text) IS
    'Target of a followable link (enabled, not deleted, not expired, not '
    'exhausted); for a link that is not followable but has a fallback_url, '
    'the fallback (302, never expires, no rules, no password); else no row; '
    'expires_epoch is NULL for links that never expire; version is the '
    'row''s version, kept with every cached copy; forward_query: append the '
    'visitor''s query string to the target; rules: the redirect rules '
    'encoded (link_rules_encode()), NULL for none; password: visitors must '
    'give the link''s password first; redirect_status is 410 (and no '
    'rules, no password) for a link the target policy of 017 blocks '
    '(links.blocked_by)';


-- PUT / DELETE /links/{code}/password

CREATE FUNCTION shortlink.api_link_password(p_method text, p_match text[], p_params jsonb,
                                            p_body text, p_owner text, p_admin boolean,
                                            p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    l    shortlink.links;
    doc  jsonb;
    pw   text;
BEGIN
    SELECT * INTO l FROM shortlink.links
     WHERE code = p_match[1] AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(404, 'link-not-found', 'link not found',
                                     format('there is no link "%s"', p_match[1]));
    END IF;
    IF NOT p_admin AND l.owner IS DISTINCT FROM p_owner THEN
        RETURN shortlink.api_problem(403, 'not-your-link', 'forbidden',
            format('the link "%s" belongs to another owner', p_match[1]));
    END IF;

    IF p_method = 'DELETE' THEN
        PERFORM shortlink.set_link_password(l.code, NULL);
        RETURN ROW(204, NULL)::shortlink.api_result;
    END IF;

    doc := shortlink.api_parse_json(p_body);
    IF doc IS NULL THEN
        RETURN shortlink.api_problem(400, 'malformed-json', 'malformed JSON',
                                     'the request body is missing or not valid JSON');
    END IF;
    IF jsonb_typeof(doc) <> 'object' THEN
        RETURN shortlink.api_problem(400, 'not-an-object', 'body is not an object',
                                     'the request body must be {"password": "..."}');
    END IF;
    IF (SELECT count(*) FROM jsonb_object_keys(doc) k WHERE k <> 'password') > 0 THEN
        RETURN shortlink.api_field_problem(jsonb_build_array(jsonb_build_object(
            'pointer', '', 'detail', 'only "password" is known')));
    END IF;
    pw := CASE WHEN jsonb_typeof(doc -> 'password') = 'string' THEN doc ->> 'password' END;
    IF pw IS NULL OR char_length(pw) NOT BETWEEN 1 AND 256
       OR pw ~ '[\x01-\x1f\x7f]' THEN
        RETURN shortlink.api_field_problem(jsonb_build_array(jsonb_build_object(
            'pointer', '/password', 'detail',
            'must be a string of 1 to 256 characters without control characters')));
    END IF;
    PERFORM shortlink.set_link_password(l.code, pw);
    RETURN ROW(204, NULL)::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_link_password(text, text[], jsonb, text, text, boolean, text) IS
    'PUT /links/{code}/password {"password": "..."}: sets it (bcrypt in '
    'PostgreSQL), 204; DELETE removes it, 204; 400, 422, 403, 404.  The '
    'password is never returned';

INSERT INTO shortlink.api_routes (pattern, methods, handler, position)
VALUES ('^/links/([0-9A-Za-z_-]{1,64})/password$', '{"PUT": [], "DELETE": []}',
        'shortlink.api_link_password', 100);
