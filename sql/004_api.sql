-- 004_api.sql: the management API's database side -- link metadata
-- (owner, title, tags, query forwarding), API keys, and shortlink.api(),
-- the one function nginx calls for every request to its API location:
--
--   SELECT status, body::text
--     FROM shortlink.api($1 method, $2 path, $3 query, $4 body, $5 key, $6 base_url)
--
-- All six parameters are text, NULL when absent.  The answer is always
-- exactly one row: the HTTP status and the JSON body (NULL for 204).
-- Bodies of status >= 400 are RFC 9457 problem objects.
--
-- Rules kept throughout:
--   * Nothing is written when the answer is an error.  Validation is done
--     without writing; the only writes are one INSERT ... ON CONFLICT DO
--     NOTHING per created link (a taken code is a "no row", not an error,
--     so no subtransaction per link is needed: 1000 per bulk request would
--     overflow the backend's 64-entry subtransaction cache), or one UPDATE
--     of a row locked and checked first.  Anything unexpected raises inside
--     api()'s exception block, which rolls back everything the call wrote
--     and answers 500.
--   * Input is data: no dynamic SQL at all in this file; every value is a
--     parameter of a static statement.
--   * The table constraints state the same rules the API checks, so a
--     writer in psql cannot store what the API would refuse.


-- --- link metadata --------------------------------------------------------

ALTER TABLE shortlink.links
    ADD COLUMN owner          text,
    ADD COLUMN title          text,
    ADD COLUMN tags           text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN forward_query  boolean NOT NULL DEFAULT false,

    ADD CONSTRAINT links_owner_format
        CHECK (char_length(owner) BETWEEN 1 AND 128 AND owner !~ '[[:cntrl:]]'),
    ADD CONSTRAINT links_title_length
        CHECK (char_length(title) <= 512),
    -- one-dimensional, no NULL elements, at most 20 tags, each 1-64 of
    -- [A-Za-z0-9_.:-] (none of which is a comma, so joining with commas
    -- and matching the whole string checks every element)
    ADD CONSTRAINT links_tags_format
        CHECK (cardinality(tags) = 0
               OR (array_ndims(tags) = 1
                   AND cardinality(tags) <= 20
                   AND array_position(tags, NULL) IS NULL
                   AND array_to_string(tags, ',')
                       ~ '^[A-Za-z0-9_.:-]{1,64}(,[A-Za-z0-9_.:-]{1,64})*$'));

COMMENT ON COLUMN shortlink.links.owner IS
    'Owner name of the API key that created the link (an admin key''s '
    'owner too); NULL: created in SQL.  Owner keys see and change only '
    'their own links; admin keys see all';
COMMENT ON COLUMN shortlink.links.title IS
    'Free text for people, at most 512 characters; NULL: none';
COMMENT ON COLUMN shortlink.links.tags IS
    'Labels for filtering: at most 20, each 1-64 of [A-Za-z0-9_.:-], '
    'case-sensitive';
COMMENT ON COLUMN shortlink.links.forward_query IS
    'true: the visitor''s query string is appended to the target URL';

-- listing: one owner's live links in (created_at, code) order, and every
-- live link in that order for admin keys
CREATE INDEX links_owner_created ON shortlink.links (owner, created_at, code)
    WHERE deleted_at IS NULL;
CREATE INDEX links_created ON shortlink.links (created_at, code)
    WHERE deleted_at IS NULL;
CREATE INDEX links_tags ON shortlink.links USING gin (tags)
    WHERE deleted_at IS NULL;

COMMENT ON INDEX shortlink.links_owner_created IS
    'GET /links with an owner key: live links of one owner, cursor order';
COMMENT ON INDEX shortlink.links_created IS
    'GET /links with an admin key: all live links, cursor order';
COMMENT ON INDEX shortlink.links_tags IS
    'GET /links?tag=: live links carrying a tag (tags @> ARRAY[tag])';


-- --- API keys -------------------------------------------------------------

CREATE TABLE shortlink.api_keys (
    key_hash    bytea       PRIMARY KEY,
    owner       text        NOT NULL,
    is_admin    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,

    CONSTRAINT api_keys_hash_length
        CHECK (octet_length(key_hash) = 32),
    CONSTRAINT api_keys_owner_format
        CHECK (char_length(owner) BETWEEN 1 AND 128 AND owner !~ '[[:cntrl:]]')
);

COMMENT ON TABLE shortlink.api_keys IS
    'Bearer keys of the management API.  Only the SHA-256 of a key is '
    'stored: the key itself is shown once, by create_api_key.  Rows are '
    'revoked (revoked_at), not deleted, so the history stays';
COMMENT ON COLUMN shortlink.api_keys.key_hash IS
    'sha256 of the key''s UTF-8 bytes (shortlink.api_key_hash)';
COMMENT ON COLUMN shortlink.api_keys.owner IS
    'Whose links the key manages; also the owner of links it creates';
COMMENT ON COLUMN shortlink.api_keys.is_admin IS
    'true: the key sees and changes every link, whatever its owner';
COMMENT ON COLUMN shortlink.api_keys.revoked_at IS
    'Set: the key is refused (401) from this instant on';

CREATE FUNCTION shortlink.api_key_hash(p_key text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT sha256(convert_to(p_key, 'UTF8'))
$$;

COMMENT ON FUNCTION shortlink.api_key_hash(text) IS
    'SHA-256 of a key''s UTF-8 bytes, as stored in api_keys.key_hash (equal '
    'to sha256(key::bytea) for keys without backslashes, as all generated '
    'keys are; convert_to never fails on a backslash)';

CREATE FUNCTION shortlink.create_api_key(p_owner text, p_admin boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    k text;
BEGIN
    -- two v4 UUIDs: 244 bits from the server's strong random source
    k := 'sl_' || encode(sha256(convert_to(gen_random_uuid()::text
                                           || gen_random_uuid()::text, 'UTF8')),
                         'hex');
    INSERT INTO shortlink.api_keys (key_hash, owner, is_admin)
         VALUES (shortlink.api_key_hash(k), p_owner, coalesce(p_admin, false));
    RETURN k;
END;
$$;

COMMENT ON FUNCTION shortlink.create_api_key(text, boolean) IS
    'Creates a key for p_owner (admin when p_admin) and returns it: '
    '''sl_'' and 64 hex digits.  This is the only time the key is seen; '
    'only its hash is stored';

CREATE FUNCTION shortlink.revoke_api_key(p_key text) RETURNS boolean
LANGUAGE sql AS $$
    WITH r AS (
        UPDATE shortlink.api_keys SET revoked_at = now()
         WHERE key_hash = shortlink.api_key_hash(p_key) AND revoked_at IS NULL
        RETURNING 1
    )
    SELECT count(*) > 0 FROM r
$$;

COMMENT ON FUNCTION shortlink.revoke_api_key(text) IS
    'Revokes a key (401 from now on); false when it is unknown or already '
    'revoked';


-- --- building blocks ------------------------------------------------------

CREATE TYPE shortlink.api_result AS (status integer, body jsonb);

COMMENT ON TYPE shortlink.api_result IS
    'An HTTP answer of the API: status and JSON body (NULL: no body)';

CREATE FUNCTION shortlink.api_problem(p_status integer, p_slug text, p_title text,
                                      p_detail text, p_extra jsonb DEFAULT NULL)
RETURNS shortlink.api_result
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status,
           jsonb_build_object(
               'type',   CASE WHEN p_slug IS NULL THEN 'about:blank'
                              ELSE 'https://shortlink.invalid/problems/' || p_slug END,
               'title',  p_title,
               'status', p_status,
               'detail', p_detail)
           || coalesce(p_extra, '{}')
$$;

COMMENT ON FUNCTION shortlink.api_problem(integer, text, text, text, jsonb) IS
    'An RFC 9457 problem answer: type https://shortlink.invalid/problems/'
    '<slug> (about:blank when slug is NULL; title is then the status''s '
    'reason phrase), title, status, detail, plus the members of p_extra '
    '(errors: [{pointer, detail}], allow, www_authenticate)';

CREATE FUNCTION shortlink.api_iso(p_ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(p_ts AT TIME ZONE 'UTC',
                   CASE WHEN extract(microseconds FROM p_ts) % 1000000 = 0
                        THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
                        ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)
$$;

COMMENT ON FUNCTION shortlink.api_iso(timestamptz) IS
    'ISO 8601 in UTC, e.g. 2030-01-01T12:00:00Z; microseconds only when '
    'not zero.  NULL stays NULL';

CREATE FUNCTION shortlink.api_parse_time(p_text text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m     text[];
    y     integer;
    mo    integer;
    d     integer;
    h     integer;
    mi    integer;
    s     numeric;
    off   integer := 0;   -- minutes east of UTC
BEGIN
    m := regexp_match(p_text,
        '^([0-9]{4})-([0-9]{2})-([0-9]{2})'
        || '(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2}(?:\.[0-9]{1,6})?))?'
        || '([Zz]|[+-][0-9]{2}(?::?[0-9]{2})?))?$');
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    y := m[1]::integer;
    mo := m[2]::integer;
    d := m[3]::integer;
    h := coalesce(m[4]::integer, 0);
    mi := coalesce(m[5]::integer, 0);
    s := coalesce(m[6]::numeric, 0);
    IF y < 1 OR mo NOT BETWEEN 1 AND 12 OR d < 1
       OR d > extract(day FROM make_date(y, mo, 1) + interval '1 month - 1 day')
       OR h > 23 OR mi > 59 OR s >= 60 THEN
        RETURN NULL;
    END IF;
    IF m[7] IS NOT NULL AND upper(m[7]) <> 'Z' THEN
        IF substr(m[7], 2, 2)::integer > 15
           OR coalesce(nullif(right(replace(m[7], ':', ''), 2), ''), '0')::integer > 59 THEN
            RETURN NULL;
        END IF;
        off := substr(m[7], 2, 2)::integer * 60
             + CASE WHEN length(replace(m[7], ':', '')) = 5
                    THEN right(m[7], 2)::integer ELSE 0 END;
        IF left(m[7], 1) = '-' THEN
            off := -off;
        END IF;
    END IF;
    RETURN (make_timestamp(y, mo, d, h, mi, s::double precision) AT TIME ZONE 'UTC')
           - off * interval '1 minute';
END;
$$;

COMMENT ON FUNCTION shortlink.api_parse_time(text) IS
    'Parses an ISO 8601 instant without ever raising: YYYY-MM-DD (midnight '
    'UTC), or YYYY-MM-DDTHH:MM[:SS[.ffffff]] followed by Z or +HH[:MM] / '
    '-HH[:MM] (required: a time without a zone is ambiguous).  NULL for '
    'anything else, including impossible dates (2026-02-30) and times.  '
    'In a query string "+" means a space: send the offset as %2B';

CREATE FUNCTION shortlink.api_url_decode(p_text text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    hex text;
BEGIN
    IF strpos(p_text, '%') = 0 THEN
        RETURN replace(p_text, '+', ' ');
    END IF;
    IF p_text ~ '%(?![0-9A-Fa-f]{2})' THEN
        RETURN NULL;                            -- a stray or short %
    END IF;
    SELECT string_agg(CASE WHEN left(t[1], 1) = '%' THEN substr(t[1], 2)
                           ELSE encode(convert_to(replace(t[1], '+', ' '), 'UTF8'),
                                       'hex') END,
                      '' ORDER BY n)
      INTO hex
      FROM regexp_matches(p_text, '%[0-9A-Fa-f]{2}|[^%]+', 'g') WITH ORDINALITY AS r(t, n);
    BEGIN
        RETURN convert_from(decode(hex, 'hex'), 'UTF8');
    EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character
                   OR invalid_parameter_value OR invalid_text_representation THEN
        RETURN NULL;                            -- not UTF-8, or a NUL byte
    END;
END;
$$;

COMMENT ON FUNCTION shortlink.api_url_decode(text) IS
    'application/x-www-form-urlencoded decoding of one query-string name or '
    'value: + is a space, %XX a byte; the bytes must be UTF-8 without NUL.  '
    'NULL when they are not, or for a % not followed by two hex digits';

CREATE FUNCTION shortlink.api_query_params(p_query text, p_allowed text[])
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    part  text;
    k     text;
    v     text;
    res   jsonb := '{}';
BEGIN
    IF p_query IS NULL OR p_query = '' THEN
        RETURN jsonb_build_object('params', res);
    END IF;
    IF octet_length(p_query) > 8192 THEN
        RETURN jsonb_build_object('error', 'the query string is longer than 8192 bytes');
    END IF;
    FOREACH part IN ARRAY string_to_array(p_query, '&') LOOP
        CONTINUE WHEN part = '';
        k := shortlink.api_url_decode(split_part(part, '=', 1));
        v := CASE WHEN strpos(part, '=') > 0
                  THEN shortlink.api_url_decode(substr(part, strpos(part, '=') + 1))
                  ELSE '' END;
        IF k IS NULL OR v IS NULL THEN
            RETURN jsonb_build_object('error',
                'malformed percent-encoding in the query string (%XX must be '
                'two hex digits and the bytes UTF-8)');
        END IF;
        IF k <> ALL (p_allowed) THEN
            RETURN jsonb_build_object('error',
                format('unknown query parameter "%s"; this route accepts: %s',
                       left(k, 64),
                       coalesce(nullif(array_to_string(p_allowed, ', '), ''), 'none')));
        END IF;
        IF res ? k THEN
            RETURN jsonb_build_object('error',
                format('query parameter "%s" is given more than once', k));
        END IF;
        res := res || jsonb_build_object(k, v);
    END LOOP;
    RETURN jsonb_build_object('params', res);
END;
$$;

COMMENT ON FUNCTION shortlink.api_query_params(text, text[]) IS
    'Decodes a raw query string (without "?") into {"params": {name: '
    'value}}, or {"error": detail} for malformed encoding, a name not in '
    'p_allowed, or a repeated name.  Empty pieces (a&&b) are skipped; a '
    'name without "=" has the value ''''';

CREATE FUNCTION shortlink.api_parse_json(p_text text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN p_text::jsonb;
EXCEPTION WHEN invalid_text_representation OR untranslatable_character
               OR character_not_in_repertoire OR program_limit_exceeded
               OR invalid_parameter_value OR data_exception THEN
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.api_parse_json(text) IS
    'The text as jsonb, or NULL when it is not JSON (or NULL); the JSON '
    'literal null comes back as the jsonb null, not as SQL NULL';

CREATE FUNCTION shortlink.api_link_json(l shortlink.links, p_base_url text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'code',            l.code,
        'url',             l.url,
        'short_url',       rtrim(p_base_url, '/') || '/' || l.code,
        'title',           l.title,
        'tags',            to_jsonb(l.tags),
        'redirect_status', l.redirect_status,
        'forward_query',   l.forward_query,
        'expires_at',      shortlink.api_iso(l.expires_at),
        'enabled',         l.enabled,
        'owner',           l.owner,
        'created_at',      shortlink.api_iso(l.created_at),
        'updated_at',      shortlink.api_iso(l.updated_at),
        'version',         l.version)
$$;

COMMENT ON FUNCTION shortlink.api_link_json(shortlink.links, text) IS
    'A link as the API shows it: code, url, short_url (base URL without '
    'trailing slashes, "/", code; NULL without a base URL), title, tags, '
    'redirect_status, forward_query, expires_at, enabled, owner, '
    'created_at, updated_at (ISO 8601 UTC), version';

CREATE FUNCTION shortlink.api_generate_code(p_url text, p_salt bigint, p_length integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    alphabet CONSTANT text :=
        '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    h    numeric;
    res  text := '';
BEGIN
    FOR i IN 0 .. p_length - 1 LOOP
        IF i % 10 = 0 THEN
            -- a 64-bit hash gives 10 base62 digits; then hash again
            h := hashtextextended(p_url || '#' || (i / 10), p_salt);
            IF h < 0 THEN
                h := h + 18446744073709551616;       -- as unsigned
            END IF;
        END IF;
        res := res || substr(alphabet, (h % 62)::integer + 1, 1);
        h := div(h, 62);
    END LOOP;
    RETURN res;
END;
$$;

COMMENT ON FUNCTION shortlink.api_generate_code(text, bigint, integer) IS
    'p_length base62 digits (0-9A-Za-z) of 64-bit hashes '
    '(hashtextextended) of the URL with a salt: a candidate code.  The '
    'caller picks a random salt per attempt, so shortening one URL twice '
    'gives two codes';


-- --- validation -----------------------------------------------------------

CREATE FUNCTION shortlink.api_check_link(p_obj jsonb, p_patch boolean, p_ptr text)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    allowed  text[] := CASE WHEN p_patch
        THEN ARRAY['url', 'title', 'tags', 'expires_at', 'redirect_status',
                   'forward_query', 'enabled']
        ELSE ARRAY['url', 'code', 'title', 'tags', 'expires_at', 'redirect_status',
                   'forward_query', 'enabled'] END;
    errs     jsonb[] := '{}';
    vals     jsonb := '{}';
    k        text;
    v        jsonb;
    ptr      text;
    t        text;
    ts       timestamptz;
    n        numeric;
    tags     text[];
    tag_ok   boolean;
BEGIN
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_obj) e ORDER BY e.key LOOP
        ptr := p_ptr || '/' || replace(replace(k, '~', '~0'), '/', '~1');
        IF k <> ALL (allowed) THEN
            errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                CASE WHEN k = 'code' THEN 'a link''s code cannot be changed'
                     ELSE 'unknown field; known: ' || array_to_string(allowed, ', ') END);
            CONTINUE;
        END IF;

        CASE k
        WHEN 'url' THEN
            t := v #>> '{}';
            IF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail', 'must be a string');
            ELSIF octet_length(t) > 8192 THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be at most 8192 bytes long');
            ELSIF t !~ '^[!-~]+$' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must not be empty nor contain spaces, control characters (CR, LF, '
                    'tab ...) or non-ASCII characters (percent-encode them)');
            ELSIF t !~* '^https?://[^/?#]' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be an absolute http:// or https:// URL');
            ELSE
                vals := vals || jsonb_build_object('url', t);
            END IF;

        WHEN 'code' THEN
            t := v #>> '{}';
            IF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail', 'must be a string');
            ELSIF t !~ '^[0-9A-Za-z_-]{1,64}$' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be 1 to 64 of the characters 0-9 A-Z a-z _ -');
            ELSIF t = 'bulk' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'is reserved (/links/bulk)');
            ELSE
                vals := vals || jsonb_build_object('code', t);
            END IF;

        WHEN 'title' THEN
            IF jsonb_typeof(v) = 'null' THEN
                vals := vals || jsonb_build_object('title', NULL);
            ELSIF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be a string or null');
            ELSIF char_length(v #>> '{}') > 512 THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be at most 512 characters long');
            ELSE
                vals := vals || jsonb_build_object('title', v);
            END IF;

        WHEN 'tags' THEN
            IF jsonb_typeof(v) = 'null' THEN
                vals := vals || jsonb_build_object('tags', '[]'::jsonb);
            ELSIF jsonb_typeof(v) <> 'array' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be an array of strings');
            ELSIF jsonb_array_length(v) > 20 THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must have at most 20 tags');
            ELSE
                tag_ok := true;
                FOR i IN 0 .. jsonb_array_length(v) - 1 LOOP
                    IF jsonb_typeof(v -> i) <> 'string'
                       OR (v ->> i) !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
                        errs := errs || jsonb_build_object('pointer', ptr || '/' || i,
                            'detail', 'a tag must be a string of 1 to 64 of the '
                                      'characters A-Z a-z 0-9 _ . : -');
                        tag_ok := false;
                    END IF;
                END LOOP;
                IF tag_ok THEN
                    -- duplicates are dropped, the first place is kept
                    SELECT coalesce(jsonb_agg(x.tag ORDER BY x.first), '[]')
                      INTO v
                      FROM (SELECT e.tag, min(e.n) AS first
                              FROM jsonb_array_elements_text(v) WITH ORDINALITY AS e(tag, n)
                             GROUP BY e.tag) x;
                    vals := vals || jsonb_build_object('tags', v);
                END IF;
            END IF;

        WHEN 'expires_at' THEN
            IF jsonb_typeof(v) = 'null' THEN
                vals := vals || jsonb_build_object('expires_at', NULL);
            ELSIF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be an ISO 8601 timestamp string or null');
            ELSE
                ts := shortlink.api_parse_time(v #>> '{}');
                IF ts IS NULL THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be an ISO 8601 timestamp with a time zone, '
                        'e.g. 2030-01-31T12:00:00Z');
                ELSIF ts <= now() THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be in the future');
                ELSE
                    vals := vals || jsonb_build_object('expires_at',
                        to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
                END IF;
            END IF;

        WHEN 'redirect_status' THEN
            n := CASE WHEN jsonb_typeof(v) = 'number' THEN v::numeric END;
            IF n IS NULL OR n NOT IN (301, 302, 307, 308) THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be one of the numbers 301, 302, 307, 308');
            ELSE
                vals := vals || jsonb_build_object('redirect_status', n::integer);
            END IF;

        WHEN 'forward_query', 'enabled' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be true or false');
            ELSE
                vals := vals || jsonb_build_object(k, v);
            END IF;
        END CASE;
    END LOOP;

    IF NOT p_patch AND NOT p_obj ? 'url' THEN
        errs := errs || jsonb_build_object('pointer', p_ptr || '/url',
                                           'detail', 'is required');
    END IF;

    RETURN jsonb_build_object('errors', to_jsonb(errs), 'values', vals);
END;
$$;

COMMENT ON FUNCTION shortlink.api_check_link(jsonb, boolean, text) IS
    'Validates a link object of POST (p_patch false: url required, code '
    'allowed) or PATCH (code refused) without writing anything.  Returns '
    '{"errors": [{pointer, detail}], "values": {...}}: pointers are '
    'p_ptr || /field (RFC 6901), values holds the fields present, '
    'normalised (tags de-duplicated, null tags = [], expires_at as UTC '
    'text).  The rules are those of the links table''s constraints, plus: '
    'expires_at must be in the future, the code "bulk" is reserved, and '
    'unknown fields and wrong JSON types are refused';

CREATE FUNCTION shortlink.api_field_problem(p_errors jsonb) RETURNS shortlink.api_result
LANGUAGE sql IMMUTABLE AS $$
    SELECT shortlink.api_problem(422, 'invalid-fields', 'invalid fields',
        CASE WHEN jsonb_array_length(p_errors) = 1
             THEN 'one field is invalid: see errors'
             ELSE jsonb_array_length(p_errors) || ' fields are invalid: see errors' END,
        jsonb_build_object('errors', p_errors))
$$;

COMMENT ON FUNCTION shortlink.api_field_problem(jsonb) IS
    'The 422 problem for a list of field errors [{pointer, detail}]';


-- --- writes ---------------------------------------------------------------

CREATE FUNCTION shortlink.api_insert(p_vals jsonb, p_owner text, p_code_length integer,
                                     p_base_url text, p_ptr text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    l     shortlink.links;
    code  text;
    salt  bigint;
BEGIN
    FOR attempt IN 1 .. 10 LOOP
        IF p_vals ? 'code' THEN
            code := p_vals ->> 'code';
        ELSE
            salt := ('x' || left(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint;
            code := shortlink.api_generate_code(p_vals ->> 'url', salt, p_code_length);
            CONTINUE WHEN code = 'bulk';
        END IF;

        -- the primary key is the final guard: a taken code (live or
        -- soft-deleted) inserts no row, without an error to catch
        INSERT INTO shortlink.links AS x
               (code, url, owner, title, tags, expires_at, redirect_status,
                forward_query, enabled)
        VALUES (code,
                p_vals ->> 'url',
                p_owner,
                p_vals ->> 'title',
                ARRAY(SELECT jsonb_array_elements_text(p_vals -> 'tags')),
                (p_vals ->> 'expires_at')::timestamptz,
                coalesce((p_vals ->> 'redirect_status')::smallint, 302),
                coalesce((p_vals ->> 'forward_query')::boolean, false),
                coalesce((p_vals ->> 'enabled')::boolean, true))
        ON CONFLICT ON CONSTRAINT links_pkey DO NOTHING
        RETURNING x.* INTO l;

        IF FOUND THEN
            RETURN ROW(201, shortlink.api_link_json(l, p_base_url))::shortlink.api_result;
        END IF;

        IF p_vals ? 'code' THEN
            RETURN shortlink.api_problem(409, 'code-taken', 'code already taken',
                format('the code "%s" is taken (codes of deleted links are never reused)',
                       code),
                jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
                    'pointer', p_ptr || '/code', 'detail', 'is taken'))));
        END IF;
    END LOOP;

    RETURN shortlink.api_problem(503, 'code-generation-failed',
        'could not generate a unique code',
        format('10 generated codes of length %s were all taken; retry, use a '
               'longer code_length or choose a code', p_code_length));
END;
$$;

COMMENT ON FUNCTION shortlink.api_insert(jsonb, text, integer, text, text) IS
    'Inserts one validated link (values of api_check_link) for p_owner: '
    '201 and the link; 409 when its chosen code is taken; without a code, '
    'up to 10 generated codes of p_code_length characters (new random salt '
    'each), then 503.  INSERT ... ON CONFLICT DO NOTHING on the primary '
    'key: a taken code writes nothing and raises nothing';


-- --- routes ---------------------------------------------------------------

CREATE FUNCTION shortlink.api_code_length(p_params jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN NOT p_params ? 'code_length' THEN 7
                WHEN p_params ->> 'code_length' ~ '^[0-9]{1,2}$'
                     AND (p_params ->> 'code_length')::integer BETWEEN 4 AND 16
                THEN (p_params ->> 'code_length')::integer END
$$;

COMMENT ON FUNCTION shortlink.api_code_length(jsonb) IS
    'The code_length query parameter: 7 when absent, 4..16, NULL when bad';

CREATE FUNCTION shortlink.api_create(p_params jsonb, p_body text, p_owner text,
                                     p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    doc  jsonb := shortlink.api_parse_json(p_body);
    len  integer := shortlink.api_code_length(p_params);
    chk  jsonb;
BEGIN
    IF len IS NULL THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     'code_length must be a number from 4 to 16');
    END IF;
    IF doc IS NULL THEN
        RETURN shortlink.api_problem(400, 'malformed-json', 'malformed JSON',
                                     'the request body is missing or not valid JSON');
    END IF;
    IF jsonb_typeof(doc) <> 'object' THEN
        RETURN shortlink.api_problem(400, 'not-an-object', 'body is not an object',
                                     'the request body must be a JSON object');
    END IF;
    chk := shortlink.api_check_link(doc, false, '');
    IF jsonb_array_length(chk -> 'errors') > 0 THEN
        RETURN shortlink.api_field_problem(chk -> 'errors');
    END IF;
    RETURN shortlink.api_insert(chk -> 'values', p_owner, len, p_base_url, '');
END;
$$;

COMMENT ON FUNCTION shortlink.api_create(jsonb, text, text, text) IS
    'POST /links: 201 link, 400 bad JSON / not an object / bad code_length, '
    '422 invalid fields, 409 code taken, 503 no free generated code';

CREATE FUNCTION shortlink.api_bulk(p_params jsonb, p_body text, p_owner text,
                                   p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    doc      jsonb := shortlink.api_parse_json(p_body);
    len      integer := shortlink.api_code_length(p_params);
    item     jsonb;
    idx      integer;
    chk      jsonb;
    r        shortlink.api_result;
    results  jsonb[] := '{}';
    created  integer := 0;
BEGIN
    IF len IS NULL THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     'code_length must be a number from 4 to 16');
    END IF;
    IF doc IS NULL THEN
        RETURN shortlink.api_problem(400, 'malformed-json', 'malformed JSON',
                                     'the request body is missing or not valid JSON');
    END IF;
    IF jsonb_typeof(doc) <> 'array' THEN
        RETURN shortlink.api_problem(400, 'not-an-array', 'body is not an array',
                                     'the request body must be a JSON array of link objects');
    END IF;
    IF jsonb_array_length(doc) > 1000 THEN
        RETURN shortlink.api_problem(413, 'too-many-links', 'too many links',
            format('at most 1000 links per bulk request, this one has %s',
                   jsonb_array_length(doc)));
    END IF;

    FOR item, idx IN SELECT e.value, (e.n - 1)::integer
                       FROM jsonb_array_elements(doc) WITH ORDINALITY AS e(value, n)
                      ORDER BY e.n LOOP
        IF jsonb_typeof(item) <> 'object' THEN
            r := shortlink.api_field_problem(jsonb_build_array(jsonb_build_object(
                     'pointer', '/' || idx, 'detail', 'must be a link object')));
        ELSE
            chk := shortlink.api_check_link(item, false, '/' || idx);
            IF jsonb_array_length(chk -> 'errors') > 0 THEN
                r := shortlink.api_field_problem(chk -> 'errors');
            ELSE
                r := shortlink.api_insert(chk -> 'values', p_owner, len, p_base_url,
                                          '/' || idx);
            END IF;
        END IF;

        IF r.status = 201 THEN
            created := created + 1;
            results := results || jsonb_build_object('index', idx, 'status', 201,
                                                     'link', r.body);
        ELSE
            results := results || jsonb_build_object('index', idx, 'status', r.status,
                                                     'problem', r.body);
        END IF;
    END LOOP;

    RETURN ROW(200, jsonb_build_object('results', to_jsonb(results),
                                       'created', created,
                                       'refused', cardinality(results) - created)
              )::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_bulk(jsonb, text, text, text) IS
    'POST /links/bulk: a JSON array of up to 1000 link objects, each '
    'validated and created on its own: 200 {"results": [{index, status: '
    '201, link} | {index, status: 409|422|503, problem}], "created", '
    '"refused"}; pointers in item problems are /index/field.  400 bad '
    'JSON or not an array, 413 more than 1000 items';

CREATE FUNCTION shortlink.api_cursor(p_created_at timestamptz, p_code text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT rtrim(translate(encode(convert_to(
               (extract(epoch FROM p_created_at) * 1000000)::bigint || ':' || p_code,
               'UTF8'), 'base64'), E'+/\n', '-_'), '=')
$$;

COMMENT ON FUNCTION shortlink.api_cursor(timestamptz, text) IS
    'Opaque listing cursor: unpadded base64url of '
    '"<created_at in Unix microseconds>:<code>" of the last link returned';

CREATE FUNCTION shortlink.api_cursor_decode(p_cursor text,
                                            OUT created_at timestamptz, OUT code text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    b64  text;
    raw  text;
    m    text[];
BEGIN
    IF p_cursor !~ '^[A-Za-z0-9_-]{4,200}$' OR length(p_cursor) % 4 = 1 THEN
        RETURN;
    END IF;
    b64 := translate(p_cursor, '-_', '+/') || repeat('=', (4 - length(p_cursor) % 4) % 4);
    -- escape encoding never fails: non-ASCII bytes come out as \ooo and
    -- then fail the pattern
    raw := encode(decode(b64, 'base64'), 'escape');
    m := regexp_match(raw, '^([0-9]{1,17}):([0-9A-Za-z_-]{1,64})$');
    IF m IS NOT NULL THEN
        created_at := timestamptz '1970-01-01 00:00:00+00'
                      + m[1]::bigint * interval '1 microsecond';
        code := m[2];
    END IF;
END;
$$;

COMMENT ON FUNCTION shortlink.api_cursor_decode(text) IS
    'The (created_at, code) of a cursor made by api_cursor, both NULL when '
    'the text is not such a cursor';

CREATE FUNCTION shortlink.api_list(p_params jsonb, p_owner text, p_admin boolean,
                                   p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    lim     integer := 50;
    tag     text := p_params ->> 'tag';
    c_ts    timestamptz;
    c_code  text;
    page    jsonb;
    more    boolean;
    next    text;
BEGIN
    IF p_params ? 'limit' THEN
        IF p_params ->> 'limit' !~ '^[0-9]{1,4}$'
           OR (p_params ->> 'limit')::integer NOT BETWEEN 1 AND 1000 THEN
            RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                         'limit must be a number from 1 to 1000');
        END IF;
        lim := (p_params ->> 'limit')::integer;
    END IF;
    IF tag IS NOT NULL AND tag !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
            'tag must be 1 to 64 of the characters A-Z a-z 0-9 _ . : -');
    END IF;
    IF p_params ? 'cursor' THEN
        SELECT d.created_at, d.code INTO c_ts, c_code
          FROM shortlink.api_cursor_decode(p_params ->> 'cursor') d;
        IF c_code IS NULL THEN
            RETURN shortlink.api_problem(400, 'bad-cursor', 'bad cursor',
                'cursor must be a next_cursor value returned by this API');
        END IF;
    END IF;

    -- two statements, so that each can use its index; the page is read
    -- with one row more than asked, to know whether there is a next one
    IF p_admin THEN
        SELECT coalesce(jsonb_agg(shortlink.api_link_json(p.link, p_base_url)
                                  ORDER BY p.rn) FILTER (WHERE p.rn <= lim), '[]'),
               count(*) > lim,
               min(shortlink.api_cursor((p.link).created_at, (p.link).code))
                   FILTER (WHERE p.rn = lim)
          INTO page, more, next
          FROM (SELECT s.link, row_number() OVER (ORDER BY (s.link).created_at, (s.link).code) AS rn
                  FROM (SELECT l AS link
                          FROM shortlink.links l
                         WHERE l.deleted_at IS NULL
                           AND (tag IS NULL OR l.tags @> ARRAY[tag])
                           AND (c_code IS NULL OR (l.created_at, l.code) > (c_ts, c_code))
                         ORDER BY l.created_at, l.code
                         LIMIT lim + 1) s) p;
    ELSE
        SELECT coalesce(jsonb_agg(shortlink.api_link_json(p.link, p_base_url)
                                  ORDER BY p.rn) FILTER (WHERE p.rn <= lim), '[]'),
               count(*) > lim,
               min(shortlink.api_cursor((p.link).created_at, (p.link).code))
                   FILTER (WHERE p.rn = lim)
          INTO page, more, next
          FROM (SELECT s.link, row_number() OVER (ORDER BY (s.link).created_at, (s.link).code) AS rn
                  FROM (SELECT l AS link
                          FROM shortlink.links l
                         WHERE l.deleted_at IS NULL
                           AND l.owner = p_owner
                           AND (tag IS NULL OR l.tags @> ARRAY[tag])
                           AND (c_code IS NULL OR (l.created_at, l.code) > (c_ts, c_code))
                         ORDER BY l.created_at, l.code
                         LIMIT lim + 1) s) p;
    END IF;

    RETURN ROW(200, jsonb_build_object('links', page,
                                       'next_cursor', CASE WHEN more THEN next END)
    )::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_list(jsonb, text, boolean, text) IS
    'GET /links?limit=&cursor=&tag=: live links (all for an admin key, the '
    'key owner''s otherwise) in (created_at, code) order, at most limit '
    '(1..1000, default 50), after the cursor, carrying the tag; '
    '{"links": [...], "next_cursor": text or null (null: nothing more)}.  '
    '400 for a bad limit, tag or cursor';

CREATE FUNCTION shortlink.api_stats(p_params jsonb, p_code text)
RETURNS shortlink.api_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_to    timestamptz := now();
    v_from  timestamptz;
    ivl     text := coalesce(p_params ->> 'interval', 'day');
BEGIN
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
    IF ivl NOT IN ('hour', 'day') THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     'interval must be hour or day');
    END IF;
    IF v_to < v_from THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     'to must not be before from');
    END IF;
    IF v_to - v_from > (CASE ivl WHEN 'hour' THEN interval '1 hour'
                                 ELSE interval '24 hours' END) * 10000 THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
            'more than 10000 buckets requested: use a shorter range or interval=day');
    END IF;
    RETURN ROW(200, shortlink.link_stats(p_code, v_from, v_to, ivl))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_stats(jsonb, text) IS
    'GET /links/{code}/stats?from=&to=&interval=: link_stats of the link; '
    'to defaults to now, from to 7 days before to, interval to day (or '
    'hour); 400 for unparsable times, to before from, another interval or '
    'more than 10000 buckets';

CREATE FUNCTION shortlink.api_link_route(p_method text, p_code text, p_stats boolean,
                                         p_params jsonb, p_body text, p_owner text,
                                         p_admin boolean, p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    l    shortlink.links;
    doc  jsonb;
    chk  jsonb;
    v    jsonb;
BEGIN
    -- PATCH and DELETE lock the row they check, so the owner check and
    -- the update see the same row
    IF p_method IN ('PATCH', 'DELETE') THEN
        SELECT * INTO l FROM shortlink.links
         WHERE code = p_code AND deleted_at IS NULL FOR UPDATE;
    ELSE
        SELECT * INTO l FROM shortlink.links
         WHERE code = p_code AND deleted_at IS NULL;
    END IF;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(404, 'link-not-found', 'link not found',
                                     format('there is no link "%s"', p_code));
    END IF;
    IF NOT p_admin AND l.owner IS DISTINCT FROM p_owner THEN
        RETURN shortlink.api_problem(403, 'not-your-link', 'forbidden',
            format('the link "%s" belongs to another owner', p_code));
    END IF;

    IF p_stats THEN
        RETURN shortlink.api_stats(p_params, p_code);
    ELSIF p_method = 'GET' THEN
        RETURN ROW(200, shortlink.api_link_json(l, p_base_url))::shortlink.api_result;
    ELSIF p_method = 'DELETE' THEN
        UPDATE shortlink.links SET deleted_at = now() WHERE code = p_code;
        RETURN ROW(204, NULL)::shortlink.api_result;
    END IF;

    -- PATCH
    doc := shortlink.api_parse_json(p_body);
    IF doc IS NULL THEN
        RETURN shortlink.api_problem(400, 'malformed-json', 'malformed JSON',
                                     'the request body is missing or not valid JSON');
    END IF;
    IF jsonb_typeof(doc) <> 'object' THEN
        RETURN shortlink.api_problem(400, 'not-an-object', 'body is not an object',
                                     'the request body must be a JSON object');
    END IF;
    IF doc = '{}' THEN
        RETURN shortlink.api_problem(400, 'empty-patch', 'empty patch',
            'the object must name at least one of url, title, tags, expires_at, '
            'redirect_status, forward_query, enabled');
    END IF;
    chk := shortlink.api_check_link(doc, true, '');
    IF jsonb_array_length(chk -> 'errors') > 0 THEN
        RETURN shortlink.api_field_problem(chk -> 'errors');
    END IF;
    v := chk -> 'values';

    UPDATE shortlink.links x SET
        url             = CASE WHEN v ? 'url' THEN v ->> 'url' ELSE x.url END,
        title           = CASE WHEN v ? 'title' THEN v ->> 'title' ELSE x.title END,
        tags            = CASE WHEN v ? 'tags'
                               THEN ARRAY(SELECT jsonb_array_elements_text(v -> 'tags'))
                               ELSE x.tags END,
        expires_at      = CASE WHEN v ? 'expires_at'
                               THEN (v ->> 'expires_at')::timestamptz
                               ELSE x.expires_at END,
        redirect_status = CASE WHEN v ? 'redirect_status'
                               THEN (v ->> 'redirect_status')::smallint
                               ELSE x.redirect_status END,
        forward_query   = CASE WHEN v ? 'forward_query'
                               THEN (v ->> 'forward_query')::boolean
                               ELSE x.forward_query END,
        enabled         = CASE WHEN v ? 'enabled' THEN (v ->> 'enabled')::boolean
                               ELSE x.enabled END
     WHERE x.code = p_code
    RETURNING x.* INTO l;

    RETURN ROW(200, shortlink.api_link_json(l, p_base_url))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_link_route(text, text, boolean, jsonb, text, text,
                                             boolean, text) IS
    'GET, PATCH, DELETE /links/{code} and GET /links/{code}/stats once the '
    'method is known to fit: 404 for unknown and deleted links, 403 for '
    'another owner''s link (owner keys); GET 200 link; DELETE 204 (soft '
    'delete); PATCH 200 link, 400 bad JSON / not an object / empty object, '
    '422 invalid fields (expires_at null clears it; code cannot change)';

CREATE FUNCTION shortlink.api_dispatch(p_method text, p_path text, p_query text,
                                       p_body text, p_key text, p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    v_owner  text;
    v_admin  boolean;
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

    -- route: allowed methods, and the query parameters of each method
    IF p_path = '/links' THEN
        allow := 'GET, POST';
        accept := CASE p_method WHEN 'GET' THEN ARRAY['cursor', 'limit', 'tag']
                                WHEN 'POST' THEN ARRAY['code_length'] END;
    ELSIF p_path = '/links/bulk' THEN
        allow := 'POST';
        accept := CASE p_method WHEN 'POST' THEN ARRAY['code_length'] END;
    ELSE
        m := regexp_match(p_path, '^/links/([0-9A-Za-z_-]{1,64})(/stats)?$');
        IF m IS NULL THEN
            RETURN shortlink.api_problem(404, NULL, 'Not Found',
                'no such API route; routes: /links, /links/bulk, /links/{code}, '
                '/links/{code}/stats');
        END IF;
        IF m[2] IS NOT NULL THEN
            allow := 'GET';
            accept := CASE p_method WHEN 'GET' THEN ARRAY['from', 'to', 'interval'] END;
        ELSE
            allow := 'GET, PATCH, DELETE';
            accept := CASE WHEN p_method IN ('GET', 'PATCH', 'DELETE')
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
        IF p_method = 'GET' THEN
            RETURN shortlink.api_list(q, v_owner, v_admin, p_base_url);
        END IF;
        RETURN shortlink.api_create(q, p_body, v_owner, p_base_url);
    ELSIF p_path = '/links/bulk' THEN
        RETURN shortlink.api_bulk(q, p_body, v_owner, p_base_url);
    END IF;
    RETURN shortlink.api_link_route(p_method, m[1], m[2] IS NOT NULL, q, p_body,
                                    v_owner, v_admin, p_base_url);
END;
$$;

COMMENT ON FUNCTION shortlink.api_dispatch(text, text, text, text, text, text) IS
    'The body of shortlink.api(): authenticates the key (401), finds the '
    'route (404) and the method (405), decodes the query (400), and calls '
    'the route''s function';

CREATE FUNCTION shortlink.api(p_method text, p_path text, p_query text, p_body text,
                              p_key text, p_base_url text)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    r      shortlink.api_result;
    state  text;
    msg    text;
BEGIN
    BEGIN
        r := shortlink.api_dispatch(p_method, p_path, p_query, p_body, p_key,
                                    p_base_url);
    EXCEPTION WHEN OTHERS THEN
        -- whatever this call wrote is rolled back with the block
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        RAISE LOG 'shortlink.api % %: SQLSTATE %: %', p_method, p_path, state, msg;
        r := shortlink.api_problem(500, NULL, 'Internal Server Error',
                format('the request failed in the database (SQLSTATE %s); nothing '
                       'was changed', state));
    END;
    status := r.status;
    body := r.body;
    RETURN NEXT;
END;
$$;

COMMENT ON FUNCTION shortlink.api(text, text, text, text, text, text) IS
    'The management API, one call per HTTP request: SELECT status, '
    'body::text FROM shortlink.api(method, path, query, body, key, '
    'base_url).  path is below the API location ("/links", "/links/bulk", '
    '"/links/{code}", "/links/{code}/stats"), query the raw query string '
    'without "?", key the bearer token, base_url scheme://host[:port] for '
    'short_url.  Exactly one row: the status and the JSON body (NULL for '
    '204; an RFC 9457 problem for status >= 400, whose "allow" (405) and '
    '"www_authenticate" (401) members are meant for the Allow and '
    'WWW-Authenticate headers).  An error answer changes nothing; an '
    'unexpected failure answers 500 with everything the call wrote rolled '
    'back (and is logged at LOG level)';
