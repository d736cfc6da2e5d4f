-- 003_clicks.sql: clicks (partitioned by day), hourly rollups, the batch
-- insert the click flusher calls and the statistics the API reads.
--
-- Data flow: every redirect pushes a click into nginx's shared-memory queue;
-- a timer sends batches with ONE call
--
--   SELECT shortlink.record_clicks($1::uuid[], $2::bigint[], $3::text[],
--          $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
--
-- A batch may be sent again after a crash or a lost reply: the key
-- (event_id, clicked_at) makes the insert idempotent, and the rollups are
-- fed only from the rows that insert really added, so a re-sent batch
-- changes nothing at all.
--
-- Time: everything is UTC.  Partitions are UTC days, rollup rows are UTC
-- hours, day buckets in link_stats are UTC days, whatever the session's
-- TimeZone (date_bin and fixed '24 hours' steps are used, never date_trunc
-- or '1 day', which follow the session's time zone and its DST).
--
-- What is counted: every redirect is a page view (pv), bots included; bots
-- are flagged (is_bot, device 'bot') and counted apart (bots), so human
-- page views are pv - bots.  UV and unique IPs count bots too (a bot
-- without a visitor id is simply not in UV).


-- --- user-agent and referer classification ------------------------------
--
-- Simple, documented marker lists, no database of user agents.  They are
-- IMMUTABLE functions, and record_clicks is the one place that applies
-- them: once per DISTINCT user agent (and referer) of a batch, not once per
-- row (a batch of 5000 clicks has a few hundred distinct user agents), and
-- stores the results in the derived columns of shortlink.clicks.  Markers
-- are matched with LIKE, not regular expressions: PostgreSQL's regex
-- engine costs 5-15 us per call for alternations like these, LIKE well
-- under 1 us.  Changing a function changes new rows only; to reclassify old
-- rows: UPDATE shortlink.clicks SET browser = shortlink.ua_browser(user_agent),
-- ...  A missing or empty user agent is: not a bot, browser/os/device other.

CREATE FUNCTION shortlink.ua_is_bot(ua text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(lower(ua) LIKE ANY (ARRAY[
               '%bot%', '%crawl%', '%spider%', '%slurp%', '%curl%', '%wget%',
               '%python-requests%', '%python-urllib%', '%httpclient%',
               '%http-client%', '%okhttp%', '%headless%',
               '%facebookexternalhit%', '%preview%', '%scrapy%', '%libwww%',
               '%java/%', '%whatsapp%', '%lighthouse%', '%phantomjs%']),
           false)
$$;

COMMENT ON FUNCTION shortlink.ua_is_bot(text) IS
    'true when the user agent contains, in any case, one of: bot, crawl, '
    'spider, slurp, curl, wget, python-requests, python-urllib, httpclient, '
    'http-client (Go), okhttp, headless, facebookexternalhit, preview '
    '(BingPreview, link previews), scrapy, libwww, java/, whatsapp (link '
    'previews), lighthouse, phantomjs: crawlers, link-preview fetchers and '
    'HTTP libraries.  A phone model containing "bot" (Cubot) is a known '
    'false positive.  NULL: false';

CREATE FUNCTION shortlink.ua_browser(ua text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN ua IS NULL THEN 'other'
        WHEN ua LIKE ANY (ARRAY['%Edg/%', '%Edge/%', '%EdgA/%', '%EdgiOS/%'])
            THEN 'Edge'
        WHEN ua LIKE ANY (ARRAY['%OPR/%', '%Opera%', '%OPiOS/%', '%OPT/%'])
            THEN 'Opera'
        WHEN ua LIKE '%SamsungBrowser/%'
            THEN 'Samsung Internet'
        WHEN ua LIKE ANY (ARRAY['%Chrome/%', '%CriOS/%', '%Chromium/%'])
            THEN 'Chrome'
        WHEN ua LIKE ANY (ARRAY['%Firefox/%', '%FxiOS/%'])
            THEN 'Firefox'
        WHEN ua LIKE ANY (ARRAY['%MSIE %', '%Trident/%'])
            THEN 'IE'
        WHEN ua LIKE '%Safari/%'
            THEN 'Safari'
        ELSE 'other'
    END
$$;

COMMENT ON FUNCTION shortlink.ua_browser(text) IS
    'Browser family from case-sensitive tokens, first match wins (order '
    'matters: Edge, Opera and Samsung Internet also send Chrome/, Chrome '
    'also sends Safari/): Edge (Edg/ Edge/ EdgA/ EdgiOS/), Opera (OPR/ Opera '
    'OPiOS/ OPT/), Samsung Internet (SamsungBrowser/), Chrome (Chrome/ CriOS/ '
    'Chromium/), Firefox (Firefox/ FxiOS/), IE (MSIE, Trident/), Safari '
    '(Safari/), else other.  Chromium browsers that do not name themselves '
    '(Brave, Vivaldi, webviews) count as Chrome';

CREATE FUNCTION shortlink.ua_os(ua text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN ua IS NULL THEN 'other'
        WHEN ua LIKE '%Windows%'
            THEN 'Windows'
        WHEN ua LIKE ANY (ARRAY['%iPhone%', '%iPad%', '%iPod%'])
            THEN 'iOS'
        WHEN ua LIKE ANY (ARRAY['%Macintosh%', '%Mac OS X%'])
            THEN 'macOS'
        WHEN ua LIKE '%Android%'
            THEN 'Android'
        WHEN ua LIKE '%CrOS%'
            THEN 'ChromeOS'
        WHEN ua LIKE '%Linux%'
            THEN 'Linux'
        ELSE 'other'
    END
$$;

COMMENT ON FUNCTION shortlink.ua_os(text) IS
    'Operating system from case-sensitive tokens, first match wins (iOS '
    'sends "like Mac OS X", Android and ChromeOS send Linux): Windows '
    '(Windows), iOS (iPhone iPad iPod), macOS (Macintosh, Mac OS X), Android, '
    'ChromeOS (CrOS), Linux, else other.  iPadOS Safari in desktop mode '
    'sends a Macintosh user agent and counts as macOS';

CREATE FUNCTION shortlink.ua_device(ua text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN ua IS NULL THEN 'other'
        WHEN shortlink.ua_is_bot(ua)
            THEN 'bot'
        WHEN ua LIKE ANY (ARRAY['%iPad%', '%Tablet%', '%Kindle%', '%Silk/%',
                                '%PlayBook%'])
          OR (ua LIKE '%Android%' AND ua NOT LIKE '%Mobi%')
            THEN 'tablet'
        WHEN ua LIKE ANY (ARRAY['%Mobi%', '%iPhone%', '%iPod%', '%Android%',
                                '%BlackBerry%', '%Opera Mini%'])
            THEN 'mobile'
        WHEN ua LIKE ANY (ARRAY['%Windows%', '%Macintosh%', '%X11%', '%CrOS%',
                                '%Linux%'])
            THEN 'desktop'
        ELSE 'other'
    END
$$;

COMMENT ON FUNCTION shortlink.ua_device(text) IS
    'Device class, first match wins: bot (ua_is_bot), tablet (iPad, Tablet, '
    'Kindle, Silk/, PlayBook, or Android without Mobi: Android tablets omit '
    '"Mobile"), mobile (Mobi, iPhone, iPod, Android, BlackBerry, Opera Mini), '
    'desktop (Windows, Macintosh, X11, CrOS, Linux), else other';

CREATE FUNCTION shortlink.url_host(url text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    scheme_end  integer := strpos(url, '://');
    host        text;
BEGIN
    IF scheme_end < 2
       OR left(url, scheme_end - 1) !~ '^[A-Za-z][A-Za-z0-9+.-]*$' THEN
        RETURN NULL;
    END IF;
    -- authority: up to the first / ? or #
    host := split_part(split_part(split_part(substr(url, scheme_end + 3),
                                             '/', 1), '?', 1), '#', 1);
    host := substr(host, strpos(host, '@') + 1);           -- user info
    IF left(host, 1) = '[' THEN                            -- [IPv6]:port
        host := split_part(host, ']', 1) || ']';
    ELSE
        host := split_part(host, ':', 1);                  -- port
    END IF;
    RETURN nullif(rtrim(lower(host), '.'), '');
END;
$$;

COMMENT ON FUNCTION shortlink.url_host(text) IS
    'Lower-cased host of an absolute URL (scheme://[user@]host[:port]...), '
    'without port, user info or trailing dot; IPv6 hosts keep their '
    'brackets.  NULL when the text is not such a URL';


-- --- clicks -------------------------------------------------------------

CREATE TABLE shortlink.clicks (
    event_id      uuid        NOT NULL,
    clicked_at    timestamptz NOT NULL,
    code          text        COLLATE "C" NOT NULL,
    ip            inet,
    user_agent    text,
    referer       text,
    visitor_id    text,
    extra         jsonb,

    referer_host  text,
    browser       text        NOT NULL,
    os            text        NOT NULL,
    device        text        NOT NULL,
    is_bot        boolean     NOT NULL,

    CONSTRAINT clicks_pkey
        PRIMARY KEY (event_id, clicked_at),
    CONSTRAINT clicks_code_format
        CHECK (code ~ '^[0-9A-Za-z_-]+$' AND length(code) <= 64)
) PARTITION BY RANGE (clicked_at);

-- Write cost, measured (PostgreSQL 15, batches of 5000): every index and
-- check is paid once per click.  Kept: the primary key (idempotency) and
-- the code format check (the code is the one key field nginx passes
-- through unchanged).  Not declared: checks on what record_clicks itself
-- derives or truncates (lengths, extra being an object, browser/os/device
-- values, is_bot = (device = 'bot'), lower-case referer_host): they held
-- by construction and cost about 1 us per click.  code is COLLATE "C"
-- here and in the rollups: codes are ASCII, so the order is the same, and
-- index comparisons are memcmp instead of the database locale's strcoll.

-- the only secondary index: link_stats' top lists read one link's clicks
-- in a time range.  Kept although it costs about 3 us per click: without
-- it every statistics request would scan whole day partitions.  (A hash
-- index on code is cheaper to insert into but degrades with many clicks
-- per code: all of a code's entries share one bucket chain.)
CREATE INDEX clicks_code_time ON shortlink.clicks (code, clicked_at);

COMMENT ON TABLE shortlink.clicks IS
    'One row per redirect.  Partitioned by UTC day (clicks_pYYYYMMDD, made '
    'by ensure_click_partitions, dropped by drop_click_partitions).  There '
    'is deliberately no DEFAULT partition: record_clicks creates the '
    'partitions its batch needs before inserting, so it never needs one; '
    'rows parked in a default partition would make creating their day''s '
    'partition fail later (and every ATTACH would scan the default under an '
    'exclusive lock), and retention by dropping days would never reach them.  '
    'A direct INSERT into a missing day fails loudly instead.  '
    'No foreign key to links: redirects only happen for existing links, '
    'links are never hard-deleted, and the check would cost an index probe '
    'per click.  Write through record_clicks: it derives referer_host, '
    'browser, os, device and is_bot and feeds the rollups';
COMMENT ON COLUMN shortlink.clicks.event_id IS
    'Chosen by nginx when the click is queued; with clicked_at the '
    'idempotency key of a re-sent batch.  Time-ordered ids (UUIDv7) keep '
    'the primary key index append-mostly';
COMMENT ON COLUMN shortlink.clicks.clicked_at IS
    'When the redirect was served (millisecond precision); partition key';
COMMENT ON COLUMN shortlink.clicks.code IS
    'The link''s code (same format as links.code)';
COMMENT ON COLUMN shortlink.clicks.ip IS
    'Client address as nginx saw it, already anonymised when configured';
COMMENT ON COLUMN shortlink.clicks.user_agent IS
    'User-Agent header; record_clicks keeps the first 1024 characters (no '
    'check: at most 4096 bytes by construction)';
COMMENT ON COLUMN shortlink.clicks.referer IS
    'Referer header; record_clicks keeps the first 2048 characters (no '
    'check: at most 8192 bytes by construction); '
    'NULL for direct visits';
COMMENT ON COLUMN shortlink.clicks.visitor_id IS
    'Visitor cookie; record_clicks keeps the first 128 characters (no '
    'check: at most 512 bytes by construction); NULL when the visitor is not '
    'tracked (DNT): such clicks count in pv, not in uv';
COMMENT ON COLUMN shortlink.clicks.extra IS
    'Admin-named fields as a JSON object, e.g. {"country": "DE"}; '
    'extra->>''country'' feeds the countries top list';
COMMENT ON COLUMN shortlink.clicks.referer_host IS
    'Derived by record_clicks: url_host(referer); NULL for direct visits';
COMMENT ON COLUMN shortlink.clicks.browser IS
    'Derived by record_clicks: ua_browser(user_agent)';
COMMENT ON COLUMN shortlink.clicks.os IS
    'Derived by record_clicks: ua_os(user_agent)';
COMMENT ON COLUMN shortlink.clicks.device IS
    'Derived by record_clicks: ua_device(user_agent): desktop, mobile, '
    'tablet, bot or other';
COMMENT ON COLUMN shortlink.clicks.is_bot IS
    'Derived by record_clicks: ua_is_bot(user_agent); a bot''s device is '
    'always bot';


-- --- rollups ------------------------------------------------------------
--
-- Per link and UTC hour.  Page views are additive, so one counter row per
-- hour suffices and any range is a sum.  Distinct counts are not additive
-- (a visitor seen on Monday and Tuesday is one visitor for the two days, not
-- two), so UV and unique IPs keep the set of (visitor, ip) pairs seen per
-- link and hour, and a range is count(DISTINCT visitor_hash) and
-- count(DISTINCT ip_hash) over its hours.
--
-- The set holds 64-bit hashes, not the values: visitor_hash =
-- hashtextextended(visitor_id, 0), ip_hash = hashinetextended(ip, 0), 0 for
-- "none" (a NULL would keep the key from being a plain primary key, which
-- the insert's anti-join probes).  A row is 32 bytes plus the code instead
-- of ~100, and index comparisons are integer comparisons: this halves the
-- set's insert cost.  Exactness: two different visitors (or addresses)
-- count as one only if their hashes collide; among n distinct values of a
-- range the chance of any collision is about n^2 / 2^65 (1e-8 for a
-- million visitors, 3e-4 for a hundred million), and a collision
-- undercounts by one; a value hashing to 0 (chance 2^-64) is not counted.
-- The hash functions are the ones hash partitioning uses, stable across
-- PostgreSQL versions; like hash partitioning they are not portable to a
-- server of other byte order (moving the database there would count a
-- visitor seen before and after the move twice).
--
-- One set of pairs instead of a set of visitors and a set of IPs: a
-- visitor keeps one address within an hour as a rule, so it has about as
-- many rows as either set alone, and costs one insert per click instead of
-- two (the inserts are most of record_clicks' time).  HyperLogLog would be
-- smaller, but no HLL extension is packaged here and HLL is an estimate
-- (about 1-2 % off).  The cost: up to one row per click (fewer when
-- visitors repeat within the hour), about 70 bytes each with the index, and
-- a long range reads one row per (hour, visitor).  Hashes of visitor ids
-- and IPs are still pseudonymous personal data: drop_click_sets applies a
-- retention date to them.  The rollups have no code format check: they
-- are written only from rows of clicks, which has it.

CREATE TABLE shortlink.link_hourly_clicks (
    code   text        COLLATE "C" NOT NULL,
    hour   timestamptz NOT NULL,
    pv     bigint      NOT NULL,
    bots   bigint      NOT NULL DEFAULT 0,

    PRIMARY KEY (code, hour),
    CONSTRAINT link_hourly_clicks_whole_hour
        CHECK (hour = date_bin('1 hour', hour, timestamptz '1970-01-01 00:00:00+00')),
    CONSTRAINT link_hourly_clicks_counts
        CHECK (pv > 0 AND bots BETWEEN 0 AND pv)
);

COMMENT ON TABLE shortlink.link_hourly_clicks IS
    'Page views per link and UTC hour (additive: a range is a sum); '
    'fed by record_clicks from the rows it really inserted';
COMMENT ON COLUMN shortlink.link_hourly_clicks.hour IS
    'Start of the UTC hour';
COMMENT ON COLUMN shortlink.link_hourly_clicks.pv IS
    'Clicks in the hour, bots included';
COMMENT ON COLUMN shortlink.link_hourly_clicks.bots IS
    'Clicks in the hour whose user agent is a bot (part of pv)';

CREATE TABLE shortlink.link_hourly_uniques (
    code          text        COLLATE "C" NOT NULL,
    hour          timestamptz NOT NULL,
    visitor_hash  bigint      NOT NULL,
    ip_hash       bigint      NOT NULL,

    CONSTRAINT link_hourly_uniques_key
        PRIMARY KEY (code, hour, visitor_hash, ip_hash),
    CONSTRAINT link_hourly_uniques_whole_hour
        CHECK (hour = date_bin('1 hour', hour, timestamptz '1970-01-01 00:00:00+00')),
    CONSTRAINT link_hourly_uniques_something
        CHECK (visitor_hash <> 0 OR ip_hash <> 0)
);

COMMENT ON TABLE shortlink.link_hourly_uniques IS
    'Set of (visitor id, client address) pairs seen per link and UTC hour, '
    'as 64-bit hashes (0 = none), fed by record_clicks from the rows it '
    'really inserted.  UV of any range is count(DISTINCT nullif(visitor_hash, '
    '0)) over its hours, unique IPs count(DISTINCT nullif(ip_hash, 0)): never '
    'a sum of hourly figures.  Exact unless two values collide in 64 bits '
    '(about n^2 / 2^65 for n distinct values)';
COMMENT ON COLUMN shortlink.link_hourly_uniques.visitor_hash IS
    'hashtextextended(visitor_id, 0); 0 for clicks without a visitor id '
    '(DNT): they count in unique IPs only';
COMMENT ON COLUMN shortlink.link_hourly_uniques.ip_hash IS
    'hashinetextended(ip, 0); 0 for clicks without an address: they count '
    'in UV only';


-- --- partitions ---------------------------------------------------------

CREATE FUNCTION shortlink.ensure_click_partitions(p_first date, p_last date)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d        date;
    part     text;
    created  integer := 0;
BEGIN
    IF p_first IS NULL OR p_last IS NULL THEN
        RAISE EXCEPTION 'ensure_click_partitions: dates must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_last - p_first > 400 THEN
        RAISE EXCEPTION 'ensure_click_partitions: % to % is more than 400 days',
                        p_first, p_last
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- one creator at a time, on every node; the others wait here, then
    -- find the partitions made and create nothing
    PERFORM pg_advisory_xact_lock(hashtextextended('shortlink.clicks partitions', 0));

    FOR d IN SELECT g::date FROM generate_series(p_first, p_last, interval '1 day') g
    LOOP
        part := 'clicks_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('shortlink.%I', part)) IS NOT NULL;

        -- CREATE + ATTACH instead of CREATE ... PARTITION OF: ATTACH locks
        -- the parent in SHARE UPDATE EXCLUSIVE mode, which lets concurrent
        -- inserts and reads go on; PARTITION OF would take ACCESS EXCLUSIVE
        -- until commit.  LIKE copies the columns, NOT NULLs, checks and
        -- indexes, which ATTACH then adopts; validating the bound scans an
        -- empty table.
        EXECUTE format('CREATE TABLE shortlink.%I (LIKE shortlink.clicks INCLUDING ALL)',
                       part);
        EXECUTE format(
            'ALTER TABLE shortlink.clicks ATTACH PARTITION shortlink.%I '
            'FOR VALUES FROM (%L) TO (%L)',
            part,
            to_char(d, 'YYYY-MM-DD 00:00:00+00'),
            to_char(d + 1, 'YYYY-MM-DD 00:00:00+00'));
        created := created + 1;
    END LOOP;

    RETURN created;
END;
$$;

COMMENT ON FUNCTION shortlink.ensure_click_partitions(date, date) IS
    'Creates the missing daily partitions shortlink.clicks_pYYYYMMDD for '
    'the UTC days p_first..p_last (inclusive, at most 401 days) and returns '
    'how many it created.  Safe when several sessions run it at once '
    '(transaction-scoped advisory lock, existence re-checked under it)';

CREATE FUNCTION shortlink.drop_click_partitions(p_before date)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part     text;
    dropped  integer := 0;
BEGIN
    IF p_before IS NULL THEN
        RAISE EXCEPTION 'drop_click_partitions: date must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_before > (now() AT TIME ZONE 'UTC')::date THEN
        RAISE EXCEPTION 'drop_click_partitions: % is after today (UTC): '
                        'today''s clicks are still arriving', p_before
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended('shortlink.clicks partitions', 0));

    FOR part IN
        SELECT c.relname
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'shortlink.clicks'::regclass
           AND c.relname ~ '^clicks_p[0-9]{8}$'
           AND to_date(substr(c.relname, 9), 'YYYYMMDD') < p_before
         ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE shortlink.%I', part);
        dropped := dropped + 1;
    END LOOP;

    RETURN dropped;
END;
$$;

COMMENT ON FUNCTION shortlink.drop_click_partitions(date) IS
    'Retention: drops the daily click partitions of UTC days before p_before '
    '(at most today) and returns how many.  The hourly rollups are kept, so '
    'pv/uv/unique IPs of those days stay available; top lists (read from '
    'clicks) become empty for them.  Takes a short ACCESS EXCLUSIVE lock on '
    'shortlink.clicks: run it from a maintenance job';

CREATE FUNCTION shortlink.drop_click_sets(p_before timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n  bigint;
BEGIN
    IF p_before IS NULL THEN
        RAISE EXCEPTION 'drop_click_sets: time must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM shortlink.link_hourly_uniques WHERE hour < p_before;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

COMMENT ON FUNCTION shortlink.drop_click_sets(timestamptz) IS
    'Retention for the personal data in the rollups: deletes the (visitor, '
    'IP) hash set rows of hours before p_before (pv counters are kept; uv and unique '
    'IPs of those hours become 0).  Returns the rows deleted';


-- --- the batch insert ---------------------------------------------------

CREATE FUNCTION shortlink.record_clicks(
    p_event_ids    uuid[],
    p_clicked_ms   bigint[],
    p_codes        text[],
    p_ips          text[],
    p_user_agents  text[],
    p_referers     text[],
    p_visitors     text[],
    p_extra        jsonb[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n         integer := cardinality(p_event_ids);
    min_ms    bigint;
    max_ms    bigint;
    days      integer[];
    missing   date[];
    d         date;
    tomorrow  date := (now() AT TIME ZONE 'UTC')::date + 1;
    inserted  integer;
BEGIN
    IF p_event_ids IS NULL OR p_clicked_ms IS NULL OR p_codes IS NULL THEN
        RAISE EXCEPTION 'record_clicks: p_event_ids, p_clicked_ms and p_codes '
                        'must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF cardinality(p_clicked_ms) <> n OR cardinality(p_codes) <> n
       OR cardinality(p_ips) <> n OR cardinality(p_user_agents) <> n
       OR cardinality(p_referers) <> n OR cardinality(p_visitors) <> n
       OR cardinality(p_extra) <> n
    THEN
        RAISE EXCEPTION 'record_clicks: arrays differ in length'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('event_ids %s, clicked_ms %s, codes %s, ips %s, '
                                  'user_agents %s, referers %s, visitors %s, extra %s',
                                  n, cardinality(p_clicked_ms), cardinality(p_codes),
                                  cardinality(p_ips), cardinality(p_user_agents),
                                  cardinality(p_referers), cardinality(p_visitors),
                                  cardinality(p_extra));
    END IF;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    IF array_position(p_event_ids, NULL) IS NOT NULL
       OR array_position(p_clicked_ms, NULL) IS NOT NULL
       OR array_position(p_codes, NULL) IS NOT NULL
    THEN
        RAISE EXCEPTION 'record_clicks: NULL in p_event_ids, p_clicked_ms or p_codes'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    SELECT min(ms), max(ms), array_agg(DISTINCT ms / 86400000)
      INTO min_ms, max_ms, days
      FROM unnest(p_clicked_ms) ms;

    -- milliseconds since 1970, between 2000 and two days from now: catches
    -- seconds or microseconds sent by mistake before they create partitions
    -- for 1970 or the year 50000
    IF min_ms < 946684800000
       OR max_ms > (extract(epoch FROM now()) * 1000)::bigint + 2 * 86400000
    THEN
        RAISE EXCEPTION 'record_clicks: clicked_ms out of range (% .. %)', min_ms, max_ms
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'clicked_ms is Unix time in milliseconds, at most two '
                         'days ahead of the database clock';
    END IF;

    -- fast path: the batch's days and tomorrow exist (catalog look-ups
    -- only).  Otherwise create what is missing, and when tomorrow is
    -- missing, the next eight days: creation happens about once a week,
    -- always before a day starts.
    SELECT array_agg(x.day ORDER BY x.day) INTO missing
      FROM (SELECT date '1970-01-01' + dn AS day FROM unnest(days) dn
            UNION
            SELECT tomorrow) x
     WHERE to_regclass('shortlink.clicks_p' || to_char(x.day, 'YYYYMMDD')) IS NULL;

    IF missing IS NOT NULL THEN
        FOREACH d IN ARRAY missing LOOP
            PERFORM shortlink.ensure_click_partitions(
                        d, CASE WHEN d = tomorrow THEN d + 7 ELSE d END);
        END LOOP;
    END IF;

    -- set-based: one INSERT for the batch.  The user agents and referers
    -- are classified once per distinct value (the key '' stands for NULL
    -- so that every row finds its class with a plain hash join).  The
    -- rollups are fed from RETURNING, so rows already recorded touch no
    -- counter.  Rollup rows are written in key order, so two flushers
    -- upserting the same hours lock them in the same order and cannot
    -- deadlock.
    --
    -- Two versions of the statement.  INSERT ... ON CONFLICT DO NOTHING
    -- costs about twice a plain INSERT per row (a probe of the arbiter
    -- index, then a speculative insertion with its lock and confirmation),
    -- and a batch is almost always entirely new.  So the fast path inserts
    -- the clicks plainly, and the new (visitor, ip) pairs after an
    -- anti-join probe of the set; a unique violation (a re-sent batch, the
    -- same event twice in a batch, or another flusher adding the same pair
    -- or event concurrently) rolls the fast path back (its subtransaction:
    -- nothing of it stays) and the batch runs again through the second
    -- version, ON CONFLICT DO NOTHING everywhere, which is what decides
    -- what is new.  A re-sent batch fails on its first click, after the
    -- classification only.  Both versions are planned once per session
    -- (plpgsql caches their plans).
    BEGIN
    WITH src AS (
        SELECT u.event_id,
               to_timestamp(u.ms / 1000) + (u.ms % 1000) * interval '1 millisecond'
                   AS clicked_at,
               u.code,
               nullif(u.ip, '')::inet AS ip,
               coalesce(left(u.ua, 1024), '') AS ua_key,
               coalesce(left(u.ref, 2048), '') AS ref_key,
               left(nullif(u.vis, ''), 128) AS visitor_id,
               CASE WHEN jsonb_typeof(u.ex) = 'object' AND u.ex <> '{}'
                    THEN u.ex END AS extra
          FROM unnest(p_event_ids, p_clicked_ms, p_codes, p_ips,
                      p_user_agents, p_referers, p_visitors, p_extra)
               AS u(event_id, ms, code, ip, ua, ref, vis, ex)
    ), uas AS MATERIALIZED (
        SELECT ua_key, ua,
               shortlink.ua_browser(ua) AS browser,
               shortlink.ua_os(ua)      AS os,
               shortlink.ua_device(ua)  AS device,
               shortlink.ua_is_bot(ua)  AS is_bot
          FROM (SELECT DISTINCT ua_key, nullif(ua_key, '') AS ua FROM src) d
    ), refs AS MATERIALIZED (
        SELECT ref_key, ref, shortlink.url_host(ref) AS host
          FROM (SELECT DISTINCT ref_key, nullif(ref_key, '') AS ref FROM src) d
    ), ins AS (
        INSERT INTO shortlink.clicks
               (event_id, clicked_at, code, ip, user_agent, referer,
                visitor_id, extra, referer_host, browser, os, device, is_bot)
        SELECT s.event_id, s.clicked_at, s.code, s.ip, a.ua, r.ref,
               s.visitor_id, s.extra, r.host, a.browser, a.os, a.device, a.is_bot
          FROM src s
          JOIN uas a USING (ua_key)
          JOIN refs r USING (ref_key)
        RETURNING code,
                  date_bin('1 hour', clicked_at,
                           timestamptz '1970-01-01 00:00:00+00') AS hour,
                  ip, visitor_id, is_bot
    ), pv AS (
        INSERT INTO shortlink.link_hourly_clicks AS h (code, hour, pv, bots)
        SELECT code, hour, count(*), count(*) FILTER (WHERE is_bot)
          FROM ins
         GROUP BY code, hour
         ORDER BY code, hour
        ON CONFLICT (code, hour)
           DO UPDATE SET pv = h.pv + EXCLUDED.pv, bots = h.bots + EXCLUDED.bots
    ), uniques AS (
        INSERT INTO shortlink.link_hourly_uniques (code, hour, visitor_hash, ip_hash)
        SELECT n.*
          FROM (SELECT DISTINCT code, hour,
                       coalesce(hashtextextended(visitor_id, 0), 0) AS vh,
                       coalesce(hashinetextended(ip, 0), 0) AS iph
                  FROM ins
                 WHERE visitor_id IS NOT NULL OR ip IS NOT NULL) n
         WHERE NOT EXISTS (SELECT FROM shortlink.link_hourly_uniques o
                            WHERE o.code = n.code AND o.hour = n.hour
                              AND o.visitor_hash = n.vh AND o.ip_hash = n.iph)
         ORDER BY 1, 2, 3, 4
    )
    SELECT count(*) INTO inserted FROM ins;
    EXCEPTION WHEN unique_violation THEN
    WITH src AS (
        SELECT u.event_id,
               to_timestamp(u.ms / 1000) + (u.ms % 1000) * interval '1 millisecond'
                   AS clicked_at,
               u.code,
               nullif(u.ip, '')::inet AS ip,
               coalesce(left(u.ua, 1024), '') AS ua_key,
               coalesce(left(u.ref, 2048), '') AS ref_key,
               left(nullif(u.vis, ''), 128) AS visitor_id,
               CASE WHEN jsonb_typeof(u.ex) = 'object' AND u.ex <> '{}'
                    THEN u.ex END AS extra
          FROM unnest(p_event_ids, p_clicked_ms, p_codes, p_ips,
                      p_user_agents, p_referers, p_visitors, p_extra)
               AS u(event_id, ms, code, ip, ua, ref, vis, ex)
    ), uas AS MATERIALIZED (
        SELECT ua_key, ua,
               shortlink.ua_browser(ua) AS browser,
               shortlink.ua_os(ua)      AS os,
               shortlink.ua_device(ua)  AS device,
               shortlink.ua_is_bot(ua)  AS is_bot
          FROM (SELECT DISTINCT ua_key, nullif(ua_key, '') AS ua FROM src) d
    ), refs AS MATERIALIZED (
        SELECT ref_key, ref, shortlink.url_host(ref) AS host
          FROM (SELECT DISTINCT ref_key, nullif(ref_key, '') AS ref FROM src) d
    ), ins AS (
        INSERT INTO shortlink.clicks
               (event_id, clicked_at, code, ip, user_agent, referer,
                visitor_id, extra, referer_host, browser, os, device, is_bot)
        SELECT s.event_id, s.clicked_at, s.code, s.ip, a.ua, r.ref,
               s.visitor_id, s.extra, r.host, a.browser, a.os, a.device, a.is_bot
          FROM src s
          JOIN uas a USING (ua_key)
          JOIN refs r USING (ref_key)
        ON CONFLICT (event_id, clicked_at) DO NOTHING
        RETURNING code,
                  date_bin('1 hour', clicked_at,
                           timestamptz '1970-01-01 00:00:00+00') AS hour,
                  ip, visitor_id, is_bot
    ), pv AS (
        INSERT INTO shortlink.link_hourly_clicks AS h (code, hour, pv, bots)
        SELECT code, hour, count(*), count(*) FILTER (WHERE is_bot)
          FROM ins
         GROUP BY code, hour
         ORDER BY code, hour
        ON CONFLICT (code, hour)
           DO UPDATE SET pv = h.pv + EXCLUDED.pv, bots = h.bots + EXCLUDED.bots
    ), uniques AS (
        INSERT INTO shortlink.link_hourly_uniques (code, hour, visitor_hash, ip_hash)
        SELECT DISTINCT code, hour, coalesce(hashtextextended(visitor_id, 0), 0),
               coalesce(hashinetextended(ip, 0), 0)
          FROM ins
         WHERE visitor_id IS NOT NULL OR ip IS NOT NULL
         ORDER BY 1, 2, 3, 4
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) INTO inserted FROM ins;
    END;

    RETURN inserted;
END;
$$;

COMMENT ON FUNCTION shortlink.record_clicks(uuid[], bigint[], text[], text[],
                                            text[], text[], text[], jsonb[]) IS
    'The click flusher''s one call per batch: element i of every array '
    'describes click i.  event_ids, clicked_ms (Unix milliseconds) and codes '
    'are required, without NULLs; ips, user_agents, referers, visitors and '
    'extra may contain NULLs, or be NULL as a whole (all NULL); otherwise all '
    'arrays have the same length (error 22023 if not).  Empty strings count '
    'as NULL; user agents, referers and visitor ids longer than 1024, 2048 '
    'and 128 characters are truncated; extra that is not a non-empty JSON '
    'object is stored as NULL.  Creates the partitions the batch needs, '
    'inserts the clicks not yet recorded (key (event_id, clicked_at): a plain '
    'INSERT first, ON CONFLICT DO NOTHING when that meets a duplicate), '
    'updates the hourly rollups for the inserted rows only, and returns how '
    'many rows it inserted (0 for a batch already recorded)';


-- --- statistics ---------------------------------------------------------

CREATE FUNCTION shortlink.link_stats(p_code text, p_from timestamptz,
                                     p_to timestamptz, p_interval text DEFAULT 'day')
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    epoch   CONSTANT timestamptz := timestamptz '1970-01-01 00:00:00+00';
    iso     CONSTANT text := 'YYYY-MM-DD"T"HH24:MI:SS"Z"';
    v_from  timestamptz;
    v_to    timestamptz;
    step    interval;
    totals  jsonb;
    series  jsonb;
    top     jsonb;
BEGIN
    IF p_code IS NULL OR p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION 'link_stats: code, from and to must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_interval IS NULL OR p_interval NOT IN ('hour', 'day') THEN
        RAISE EXCEPTION 'link_stats: interval must be ''hour'' or ''day'', not %',
                        coalesce(quote_literal(p_interval), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- the rollups have hour granularity: the range is [from, to) with
    -- both ends truncated to the start of their UTC hour
    v_from := date_bin('1 hour', p_from, epoch);
    v_to   := date_bin('1 hour', p_to, epoch);
    step   := CASE p_interval WHEN 'hour' THEN interval '1 hour'
                              ELSE interval '24 hours' END;

    IF v_to < v_from THEN
        RAISE EXCEPTION 'link_stats: "to" (%) is before "from" (%)', p_to, p_from
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_to - v_from > step * 10000 THEN
        RAISE EXCEPTION 'link_stats: more than 10000 % buckets requested', p_interval
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use a shorter range or interval ''day''';
    END IF;

    SELECT jsonb_build_object('pv', coalesce(h.pv, 0), 'uv', u.uv,
                              'unique_ips', u.ips, 'bots', coalesce(h.bots, 0))
      INTO totals
      FROM (SELECT sum(pv)::bigint AS pv, sum(bots)::bigint AS bots
              FROM shortlink.link_hourly_clicks
             WHERE code = p_code AND hour >= v_from AND hour < v_to) h,
           (SELECT count(DISTINCT nullif(visitor_hash, 0)) AS uv, count(DISTINCT nullif(ip_hash, 0)) AS ips
              FROM shortlink.link_hourly_uniques
             WHERE code = p_code AND hour >= v_from AND hour < v_to) u;

    -- every bucket that overlaps the range, zeros included; a day bucket
    -- starts at 00:00 UTC and, at the ends of the range, holds only the
    -- hours inside it
    WITH buckets AS (
        SELECT b AS t
          FROM generate_series(date_bin(step, v_from, epoch), v_to - interval '1 microsecond',
                               step) b
    ), pv AS (
        SELECT date_bin(step, hour, epoch) AS t, sum(pv)::bigint AS pv
          FROM shortlink.link_hourly_clicks
         WHERE code = p_code AND hour >= v_from AND hour < v_to
         GROUP BY 1
    ), uq AS (
        SELECT date_bin(step, hour, epoch) AS t,
               count(DISTINCT nullif(visitor_hash, 0)) AS uv, count(DISTINCT nullif(ip_hash, 0)) AS ips
          FROM shortlink.link_hourly_uniques
         WHERE code = p_code AND hour >= v_from AND hour < v_to
         GROUP BY 1
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
                        't',          to_char(b.t AT TIME ZONE 'UTC', iso),
                        'pv',         coalesce(pv.pv, 0),
                        'uv',         coalesce(uq.uv, 0),
                        'unique_ips', coalesce(uq.ips, 0))
                    ORDER BY b.t), '[]')
      INTO series
      FROM buckets b
      LEFT JOIN pv  ON pv.t  = b.t
      LEFT JOIN uq  ON uq.t  = b.t;

    -- top lists: one scan of the link's clicks in the range
    WITH g AS (
        SELECT CASE WHEN GROUPING(c.referer_host) = 0 THEN 'referrers'
                    WHEN GROUPING(c.browser) = 0      THEN 'browsers'
                    WHEN GROUPING(c.os) = 0           THEN 'os'
                    WHEN GROUPING(c.device) = 0       THEN 'devices'
                    ELSE 'countries' END AS list,
               coalesce(c.referer_host, c.browser, c.os, c.device, c.country) AS value,
               count(*) AS n
          FROM (SELECT referer_host, browser, os, device,
                       extra ->> 'country' AS country
                  FROM shortlink.clicks
                 WHERE code = p_code
                   AND clicked_at >= v_from AND clicked_at < v_to) c
         GROUP BY GROUPING SETS ((c.referer_host), (c.browser), (c.os),
                                 (c.device), (c.country))
    ), ranked AS (
        SELECT list, value, n,
               row_number() OVER (PARTITION BY list
                                  ORDER BY n DESC, value COLLATE "C") AS rank
          FROM g
         WHERE value IS NOT NULL
    )
    SELECT jsonb_build_object(
               'referrers', coalesce(jsonb_agg(e) FILTER (WHERE list = 'referrers'), '[]'),
               'browsers',  coalesce(jsonb_agg(e) FILTER (WHERE list = 'browsers'), '[]'),
               'os',        coalesce(jsonb_agg(e) FILTER (WHERE list = 'os'), '[]'),
               'devices',   coalesce(jsonb_agg(e) FILTER (WHERE list = 'devices'), '[]'),
               'countries', coalesce(jsonb_agg(e) FILTER (WHERE list = 'countries'), '[]'))
      INTO top
      FROM (SELECT list, jsonb_build_object('value', value, 'count', n) AS e
              FROM ranked
             WHERE rank <= 10
             ORDER BY list, rank) r;

    RETURN jsonb_build_object(
        'code',     p_code,
        'from',     to_char(v_from AT TIME ZONE 'UTC', iso),
        'to',       to_char(v_to AT TIME ZONE 'UTC', iso),
        'interval', p_interval,
        'totals',   totals,
        'series',   series,
        'top',      top);
END;
$$;

COMMENT ON FUNCTION shortlink.link_stats(text, timestamptz, timestamptz, text) IS
    'Statistics of one link over [p_from, p_to) as JSON: totals (pv, uv, '
    'unique_ips, bots), series (every ''hour'' or ''day'' bucket, zeros '
    'included, oldest first, t = bucket start in UTC) and top lists (10 '
    'referrer hosts without direct visits, browsers, os, devices, countries '
    'from extra->>''country''; by count, then value).  Both ends are '
    'truncated to the UTC hour (the rollups'' granularity) for everything, '
    'and "from"/"to" in the answer are the truncated ends; day buckets are '
    'UTC days.  totals and series come from the hourly rollups (uv and '
    'unique_ips are exact distinct counts over the range or bucket, not '
    'sums; exact up to 64-bit hash collisions, see link_hourly_uniques), '
    'top lists from the clicks still kept (see drop_click_partitions)';


-- partitions for the days around the migration; record_clicks keeps
-- creating them ahead from here on
DO $$
BEGIN
    PERFORM shortlink.ensure_click_partitions(
                (now() AT TIME ZONE 'UTC')::date - 1,
                (now() AT TIME ZONE 'UTC')::date + 7);
END;
$$;
