-- 001_links.sql: schema v1 -- the links table and the lookup the module runs.
--
-- The database is the last guard: whoever writes a row (the module, the API,
-- a human in psql), it cannot store a code the module would refuse, a URL
-- that could split a Location header, or a redirect status nginx would not
-- send.

CREATE SCHEMA IF NOT EXISTS shortlink;

COMMENT ON SCHEMA shortlink IS
    'ngx_http_shortlink_module: links, clicks and the functions the module calls';

CREATE TABLE shortlink.links (
    code             text        PRIMARY KEY,
    url              text        NOT NULL,
    redirect_status  smallint    NOT NULL DEFAULT 302,
    expires_at       timestamptz,
    enabled          boolean     NOT NULL DEFAULT true,
    deleted_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    version          bigint      NOT NULL DEFAULT 1,

    CONSTRAINT links_code_format
        CHECK (code ~ '^[0-9A-Za-z_-]{1,64}$'),
    CONSTRAINT links_url_scheme
        CHECK (url ~* '^https?://[^/?#]'),
    CONSTRAINT links_url_length
        CHECK (octet_length(url) <= 8192),
    CONSTRAINT links_url_printable
        CHECK (url ~ '^[!-~]+$'),
    CONSTRAINT links_redirect_status
        CHECK (redirect_status IN (301, 302, 307, 308)),
    CONSTRAINT links_version_positive
        CHECK (version > 0)
);

COMMENT ON TABLE shortlink.links IS
    'One row per short link; rows are soft-deleted (deleted_at), never reused';
COMMENT ON COLUMN shortlink.links.code IS
    'The path segment visitors use: 1-64 of [0-9A-Za-z_-], case-sensitive';
COMMENT ON COLUMN shortlink.links.url IS
    'Redirect target: http or https, printable ASCII only (no whitespace, '
    'no control characters, so it can never split a header), at most 8 KiB; '
    'non-ASCII must be percent-encoded';
COMMENT ON COLUMN shortlink.links.redirect_status IS
    'Status sent with the redirect: 301, 302 (default), 307 or 308';
COMMENT ON COLUMN shortlink.links.expires_at IS
    'After this instant the link answers 404; NULL means never';
COMMENT ON COLUMN shortlink.links.enabled IS
    'false: the link answers 404 but keeps its code and history';
COMMENT ON COLUMN shortlink.links.deleted_at IS
    'Soft delete: set means the link answers 404; the code stays taken';
COMMENT ON COLUMN shortlink.links.version IS
    'Incremented on every update; caches keep the highest version they saw';


CREATE FUNCTION shortlink.links_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION shortlink.links_touch() IS
    'Keeps updated_at and version true whoever updates a link';

CREATE TRIGGER links_touch
    BEFORE UPDATE ON shortlink.links
    FOR EACH ROW EXECUTE FUNCTION shortlink.links_touch();


-- The one query the redirect path runs (prepared once per connection).
-- A row comes back only for a link that may be followed now.

CREATE FUNCTION shortlink.resolve(p_code text)
RETURNS TABLE (url text, redirect_status smallint, expires_epoch bigint)
LANGUAGE sql STABLE AS $$
    SELECT l.url, l.redirect_status,
           extract(epoch FROM l.expires_at)::bigint
      FROM shortlink.links l
     WHERE l.code = p_code
       AND l.enabled
       AND l.deleted_at IS NULL
       AND (l.expires_at IS NULL OR l.expires_at > now())
$$;

COMMENT ON FUNCTION shortlink.resolve(text) IS
    'Target of a followable link (enabled, not deleted, not expired), '
    'or no row; expires_epoch is NULL for links that never expire';
