-- Sample clicks for the console's statistics page: :n clicks of the link
-- :'code' spread over the last two weeks (more of them lately), from a mix
-- of browsers, systems, devices, referrers, countries and languages, a
-- fifth of them from a profile page (source "profile"), through
-- record_clicks() as the flusher writes them.  Deterministic: the same
-- totals every time.  psql -v code=... -v n=... -f sample.sql

WITH c AS (
    SELECT i, (extract(epoch FROM now()) * 1000)::bigint
              - (power(((i * 7919) % 1000) / 1000.0, 1.3) * 14 * 86400000)::bigint AS ms,
           power(((i * 31) % 997) / 997.0, 1.8) AS fb,
           power(((i * 53) % 991) / 991.0, 1.6) AS fr,
           power(((i * 71) % 983) / 983.0, 2.0) AS fc
    FROM generate_series(1, :n) AS i)
SELECT shortlink.record_clicks(
    array_agg(gen_random_uuid() ORDER BY i),
    array_agg(ms ORDER BY i),
    array_agg(:'code'::text ORDER BY i),
    array_agg('198.51.' || (i % 40) || '.0' ORDER BY i),
    array_agg((ARRAY[
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
        'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
        'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36',
        'Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0',
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0',
        'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'
        ])[1 + floor(fb * 7)::int] ORDER BY i),
    array_agg((ARRAY['https://www.google.com/', NULL, 'https://news.ycombinator.com/item?id=1',
                     'https://t.co/abc', 'https://www.reddit.com/r/nginx/',
                     'https://example.org/blog/post'])[1 + floor(fr * 6)::int] ORDER BY i),
    array_agg(md5('visitor' || (i % 260)) ORDER BY i),
    array_agg(jsonb_strip_nulls(jsonb_build_object(
        'country', (ARRAY['US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'CA'])[1 + floor(fc * 8)::int],
        'language', (ARRAY['en', 'de', 'fr', 'ja', 'pt'])[1 + (i * 13) % 5],
        'source', CASE WHEN i % 5 = 0 THEN 'profile' WHEN i % 7 = 0 THEN 'qr' END))
        ORDER BY i))
FROM c;
