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
    IF NOT EXISTS (SELECT FROM shortlink.profiles p, shortlink.links l
                    WHERE p.id = NEW.profile_id AND l.code = NEW.link_code
                      AND l.owner = p.owner)
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
