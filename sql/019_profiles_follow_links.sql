-- 019_profiles_follow_links.sql: profile pages know what 017 and 018 added
-- to links.
--
-- 015 shows an entry only while its link is followable (enabled, not
-- deleted, not expired) and re-announces a profile when one of those
-- columns of a listed link changes.  017 (links.blocked_by: the target
-- policy refuses the link, which answers 410) and 018 (links.exhausted_at:
-- max_visits reached) add two more ways a link stops being followable; a
-- page that still listed such a link would send its visitors to a 410 or
-- to the link's fallback.  So profile_page() leaves those entries out and
-- links_profiles_changed() announces the profiles when either column
-- changes, as for the others.  Both functions are 015's otherwise.

CREATE OR REPLACE FUNCTION shortlink.profile_page(p_username text)
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
                        AND (l.expires_at IS NULL OR l.expires_at > now())
                        AND l.exhausted_at IS NULL
                        AND l.blocked_by IS NULL),
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
               AND l.exhausted_at IS NULL
               AND l.blocked_by IS NULL
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
    'their schedule whose link is followable now (enabled, not deleted, '
    'not expired, not exhausted, not blocked by the target policy) -- and '
    'next_change_epoch: the earliest future visible_from, visible_until or '
    'link expires_at among enabled entries of such links (NULL: none), the '
    'instant at which the page changes without any write';

CREATE OR REPLACE FUNCTION shortlink.links_profiles_changed() RETURNS trigger
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
     WHERE (n.url, n.enabled, n.deleted_at, n.expires_at, n.exhausted_at,
            n.blocked_by)
           IS DISTINCT FROM (o.url, o.enabled, o.deleted_at, o.expires_at,
                             o.exhausted_at, o.blocked_by);

    IF ids IS NOT NULL THEN
        UPDATE shortlink.profiles SET updated_at = now() WHERE id = ANY (ids);
    END IF;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.links_profiles_changed() IS
    'Bumps the version of every profile listing a link whose url, enabled, '
    'deleted_at, expires_at, exhausted_at or blocked_by a statement changed '
    '(once each); refuses an owner change of a link on its owner''s profile';
