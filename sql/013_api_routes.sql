-- 013_api_routes.sql: API routes in a table, so that a feature adds its
-- routes with INSERTs instead of replacing shortlink.api_dispatch().
--
-- Until now every new route meant a CREATE OR REPLACE of api_dispatch with
-- the whole routing written out again; two features developed side by
-- side each replaced it and the later one silently dropped the other's
-- routes.  Now the routes of 004-012 stay written out in api_dispatch (the
-- most used ones, no lookup), and everything else is looked up in
-- shortlink.api_routes: a path pattern, the methods it allows with the
-- query parameters of each, and the function that answers.
--
-- A route function has this signature and returns an api_result:
--
--     f(p_method text,      -- GET, POST, PATCH, PUT, DELETE (HEAD is GET)
--       p_match text[],     -- the pattern's capture groups
--       p_params jsonb,     -- the decoded query parameters (only allowed ones)
--       p_body text,        -- the request body or NULL
--       p_owner text,       -- the key's owner
--       p_admin boolean,    -- whether the key is an admin key
--       p_base_url text)    -- scheme://host[:port] for short_url
--
-- It runs inside api()'s exception block, so an error raised by it is a
-- 500 with everything rolled back, as for the built-in routes.

CREATE TABLE shortlink.api_routes (
    pattern   text     PRIMARY KEY,
    methods   jsonb    NOT NULL,
    handler   regproc  NOT NULL,
    position  integer  NOT NULL DEFAULT 100,

    CONSTRAINT api_routes_anchored
        CHECK (left(pattern, 2) = '^/' AND right(pattern, 1) = '$'),
    CONSTRAINT api_routes_methods
        CHECK (jsonb_typeof(methods) = 'object' AND methods <> '{}'::jsonb)
);

COMMENT ON TABLE shortlink.api_routes IS
    'Routes of shortlink.api() beyond the built-in /links ones.  pattern: '
    'an anchored regular expression on the path below the API location, '
    'its capture groups passed to the handler; methods: {"GET": ["from", '
    '"to"], "POST": []} the allowed methods (HEAD is allowed with GET) and '
    'the query parameters each accepts; handler: the function (see '
    'sql/013_api_routes.sql for its signature); position: the order in '
    'which patterns are tried, lowest first';

CREATE FUNCTION shortlink.api_routes_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    k  text;
BEGIN
    FOR k IN SELECT jsonb_object_keys(NEW.methods) LOOP
        IF k NOT IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')
           OR jsonb_typeof(NEW.methods -> k) <> 'array'
        THEN
            RAISE EXCEPTION 'api_routes: bad method entry "%" for %', k, NEW.pattern
                USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
    PERFORM regexp_match('', NEW.pattern);      -- a bad pattern fails here
    RETURN NEW;
END;
$$;

CREATE TRIGGER api_routes_check BEFORE INSERT OR UPDATE ON shortlink.api_routes
    FOR EACH ROW EXECUTE FUNCTION shortlink.api_routes_check();


-- the answer for a path matched by a row of api_routes, or NULL when none
-- matches
CREATE FUNCTION shortlink.api_table_route(p_method text, p_path text, p_query text,
                                          p_body text, p_owner text, p_admin boolean,
                                          p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    route  shortlink.api_routes;
    m      text[];
    allow  text;
    q      jsonb;
    r      shortlink.api_result;
BEGIN
    FOR route IN SELECT * FROM shortlink.api_routes ORDER BY position, pattern LOOP
        m := regexp_match(p_path, route.pattern);
        IF m IS NOT NULL OR p_path ~ route.pattern THEN
            EXIT;
        END IF;
        route := NULL;
    END LOOP;

    IF route.pattern IS NULL THEN
        RETURN NULL;
    END IF;

    IF NOT route.methods ? p_method THEN
        SELECT string_agg(x, ', ' ORDER BY x) INTO allow
          FROM (SELECT k AS x FROM jsonb_object_keys(route.methods) k
                UNION ALL
                SELECT 'HEAD' WHERE route.methods ? 'GET') s;
        RETURN shortlink.api_problem(405, NULL, 'Method Not Allowed',
            format('%s is not allowed here; allowed: %s', left(p_method, 16), allow),
            jsonb_build_object('allow', allow));
    END IF;

    q := shortlink.api_query_params(p_query,
             ARRAY(SELECT jsonb_array_elements_text(route.methods -> p_method)));
    IF q ? 'error' THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     q ->> 'error');
    END IF;

    EXECUTE format('SELECT (x).status, (x).body FROM %s($1, $2, $3, $4, $5, $6, $7) x',
                   route.handler)
       INTO r.status, r.body
      USING p_method, COALESCE(m, '{}'::text[]), q -> 'params', p_body, p_owner,
            p_admin, p_base_url;
    RETURN r;
END;
$$;

COMMENT ON FUNCTION shortlink.api_table_route(text, text, text, text, text, boolean, text) IS
    'Answers a request whose path a row of shortlink.api_routes matches '
    '(405 for another method, 400 for a query parameter the method does '
    'not accept), or NULL when no row matches';


-- api_dispatch of 012: the built-in routes first, then the table, then 404

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
    '(400), and calls the route''s function; paths beyond the built-in '
    '/links routes are looked up in shortlink.api_routes';
