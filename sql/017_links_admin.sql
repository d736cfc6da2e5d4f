-- 017_links_admin.sql: groups, a target policy, a recycle bin and QR codes
-- (issue 15).
--
--   * groups: named, ordered groups per owner.  A link is in exactly one:
--     links.group_id names it, and NULL means the owner's default group
--     (created on first use, never deleted), so no link needs a write when
--     groups appear.  A composite foreign key keeps a link in a group of its
--     own owner whoever writes.
--   * target policy: allow and deny rules on target hosts (exact host or
--     "*.suffix"), global (owner NULL) or per owner.  A matching deny rule
--     refuses (deny wins); a non-empty allow list -- the global one, and
--     the owner's one -- must also be matched (owners can only narrow what
--     the global list permits).  A trigger on links refuses a url that the
--     policy refuses (SQLSTATE SL422, answered 422 by the API naming the
--     rule); links that a rule added later covers are marked (blocked_by)
--     and answer 410 Gone (resolve()).
--   * recycle bin: the owner's soft-deleted links, restore, and purge (the
--     row goes, the code is kept in purged_codes and is never reused).
--   * QR codes: GET /links/{code}/qr answers {"qr": {...}} here; nginx
--     encodes the image (ngx_http_shortlink_qr.c).
--
-- api() is re-created only to answer the two errors the new triggers raise
-- (SL422: the policy refused a target, SL409: a purged code) with 422 and
-- 409 instead of 500.


-- --- target policy --------------------------------------------------------

CREATE TABLE shortlink.policy_rules (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text,
    kind        text        NOT NULL,
    host        text        NOT NULL,
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT policy_rules_kind
        CHECK (kind IN ('allow', 'deny')),
    CONSTRAINT policy_rules_owner_format
        CHECK (char_length(owner) BETWEEN 1 AND 128 AND owner !~ '[[:cntrl:]]'),
    -- a lower-case host name or IPv4 address, optionally behind "*."; or
    -- a bracketed IPv6 address
    CONSTRAINT policy_rules_host_format
        CHECK (octet_length(host) <= 255
               AND (host ~ '^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'
                    OR host ~ '^\[[0-9a-f:.]{2,45}\]$')),
    CONSTRAINT policy_rules_note_length
        CHECK (char_length(note) <= 256 AND note !~ '[[:cntrl:]]'),
    CONSTRAINT policy_rules_unique
        UNIQUE NULLS NOT DISTINCT (owner, kind, host)
);

COMMENT ON TABLE shortlink.policy_rules IS
    'Target policy: allow/deny rules on the host of a link''s url.  owner '
    'NULL: global (every link); else the rule applies to that owner''s '
    'links.  Any matching deny rule refuses; a non-empty allow list (the '
    'global one, and the owner''s one) must be matched too';
COMMENT ON COLUMN shortlink.policy_rules.host IS
    'An exact host ("evil.example", lower case) or "*.suffix": every host '
    'below suffix ("a.evil.example", "b.a.evil.example") but not suffix '
    'itself';

ALTER TABLE shortlink.links
    ADD COLUMN blocked_by jsonb;

COMMENT ON COLUMN shortlink.links.blocked_by IS
    'Set by the policy when a rule added after the link was written '
    'refuses its target (kept for live links; judged again on restore): '
    'the link answers 410 Gone and is listed by GET /policy/report.  {"reason": "deny", "rule": {...}} or {"reason": '
    '"not-allowed", "scope": "global"|owner}';

CREATE INDEX links_blocked ON shortlink.links (owner, code)
    WHERE blocked_by IS NOT NULL;


-- the host a browser would go to: after the scheme, up to the first of
-- / ? # or \ (browsers read \ as /), without user info (up to the last @)
-- and port, percent-decoded, lower case, without a trailing dot
CREATE FUNCTION shortlink.policy_url_host(p_url text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    a  text;
    h  text;
BEGIN
    a := substring(p_url FROM '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#\\]*)');
    IF a IS NULL THEN
        RETURN NULL;
    END IF;
    a := regexp_replace(a, '^.*@', '');
    IF left(a, 1) = '[' THEN
        h := substring(a FROM '^(\[[^]]*\])');
    ELSE
        h := regexp_replace(a, ':[0-9]*$', '');
    END IF;
    IF strpos(h, '%') > 0 THEN
        h := coalesce(shortlink.api_url_decode(h), h);
    END IF;
    RETURN rtrim(lower(h), '.');
END;
$$;

COMMENT ON FUNCTION shortlink.policy_url_host(text) IS
    'The host part of a URL as a browser reads it (user info and port '
    'dropped, \ ends the authority, %XX decoded, lower case, no trailing '
    'dot); NULL when the text has no scheme://';

CREATE FUNCTION shortlink.policy_host_match(p_rule text, p_host text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN left(p_rule, 2) = '*.'
                THEN right(p_host, length(p_rule) - 1) = substr(p_rule, 2)
                     AND length(p_host) > length(p_rule) - 1
                ELSE p_host = p_rule END
$$;

COMMENT ON FUNCTION shortlink.policy_host_match(text, text) IS
    'Whether a rule''s host ("x.example" or "*.example") covers a host';

CREATE FUNCTION shortlink.policy_rule_json(r shortlink.policy_rules) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', r.id, 'kind', r.kind, 'host', r.host,
                              'owner', r.owner, 'global', r.owner IS NULL,
                              'note', r.note,
                              'created_at', shortlink.api_iso(r.created_at))
$$;

-- NULL: the policy lets p_owner's link go to p_url; else why not
CREATE FUNCTION shortlink.policy_verdict(p_owner text, p_url text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    h  text;
    r  shortlink.policy_rules;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM shortlink.policy_rules) THEN
        RETURN NULL;
    END IF;
    h := coalesce(shortlink.policy_url_host(p_url), '');

    SELECT * INTO r FROM shortlink.policy_rules p
     WHERE p.kind = 'deny' AND (p.owner IS NULL OR p.owner = p_owner)
       AND shortlink.policy_host_match(p.host, h)
     ORDER BY p.owner NULLS FIRST, p.id
     LIMIT 1;
    IF FOUND THEN
        RETURN jsonb_build_object('reason', 'deny', 'host', h,
                                  'rule', shortlink.policy_rule_json(r));
    END IF;

    IF EXISTS (SELECT 1 FROM shortlink.policy_rules p
                WHERE p.kind = 'allow' AND p.owner IS NULL)
       AND NOT EXISTS (SELECT 1 FROM shortlink.policy_rules p
                        WHERE p.kind = 'allow' AND p.owner IS NULL
                          AND shortlink.policy_host_match(p.host, h))
    THEN
        RETURN jsonb_build_object('reason', 'not-allowed', 'host', h,
                                  'scope', 'global', 'rule', NULL);
    END IF;

    IF p_owner IS NOT NULL
       AND EXISTS (SELECT 1 FROM shortlink.policy_rules p
                    WHERE p.kind = 'allow' AND p.owner = p_owner)
       AND NOT EXISTS (SELECT 1 FROM shortlink.policy_rules p
                        WHERE p.kind = 'allow' AND p.owner = p_owner
                          AND shortlink.policy_host_match(p.host, h))
    THEN
        RETURN jsonb_build_object('reason', 'not-allowed', 'host', h,
                                  'scope', p_owner, 'rule', NULL);
    END IF;

    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.policy_verdict(text, text) IS
    'NULL when the target policy lets a link of p_owner go to p_url; else '
    '{"reason": "deny", "host", "rule": {...}} (the global deny rule first, '
    'then the owner''s, lowest id first) or {"reason": "not-allowed", '
    '"host", "scope": "global"|owner} when an allow list exists that no '
    'rule of matches';

CREATE FUNCTION shortlink.policy_describe(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE v ->> 'reason'
        WHEN 'deny' THEN
            format('the target host "%s" is refused by deny rule %s (%s, %s)',
                   v ->> 'host', v -> 'rule' ->> 'id', v -> 'rule' ->> 'host',
                   coalesce('owner ' || (v -> 'rule' ->> 'owner'), 'global'))
        ELSE
            format('the target host "%s" matches no rule of the %s allow list',
                   v ->> 'host',
                   CASE WHEN v ->> 'scope' = 'global' THEN 'global'
                        ELSE 'owner''s' END)
        END
$$;

-- links: every writer goes through the policy when url or owner changes
CREATE FUNCTION shortlink.links_policy() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v  jsonb;
BEGIN
    v := shortlink.policy_verdict(NEW.owner, NEW.url);
    IF v IS NOT NULL THEN
        RAISE EXCEPTION '%', shortlink.policy_describe(v)
            USING ERRCODE = 'SL422', DETAIL = v::text;
    END IF;
    NEW.blocked_by := NULL;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION shortlink.links_policy() IS
    'Refuses (SQLSTATE SL422, the verdict as DETAIL) a link whose url the '
    'target policy refuses; clears blocked_by of one it accepts';

CREATE TRIGGER links_policy_update BEFORE UPDATE OF url, owner ON shortlink.links
    FOR EACH ROW
    WHEN (NEW.url IS DISTINCT FROM OLD.url OR NEW.owner IS DISTINCT FROM OLD.owner)
    EXECUTE FUNCTION shortlink.links_policy();

-- a restored link is judged again: a rule added while it was in the
-- recycle bin blocks it (no error: restoring never fails for the policy)
CREATE FUNCTION shortlink.links_policy_restore() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.blocked_by := shortlink.policy_verdict(NEW.owner, NEW.url);
    RETURN NEW;
END;
$$;

CREATE TRIGGER links_policy_restore BEFORE UPDATE OF deleted_at ON shortlink.links
    FOR EACH ROW
    WHEN (OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL)
    EXECUTE FUNCTION shortlink.links_policy_restore();

-- the target host of every live link, reversed ("example.evil.x"), so that
-- "*.suffix" is a prefix search: a rule change visits only the links it
-- can concern
CREATE INDEX links_target_host
    ON shortlink.links (reverse(shortlink.policy_url_host(url)) text_pattern_ops)
    WHERE deleted_at IS NULL;

-- judge again the live links p_filter selects (SQL over x, a row of
-- links), of p_owner only unless p_global; only changed verdicts are
-- written
CREATE FUNCTION shortlink.policy_recheck(p_filter text, p_global boolean, p_owner text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'UPDATE shortlink.links l SET blocked_by = v.verdict
           FROM (SELECT x.code, shortlink.policy_verdict(x.owner, x.url) AS verdict
                   FROM shortlink.links x
                  WHERE x.deleted_at IS NULL AND ($1 OR x.owner = $2) AND %s) v
          WHERE l.code = v.code AND l.blocked_by IS DISTINCT FROM v.verdict',
        p_filter)
    USING p_global, p_owner;
END;
$$;

COMMENT ON FUNCTION shortlink.policy_recheck(text, boolean, text) IS
    'Sets blocked_by of the live links a filter selects to their verdict '
    '(policy_refresh''s worker; the filter is built there, never from input)';

-- a rule changed: mark and unmark the links it can concern, which are the
-- links blocked now, those whose host a changed deny rule matches, and
-- every link in the scope of a changed allow rule (an allow list decides
-- about every host).  The update bumps their versions (links_touch) and so
-- reaches every cache (links_notify).  Deleted links are judged when
-- restored (links_policy_restore).
CREATE FUNCTION shortlink.policy_refresh() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    c  record;
BEGIN
    PERFORM shortlink.policy_recheck('x.blocked_by IS NOT NULL', true, NULL);
    IF TG_OP = 'TRUNCATE' THEN
        RETURN NULL;
    END IF;
    FOR c IN EXECUTE CASE TG_OP
            WHEN 'INSERT' THEN 'SELECT DISTINCT owner, kind, host FROM new_rules'
            WHEN 'DELETE' THEN 'SELECT DISTINCT owner, kind, host FROM old_rules'
            ELSE 'SELECT owner, kind, host FROM new_rules
                  UNION SELECT owner, kind, host FROM old_rules' END
    LOOP
        IF c.kind = 'allow' THEN
            PERFORM shortlink.policy_recheck('true', c.owner IS NULL, c.owner);
        ELSIF left(c.host, 2) = '*.' THEN
            PERFORM shortlink.policy_recheck(
                format('reverse(shortlink.policy_url_host(x.url)) LIKE %L',
                       reverse(substr(c.host, 2)) || '%'),
                c.owner IS NULL, c.owner);
        ELSE
            PERFORM shortlink.policy_recheck(
                format('reverse(shortlink.policy_url_host(x.url)) = %L', reverse(c.host)),
                c.owner IS NULL, c.owner);
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.policy_refresh() IS
    'After any change of policy_rules: sets links.blocked_by of the live '
    'links the change can concern to their verdict (only changed rows are '
    'written; a deny rule visits the links of its host through '
    'links_target_host, an allow rule every link of its scope)';

CREATE TRIGGER policy_rules_refresh_insert AFTER INSERT ON shortlink.policy_rules
    REFERENCING NEW TABLE AS new_rules
    FOR EACH STATEMENT EXECUTE FUNCTION shortlink.policy_refresh();
CREATE TRIGGER policy_rules_refresh_update AFTER UPDATE ON shortlink.policy_rules
    REFERENCING NEW TABLE AS new_rules OLD TABLE AS old_rules
    FOR EACH STATEMENT EXECUTE FUNCTION shortlink.policy_refresh();
CREATE TRIGGER policy_rules_refresh_delete AFTER DELETE ON shortlink.policy_rules
    REFERENCING OLD TABLE AS old_rules
    FOR EACH STATEMENT EXECUTE FUNCTION shortlink.policy_refresh();
CREATE TRIGGER policy_rules_refresh_truncate AFTER TRUNCATE ON shortlink.policy_rules
    FOR EACH STATEMENT EXECUTE FUNCTION shortlink.policy_refresh();


-- the lookup of 006 with the same columns: a link the policy blocks
-- answers 410 (nginx sends 410 Gone, no Location, no click)
CREATE OR REPLACE FUNCTION shortlink.resolve(p_code text)
RETURNS TABLE (url text, redirect_status smallint, expires_epoch bigint,
               version bigint, forward_query boolean)
LANGUAGE sql STABLE AS $$
    SELECT l.url,
           CASE WHEN l.blocked_by IS NULL THEN l.redirect_status
                ELSE 410::smallint END,
           extract(epoch FROM l.expires_at)::bigint, l.version,
           l.forward_query
      FROM shortlink.links l
     WHERE l.code = p_code
       AND l.enabled
       AND l.deleted_at IS NULL
       AND (l.expires_at IS NULL OR l.expires_at > now())
$$;

COMMENT ON FUNCTION shortlink.resolve(text) IS
    'Target of a followable link (enabled, not deleted, not expired), '
    'or no row; expires_epoch is NULL for links that never expire; '
    'version is the row''s version, kept with every cached copy; '
    'forward_query: append the visitor''s query string to the target; '
    'redirect_status is 410 for a link the target policy blocks '
    '(links.blocked_by)';


-- --- recycle bin: purged codes stay taken ---------------------------------

CREATE TABLE shortlink.purged_codes (
    code       text        PRIMARY KEY,
    owner      text,
    purged_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE shortlink.purged_codes IS
    'Codes of links purged from the recycle bin: the row is gone, the code '
    'is never used again (links_purged refuses it)';

CREATE FUNCTION shortlink.links_purged() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM shortlink.purged_codes WHERE code = NEW.code) THEN
        RAISE EXCEPTION 'the code "%" belonged to a purged link and is never reused',
                        NEW.code
            USING ERRCODE = 'SL409';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION shortlink.links_purged() IS
    'Refuses (SQLSTATE SL409) a link whose code is in purged_codes';

-- an insert runs both checks in one trigger (each trigger call costs a
-- new link some 25 us): the purged code first, then the policy
CREATE FUNCTION shortlink.links_insert_checks() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v  jsonb;
BEGIN
    IF EXISTS (SELECT 1 FROM shortlink.purged_codes WHERE code = NEW.code) THEN
        RAISE EXCEPTION 'the code "%" belonged to a purged link and is never reused',
                        NEW.code
            USING ERRCODE = 'SL409';
    END IF;
    v := shortlink.policy_verdict(NEW.owner, NEW.url);
    IF v IS NOT NULL THEN
        RAISE EXCEPTION '%', shortlink.policy_describe(v)
            USING ERRCODE = 'SL422', DETAIL = v::text;
    END IF;
    NEW.blocked_by := NULL;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION shortlink.links_insert_checks() IS
    'Before an insert into links: links_purged, then links_policy, in one '
    'call';

CREATE TRIGGER links_insert_checks BEFORE INSERT ON shortlink.links
    FOR EACH ROW EXECUTE FUNCTION shortlink.links_insert_checks();
CREATE TRIGGER links_purged_update BEFORE UPDATE OF code ON shortlink.links
    FOR EACH ROW WHEN (NEW.code IS DISTINCT FROM OLD.code)
    EXECUTE FUNCTION shortlink.links_purged();

CREATE INDEX links_trash ON shortlink.links (owner, deleted_at, code)
    WHERE deleted_at IS NOT NULL;


-- --- groups ---------------------------------------------------------------

CREATE TABLE shortlink.groups (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text        NOT NULL,
    name        text        NOT NULL,
    position    integer     NOT NULL DEFAULT 0,
    is_default  boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT groups_owner_format
        CHECK (char_length(owner) BETWEEN 1 AND 128 AND owner !~ '[[:cntrl:]]'),
    CONSTRAINT groups_name_format
        CHECK (char_length(name) BETWEEN 1 AND 64 AND name !~ '[[:cntrl:]]'
               AND name = btrim(name)),
    CONSTRAINT groups_position
        CHECK (position >= 0),
    CONSTRAINT groups_name_unique UNIQUE (owner, name),
    CONSTRAINT groups_id_owner UNIQUE (id, owner)
);

CREATE UNIQUE INDEX groups_one_default ON shortlink.groups (owner) WHERE is_default;

COMMENT ON TABLE shortlink.groups IS
    'Named, ordered groups of one owner''s links.  Every link is in exactly '
    'one: links.group_id, or the owner''s default group when NULL';
COMMENT ON COLUMN shortlink.groups.position IS
    'Order of the owner''s groups, 0 first (kept dense by the API)';
COMMENT ON COLUMN shortlink.groups.is_default IS
    'The owner''s default group (one per owner, never deleted): links with '
    'group_id NULL are in it';

ALTER TABLE shortlink.links
    ADD COLUMN group_id bigint,
    ADD CONSTRAINT links_group
        FOREIGN KEY (group_id, owner) REFERENCES shortlink.groups (id, owner)
        ON DELETE SET NULL (group_id);

CREATE INDEX links_group_created ON shortlink.links (group_id, created_at, code)
    WHERE deleted_at IS NULL AND group_id IS NOT NULL;

COMMENT ON COLUMN shortlink.links.group_id IS
    'The group (of the same owner) the link is in; NULL: the owner''s '
    'default group';

-- the default group stays while the owner has links (they may be in it);
-- an owner without links may lose it (default_group() makes a new one)
CREATE FUNCTION shortlink.groups_keep_default() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.is_default
       AND (CASE WHEN TG_OP = 'DELETE'
                 THEN EXISTS (SELECT 1 FROM shortlink.links WHERE owner = OLD.owner)
                 ELSE NOT NEW.is_default OR NEW.owner <> OLD.owner END)
    THEN
        RAISE EXCEPTION 'the default group of "%" cannot be deleted while the '
                        'owner has links, nor changed into another', OLD.owner
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER groups_keep_default BEFORE UPDATE OR DELETE ON shortlink.groups
    FOR EACH ROW EXECUTE FUNCTION shortlink.groups_keep_default();

-- the owner's default group, created on first use
CREATE FUNCTION shortlink.default_group(p_owner text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    g  bigint;
BEGIN
    SELECT id INTO g FROM shortlink.groups WHERE owner = p_owner AND is_default;
    IF FOUND THEN
        RETURN g;
    END IF;
    INSERT INTO shortlink.groups (owner, name, position, is_default)
    VALUES (p_owner, 'Default', 0, true)
    ON CONFLICT DO NOTHING
    RETURNING id INTO g;
    IF g IS NULL THEN
        -- a concurrent call made it, or a group is named "Default" already
        SELECT id INTO g FROM shortlink.groups WHERE owner = p_owner AND is_default;
        IF NOT FOUND THEN
            INSERT INTO shortlink.groups (owner, name, position, is_default)
            VALUES (p_owner, 'Default ' || (SELECT count(*) FROM shortlink.groups
                                             WHERE owner = p_owner), 0, true)
            RETURNING id INTO g;
        END IF;
    END IF;
    UPDATE shortlink.groups SET position = position + 1
     WHERE owner = p_owner AND id <> g;
    RETURN g;
END;
$$;

COMMENT ON FUNCTION shortlink.default_group(text) IS
    'Id of the owner''s default group; created (named "Default", first in '
    'order) when the owner has none';

CREATE FUNCTION shortlink.group_json(g shortlink.groups) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', g.id, 'name', g.name, 'position', g.position,
        'default', g.is_default, 'owner', g.owner,
        'created_at', shortlink.api_iso(g.created_at),
        'links', (SELECT count(*) FROM shortlink.links l
                   WHERE l.owner = g.owner AND l.deleted_at IS NULL
                     AND (l.group_id = g.id
                          OR (g.is_default AND l.group_id IS NULL))))
$$;

-- positions 0..n-1 again in the present order, with p_id (when not NULL)
-- moved to p_pos (past the end: last)
CREATE FUNCTION shortlink.groups_renumber(p_owner text, p_id bigint, p_pos integer)
RETURNS void
LANGUAGE sql AS $$
    WITH others AS (
        SELECT id, row_number() OVER (ORDER BY position, id) - 1 AS rn
          FROM shortlink.groups
         WHERE owner = p_owner AND id IS DISTINCT FROM p_id
    ), keyed AS (
        SELECT id, rn * 2 AS k FROM others
        UNION ALL
        SELECT p_id, p_pos::bigint * 2 - 1 WHERE p_id IS NOT NULL
    ), numbered AS (
        SELECT id, (row_number() OVER (ORDER BY k) - 1)::integer AS n FROM keyed
    )
    UPDATE shortlink.groups g SET position = numbered.n
      FROM numbered
     WHERE g.id = numbered.id AND g.position <> numbered.n
$$;

COMMENT ON FUNCTION shortlink.groups_renumber(text, bigint, integer) IS
    'Makes the owner''s group positions 0..n-1 in their present order, '
    'with group p_id (NULL: none) moved to position p_pos';


-- --- API: shared pieces ---------------------------------------------------

-- limit (1..1000, default 50) and cursor of a listing: {"limit": n,
-- "ts": .., "code": ..} or {"error": api_result}
CREATE FUNCTION shortlink.api_page_params(p_params jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    lim     integer := 50;
    c_ts    timestamptz;
    c_code  text;
BEGIN
    IF p_params ? 'limit' THEN
        IF p_params ->> 'limit' !~ '^[0-9]{1,4}$'
           OR (p_params ->> 'limit')::integer NOT BETWEEN 1 AND 1000 THEN
            RETURN jsonb_build_object('error', to_jsonb(shortlink.api_problem(
                400, 'bad-query', 'bad query parameter',
                'limit must be a number from 1 to 1000')));
        END IF;
        lim := (p_params ->> 'limit')::integer;
    END IF;
    IF p_params ? 'cursor' THEN
        SELECT d.created_at, d.code INTO c_ts, c_code
          FROM shortlink.api_cursor_decode(p_params ->> 'cursor') d;
        IF c_code IS NULL THEN
            RETURN jsonb_build_object('error', to_jsonb(shortlink.api_problem(
                400, 'bad-cursor', 'bad cursor',
                'cursor must be a next_cursor value returned by this API')));
        END IF;
    END IF;
    RETURN jsonb_build_object('limit', lim, 'ts', c_ts, 'code', c_code);
END;
$$;

CREATE FUNCTION shortlink.api_result_of(p jsonb) RETURNS shortlink.api_result
LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW((p ->> 'status')::integer, p -> 'body')::shortlink.api_result
$$;

-- the request body as a JSON object, or the 400 answer (status not NULL)
CREATE FUNCTION shortlink.api_body_object(p_body text, OUT doc jsonb,
                                          OUT problem shortlink.api_result)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    doc := shortlink.api_parse_json(p_body);
    IF doc IS NULL THEN
        problem := shortlink.api_problem(400, 'malformed-json', 'malformed JSON',
                                         'the request body is missing or not valid JSON');
    ELSIF jsonb_typeof(doc) <> 'object' THEN
        problem := shortlink.api_problem(400, 'not-an-object', 'body is not an object',
                                         'the request body must be a JSON object');
    END IF;
END;
$$;

CREATE FUNCTION shortlink.api_field_error(p_ptr text, p_detail text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_array(jsonb_build_object('pointer', p_ptr, 'detail', p_detail))
$$;

-- a live link as the caller may see it: {"link": row} or {"error": result}
CREATE FUNCTION shortlink.api_own_link(p_code text, p_owner text, p_admin boolean,
                                       p_deleted boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    l  shortlink.links;
BEGIN
    SELECT * INTO l FROM shortlink.links
     WHERE code = p_code AND (deleted_at IS NOT NULL) = p_deleted
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', to_jsonb(shortlink.api_problem(
            404, 'link-not-found', 'link not found',
            format(CASE WHEN p_deleted THEN 'there is no deleted link "%s" in the recycle bin'
                        ELSE 'there is no link "%s"' END, p_code))));
    END IF;
    IF NOT p_admin AND l.owner IS DISTINCT FROM p_owner THEN
        RETURN jsonb_build_object('error', to_jsonb(shortlink.api_problem(
            403, 'not-your-link', 'forbidden',
            format('the link "%s" belongs to another owner', p_code))));
    END IF;
    RETURN jsonb_build_object('link', to_jsonb(l));
END;
$$;


-- --- API: QR codes --------------------------------------------------------

-- GET /links/{code}/qr?format=svg|png&size=: owner-scoped like
-- /links/{code}; the answer {"qr": {text, format, size}} is turned into
-- the image by nginx (ngx_http_shortlink_qr.c), never sent as JSON
CREATE FUNCTION shortlink.api_link_qr(p_method text, p_match text[], p_params jsonb,
                                      p_body text, p_owner text, p_admin boolean,
                                      p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    l     shortlink.links;
    fmt   text := coalesce(p_params ->> 'format', 'svg');
    size  integer := 256;
BEGIN
    IF fmt NOT IN ('svg', 'png') THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     'format must be svg or png');
    END IF;
    IF p_params ? 'size' THEN
        IF p_params ->> 'size' !~ '^[0-9]{1,4}$'
           OR (p_params ->> 'size')::integer NOT BETWEEN 64 AND 1024 THEN
            RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                         'size must be a number of pixels from 64 to 1024');
        END IF;
        size := (p_params ->> 'size')::integer;
    END IF;
    SELECT * INTO l FROM shortlink.links WHERE code = p_match[1] AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(404, 'link-not-found', 'link not found',
                                     format('there is no link "%s"', p_match[1]));
    END IF;
    IF NOT p_admin AND l.owner IS DISTINCT FROM p_owner THEN
        RETURN shortlink.api_problem(403, 'not-your-link', 'forbidden',
            format('the link "%s" belongs to another owner', p_match[1]));
    END IF;
    IF p_base_url IS NULL THEN
        RETURN shortlink.api_problem(400, 'no-host', 'no host',
            'the request has no Host to build the short URL from');
    END IF;
    -- nginx encodes at most 1024 bytes (ngx_http_shortlink_qr.c)
    IF octet_length(rtrim(p_base_url, '/') || '/' || l.code || '?_sls=qr') > 1024 THEN
        RETURN shortlink.api_problem(400, 'url-too-long', 'URL too long',
            'the short URL (from the Host header) is longer than 1024 bytes');
    END IF;
    RETURN ROW(200, jsonb_build_object('qr', jsonb_build_object(
        'text', rtrim(p_base_url, '/') || '/' || l.code || '?_sls=qr',
        'format', fmt, 'size', size)))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_link_qr(text, text[], jsonb, text, text, boolean, text) IS
    'GET /links/{code}/qr: 400 bad format (svg|png, default svg) or size '
    '(64-1024 pixels, default 256), 404 unknown or deleted link, 403 '
    'another owner''s; else {"qr": {"text": short URL + "?_sls=qr", '
    '"format", "size"}}, which nginx encodes into the image';


-- --- API: groups ----------------------------------------------------------

-- a group the caller may see: {"group": row} or {"error": result}
CREATE FUNCTION shortlink.api_own_group(p_id text, p_owner text, p_admin boolean)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    g  shortlink.groups;
BEGIN
    SELECT * INTO g FROM shortlink.groups WHERE id = p_id::bigint FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', to_jsonb(shortlink.api_problem(
            404, 'group-not-found', 'group not found',
            format('there is no group %s', p_id))));
    END IF;
    IF NOT p_admin AND g.owner <> p_owner THEN
        RETURN jsonb_build_object('error', to_jsonb(shortlink.api_problem(
            403, 'not-your-group', 'forbidden',
            format('the group %s belongs to another owner', p_id))));
    END IF;
    RETURN jsonb_build_object('group', to_jsonb(g));
END;
$$;

-- name and position of a POST or PATCH body: {"values": {..}} or
-- {"errors": [..]}
CREATE FUNCTION shortlink.api_check_group(p_doc jsonb, p_patch boolean) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    errs  jsonb := '[]';
    vals  jsonb := '{}';
    k     text;
BEGIN
    FOR k IN SELECT jsonb_object_keys(p_doc) LOOP
        IF k NOT IN ('name', 'position') THEN
            errs := errs || shortlink.api_field_error('/' || left(k, 64),
                                                     'unknown field (name, position)');
        END IF;
    END LOOP;
    IF p_doc ? 'name' OR NOT p_patch THEN
        IF jsonb_typeof(p_doc -> 'name') IS DISTINCT FROM 'string'
           OR char_length(p_doc ->> 'name') NOT BETWEEN 1 AND 64
           OR p_doc ->> 'name' ~ '[[:cntrl:]]'
           OR p_doc ->> 'name' <> btrim(p_doc ->> 'name')
        THEN
            errs := errs || shortlink.api_field_error('/name',
                'must be a string of 1 to 64 characters without control '
                'characters or surrounding spaces');
        ELSE
            vals := vals || jsonb_build_object('name', p_doc -> 'name');
        END IF;
    END IF;
    IF p_doc ? 'position' THEN
        IF jsonb_typeof(p_doc -> 'position') IS DISTINCT FROM 'number'
           OR (p_doc ->> 'position') !~ '^[0-9]{1,6}$'
        THEN
            errs := errs || shortlink.api_field_error('/position',
                                                     'must be a whole number from 0 to 999999');
        ELSE
            vals := vals || jsonb_build_object('position', p_doc -> 'position');
        END IF;
    END IF;
    IF jsonb_array_length(errs) > 0 THEN
        RETURN jsonb_build_object('errors', errs);
    END IF;
    RETURN jsonb_build_object('values', vals);
END;
$$;

CREATE FUNCTION shortlink.api_group_taken(p_name text) RETURNS shortlink.api_result
LANGUAGE sql IMMUTABLE AS $$
    SELECT shortlink.api_problem(409, 'group-name-taken', 'group name taken',
        format('there is a group named "%s" already', p_name),
        jsonb_build_object('errors', shortlink.api_field_error('/name', 'is taken')))
$$;

-- GET /groups, POST /groups
CREATE FUNCTION shortlink.api_groups(p_method text, p_match text[], p_params jsonb,
                                     p_body text, p_owner text, p_admin boolean,
                                     p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    b    record;
    chk  jsonb;
    g    shortlink.groups;
BEGIN
    PERFORM shortlink.default_group(p_owner);

    IF p_method = 'GET' THEN
        RETURN ROW(200, jsonb_build_object('groups',
            (SELECT coalesce(jsonb_agg(shortlink.group_json(x) ORDER BY x.position, x.id), '[]')
               FROM shortlink.groups x WHERE x.owner = p_owner)))::shortlink.api_result;
    END IF;

    SELECT * INTO b FROM shortlink.api_body_object(p_body);
    IF (b.problem).status IS NOT NULL THEN
        RETURN b.problem;
    END IF;
    chk := shortlink.api_check_group(b.doc, false);
    IF chk ? 'errors' THEN
        RETURN shortlink.api_field_problem(chk -> 'errors');
    END IF;
    INSERT INTO shortlink.groups (owner, name, position)
    VALUES (p_owner, chk -> 'values' ->> 'name',
            (SELECT count(*) FROM shortlink.groups WHERE owner = p_owner))
    ON CONFLICT ON CONSTRAINT groups_name_unique DO NOTHING
    RETURNING * INTO g;
    IF NOT FOUND THEN
        RETURN shortlink.api_group_taken(chk -> 'values' ->> 'name');
    END IF;
    IF chk -> 'values' ? 'position' THEN
        PERFORM shortlink.groups_renumber(p_owner, g.id,
                                          (chk -> 'values' ->> 'position')::integer);
        SELECT * INTO g FROM shortlink.groups WHERE id = g.id;
    END IF;
    RETURN ROW(201, shortlink.group_json(g))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_groups(text, text[], jsonb, text, text, boolean, text) IS
    'GET /groups: the key owner''s groups in order (the default group is '
    'created on first use); POST /groups {"name", "position"?}: 201 the '
    'group (last unless position is given), 422 invalid fields, 409 a '
    'name the owner uses already';

-- GET, PATCH, DELETE /groups/{id}
CREATE FUNCTION shortlink.api_group(p_method text, p_match text[], p_params jsonb,
                                    p_body text, p_owner text, p_admin boolean,
                                    p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    x    jsonb := shortlink.api_own_group(p_match[1], p_owner, p_admin);
    g    shortlink.groups;
    b    record;
    chk  jsonb;
    v    jsonb;
BEGIN
    IF x ? 'error' THEN
        RETURN shortlink.api_result_of(x -> 'error');
    END IF;
    g := jsonb_populate_record(NULL::shortlink.groups, x -> 'group');

    IF p_method = 'GET' THEN
        RETURN ROW(200, shortlink.group_json(g))::shortlink.api_result;
    END IF;

    IF p_method = 'DELETE' THEN
        IF g.is_default THEN
            RETURN shortlink.api_problem(409, 'default-group', 'default group',
                'the default group cannot be deleted; its links have nowhere to go');
        END IF;
        PERFORM shortlink.default_group(g.owner);
        -- the foreign key moves the group's links to the default group
        -- (group_id NULL), deleted ones too
        DELETE FROM shortlink.groups WHERE id = g.id;
        PERFORM shortlink.groups_renumber(g.owner, NULL, 0);
        RETURN ROW(204, NULL)::shortlink.api_result;
    END IF;

    -- PATCH
    SELECT * INTO b FROM shortlink.api_body_object(p_body);
    IF (b.problem).status IS NOT NULL THEN
        RETURN b.problem;
    END IF;
    IF b.doc = '{}' THEN
        RETURN shortlink.api_problem(400, 'empty-patch', 'empty patch',
                                     'the object must name at least one of name, position');
    END IF;
    chk := shortlink.api_check_group(b.doc, true);
    IF chk ? 'errors' THEN
        RETURN shortlink.api_field_problem(chk -> 'errors');
    END IF;
    v := chk -> 'values';
    IF v ? 'name' AND v ->> 'name' <> g.name THEN
        IF EXISTS (SELECT 1 FROM shortlink.groups
                    WHERE owner = g.owner AND name = v ->> 'name') THEN
            RETURN shortlink.api_group_taken(v ->> 'name');
        END IF;
        UPDATE shortlink.groups SET name = v ->> 'name' WHERE id = g.id;
    END IF;
    IF v ? 'position' THEN
        PERFORM shortlink.groups_renumber(g.owner, g.id, (v ->> 'position')::integer);
    END IF;
    SELECT * INTO g FROM shortlink.groups WHERE id = g.id;
    RETURN ROW(200, shortlink.group_json(g))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_group(text, text[], jsonb, text, text, boolean, text) IS
    'GET /groups/{id}; PATCH {"name"?, "position"?} (rename, reorder: the '
    'others keep their order around it); DELETE: 204, its links move to '
    'the default group; 409 for the default group or a taken name; 404 '
    'unknown, 403 another owner''s group (owner keys)';

-- GET /groups/{id}/links?limit=&cursor=
CREATE FUNCTION shortlink.api_group_links(p_method text, p_match text[], p_params jsonb,
                                          p_body text, p_owner text, p_admin boolean,
                                          p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    x     jsonb := shortlink.api_own_group(p_match[1], p_owner, p_admin);
    g     shortlink.groups;
    pg    jsonb := shortlink.api_page_params(p_params);
    lim   integer;
    page  jsonb;
    more  boolean;
    next  text;
BEGIN
    IF x ? 'error' THEN
        RETURN shortlink.api_result_of(x -> 'error');
    END IF;
    IF pg ? 'error' THEN
        RETURN shortlink.api_result_of(pg -> 'error');
    END IF;
    g := jsonb_populate_record(NULL::shortlink.groups, x -> 'group');
    lim := (pg ->> 'limit')::integer;

    SELECT coalesce(jsonb_agg(shortlink.api_link_json(p.link, p_base_url)
                              ORDER BY p.rn) FILTER (WHERE p.rn <= lim), '[]'),
           count(*) > lim,
           min(shortlink.api_cursor((p.link).created_at, (p.link).code))
               FILTER (WHERE p.rn = lim)
      INTO page, more, next
      FROM (SELECT s.link,
                   row_number() OVER (ORDER BY (s.link).created_at, (s.link).code) AS rn
              FROM (SELECT l AS link
                      FROM shortlink.links l
                     WHERE l.deleted_at IS NULL
                       AND l.owner = g.owner
                       AND (l.group_id = g.id OR (g.is_default AND l.group_id IS NULL))
                       AND (pg ->> 'code' IS NULL
                            OR (l.created_at, l.code)
                               > ((pg ->> 'ts')::timestamptz, pg ->> 'code'))
                     ORDER BY l.created_at, l.code
                     LIMIT lim + 1) s) p;

    RETURN ROW(200, jsonb_build_object('group', g.id, 'links', page,
                                       'next_cursor', CASE WHEN more THEN next END)
    )::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_group_links(text, text[], jsonb, text, text, boolean, text) IS
    'GET /groups/{id}/links?limit=&cursor=: the group''s live links in '
    'creation order, paginated as GET /links';

-- PUT /groups/{id}/links/{code}: move a link into the group
CREATE FUNCTION shortlink.api_group_move(p_method text, p_match text[], p_params jsonb,
                                         p_body text, p_owner text, p_admin boolean,
                                         p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    x   jsonb := shortlink.api_own_group(p_match[1], p_owner, p_admin);
    y   jsonb;
    g   shortlink.groups;
    l   shortlink.links;
BEGIN
    IF x ? 'error' THEN
        RETURN shortlink.api_result_of(x -> 'error');
    END IF;
    g := jsonb_populate_record(NULL::shortlink.groups, x -> 'group');
    y := shortlink.api_own_link(p_match[2], p_owner, p_admin);
    IF y ? 'error' THEN
        RETURN shortlink.api_result_of(y -> 'error');
    END IF;
    l := jsonb_populate_record(NULL::shortlink.links, y -> 'link');
    IF l.owner IS DISTINCT FROM g.owner THEN
        RETURN shortlink.api_problem(409, 'other-owners-group', 'group of another owner',
            format('the link "%s" can only be in a group of its own owner', l.code));
    END IF;
    IF l.group_id IS DISTINCT FROM (CASE WHEN g.is_default THEN NULL ELSE g.id END) THEN
        UPDATE shortlink.links SET group_id = CASE WHEN g.is_default THEN NULL ELSE g.id END
         WHERE code = l.code
        RETURNING * INTO l;
    END IF;
    RETURN ROW(200, shortlink.api_link_json(l, p_base_url)
                    || jsonb_build_object('group', g.id))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_group_move(text, text[], jsonb, text, text, boolean, text) IS
    'PUT /groups/{id}/links/{code}: 200 the link with "group" once it is in '
    'the group (idempotent); 404/403 for the group or the link as '
    'elsewhere; 409 when link and group have different owners';

-- GET /groups/{id}/stats?from=&to=&interval=&tz=
CREATE FUNCTION shortlink.api_group_stats(p_method text, p_match text[], p_params jsonb,
                                          p_body text, p_owner text, p_admin boolean,
                                          p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p      jsonb := shortlink.api_stats_params(p_params);
    g      shortlink.groups;
    codes  text[];
BEGIN
    SELECT * INTO g FROM shortlink.groups WHERE id = p_match[1]::bigint;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(404, 'group-not-found', 'group not found',
                                     format('there is no group %s', p_match[1]));
    END IF;
    IF NOT p_admin AND g.owner <> p_owner THEN
        RETURN shortlink.api_problem(403, 'not-your-group', 'forbidden',
            format('the group %s belongs to another owner', p_match[1]));
    END IF;
    IF p ? 'error' THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     p ->> 'error');
    END IF;

    -- soft-deleted links of the group too, as set_stats counts them:
    -- their clicks happened
    codes := ARRAY(SELECT l.code FROM shortlink.links l
                    WHERE l.owner = g.owner
                      AND (l.group_id = g.id OR (g.is_default AND l.group_id IS NULL)));

    RETURN ROW(200, jsonb_build_object('group', g.id, 'name', g.name,
                                       'links', cardinality(codes))
                    || shortlink.stats_doc(codes, NULL, (p ->> 'from')::timestamptz,
                                           (p ->> 'to')::timestamptz, p ->> 'interval',
                                           p ->> 'tz', 'group_stats')
    )::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_group_stats(text, text[], jsonb, text, text, boolean, text) IS
    'GET /groups/{id}/stats?from=&to=&interval=&tz=: the statistics of the '
    'set of the group''s links (soft-deleted ones included) in the shape of '
    'set_stats (stats_doc of 014: distinct counts over the set), with '
    'group, name and links (how many); parameters and their 400s as for '
    '/links/{code}/stats; 404 unknown group, 403 another owner''s';


-- --- API: target policy ---------------------------------------------------

CREATE FUNCTION shortlink.api_policy_rules(p_method text, p_match text[], p_params jsonb,
                                           p_body text, p_owner text, p_admin boolean,
                                           p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    b     record;
    errs  jsonb := '[]';
    k     text;
    host  text;
    own   text := p_owner;
    r     shortlink.policy_rules;
BEGIN
    IF p_method = 'GET' THEN
        RETURN ROW(200, jsonb_build_object('rules',
            (SELECT coalesce(jsonb_agg(shortlink.policy_rule_json(x)
                                       ORDER BY x.owner NULLS FIRST, x.id), '[]')
               FROM shortlink.policy_rules x
              WHERE p_admin OR x.owner IS NULL OR x.owner = p_owner)))::shortlink.api_result;
    END IF;

    SELECT * INTO b FROM shortlink.api_body_object(p_body);
    IF (b.problem).status IS NOT NULL THEN
        RETURN b.problem;
    END IF;
    FOR k IN SELECT jsonb_object_keys(b.doc) LOOP
        IF k NOT IN ('kind', 'host', 'note', 'global', 'owner') THEN
            errs := errs || shortlink.api_field_error('/' || left(k, 64),
                'unknown field (kind, host, note, global, owner)');
        END IF;
    END LOOP;
    IF b.doc ->> 'kind' IS NULL OR b.doc ->> 'kind' NOT IN ('allow', 'deny')
       OR jsonb_typeof(b.doc -> 'kind') <> 'string' THEN
        errs := errs || shortlink.api_field_error('/kind', 'must be "allow" or "deny"');
    END IF;
    host := lower(b.doc ->> 'host');
    IF jsonb_typeof(b.doc -> 'host') IS DISTINCT FROM 'string'
       OR octet_length(host) > 255
       OR NOT (host ~ '^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'
               OR host ~ '^\[[0-9a-f:.]{2,45}\]$') THEN
        errs := errs || shortlink.api_field_error('/host',
            'must be a host name ("evil.example") or "*." and a domain '
            '("*.evil.example": every host below it)');
    END IF;
    IF b.doc ? 'note' AND (jsonb_typeof(b.doc -> 'note') <> 'string'
                           OR char_length(b.doc ->> 'note') > 256
                           OR b.doc ->> 'note' ~ '[[:cntrl:]]') THEN
        errs := errs || shortlink.api_field_error('/note',
            'must be a string of at most 256 characters without control characters');
    END IF;
    IF b.doc ? 'global' AND jsonb_typeof(b.doc -> 'global') <> 'boolean' THEN
        errs := errs || shortlink.api_field_error('/global', 'must be true or false');
    END IF;
    IF b.doc ? 'owner' AND (jsonb_typeof(b.doc -> 'owner') <> 'string'
                            OR char_length(b.doc ->> 'owner') NOT BETWEEN 1 AND 128
                            OR b.doc ->> 'owner' ~ '[[:cntrl:]]') THEN
        errs := errs || shortlink.api_field_error('/owner',
            'must be a string of 1 to 128 characters without control characters');
    END IF;
    IF jsonb_array_length(errs) > 0 THEN
        RETURN shortlink.api_field_problem(errs);
    END IF;

    IF (b.doc ? 'owner' OR coalesce((b.doc ->> 'global')::boolean, false))
       AND NOT p_admin THEN
        RETURN shortlink.api_problem(403, 'admin-only', 'forbidden',
            'only an admin key may write global rules or rules of another owner');
    END IF;
    IF coalesce((b.doc ->> 'global')::boolean, false) THEN
        own := NULL;
    ELSIF b.doc ? 'owner' THEN
        own := b.doc ->> 'owner';
    END IF;

    INSERT INTO shortlink.policy_rules (owner, kind, host, note)
    VALUES (own, b.doc ->> 'kind', host, b.doc ->> 'note')
    ON CONFLICT ON CONSTRAINT policy_rules_unique DO NOTHING
    RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(409, 'rule-exists', 'rule exists',
            format('there is a %s rule for "%s" in this scope already',
                   b.doc ->> 'kind', host));
    END IF;
    RETURN ROW(201, shortlink.policy_rule_json(r) || jsonb_build_object(
        'blocked_links', (SELECT count(*) FROM shortlink.links l
                           WHERE l.blocked_by IS NOT NULL AND l.deleted_at IS NULL
                             AND (own IS NULL OR l.owner = own))))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_policy_rules(text, text[], jsonb, text, text, boolean, text) IS
    'GET /policy/rules: the global rules and the key owner''s (admin: '
    'all); POST /policy/rules {"kind": "allow"|"deny", "host", "note"?, '
    '"global"?, "owner"?}: 201 the rule and blocked_links (links of its '
    'scope the policy now blocks); global rules and rules of another owner '
    'need an admin key (403); 409 the same rule exists; 422 invalid fields';

CREATE FUNCTION shortlink.api_policy_rule(p_method text, p_match text[], p_params jsonb,
                                          p_body text, p_owner text, p_admin boolean,
                                          p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    r  shortlink.policy_rules;
BEGIN
    SELECT * INTO r FROM shortlink.policy_rules WHERE id = p_match[1]::bigint;
    IF NOT FOUND OR NOT (p_admin OR r.owner IS NULL OR r.owner = p_owner) THEN
        RETURN shortlink.api_problem(404, 'rule-not-found', 'rule not found',
                                     format('there is no rule %s', p_match[1]));
    END IF;
    IF p_method = 'GET' THEN
        RETURN ROW(200, shortlink.policy_rule_json(r))::shortlink.api_result;
    END IF;
    IF r.owner IS NULL AND NOT p_admin THEN
        RETURN shortlink.api_problem(403, 'admin-only', 'forbidden',
                                     'only an admin key may delete a global rule');
    END IF;
    DELETE FROM shortlink.policy_rules WHERE id = r.id;
    RETURN ROW(204, NULL)::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_policy_rule(text, text[], jsonb, text, text, boolean, text) IS
    'GET, DELETE /policy/rules/{id}: 404 for a rule the key cannot see, '
    '403 deleting a global rule without an admin key; links it blocked '
    'redirect again unless another rule blocks them';

CREATE FUNCTION shortlink.api_policy_report(p_method text, p_match text[], p_params jsonb,
                                            p_body text, p_owner text, p_admin boolean,
                                            p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    pg    jsonb := shortlink.api_page_params(p_params);
    lim   integer;
    page  jsonb;
    more  boolean;
    next  text;
BEGIN
    IF pg ? 'error' THEN
        RETURN shortlink.api_result_of(pg -> 'error');
    END IF;
    lim := (pg ->> 'limit')::integer;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'code', p.code, 'url', p.url, 'owner', p.owner,
               'short_url', rtrim(p_base_url, '/') || '/' || p.code,
               'blocked_by', p.blocked_by,
               'detail', shortlink.policy_describe(p.blocked_by))
               ORDER BY p.rn) FILTER (WHERE p.rn <= lim), '[]'),
           count(*) > lim,
           min(shortlink.api_cursor(p.created_at, p.code)) FILTER (WHERE p.rn = lim)
      INTO page, more, next
      FROM (SELECT l.*, row_number() OVER (ORDER BY l.created_at, l.code) AS rn
              FROM shortlink.links l
             WHERE l.blocked_by IS NOT NULL AND l.deleted_at IS NULL
               AND (p_admin OR l.owner = p_owner)
               AND (pg ->> 'code' IS NULL
                    OR (l.created_at, l.code) > ((pg ->> 'ts')::timestamptz, pg ->> 'code'))
             ORDER BY l.created_at, l.code
             LIMIT lim + 1) p;
    RETURN ROW(200, jsonb_build_object('links', page,
                                       'next_cursor', CASE WHEN more THEN next END)
    )::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_policy_report(text, text[], jsonb, text, text, boolean, text) IS
    'GET /policy/report?limit=&cursor=: live links (the key owner''s; '
    'admin: all) that the target policy blocks (410 Gone), with the rule '
    'or the allow list that blocks each';


-- --- API: recycle bin -----------------------------------------------------

CREATE FUNCTION shortlink.api_trash(p_method text, p_match text[], p_params jsonb,
                                    p_body text, p_owner text, p_admin boolean,
                                    p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql STABLE AS $$
DECLARE
    pg    jsonb := shortlink.api_page_params(p_params);
    lim   integer;
    page  jsonb;
    more  boolean;
    next  text;
BEGIN
    IF pg ? 'error' THEN
        RETURN shortlink.api_result_of(pg -> 'error');
    END IF;
    lim := (pg ->> 'limit')::integer;
    SELECT coalesce(jsonb_agg(shortlink.api_link_json(p.link, p_base_url)
                              || jsonb_build_object('deleted_at',
                                     shortlink.api_iso((p.link).deleted_at))
                              ORDER BY p.rn) FILTER (WHERE p.rn <= lim), '[]'),
           count(*) > lim,
           min(shortlink.api_cursor((p.link).deleted_at, (p.link).code))
               FILTER (WHERE p.rn = lim)
      INTO page, more, next
      FROM (SELECT s.link,
                   row_number() OVER (ORDER BY (s.link).deleted_at DESC,
                                               (s.link).code DESC) AS rn
              FROM (SELECT l AS link
                      FROM shortlink.links l
                     WHERE l.deleted_at IS NOT NULL
                       AND (p_admin OR l.owner = p_owner)
                       AND (pg ->> 'code' IS NULL
                            OR (l.deleted_at, l.code)
                               < ((pg ->> 'ts')::timestamptz, pg ->> 'code'))
                     ORDER BY l.deleted_at DESC, l.code DESC
                     LIMIT lim + 1) s) p;
    RETURN ROW(200, jsonb_build_object('links', page,
                                       'next_cursor', CASE WHEN more THEN next END)
    )::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_trash(text, text[], jsonb, text, text, boolean, text) IS
    'GET /trash?limit=&cursor=: the recycle bin, soft-deleted links of the '
    'key owner (admin: all), most recently deleted first, with deleted_at';

CREATE FUNCTION shortlink.api_trash_restore(p_method text, p_match text[], p_params jsonb,
                                            p_body text, p_owner text, p_admin boolean,
                                            p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    y  jsonb := shortlink.api_own_link(p_match[1], p_owner, p_admin, true);
    l  shortlink.links;
BEGIN
    IF y ? 'error' THEN
        RETURN shortlink.api_result_of(y -> 'error');
    END IF;
    UPDATE shortlink.links SET deleted_at = NULL WHERE code = p_match[1]
    RETURNING * INTO l;
    RETURN ROW(200, shortlink.api_link_json(l, p_base_url))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_trash_restore(text, text[], jsonb, text, text, boolean, text) IS
    'POST /trash/{code}/restore: the link is live again (every node''s '
    'caches learn it through the version bump''s notification); 200 the '
    'link, 404 not in the recycle bin, 403 another owner''s';

CREATE FUNCTION shortlink.api_trash_purge(p_method text, p_match text[], p_params jsonb,
                                          p_body text, p_owner text, p_admin boolean,
                                          p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    y  jsonb := shortlink.api_own_link(p_match[1], p_owner, p_admin, true);
BEGIN
    IF y ? 'error' THEN
        RETURN shortlink.api_result_of(y -> 'error');
    END IF;
    INSERT INTO shortlink.purged_codes (code, owner)
    VALUES (p_match[1], y -> 'link' ->> 'owner');
    DELETE FROM shortlink.links WHERE code = p_match[1];
    RETURN ROW(204, NULL)::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_trash_purge(text, text[], jsonb, text, text, boolean, text) IS
    'DELETE /trash/{code}: the soft-deleted link''s row goes for good; its '
    'code is kept in purged_codes and never used again.  204, 404 not in '
    'the recycle bin (live links must be deleted first), 403 another '
    'owner''s';


-- --- the routes -----------------------------------------------------------

INSERT INTO shortlink.api_routes (pattern, methods, handler, position) VALUES
    ('^/links/([0-9A-Za-z_-]{1,64})/qr$', '{"GET": ["format", "size"]}',
     'shortlink.api_link_qr', 50),
    ('^/groups$', '{"GET": [], "POST": []}', 'shortlink.api_groups', 60),
    ('^/groups/([0-9]{1,18})$', '{"GET": [], "PATCH": [], "DELETE": []}',
     'shortlink.api_group', 60),
    ('^/groups/([0-9]{1,18})/links$', '{"GET": ["limit", "cursor"]}',
     'shortlink.api_group_links', 60),
    ('^/groups/([0-9]{1,18})/links/([0-9A-Za-z_-]{1,64})$', '{"PUT": []}',
     'shortlink.api_group_move', 60),
    ('^/groups/([0-9]{1,18})/stats$', '{"GET": ["from", "to", "interval", "tz"]}',
     'shortlink.api_group_stats', 60),
    ('^/policy/rules$', '{"GET": [], "POST": []}', 'shortlink.api_policy_rules', 70),
    ('^/policy/rules/([0-9]{1,18})$', '{"GET": [], "DELETE": []}',
     'shortlink.api_policy_rule', 70),
    ('^/policy/report$', '{"GET": ["limit", "cursor"]}', 'shortlink.api_policy_report', 70),
    ('^/trash$', '{"GET": ["limit", "cursor"]}', 'shortlink.api_trash', 80),
    ('^/trash/([0-9A-Za-z_-]{1,64})/restore$', '{"POST": []}',
     'shortlink.api_trash_restore', 80),
    ('^/trash/([0-9A-Za-z_-]{1,64})$', '{"DELETE": []}', 'shortlink.api_trash_purge', 80);


-- --- api(): the policy's and the purge's refusals are answers -------------

CREATE OR REPLACE FUNCTION shortlink.api(p_method text, p_path text, p_query text,
                                         p_body text, p_key text, p_base_url text,
                                         p_codes jsonb DEFAULT NULL)
RETURNS TABLE (status integer, body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    r       shortlink.api_result;
    state   text;
    msg     text;
    detail  text;
BEGIN
    BEGIN
        r := shortlink.api_dispatch(p_method, p_path, p_query, p_body, p_key,
                                    p_base_url, p_codes);
    EXCEPTION
        WHEN SQLSTATE 'SL422' THEN
            -- the target policy refused a url (links_policy); the block
            -- rolled back whatever the call wrote
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
            r := shortlink.api_problem(422, 'target-refused',
                    'target refused by policy', msg,
                    jsonb_build_object('policy', detail::jsonb,
                        'errors', shortlink.api_field_error('/url', msg)));
        WHEN SQLSTATE 'SL409' THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            r := shortlink.api_problem(409, 'code-taken', 'code already taken', msg,
                    jsonb_build_object('errors',
                        shortlink.api_field_error('/code', 'is taken')));
        WHEN OTHERS THEN
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
