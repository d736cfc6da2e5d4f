-- 020_policy_all_targets.sql: the target policy of 017 judges every target
-- a link can send a visitor to, not only its url.
--
-- 018 gave links two more targets: fallback_url (where an expired, over-
-- limit or disabled link sends visitors) and the url of each redirect rule.
-- 017's triggers judge links.url only, so a host the policy refuses could
-- be reached through either.  Now an insert, or an update of fallback_url,
-- rules or owner, is refused (SQLSTATE SL422, which api() answers with 422
-- naming the rule) when the policy refuses any of them, whoever writes.
-- A rule added later that covers a fallback or rule target of an existing
-- link does not block that link (policy_refresh judges url only, as 017
-- documents); policy_report lists only blocked urls.

CREATE FUNCTION shortlink.links_policy_targets() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    target  text;
    v       jsonb;
BEGIN
    FOR target IN
        SELECT NEW.fallback_url WHERE NEW.fallback_url IS NOT NULL
        UNION ALL
        SELECT r ->> 'url'
          FROM jsonb_array_elements(CASE jsonb_typeof(NEW.rules)
                                         WHEN 'array' THEN NEW.rules
                                         ELSE '[]'::jsonb END) r
         WHERE jsonb_typeof(r) = 'object' AND r ? 'url'
    LOOP
        v := shortlink.policy_verdict(NEW.owner, target);
        IF v IS NOT NULL THEN
            RAISE EXCEPTION '%', shortlink.policy_describe(v)
                USING ERRCODE = 'SL422', DETAIL = v::text;
        END IF;
    END LOOP;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION shortlink.links_policy_targets() IS
    'Refuses (SQLSTATE SL422, the verdict as DETAIL) a link whose '
    'fallback_url or a redirect rule''s url the target policy refuses';

CREATE TRIGGER links_policy_targets_insert BEFORE INSERT ON shortlink.links
    FOR EACH ROW
    WHEN (NEW.fallback_url IS NOT NULL OR NEW.rules <> '[]'::jsonb)
    EXECUTE FUNCTION shortlink.links_policy_targets();

CREATE TRIGGER links_policy_targets_update
    BEFORE UPDATE OF fallback_url, rules, owner ON shortlink.links
    FOR EACH ROW
    WHEN (NEW.fallback_url IS DISTINCT FROM OLD.fallback_url
          OR NEW.rules IS DISTINCT FROM OLD.rules
          OR NEW.owner IS DISTINCT FROM OLD.owner)
    EXECUTE FUNCTION shortlink.links_policy_targets();
