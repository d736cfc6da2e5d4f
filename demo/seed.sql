-- demo/seed.sql: sample data for `./build.sh demo`, applied with
--
--   psql -X -v ON_ERROR_STOP=1 "<conninfo>" -f demo/seed.sql
--
-- Five links, each titled "Sample: ..." and tagged "sample", and about
-- 3,000 clicks spread over the last 14 days, so that every figure of
-- GET /links/{code}/stats (totals, series, each top list) has something
-- to show.  The clicks go through shortlink.record_clicks(), the function
-- nginx's click flusher calls, so browser, OS, device, bot flag, referrer
-- host and the hourly rollups are derived exactly as for real clicks.
-- Nothing here is real traffic: visitors, addresses (already /24
-- networks, as shortlink_click_ip anonymize keeps them) and countries are
-- made up, from fixed lists, with a fixed random seed.  One profile,
-- "demo", lists three of the links.
--
-- Clicks end before the current hour: the statistics count whole UTC
-- hours, and the default range ends at the start of the current one.

\set ON_ERROR_STOP 1

BEGIN;

INSERT INTO shortlink.links
       (code, url, title, tags, owner, redirect_status, expires_at,
        forward_query)
VALUES ('docs', 'https://nginx.org/en/docs/',
        'Sample: nginx documentation', '{sample,docs}', 'demo-admin',
        302, NULL, false),
       ('pg15', 'https://www.postgresql.org/docs/15/',
        'Sample: PostgreSQL 15 manual', '{sample,docs}', 'demo-admin',
        302, NULL, false),
       ('changes', 'https://nginx.org/en/CHANGES',
        'Sample: nginx changes', '{sample,news}', 'demo-admin',
        301, NULL, false),
       ('redis', 'https://redis.io/docs/',
        'Sample: Redis documentation', '{sample}', 'demo-admin',
        302, NULL, false),
       ('spring-sale', 'https://example.com/shop?campaign=spring',
        'Sample: a campaign that expires and forwards its query',
        '{sample,campaign}', 'demo-admin',
        307, now() + interval '30 days', true);

SELECT setseed(0.2026);

WITH link (code, clicks) AS (
    VALUES ('docs', 1200), ('pg15', 800), ('changes', 500), ('redis', 300),
           ('spring-sale', 200)
), pick AS (
    -- repeated entries make a value more frequent
    SELECT ARRAY[
        -- Chrome on Windows
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
        -- Safari on iPhone
        'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
        'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
        -- Chrome on Android phones
        'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36',
        'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36',
        -- Safari on macOS
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15',
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15',
        -- Firefox on Linux, Edge on Windows, Samsung Internet, an iPad
        'Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0',
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0',
        'Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36',
        'Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
        -- bots: a crawler and a link-preview fetcher
        'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
        'Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)'
    ] AS uas,
    ARRAY[
        NULL, NULL, NULL, NULL,                    -- direct visits
        'https://www.google.com/', 'https://www.google.com/',
        'https://www.google.com/',
        'https://t.co/x7Yq2', 'https://t.co/x7Yq2',
        'https://news.ycombinator.com/item?id=1',
        'https://www.linkedin.com/feed/',
        'https://www.reddit.com/r/nginx/',
        'https://duckduckgo.com/',
        'https://mail.example.com/newsletter/42'
    ] AS refs,
    ARRAY['US', 'US', 'US', 'US', 'DE', 'DE', 'DE', 'GB', 'GB', 'FR', 'FR',
          'IN', 'IN', 'BR', 'JP', 'CA', 'NL', 'ES', NULL] AS countries,
    -- UTC hours of the day, daytime more often
    ARRAY[0, 3, 6, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14,
          15, 15, 16, 16, 17, 17, 18, 18, 19, 19, 20, 20, 21, 22, 23] AS hours,
    date_bin('1 hour', now(), timestamptz '1970-01-01 00:00:00+00')
        AS this_hour
), click AS (
    -- twice as many candidates as needed: those after the start of the
    -- current hour are left out below
    SELECT l.code, l.clicks, p.*,
           -- visitor number: a few come back often, most once or twice
           floor(power(random(), 2) * (l.clicks / 3))::int AS v,
           -- a day of the last 14, recent ones more often, at an hour of
           -- the day, daytime more often
           date_bin('24 hours', p.this_hour, timestamptz '1970-01-01 00:00:00+00')
               - floor(power(random(), 1.2) * 14) * interval '24 hours'
               + p.hours[1 + floor(random() * cardinality(p.hours))::int]
                     * interval '1 hour'
               + random() * interval '1 hour' AS t,
           random() AS r,
           random() < 0.05 AS dnt
      FROM link l
     CROSS JOIN generate_series(1, 2 * l.clicks)
     CROSS JOIN pick p
), kept AS (
    SELECT *, row_number() OVER (PARTITION BY code) AS n
      FROM click
     WHERE t < this_hour
), sample AS (
    SELECT code, t,
           -- a visitor keeps their browser, country and network
           uas[1 + (v * 7 + length(code)) % cardinality(uas)] AS ua,
           refs[1 + floor(r * cardinality(refs))::int] AS ref,
           countries[1 + (v * 3 + length(code)) % cardinality(countries)]
               AS country,
           format('%s.%s.%s.0', 23 + v % 170, (v * 37) % 256, (v * 101) % 256)
               AS ip,
           -- 1 in 20 sends DNT: counted, but without a visitor id
           CASE WHEN NOT dnt THEN md5('demo visitor ' || code || v) END
               AS visitor
      FROM kept
     WHERE n <= clicks
)
SELECT shortlink.record_clicks(
           array_agg(gen_random_uuid()),
           array_agg((extract(epoch FROM t) * 1000)::bigint),
           array_agg(code),
           array_agg(ip),
           array_agg(ua),
           array_agg(ref),
           array_agg(visitor),
           array_agg(CASE WHEN country IS NULL THEN NULL
                          ELSE jsonb_build_object('country', country) END))
       AS sample_clicks
  FROM sample;

-- a link-in-bio profile of three of the links, for the console's Profiles
-- page (its public page needs a location with shortlink_profile)
WITH p AS (
    INSERT INTO shortlink.profiles (username, owner, display_name, bio, theme)
    VALUES ('demo', 'demo-admin', 'Sample profile',
            E'Reading list of the demo.\nEvery button is a short link.',
            'light')
    RETURNING id)
INSERT INTO shortlink.profile_entries (profile_id, position, link_code, title)
SELECT p.id, e.pos, e.code, e.title
  FROM p, (VALUES (0, 'docs', 'nginx documentation'),
                  (1, 'pg15', 'PostgreSQL 15 manual'),
                  (2, 'redis', 'Redis documentation')) AS e (pos, code, title);

COMMIT;
