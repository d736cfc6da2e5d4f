-- 015_profiles.sql: link-in-bio profiles -- a public page per username
-- (display name, bio, avatar, theme) listing an ordered set of the owner's
-- short links, each with a title, an enabled flag and an optional schedule.
--
-- nginx serves the page (GET /@{username}, see README "Link-in-bio
-- profiles") from what shortlink.profile_page() returns, cached like links
-- and invalidated through the same channel: every change to a profile, to
-- one of its entries, or to a link one of its entries points at bumps the
-- profile's version and announces "@<username>:<version>" on
-- shortlink_links at commit, once per affected profile per statement.
-- Changes that only time makes (a schedule starting or ending, a link
-- expiring) are announced by nobody: profile_page() returns the next such
-- instant (next_change_epoch) and nginx caches no longer than that.
--
-- A profile view is recorded by nginx as a click on the pseudo code
-- '_p' || id with extra {"kind": "profile_view"}; it goes through
-- record_clicks and the rollups like any click, so a profile's views are
-- link_stats('_p' || id).  No link may have such a code (links_code_not_
-- profile below).
--
-- As for links, the tables hold their rules themselves, so a writer in
-- psql cannot store what the API would refuse.
--
-- Statistics (GET /profiles/{username}/stats) read the rollups of sql/014
-- only.  Measured on the shared, loaded 2-core test machine (rough): a
-- profile of 100 entries, 200,000 clicks over 30 days (a third of them
-- views, 5,000 visitors), rollups merged: 115-195 ms for a 7- or 30-day
-- range, 45-60 ms of it the entries' clicks (profile_source_clicks), the
-- rest link_stats() of the views; before 014's merge has run over the new
-- rows, 0.5-1.6 s.  One link_stats() per entry took over 1 s for 100
-- entries even without clicks.  profile_page() of 100 entries: 1.5-2 ms.


-- --- profiles ---------------------------------------------------------------

CREATE TABLE shortlink.profiles (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text        NOT NULL,
    owner         text        NOT NULL,
    display_name  text        NOT NULL,
    bio           text        NOT NULL DEFAULT '',
    avatar_url    text,
    theme         text        NOT NULL DEFAULT 'light',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    version       bigint      NOT NULL DEFAULT 1,
    deleted_at    timestamptz,

    -- deleted profiles keep their username: a name printed in someone's
    -- bio or cached by a CDN must never lead to another person's page
    CONSTRAINT profiles_username_key UNIQUE (username),
    CONSTRAINT profiles_username_format
        CHECK (username ~ '^[a-z0-9_.]{1,30}$'),
    CONSTRAINT profiles_owner_format
        CHECK (char_length(owner) BETWEEN 1 AND 128 AND owner !~ '[[:cntrl:]]'),
    CONSTRAINT profiles_display_name_format
        CHECK (char_length(display_name) BETWEEN 1 AND 100
               AND display_name !~ '[\x01-\x1f\x7f-\x9f]'),
    CONSTRAINT profiles_bio_format
        CHECK (char_length(bio) <= 1000
               AND bio !~ '[\x01-\x09\x0b-\x1f\x7f-\x9f]'),
    -- the rules of links.url (links_url_scheme, _length, _printable)
    CONSTRAINT profiles_avatar_url_format
        CHECK (avatar_url ~* '^https?://[^/?#]'
               AND octet_length(avatar_url) <= 8192
               AND avatar_url ~ '^[!-~]+$'),
    CONSTRAINT profiles_theme
        CHECK (theme IN ('light', 'dark', 'contrast')),
    CONSTRAINT profiles_version_positive
        CHECK (version > 0)
);

COMMENT ON TABLE shortlink.profiles IS
    'Link-in-bio profiles: one public page per username, listing entries '
    '(shortlink.profile_entries); soft-deleted (deleted_at), usernames '
    'never reused';
COMMENT ON COLUMN shortlink.profiles.username IS
    'The page''s name in the URL (/@username): 1-30 of [a-z0-9_.]; stays '
    'taken after the profile is deleted';
COMMENT ON COLUMN shortlink.profiles.owner IS
    'Owner name of the API key that created it; every entry''s link must '
    'have the same owner';
COMMENT ON COLUMN shortlink.profiles.display_name IS
    '1-100 characters, no control characters (C0, DEL, C1)';
COMMENT ON COLUMN shortlink.profiles.bio IS
    '0-1000 characters, no control characters except line feed';
COMMENT ON COLUMN shortlink.profiles.avatar_url IS
    'NULL (no avatar) or a URL under the rules of links.url: http(s), '
    'printable ASCII, at most 8 KiB';
COMMENT ON COLUMN shortlink.profiles.theme IS
    'The page''s colours: light (default), dark or contrast (high contrast)';
COMMENT ON COLUMN shortlink.profiles.version IS
    'Incremented on every change of the profile, its entries or their '
    'links; caches keep the highest version they saw';
COMMENT ON COLUMN shortlink.profiles.deleted_at IS
    'Soft delete: set means the page answers 404; the username stays taken';

CREATE INDEX profiles_owner_username ON shortlink.profiles (owner, username)
    WHERE deleted_at IS NULL;

COMMENT ON INDEX shortlink.profiles_owner_username IS
    'GET /profiles: one owner''s live profiles by username';


CREATE TABLE shortlink.profile_entries (
    profile_id     bigint      NOT NULL
                   REFERENCES shortlink.profiles (id) ON DELETE CASCADE,
    position       integer     NOT NULL,
    link_code      text        NOT NULL
                   REFERENCES shortlink.links (code)
                   ON UPDATE CASCADE ON DELETE CASCADE,
    title          text        NOT NULL,
    enabled        boolean     NOT NULL DEFAULT true,
    visible_from   timestamptz,
    visible_until  timestamptz,

    -- a link appears at most once per profile
    CONSTRAINT profile_entries_pkey PRIMARY KEY (profile_id, link_code),
    -- deferrable so that psql can shift positions in one UPDATE
    CONSTRAINT profile_entries_position_key UNIQUE (profile_id, position)
        DEFERRABLE INITIALLY IMMEDIATE,
    CONSTRAINT profile_entries_position_range
        CHECK (position BETWEEN 0 AND 9999),
    CONSTRAINT profile_entries_title_format
        CHECK (char_length(title) BETWEEN 1 AND 200
               AND title !~ '[\x01-\x1f\x7f-\x9f]'),
    CONSTRAINT profile_entries_schedule
        CHECK (visible_from < visible_until)
);

COMMENT ON TABLE shortlink.profile_entries IS
    'The links of a profile''s page, in position order; each link at most '
    'once, owned by the profile''s owner; at most 100 per profile';
COMMENT ON COLUMN shortlink.profile_entries.position IS
    'Order on the page, lowest first (0-9999, unique per profile)';
COMMENT ON COLUMN shortlink.profile_entries.title IS
    'The text of the entry''s button: 1-200 characters, no control '
    'characters';
COMMENT ON COLUMN shortlink.profile_entries.enabled IS
    'false: the entry is kept but not shown';
COMMENT ON COLUMN shortlink.profile_entries.visible_from IS
    'Shown from this instant on; NULL: no start';
COMMENT ON COLUMN shortlink.profile_entries.visible_until IS
    'Shown before this instant only; NULL: no end';

-- which profiles show a link (the link trigger's look-up)
CREATE INDEX profile_entries_link_code ON shortlink.profile_entries (link_code);


-- Profile views are clicks on '_p' || id: no link may take such a code.
-- NOT VALID first, so that the migration does not fail on a database
-- where someone already created one; validated right away when there is
-- none (the usual case), else a WARNING names the problem and new rows
-- are checked anyway.
ALTER TABLE shortlink.links
    ADD CONSTRAINT links_code_not_profile CHECK (code !~ '^_p[0-9]+$') NOT VALID;

DO $$
BEGIN
    IF EXISTS (SELECT FROM shortlink.links WHERE code ~ '^_p[0-9]+$') THEN
        RAISE WARNING 'links with codes like _p<digits> exist; their clicks '
                      'mix with profile views. Rename them, then run ALTER '
                      'TABLE shortlink.links VALIDATE CONSTRAINT '
                      'links_code_not_profile';
    ELSE
        ALTER TABLE shortlink.links VALIDATE CONSTRAINT links_code_not_profile;
    END IF;
END;
$$;

COMMENT ON CONSTRAINT links_code_not_profile ON shortlink.links IS
    'Codes _p<digits> are the pseudo codes under which profile views are '
    'recorded (sql/015_profiles.sql)';


-- --- versions and owner rules ---------------------------------------------

CREATE FUNCTION shortlink.profiles_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner IS DISTINCT FROM OLD.owner
       AND EXISTS (SELECT FROM shortlink.profile_entries e
                     JOIN shortlink.links l ON l.code = e.link_code
                    WHERE e.profile_id = NEW.id
                      AND l.owner IS DISTINCT FROM NEW.owner)
    THEN
        RAISE EXCEPTION 'profile "%": its entries link to links of another owner',
                        NEW.username
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'profile_entries_link_owner';
    END IF;
    NEW.updated_at := now();
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION shortlink.profiles_touch() IS
    'Keeps updated_at and version true whoever updates a profile, and '
    'refuses an owner change that would leave entries linking to another '
    'owner''s links';

CREATE TRIGGER profiles_touch
    BEFORE UPDATE ON shortlink.profiles
    FOR EACH ROW EXECUTE FUNCTION shortlink.profiles_touch();


-- an entry's link belongs to the profile's owner (links created in SQL,
-- owner NULL, belong to nobody's profile)
CREATE FUNCTION shortlink.profile_entries_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- a missing profile or link is left to the foreign keys
    IF EXISTS (SELECT FROM shortlink.profiles p, shortlink.links l
                WHERE p.id = NEW.profile_id AND l.code = NEW.link_code
                  AND l.owner IS DISTINCT FROM p.owner)
    THEN
        RAISE EXCEPTION 'profile entry %: the link "%" does not belong to the '
                        'profile''s owner', NEW.profile_id, NEW.link_code
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'profile_entries_link_owner';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION shortlink.profile_entries_check() IS
    'Refuses an entry whose link has another owner than its profile';

CREATE TRIGGER profile_entries_check
    BEFORE INSERT OR UPDATE OF profile_id, link_code ON shortlink.profile_entries
    FOR EACH ROW EXECUTE FUNCTION shortlink.profile_entries_check();


-- Any change to entries touches their profiles once per statement (the
-- profiles' triggers then bump the version and notify), and holds the limit
-- of 100 entries per profile.
CREATE FUNCTION shortlink.profile_entries_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids  bigint[];
    bad  bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT profile_id) INTO ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT profile_id) INTO ids FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT x.profile_id) INTO ids
          FROM (SELECT profile_id FROM new_rows
                UNION ALL
                SELECT profile_id FROM old_rows) x;
    END IF;

    IF ids IS NULL THEN
        RETURN NULL;
    END IF;

    IF TG_OP <> 'DELETE' THEN
        SELECT e.profile_id INTO bad
          FROM shortlink.profile_entries e
         WHERE e.profile_id = ANY (ids)
         GROUP BY e.profile_id
        HAVING count(*) > 100
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'profile %: more than 100 entries', bad
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'profile_entries_limit';
        END IF;
    END IF;

    -- rows of profiles deleted by this very statement (ON DELETE CASCADE)
    -- are gone already and updated no more
    UPDATE shortlink.profiles SET updated_at = now() WHERE id = ANY (ids);
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.profile_entries_changed() IS
    'Bumps the version of every profile whose entries a statement changed '
    '(once each) and refuses more than 100 entries per profile';

CREATE TRIGGER profile_entries_inserted
    AFTER INSERT ON shortlink.profile_entries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shortlink.profile_entries_changed();
CREATE TRIGGER profile_entries_updated
    AFTER UPDATE ON shortlink.profile_entries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shortlink.profile_entries_changed();
CREATE TRIGGER profile_entries_deleted
    AFTER DELETE ON shortlink.profile_entries
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shortlink.profile_entries_changed();


-- A change to a link that decides whether it is shown (url, enabled,
-- deleted_at, expires_at) touches the profiles listing it, once each per
-- statement.  A changed code is left to the entries' ON UPDATE CASCADE,
-- which updates the entries (and so touches their profiles) and runs the
-- owner check; a changed owner is refused while the link is on a profile
-- of its old owner.
CREATE FUNCTION shortlink.links_profiles_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids   bigint[];
    code  text;
BEGIN
    SELECT n.code INTO code
      FROM old_rows o
      JOIN new_rows n ON n.code = o.code
      JOIN shortlink.profile_entries e ON e.link_code = n.code
      JOIN shortlink.profiles p ON p.id = e.profile_id
     WHERE n.owner IS DISTINCT FROM o.owner
       AND n.owner IS DISTINCT FROM p.owner
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'link "%" is on a profile of its owner and cannot '
                        'change owner', code
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'profile_entries_link_owner';
    END IF;

    SELECT array_agg(DISTINCT e.profile_id) INTO ids
      FROM old_rows o
      JOIN new_rows n ON n.code = o.code
      JOIN shortlink.profile_entries e ON e.link_code = n.code
     WHERE (n.url, n.enabled, n.deleted_at, n.expires_at)
           IS DISTINCT FROM (o.url, o.enabled, o.deleted_at, o.expires_at);

    IF ids IS NOT NULL THEN
        UPDATE shortlink.profiles SET updated_at = now() WHERE id = ANY (ids);
    END IF;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.links_profiles_changed() IS
    'Bumps the version of every profile listing a link whose url, enabled, '
    'deleted_at or expires_at a statement changed (once each); refuses an '
    'owner change of a link on its owner''s profile';

CREATE TRIGGER links_profiles_changed
    AFTER UPDATE ON shortlink.links
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shortlink.links_profiles_changed();


-- "@<username>:<version>" on the links' channel, at commit; a delete (soft
-- or hard) and the old name of a rename announce version + 1, newer than
-- every cached copy
CREATE FUNCTION shortlink.profiles_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('shortlink_links',
                          '@' || OLD.username || ':' || (OLD.version + 1));
    ELSE
        -- the BEFORE trigger bumped the version: NEW.version is OLD's + 1
        PERFORM pg_notify('shortlink_links',
                          '@' || NEW.username || ':' || NEW.version);

        IF TG_OP = 'UPDATE' AND NEW.username <> OLD.username THEN
            PERFORM pg_notify('shortlink_links',
                              '@' || OLD.username || ':' || (OLD.version + 1));
        END IF;
    END IF;

    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.profiles_notify() IS
    'Announces "@<username>:<version>" on channel shortlink_links at '
    'commit: nginx drops cached copies of the page older than that version';

CREATE TRIGGER profiles_notify
    AFTER INSERT OR UPDATE OR DELETE ON shortlink.profiles
    FOR EACH ROW EXECUTE FUNCTION shortlink.profiles_notify();


-- --- what nginx reads -------------------------------------------------------

-- The one query the profile page runs (prepared once per connection).
CREATE FUNCTION shortlink.profile_page(p_username text)
RETURNS TABLE (profile_id bigint, version bigint, display_name text, bio text,
               avatar_url text, theme text, entries jsonb,
               next_change_epoch bigint)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.version, p.display_name, p.bio, p.avatar_url, p.theme,
           coalesce((SELECT jsonb_agg(jsonb_build_object('code', e.link_code,
                                                         'title', e.title)
                                      ORDER BY e.position)
                       FROM shortlink.profile_entries e
                       JOIN shortlink.links l ON l.code = e.link_code
                      WHERE e.profile_id = p.id
                        AND e.enabled
                        AND (e.visible_from IS NULL OR e.visible_from <= now())
                        AND (e.visible_until IS NULL OR e.visible_until > now())
                        AND l.enabled
                        AND l.deleted_at IS NULL
                        AND (l.expires_at IS NULL OR l.expires_at > now())),
                    '[]'),
           (SELECT ceil(extract(epoch FROM min(t)))::bigint
              FROM shortlink.profile_entries e
              JOIN shortlink.links l ON l.code = e.link_code
              CROSS JOIN LATERAL (VALUES (e.visible_from), (e.visible_until),
                                         (l.expires_at)) AS x(t)
             WHERE e.profile_id = p.id
               AND e.enabled
               AND l.enabled
               AND l.deleted_at IS NULL
               AND x.t > now())
      FROM shortlink.profiles p
     WHERE p.username = p_username
       AND p.deleted_at IS NULL
$$;

COMMENT ON FUNCTION shortlink.profile_page(text) IS
    'What the page of a live profile shows, or no row (unknown or deleted): '
    'profile_id (views are clicks on ''_p'' || profile_id), version, '
    'display_name, bio, avatar_url (NULL: none), theme, entries '
    '[{"code", "title"}] in position order -- only enabled entries inside '
    'their schedule whose link is followable now -- and next_change_epoch: '
    'the earliest future visible_from, visible_until or link expires_at '
    'among enabled entries of enabled, live links (NULL: none), the '
    'instant at which the page changes without any write';

CREATE FUNCTION shortlink.profile_usernames() RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT username FROM shortlink.profiles WHERE deleted_at IS NULL
$$;

COMMENT ON FUNCTION shortlink.profile_usernames() IS
    'Usernames of live profiles (nginx''s filter of known usernames: an '
    'unknown one is answered 404 without a query)';


-- --- the links API refuses the pseudo codes ---------------------------------

-- api_check_link of 004 stays as it is (renamed); the name now wraps it
-- and adds one rule, so that POST /links with the code "_p1" is a 422
-- rather than the check violation's 500
ALTER FUNCTION shortlink.api_check_link(jsonb, boolean, text)
    RENAME TO api_check_link_004;

CREATE FUNCTION shortlink.api_check_link(p_obj jsonb, p_patch boolean, p_ptr text)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    chk  jsonb := shortlink.api_check_link_004(p_obj, p_patch, p_ptr);
BEGIN
    IF chk -> 'values' ->> 'code' ~ '^_p[0-9]+$' THEN
        chk := jsonb_build_object(
            'errors', (chk -> 'errors') || jsonb_build_array(jsonb_build_object(
                'pointer', p_ptr || '/code',
                'detail', 'is reserved (_p<digits> names profile views)')),
            'values', (chk -> 'values') - 'code');
    END IF;
    RETURN chk;
END;
$$;

COMMENT ON FUNCTION shortlink.api_check_link(jsonb, boolean, text) IS
    'api_check_link_004 (see there), plus: the codes _p<digits> are '
    'reserved for profile views (links_code_not_profile)';


-- --- API ----------------------------------------------------------------------
--
-- Routes in shortlink.api_routes (sql/013): /profiles, /profiles/{username},
-- /profiles/{username}/entries, /profiles/{username}/entries/{code},
-- /profiles/{username}/stats.  Owner keys see and change only their own
-- profiles (403 for another owner's), admin keys all of them; a profile's
-- owner is the owner of the key that created it.  As in sql/004: nothing
-- is written when the answer is an error, no dynamic SQL, every value a
-- parameter.

-- an entry as the API shows it
CREATE FUNCTION shortlink.api_entry_json(e shortlink.profile_entries, p_base_url text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'code',          e.link_code,
        'short_url',     rtrim(p_base_url, '/') || '/' || e.link_code,
        'title',         e.title,
        'enabled',       e.enabled,
        'visible_from',  shortlink.api_iso(e.visible_from),
        'visible_until', shortlink.api_iso(e.visible_until))
$$;

COMMENT ON FUNCTION shortlink.api_entry_json(shortlink.profile_entries, text) IS
    'A profile entry as the API shows it: code, short_url, title, enabled, '
    'visible_from, visible_until (ISO 8601 UTC or null)';

-- a profile as the API shows it, with its entries in page order
CREATE FUNCTION shortlink.api_profile_json(p shortlink.profiles, p_base_url text)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'username',     p.username,
        'display_name', p.display_name,
        'bio',          p.bio,
        'avatar_url',   p.avatar_url,
        'theme',        p.theme,
        'owner',        p.owner,
        'entries',      coalesce((SELECT jsonb_agg(shortlink.api_entry_json(e, p_base_url)
                                                   ORDER BY e.position)
                                    FROM shortlink.profile_entries e
                                   WHERE e.profile_id = p.id), '[]'),
        'created_at',   shortlink.api_iso(p.created_at),
        'updated_at',   shortlink.api_iso(p.updated_at),
        'version',      p.version)
$$;

COMMENT ON FUNCTION shortlink.api_profile_json(shortlink.profiles, text) IS
    'A profile as the API shows it: username, display_name, bio, '
    'avatar_url, theme, owner, entries (api_entry_json, page order), '
    'created_at, updated_at, version';


-- Validates a profile object of POST (p_patch false: username and
-- display_name required) or PATCH (username refused) without writing.
-- {"errors": [{pointer, detail}], "values": {...}} as api_check_link.
-- entries (POST only) are checked by api_check_entries, not here.
CREATE FUNCTION shortlink.api_check_profile(p_obj jsonb, p_patch boolean, p_ptr text)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    allowed  text[] := CASE WHEN p_patch
        THEN ARRAY['display_name', 'bio', 'avatar_url', 'theme']
        ELSE ARRAY['username', 'display_name', 'bio', 'avatar_url', 'theme',
                   'entries'] END;
    errs     jsonb[] := '{}';
    vals     jsonb := '{}';
    k        text;
    v        jsonb;
    ptr      text;
    t        text;
BEGIN
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_obj) e ORDER BY e.key LOOP
        ptr := p_ptr || '/' || replace(replace(k, '~', '~0'), '/', '~1');
        IF k <> ALL (allowed) THEN
            errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                CASE WHEN k = 'username' THEN 'a profile''s username cannot be changed'
                     WHEN k = 'entries'
                     THEN 'entries are changed with PUT, POST and DELETE on '
                          '/profiles/{username}/entries'
                     ELSE 'unknown field; known: ' || array_to_string(allowed, ', ') END);
            CONTINUE;
        END IF;
        t := v #>> '{}';

        CASE k
        WHEN 'username' THEN
            IF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail', 'must be a string');
            ELSIF t !~ '^[a-z0-9_.]{1,30}$' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be 1 to 30 of the characters a-z 0-9 _ .');
            ELSE
                vals := vals || jsonb_build_object(k, t);
            END IF;

        WHEN 'display_name' THEN
            IF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail', 'must be a string');
            ELSIF char_length(t) NOT BETWEEN 1 AND 100 THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be 1 to 100 characters long');
            ELSIF t ~ '[\x01-\x1f\x7f-\x9f]' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must not contain control characters (line breaks, tabs ...)');
            ELSE
                vals := vals || jsonb_build_object(k, t);
            END IF;

        WHEN 'bio' THEN
            IF jsonb_typeof(v) = 'null' THEN
                vals := vals || jsonb_build_object(k, '');
            ELSIF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be a string or null');
            ELSIF char_length(t) > 1000 THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be at most 1000 characters long');
            ELSIF t ~ '[\x01-\x09\x0b-\x1f\x7f-\x9f]' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must not contain control characters other than line feed '
                    '(\n; no carriage return, no tab)');
            ELSE
                vals := vals || jsonb_build_object(k, t);
            END IF;

        WHEN 'avatar_url' THEN
            IF jsonb_typeof(v) = 'null' THEN
                vals := vals || jsonb_build_object(k, NULL);
            ELSIF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be a string or null');
            ELSIF octet_length(t) > 8192 THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be at most 8192 bytes long');
            ELSIF t !~ '^[!-~]+$' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must not be empty nor contain spaces, control characters or '
                    'non-ASCII characters (percent-encode them)');
            ELSIF t !~* '^https?://[^/?#]' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be an absolute http:// or https:// URL');
            ELSE
                vals := vals || jsonb_build_object(k, t);
            END IF;

        WHEN 'theme' THEN
            IF jsonb_typeof(v) <> 'string' OR t NOT IN ('light', 'dark', 'contrast') THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be one of "light", "dark", "contrast"');
            ELSE
                vals := vals || jsonb_build_object(k, t);
            END IF;

        WHEN 'entries' THEN
            NULL;                       -- api_check_entries
        END CASE;
    END LOOP;

    IF NOT p_patch THEN
        IF NOT p_obj ? 'username' THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/username',
                                               'detail', 'is required');
        END IF;
        IF NOT p_obj ? 'display_name' THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/display_name',
                                               'detail', 'is required');
        END IF;
    END IF;

    RETURN jsonb_build_object('errors', to_jsonb(errs), 'values', vals);
END;
$$;

COMMENT ON FUNCTION shortlink.api_check_profile(jsonb, boolean, text) IS
    'Validates a profile object of POST /profiles (username, display_name '
    'required; bio, avatar_url, theme, entries optional) or PATCH (username '
    'and entries refused) without writing: {"errors": [{pointer, detail}], '
    '"values": {...}} under the rules of the profiles table''s constraints; '
    'bio null means '''', avatar_url null none';


-- Validates one entry object (p_patch: of PATCH .../entries/{code}, code
-- refused) without looking at links: {"errors", "values"}; values have
-- visible_from/visible_until as UTC text.  The schedule order is checked
-- when both are given.
CREATE FUNCTION shortlink.api_check_entry(p_obj jsonb, p_patch boolean, p_ptr text)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    allowed  text[] := CASE WHEN p_patch
        THEN ARRAY['title', 'enabled', 'visible_from', 'visible_until']
        ELSE ARRAY['code', 'title', 'enabled', 'visible_from', 'visible_until'] END;
    errs     jsonb[] := '{}';
    vals     jsonb := '{}';
    k        text;
    v        jsonb;
    ptr      text;
    t        text;
    ts       timestamptz;
BEGIN
    IF jsonb_typeof(p_obj) <> 'object' THEN
        RETURN jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
                   'pointer', p_ptr, 'detail', 'an entry must be an object')),
               'values', '{}'::jsonb);
    END IF;

    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_obj) e ORDER BY e.key LOOP
        ptr := p_ptr || '/' || replace(replace(k, '~', '~0'), '/', '~1');
        IF k <> ALL (allowed) THEN
            errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                CASE WHEN k = 'code' THEN 'an entry''s link cannot be changed; remove '
                                          'the entry and add another'
                     ELSE 'unknown field; known: ' || array_to_string(allowed, ', ') END);
            CONTINUE;
        END IF;
        t := v #>> '{}';

        CASE k
        WHEN 'code' THEN
            IF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail', 'must be a string');
            ELSIF t !~ '^[0-9A-Za-z_-]{1,64}$' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be the code of a link: 1 to 64 of the characters '
                    '0-9 A-Z a-z _ -');
            ELSE
                vals := vals || jsonb_build_object(k, t);
            END IF;

        WHEN 'title' THEN
            IF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail', 'must be a string');
            ELSIF char_length(t) NOT BETWEEN 1 AND 200 THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be 1 to 200 characters long');
            ELSIF t ~ '[\x01-\x1f\x7f-\x9f]' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must not contain control characters (line breaks, tabs ...)');
            ELSE
                vals := vals || jsonb_build_object(k, t);
            END IF;

        WHEN 'enabled' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be true or false');
            ELSE
                vals := vals || jsonb_build_object(k, v);
            END IF;

        WHEN 'visible_from', 'visible_until' THEN
            IF jsonb_typeof(v) = 'null' THEN
                vals := vals || jsonb_build_object(k, NULL);
            ELSIF jsonb_typeof(v) <> 'string' THEN
                errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                    'must be an ISO 8601 timestamp string or null');
            ELSE
                ts := shortlink.api_parse_time(t);
                IF ts IS NULL THEN
                    errs := errs || jsonb_build_object('pointer', ptr, 'detail',
                        'must be an ISO 8601 timestamp with a time zone, '
                        'e.g. 2030-01-31T12:00:00Z');
                ELSE
                    vals := vals || jsonb_build_object(k,
                        to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
                END IF;
            END IF;
        END CASE;
    END LOOP;

    IF NOT p_patch THEN
        IF NOT p_obj ? 'code' THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/code',
                                               'detail', 'is required');
        END IF;
        IF NOT p_obj ? 'title' THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/title',
                                               'detail', 'is required');
        END IF;
    END IF;

    IF (vals ->> 'visible_from')::timestamptz >= (vals ->> 'visible_until')::timestamptz THEN
        errs := errs || jsonb_build_object('pointer', p_ptr || '/visible_until',
                                           'detail', 'must be after visible_from');
    END IF;

    RETURN jsonb_build_object('errors', to_jsonb(errs), 'values', vals);
END;
$$;

COMMENT ON FUNCTION shortlink.api_check_entry(jsonb, boolean, text) IS
    'Validates one profile entry object (POST: code and title required; '
    'PATCH: code refused) without writing or looking at links: '
    '{"errors": [{pointer, detail}], "values": {...}}; times as UTC text; '
    'visible_from must be before visible_until when both are given';


-- Validates a list of entries for a profile of p_owner: each object, each
-- code at most once, each a live link of p_owner, at most p_max in all.
-- {"errors", "values": [entry values in list order]}
CREATE FUNCTION shortlink.api_check_entries(p_list jsonb, p_owner text, p_ptr text,
                                            p_max integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    errs  jsonb := '[]';
    vals  jsonb := '[]';
    chk   jsonb;
    seen  text[] := '{}';
    v_code  text;
    l     shortlink.links;
BEGIN
    IF jsonb_typeof(p_list) <> 'array' THEN
        RETURN jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
                   'pointer', p_ptr, 'detail', 'must be an array of entries')),
               'values', '[]'::jsonb);
    END IF;
    IF jsonb_array_length(p_list) > p_max THEN
        RETURN jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
                   'pointer', p_ptr,
                   'detail', format('must have at most %s entries (a profile has at '
                                    'most 100)', p_max))),
               'values', '[]'::jsonb);
    END IF;

    FOR i IN 0 .. jsonb_array_length(p_list) - 1 LOOP
        chk := shortlink.api_check_entry(p_list -> i, false, p_ptr || '/' || i);
        errs := errs || (chk -> 'errors');
        v_code := chk -> 'values' ->> 'code';
        CONTINUE WHEN v_code IS NULL;

        IF v_code = ANY (seen) THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/' || i || '/code',
                'detail', 'this link is listed more than once');
            CONTINUE;
        END IF;
        seen := seen || v_code;

        SELECT * INTO l FROM shortlink.links x WHERE x.code = v_code;
        IF NOT FOUND OR l.deleted_at IS NOT NULL THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/' || i || '/code',
                'detail', 'there is no such link');
        ELSIF l.owner IS DISTINCT FROM p_owner THEN
            errs := errs || jsonb_build_object('pointer', p_ptr || '/' || i || '/code',
                'detail', 'the link belongs to another owner than the profile');
        ELSE
            vals := vals || jsonb_build_array(chk -> 'values');
        END IF;
    END LOOP;

    RETURN jsonb_build_object('errors', errs, 'values', vals);
END;
$$;

COMMENT ON FUNCTION shortlink.api_check_entries(jsonb, text, text, integer) IS
    'Validates an array of at most p_max entry objects for a profile of '
    'p_owner: api_check_entry for each, no link twice, each link live and '
    'of p_owner.  {"errors": [...], "values": [entry values in order]}';


-- inserts validated entries (api_check_entries values) at positions
-- p_first, p_first + 1, ...
CREATE FUNCTION shortlink.api_insert_entries(p_profile_id bigint, p_vals jsonb,
                                             p_first integer)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO shortlink.profile_entries
           (profile_id, position, link_code, title, enabled, visible_from, visible_until)
    SELECT p_profile_id, p_first + (x.n - 1)::integer, x.e ->> 'code', x.e ->> 'title',
           coalesce((x.e ->> 'enabled')::boolean, true),
           (x.e ->> 'visible_from')::timestamptz,
           (x.e ->> 'visible_until')::timestamptz
      FROM jsonb_array_elements(p_vals) WITH ORDINALITY AS x(e, n)
$$;

COMMENT ON FUNCTION shortlink.api_insert_entries(bigint, jsonb, integer) IS
    'Inserts validated entries of a profile at consecutive positions';


-- the body of a request that must be a JSON object (or array): the
-- document, or the 400 answer
CREATE FUNCTION shortlink.api_body(p_body text, p_type text,
                                   OUT doc jsonb, OUT err shortlink.api_result)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    doc := shortlink.api_parse_json(p_body);
    IF doc IS NULL THEN
        err := shortlink.api_problem(400, 'malformed-json', 'malformed JSON',
                                     'the request body is missing or not valid JSON');
    ELSIF jsonb_typeof(doc) <> p_type THEN
        err := shortlink.api_problem(400, 'not-an-' || p_type,
                                     'body is not an ' || p_type,
                                     'the request body must be a JSON ' || p_type);
    END IF;
END;
$$;

COMMENT ON FUNCTION shortlink.api_body(text, text) IS
    'The request body parsed as JSON of type p_type (object or array), or '
    'err: 400 malformed-json / not-an-object / not-an-array';


-- the live profile named in a path, checked against the key: the row (or
-- NULL) and the 404/403 answer; p_lock: FOR UPDATE, so that the owner
-- check and the writes see the same row
CREATE FUNCTION shortlink.api_profile_get(p_username text, p_owner text,
                                          p_admin boolean, p_lock boolean,
                                          OUT p shortlink.profiles,
                                          OUT err shortlink.api_result)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_username ~ '^[a-z0-9_.]{1,30}$' THEN
        IF p_lock THEN
            SELECT * INTO p FROM shortlink.profiles x
             WHERE x.username = p_username AND x.deleted_at IS NULL FOR UPDATE;
        ELSE
            SELECT * INTO p FROM shortlink.profiles x
             WHERE x.username = p_username AND x.deleted_at IS NULL;
        END IF;
    END IF;
    IF p.id IS NULL THEN
        p := NULL;
        err := shortlink.api_problem(404, 'profile-not-found', 'profile not found',
                   format('there is no profile "%s"', left(p_username, 64)));
    ELSIF NOT p_admin AND p.owner IS DISTINCT FROM p_owner THEN
        p := NULL;
        err := shortlink.api_problem(403, 'not-your-profile', 'forbidden',
                   format('the profile "%s" belongs to another owner', p_username));
    END IF;
END;
$$;

COMMENT ON FUNCTION shortlink.api_profile_get(text, text, boolean, boolean) IS
    'The live profile of a username for a key: p, or err 404 (unknown, '
    'deleted, not a username) / 403 (another owner''s, owner keys)';


-- --- routes -------------------------------------------------------------------

-- /profiles: GET the key's live profiles (all for an admin key), POST one
CREATE FUNCTION shortlink.api_profiles_route(p_method text, p_match text[], p_params jsonb,
                                             p_body text, p_owner text, p_admin boolean,
                                             p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    lim     integer := 50;
    cur     text := p_params ->> 'cursor';
    doc     jsonb;
    err     shortlink.api_result;
    got     record;
    chk     jsonb;
    ent     jsonb;
    errs    jsonb;
    v       jsonb;
    p       shortlink.profiles;
    page    jsonb;
    more    boolean;
    next    text;
BEGIN
    IF p_method = 'GET' THEN
        IF p_params ? 'limit' THEN
            IF p_params ->> 'limit' !~ '^[0-9]{1,3}$'
               OR (p_params ->> 'limit')::integer NOT BETWEEN 1 AND 100 THEN
                RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                             'limit must be a number from 1 to 100');
            END IF;
            lim := (p_params ->> 'limit')::integer;
        END IF;
        IF cur IS NOT NULL AND cur !~ '^[a-z0-9_.]{1,30}$' THEN
            RETURN shortlink.api_problem(400, 'bad-cursor', 'bad cursor',
                'cursor must be a next_cursor value returned by this API');
        END IF;

        SELECT coalesce(jsonb_agg(shortlink.api_profile_json(s.p, p_base_url)
                                  ORDER BY s.rn) FILTER (WHERE s.rn <= lim), '[]'),
               count(*) > lim,
               min((s.p).username) FILTER (WHERE s.rn = lim)
          INTO page, more, next
          FROM (SELECT x AS p, row_number() OVER (ORDER BY x.username) AS rn
                  FROM shortlink.profiles x
                 WHERE x.deleted_at IS NULL
                   AND (p_admin OR x.owner = p_owner)
                   AND (cur IS NULL OR x.username > cur)
                 ORDER BY x.username
                 LIMIT lim + 1) s;

        RETURN ROW(200, jsonb_build_object('profiles', page,
                                           'next_cursor', CASE WHEN more THEN next END)
        )::shortlink.api_result;
    END IF;

    -- POST
    SELECT * INTO got FROM shortlink.api_body(p_body, 'object');
    doc := got.doc;
    err := got.err;
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;
    chk := shortlink.api_check_profile(doc, false, '');
    errs := chk -> 'errors';
    IF doc ? 'entries' THEN
        ent := shortlink.api_check_entries(doc -> 'entries', p_owner, '/entries', 100);
        errs := errs || (ent -> 'errors');
    END IF;
    IF jsonb_array_length(errs) > 0 THEN
        RETURN shortlink.api_field_problem(errs);
    END IF;
    v := chk -> 'values';

    -- the unique constraint is the final guard: a taken username (live or
    -- deleted) inserts no row, without an error to catch
    INSERT INTO shortlink.profiles AS x
           (username, owner, display_name, bio, avatar_url, theme)
    VALUES (v ->> 'username', p_owner, v ->> 'display_name',
            coalesce(v ->> 'bio', ''), v ->> 'avatar_url',
            coalesce(v ->> 'theme', 'light'))
    ON CONFLICT ON CONSTRAINT profiles_username_key DO NOTHING
    RETURNING x.* INTO p;
    IF NOT FOUND THEN
        RETURN shortlink.api_problem(409, 'username-taken', 'username already taken',
            format('the username "%s" is taken (usernames of deleted profiles are '
                   'never reused)', v ->> 'username'),
            jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
                'pointer', '/username', 'detail', 'is taken'))));
    END IF;

    IF ent IS NOT NULL AND jsonb_array_length(ent -> 'values') > 0 THEN
        PERFORM shortlink.api_insert_entries(p.id, ent -> 'values', 0);
        SELECT * INTO p FROM shortlink.profiles WHERE id = p.id;
    END IF;
    RETURN ROW(201, shortlink.api_profile_json(p, p_base_url))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_profiles_route(text, text[], jsonb, text, text, boolean,
                                                 text) IS
    'GET /profiles?limit=&cursor=: live profiles (the key owner''s; all for '
    'an admin key) by username, at most limit (1..100, default 50) after '
    'the cursor: {"profiles": [...], "next_cursor": text or null}.  POST '
    '/profiles: 201 profile (owned by the key''s owner, entries optional), '
    '400 bad JSON, 422 invalid fields, 409 username taken';


-- /profiles/{username}: GET, PATCH, DELETE (soft)
CREATE FUNCTION shortlink.api_profile_route(p_method text, p_match text[], p_params jsonb,
                                            p_body text, p_owner text, p_admin boolean,
                                            p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    p    shortlink.profiles;
    err  shortlink.api_result;
    got  record;
    doc  jsonb;
    chk  jsonb;
    v    jsonb;
BEGIN
    SELECT * INTO got
      FROM shortlink.api_profile_get(p_match[1], p_owner, p_admin, p_method <> 'GET');
    p := got.p;
    err := got.err;
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    IF p_method = 'GET' THEN
        RETURN ROW(200, shortlink.api_profile_json(p, p_base_url))::shortlink.api_result;
    ELSIF p_method = 'DELETE' THEN
        UPDATE shortlink.profiles SET deleted_at = now() WHERE id = p.id;
        RETURN ROW(204, NULL)::shortlink.api_result;
    END IF;

    -- PATCH
    SELECT * INTO got FROM shortlink.api_body(p_body, 'object');
    doc := got.doc;
    err := got.err;
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;
    IF doc = '{}' THEN
        RETURN shortlink.api_problem(400, 'empty-patch', 'empty patch',
            'the object must name at least one of display_name, bio, avatar_url, theme');
    END IF;
    chk := shortlink.api_check_profile(doc, true, '');
    IF jsonb_array_length(chk -> 'errors') > 0 THEN
        RETURN shortlink.api_field_problem(chk -> 'errors');
    END IF;
    v := chk -> 'values';

    UPDATE shortlink.profiles x SET
        display_name = CASE WHEN v ? 'display_name' THEN v ->> 'display_name'
                            ELSE x.display_name END,
        bio          = CASE WHEN v ? 'bio' THEN v ->> 'bio' ELSE x.bio END,
        avatar_url   = CASE WHEN v ? 'avatar_url' THEN v ->> 'avatar_url'
                            ELSE x.avatar_url END,
        theme        = CASE WHEN v ? 'theme' THEN v ->> 'theme' ELSE x.theme END
     WHERE x.id = p.id
    RETURNING x.* INTO p;

    RETURN ROW(200, shortlink.api_profile_json(p, p_base_url))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_profile_route(text, text[], jsonb, text, text, boolean,
                                                text) IS
    'GET, PATCH, DELETE /profiles/{username}: 404 unknown or deleted, 403 '
    'another owner''s (owner keys); GET 200 profile; DELETE 204 (soft '
    'delete, the username stays taken); PATCH 200 profile, 400 bad JSON / '
    'not an object / empty object, 422 invalid fields (username and entries '
    'cannot be patched)';


-- /profiles/{username}/entries (PUT the whole list, POST one) and
-- /profiles/{username}/entries/{code} (PATCH, DELETE one)
CREATE FUNCTION shortlink.api_profile_entries_route(p_method text, p_match text[],
                                                    p_params jsonb, p_body text,
                                                    p_owner text, p_admin boolean,
                                                    p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    p     shortlink.profiles;
    e     shortlink.profile_entries;
    err   shortlink.api_result;
    got   record;
    doc   jsonb;
    chk   jsonb;
    v     jsonb;
    n     integer;
    pos   integer;
BEGIN
    SELECT * INTO got
      FROM shortlink.api_profile_get(p_match[1], p_owner, p_admin, true);
    p := got.p;
    err := got.err;
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    IF p_match[2] IS NOT NULL THEN
        SELECT * INTO e FROM shortlink.profile_entries x
         WHERE x.profile_id = p.id AND x.link_code = p_match[2] FOR UPDATE;
        IF NOT FOUND THEN
            RETURN shortlink.api_problem(404, 'entry-not-found', 'entry not found',
                format('the profile "%s" has no entry for the link "%s"',
                       p.username, left(p_match[2], 64)));
        END IF;

        IF p_method = 'DELETE' THEN
            DELETE FROM shortlink.profile_entries x
             WHERE x.profile_id = p.id AND x.link_code = e.link_code;
            RETURN ROW(204, NULL)::shortlink.api_result;
        END IF;

        -- PATCH
        SELECT * INTO got FROM shortlink.api_body(p_body, 'object');
        doc := got.doc;
        err := got.err;
        IF err.status IS NOT NULL THEN
            RETURN err;
        END IF;
        IF doc = '{}' THEN
            RETURN shortlink.api_problem(400, 'empty-patch', 'empty patch',
                'the object must name at least one of title, enabled, visible_from, '
                'visible_until');
        END IF;
        chk := shortlink.api_check_entry(doc, true, '');
        IF jsonb_array_length(chk -> 'errors') > 0 THEN
            RETURN shortlink.api_field_problem(chk -> 'errors');
        END IF;
        v := chk -> 'values';
        IF v ? 'visible_from' THEN
            e.visible_from := (v ->> 'visible_from')::timestamptz;
        END IF;
        IF v ? 'visible_until' THEN
            e.visible_until := (v ->> 'visible_until')::timestamptz;
        END IF;
        IF e.visible_from >= e.visible_until THEN
            RETURN shortlink.api_field_problem(jsonb_build_array(jsonb_build_object(
                'pointer', CASE WHEN v ? 'visible_until' THEN '/visible_until'
                                ELSE '/visible_from' END,
                'detail', format('visible_from (%s) must be before visible_until (%s)',
                                 shortlink.api_iso(e.visible_from),
                                 shortlink.api_iso(e.visible_until)))));
        END IF;

        UPDATE shortlink.profile_entries x SET
            title         = coalesce(v ->> 'title', x.title),
            enabled       = coalesce((v ->> 'enabled')::boolean, x.enabled),
            visible_from  = e.visible_from,
            visible_until = e.visible_until
         WHERE x.profile_id = p.id AND x.link_code = e.link_code;

    ELSIF p_method = 'PUT' THEN
        SELECT * INTO got FROM shortlink.api_body(p_body, 'array');
        doc := got.doc;
        err := got.err;
        IF err.status IS NOT NULL THEN
            RETURN err;
        END IF;
        chk := shortlink.api_check_entries(doc, p.owner, '', 100);
        IF jsonb_array_length(chk -> 'errors') > 0 THEN
            RETURN shortlink.api_field_problem(chk -> 'errors');
        END IF;
        DELETE FROM shortlink.profile_entries WHERE profile_id = p.id;
        PERFORM shortlink.api_insert_entries(p.id, chk -> 'values', 0);

    ELSE
        -- POST: append one
        SELECT * INTO got FROM shortlink.api_body(p_body, 'object');
        doc := got.doc;
        err := got.err;
        IF err.status IS NOT NULL THEN
            RETURN err;
        END IF;
        chk := shortlink.api_check_entries(jsonb_build_array(doc), p.owner, '', 1);
        IF jsonb_array_length(chk -> 'errors') > 0 THEN
            -- the pointers of a one-element list, /0/title, name /title
            RETURN shortlink.api_field_problem((
                SELECT jsonb_agg(jsonb_set(x, '{pointer}',
                                           to_jsonb(substr(x ->> 'pointer', 3))))
                  FROM jsonb_array_elements(chk -> 'errors') x));
        END IF;
        v := chk -> 'values' -> 0;

        SELECT count(*), max(position) INTO n, pos
          FROM shortlink.profile_entries WHERE profile_id = p.id;
        IF EXISTS (SELECT FROM shortlink.profile_entries x
                    WHERE x.profile_id = p.id AND x.link_code = v ->> 'code') THEN
            RETURN shortlink.api_problem(409, 'entry-exists', 'link already listed',
                format('the link "%s" is on the profile already', v ->> 'code'),
                jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
                    'pointer', '/code', 'detail', 'is on the profile already'))));
        END IF;
        IF n >= 100 THEN
            RETURN shortlink.api_problem(409, 'too-many-entries', 'too many entries',
                'a profile has at most 100 entries; remove one first');
        END IF;
        IF pos >= 9999 THEN
            -- positions left gaps (appends after removals): close them
            UPDATE shortlink.profile_entries x SET position = r.rn - 1
              FROM (SELECT link_code, row_number() OVER (ORDER BY position) AS rn
                      FROM shortlink.profile_entries WHERE profile_id = p.id) r
             WHERE x.profile_id = p.id AND x.link_code = r.link_code;
            pos := n - 1;
        END IF;
        PERFORM shortlink.api_insert_entries(p.id, jsonb_build_array(v),
                                             coalesce(pos + 1, 0));
    END IF;

    SELECT * INTO p FROM shortlink.profiles WHERE id = p.id;
    RETURN ROW(CASE WHEN p_method = 'POST' THEN 201 ELSE 200 END,
               shortlink.api_profile_json(p, p_base_url))::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_profile_entries_route(text, text[], jsonb, text, text,
                                                        boolean, text) IS
    'PUT /profiles/{username}/entries: replaces the whole ordered list '
    '(reorder, add, remove in one call), 200 profile; POST: appends one '
    'entry, 201 profile, 409 link already listed or 100 entries; PATCH '
    '/profiles/{username}/entries/{code}: title, enabled, schedule, 200 '
    'profile; DELETE: 204.  404 unknown profile or entry, 403 another '
    'owner''s profile, 400 bad JSON, 422 invalid fields (a link must be '
    'live and of the profile''s owner)';


-- api_parse_time, except that a date alone is midnight in p_tz (a valid
-- zone name)
CREATE FUNCTION shortlink.api_parse_time_tz(p_text text, p_tz text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_text ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
                     AND shortlink.api_parse_time(p_text) IS NOT NULL
                THEN p_text::date::timestamp AT TIME ZONE p_tz
                ELSE shortlink.api_parse_time(p_text) END
$$;

COMMENT ON FUNCTION shortlink.api_parse_time_tz(text, text) IS
    'api_parse_time, but YYYY-MM-DD is midnight in the time zone p_tz; NULL '
    'for anything api_parse_time refuses';

-- The clicks marked source "profile" (the page links to <code>?_sls=profile)
-- of each of a set of links over [p_from, p_to) (whole hours), from the
-- rollups of sql/014 exactly as its stats_top reads them -- link_daily_clicks
-- for whole UTC days, merged hourly rows (tops) for the other hours,
-- appended rows not merged yet (attrs, 8 values per click in the order of
-- stats_lists()) for any hour -- but only the one count, in one statement
-- for all links: link_stats() per link costs about 12 ms even without
-- clicks, over a second for 100 entries.
CREATE FUNCTION shortlink.profile_source_clicks(p_codes text[], p_from timestamptz,
                                                p_to timestamptz)
RETURNS TABLE (code text, clicks bigint)
LANGUAGE sql STABLE AS $$
    WITH b AS (
        SELECT date_bin('1 day', p_from + interval '1 day' - interval '1 microsecond',
                        timestamptz '1970-01-01 00:00:00+00') AS d_from,
               -- the daily tier holds the closed days only (sql/014)
               least(date_bin('1 day', p_to, timestamptz '1970-01-01 00:00:00+00'),
                     (SELECT daily_through FROM shortlink.hourly_compaction)) AS d_to,
               array_position(shortlink.stats_lists(), 'sources') AS pos,
               cardinality(shortlink.stats_lists()) AS n
    ), h AS (
        -- the hours outside the whole days: [p_from, a_to) and [b_from,
        -- p_to), two index ranges (a filter on the hour would read every
        -- hour of the range)
        SELECT CASE WHEN b.d_to > b.d_from THEN b.d_from ELSE p_to END AS a_to,
               CASE WHEN b.d_to > b.d_from THEN b.d_to ELSE p_to END AS b_from
          FROM b
    ), r AS (
        SELECT t.code, (t.tops -> 'sources' ->> 'profile')::bigint AS n
          FROM shortlink.link_daily_clicks t, b
         WHERE t.code = ANY (p_codes) AND t.day >= b.d_from AND t.day < b.d_to
        UNION ALL
        SELECT x.code, (x.tops -> 'sources' ->> 'profile')::bigint
          FROM shortlink.link_hourly_clicks x, h
         WHERE x.code = ANY (p_codes) AND x.hour >= p_from AND x.hour < h.a_to
           AND x.visitors IS NOT NULL
        UNION ALL
        SELECT x.code, (x.tops -> 'sources' ->> 'profile')::bigint
          FROM shortlink.link_hourly_clicks x, h
         WHERE x.code = ANY (p_codes) AND x.hour >= h.b_from AND x.hour < p_to
           AND x.visitors IS NOT NULL
        UNION ALL
        SELECT h.code, (SELECT count(*) FROM unnest(h.attrs) WITH ORDINALITY u(v, i)
                         WHERE (u.i - 1) % b.n + 1 = b.pos AND u.v = 'profile')
          FROM shortlink.link_hourly_clicks h, b
         WHERE h.code = ANY (p_codes) AND h.hour >= p_from AND h.hour < p_to
           AND h.visitors IS NULL
    )
    SELECT c.code, coalesce(sum(r.n), 0)::bigint
      FROM unnest(p_codes) c(code)
      LEFT JOIN r ON r.code = c.code
     GROUP BY c.code
$$;

COMMENT ON FUNCTION shortlink.profile_source_clicks(text[], timestamptz, timestamptz) IS
    'Per link of p_codes: its clicks with extra source "profile" in '
    '[p_from, p_to) (whole UTC hours), exact, from the rollups of sql/014 '
    '(link_daily_clicks, link_hourly_clicks tops and attrs) as stats_top '
    'reads them; 0 for a link without any';

-- Views, clicks per entry and click-through rates of a profile over
-- [from, to), both truncated to the hour: rollups only, never raw clicks.
-- A view is a click on '_p' || id (its link_stats totals); an entry's
-- clicks are its link's clicks marked source "profile".
CREATE FUNCTION shortlink.profile_stats(p_profile_id bigint, p_from timestamptz,
                                        p_to timestamptz, p_tz text DEFAULT 'UTC')
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    epoch  CONSTANT timestamptz := timestamptz '1970-01-01 00:00:00+00';
    doc    jsonb := shortlink.link_stats('_p' || p_profile_id, p_from, p_to, 'day', p_tz);
    views  bigint := (doc -> 'totals' ->> 'pv')::bigint;
    ents   jsonb;
    total  bigint;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'code', e.link_code, 'title', e.title, 'clicks', c.clicks,
               'ctr', CASE WHEN views > 0 THEN round(c.clicks::numeric / views, 4) END)
               ORDER BY e.position), '[]'),
           coalesce(sum(c.clicks), 0)::bigint
      INTO ents, total
      FROM shortlink.profile_entries e
      JOIN shortlink.profile_source_clicks(
               ARRAY(SELECT x.link_code FROM shortlink.profile_entries x
                      WHERE x.profile_id = p_profile_id),
               date_bin('1 hour', p_from, epoch), date_bin('1 hour', p_to, epoch)) c
        ON c.code = e.link_code
     WHERE e.profile_id = p_profile_id;

    RETURN jsonb_build_object(
        'from',     doc -> 'from',
        'to',       doc -> 'to',
        'tz',       p_tz,
        'views',    views,
        'visitors', (doc -> 'totals' ->> 'uv')::bigint,
        'clicks',   total,
        'ctr',      CASE WHEN views > 0 THEN round(total::numeric / views, 4) END,
        'entries',  ents);
END;
$$;

COMMENT ON FUNCTION shortlink.profile_stats(bigint, timestamptz, timestamptz, text) IS
    'Statistics of a profile over [from, to) truncated to hours, rollups '
    'only: views and visitors (pv and uv of link_stats(''_p'' || id); uv a '
    'HyperLogLog estimate beyond 320), clicks per current entry '
    '(profile_source_clicks: its link''s clicks marked source "profile"), '
    'ctr = clicks / views rounded to 4 places (null without views); '
    'from/to as link_stats gives them (ISO 8601 in tz)';

-- /profiles/{username}/stats?from=&to=&tz=
CREATE FUNCTION shortlink.api_profile_stats_route(p_method text, p_match text[],
                                                  p_params jsonb, p_body text,
                                                  p_owner text, p_admin boolean,
                                                  p_base_url text)
RETURNS shortlink.api_result
LANGUAGE plpgsql AS $$
DECLARE
    p       shortlink.profiles;
    err     shortlink.api_result;
    got     record;
    tz      text := coalesce(p_params ->> 'tz', 'UTC');
    v_to    timestamptz := now();
    v_from  timestamptz;
BEGIN
    SELECT * INTO got
      FROM shortlink.api_profile_get(p_match[1], p_owner, p_admin, false);
    p := got.p;
    err := got.err;
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    -- IANA names only (no POSIX rules such as "XYZ+3")
    IF tz !~ '^[A-Za-z0-9_+/-]{1,64}$'
       OR NOT EXISTS (SELECT FROM pg_timezone_names WHERE name = tz) THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
            'tz must be an IANA time zone name such as Europe/Berlin or UTC');
    END IF;

    IF p_params ? 'to' THEN
        v_to := shortlink.api_parse_time_tz(p_params ->> 'to', tz);
        IF v_to IS NULL THEN
            RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                'to must be an ISO 8601 date (midnight in tz) or timestamp with a '
                'time zone (send + as %2B)');
        END IF;
    END IF;
    v_from := v_to - interval '7 days';
    IF p_params ? 'from' THEN
        v_from := shortlink.api_parse_time_tz(p_params ->> 'from', tz);
        IF v_from IS NULL THEN
            RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                'from must be an ISO 8601 date (midnight in tz) or timestamp with a '
                'time zone (send + as %2B)');
        END IF;
    END IF;

    IF v_to < v_from THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     'to must not be before from');
    END IF;
    IF v_to - v_from > interval '400 days' THEN
        RETURN shortlink.api_problem(400, 'bad-query', 'bad query parameter',
                                     'the range must be at most 400 days long');
    END IF;

    RETURN ROW(200, jsonb_build_object('username', p.username)
                    || shortlink.profile_stats(p.id, v_from, v_to, tz)
    )::shortlink.api_result;
END;
$$;

COMMENT ON FUNCTION shortlink.api_profile_stats_route(text, text[], jsonb, text, text,
                                                      boolean, text) IS
    'GET /profiles/{username}/stats?from=&to=&tz=: profile_stats of the '
    'profile; to defaults to now, from to 7 days before to, tz to UTC (a '
    'date alone is midnight in tz); 400 for an unknown zone, unparsable '
    'times, to before from or more than 400 days; 404/403 as for the '
    'profile';


INSERT INTO shortlink.api_routes (pattern, methods, handler, position) VALUES
    ('^/profiles$',
     '{"GET": ["limit", "cursor"], "POST": []}',
     'shortlink.api_profiles_route', 150),
    ('^/profiles/([^/]+)$',
     '{"GET": [], "PATCH": [], "DELETE": []}',
     'shortlink.api_profile_route', 150),
    ('^/profiles/([^/]+)/entries$',
     '{"PUT": [], "POST": []}',
     'shortlink.api_profile_entries_route', 150),
    ('^/profiles/([^/]+)/entries/([^/]+)$',
     '{"PATCH": [], "DELETE": []}',
     'shortlink.api_profile_entries_route', 150),
    ('^/profiles/([^/]+)/stats$',
     '{"GET": ["from", "to", "tz"]}',
     'shortlink.api_profile_stats_route', 150);
