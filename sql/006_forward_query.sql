-- 006_forward_query.sql: the lookup also says whether the visitor's query
-- string is forwarded to the target (links.forward_query, from 004).

DROP FUNCTION shortlink.resolve(text);

CREATE FUNCTION shortlink.resolve(p_code text)
RETURNS TABLE (url text, redirect_status smallint, expires_epoch bigint,
               version bigint, forward_query boolean)
LANGUAGE sql STABLE AS $$
    SELECT l.url, l.redirect_status,
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
    'forward_query: append the visitor''s query string to the target';
