-- 002_notify.sql: every change to a link is announced on the channel
-- "shortlink_links" with the code as payload.
--
-- Each nginx worker LISTENs on it: it drops the code from the shared-memory
-- cache and from Redis, and adds it to its bloom filter, so a link created,
-- changed or removed in psql is seen by every worker of every node within
-- the time PostgreSQL takes to deliver a notification.  Notifications are
-- sent at commit, never for a rolled-back change.

CREATE FUNCTION shortlink.links_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('shortlink_links', OLD.code);
    ELSE
        PERFORM pg_notify('shortlink_links', NEW.code);

        IF TG_OP = 'UPDATE' AND NEW.code <> OLD.code THEN
            PERFORM pg_notify('shortlink_links', OLD.code);
        END IF;
    END IF;

    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION shortlink.links_notify() IS
    'Announces a changed code on channel shortlink_links (nginx caches)';

CREATE TRIGGER links_notify
    AFTER INSERT OR UPDATE OR DELETE ON shortlink.links
    FOR EACH ROW EXECUTE FUNCTION shortlink.links_notify();
