-- 005_versions.sql: versioned notifications and lookups.
--
-- Every cache entry in nginx remembers the version of the row it came
-- from; a notification now says "<code>:<version>" and drops only entries
-- older than that version.  So a link the API has just put into the caches
-- (version N) is not dropped again by the notification of its own insert
-- (version N), and a late answer can never replace a newer one.  A delete
-- announces version + 1: every cached copy is older.

CREATE OR REPLACE FUNCTION shortlink.links_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('shortlink_links',
                          OLD.code || ':' || (OLD.version + 1));
    ELSE
        PERFORM pg_notify('shortlink_links', NEW.code || ':' || NEW.version);

        IF TG_OP = 'UPDATE' AND NEW.code <> OLD.code THEN
            PERFORM pg_notify('shortlink_links',
                              OLD.code || ':' || (OLD.version + 1));
        END IF;
    END IF;

    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.links_notify() IS
    'Announces "<code>:<version>" on channel shortlink_links at commit: '
    'nginx drops cached copies older than that version';

DROP FUNCTION shortlink.resolve(text);

CREATE FUNCTION shortlink.resolve(p_code text)
RETURNS TABLE (url text, redirect_status smallint, expires_epoch bigint,
               version bigint)
LANGUAGE sql STABLE AS $$
    SELECT l.url, l.redirect_status,
           extract(epoch FROM l.expires_at)::bigint, l.version
      FROM shortlink.links l
     WHERE l.code = p_code
       AND l.enabled
       AND l.deleted_at IS NULL
       AND (l.expires_at IS NULL OR l.expires_at > now())
$$;

COMMENT ON FUNCTION shortlink.resolve(text) IS
    'Target of a followable link (enabled, not deleted, not expired), '
    'or no row; expires_epoch is NULL for links that never expire; '
    'version is the row''s version, kept with every cached copy';
