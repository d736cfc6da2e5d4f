# GET /links/{code}/clicks through nginx: a page of the access log and the
# next one by its cursor, HEAD, and every refusal as problem+json (changed
# cursor, another owner, unknown link, bad limit and times), without an
# [error] line.  The rules themselves are tested in t/113-click-log-sql.t.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

my $P = 't136';

sub cleanup {
    sql(qq{
        DELETE FROM shortlink.clicks
         WHERE code LIKE '$P%' AND clicked_at < '2001-02-01+00';
        DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE '$P%';
        DELETE FROM shortlink.links WHERE owner LIKE '$P-%' OR code LIKE '$P%';
        DELETE FROM shortlink.api_keys WHERE owner LIKE '$P-%';
    });
}

cleanup();
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('$P-owner')");
$ENV{TEST_NGINX_OTHER_KEY} = sql_value("SELECT shortlink.create_api_key('$P-other')");
sql(qq{INSERT INTO shortlink.links (code, url, owner)
       VALUES ('${P}a', 'https://example.com/a', '$P-owner')});

# 30 clicks, two per second from 2001-01-20 12:00:00 back; visitor ids and
# addresses that must never come out
sql(qq{
    SELECT shortlink.record_clicks(
        array_agg(md5('$P-' || g)::uuid ORDER BY g),
        array_agg((extract(epoch FROM '2001-01-20 12:00:00+00'::timestamptz) * 1000)::bigint
                  - (g / 2) * 1000 ORDER BY g),
        array_agg('${P}a'::text ORDER BY g),
        array_agg('198.51.100.' || g ORDER BY g),
        array_agg('Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0'::text
                  ORDER BY g),
        array_agg('https://ref.example/click-' || g ORDER BY g),
        array_agg('hidden-visitor-' || g ORDER BY g),
        array_agg('{"country": "NL"}'::jsonb ORDER BY g))
      FROM generate_series(1, 30) g});

# the truth: referrers newest first, and the cursor after the first two
my $truth = sql_rows(qq{
    SELECT referer FROM shortlink.clicks WHERE code = '${P}a'
     ORDER BY clicked_at DESC, event_id DESC});
$ENV{T136_FIRST} = $truth->[0][0];
$ENV{T136_SECOND} = $truth->[1][0];
$ENV{T136_THIRD} = $truth->[2][0];
$ENV{T136_FOURTH} = $truth->[3][0];
$ENV{T136_CURSOR} = sql_value(qq{
    SELECT next_cursor FROM shortlink.link_clicks('${P}a', '2001-01-01', '2001-02-01', NULL, 2)
     WHERE next_cursor IS NOT NULL});
($ENV{T136_BAD_CURSOR} = $ENV{T136_CURSOR}) =~ s/^(.{8})(.)/$1 . ($2 eq 'A' ? 'B' : 'A')/e;
$ENV{T136_RANGE} = 'from=2001-01-20&to=2001-01-21';

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
_EOC_
    $block->set_value("config", <<'_EOC_');
    location /_api/ { shortlink_api; }
_EOC_
    $block->set_value("more_headers", "Authorization: Bearer $ENV{TEST_NGINX_API_KEY}")
        unless defined $block->more_headers;
});

no_shuffle();
no_root_location();
run_tests();

cleanup();

__DATA__

=== TEST 1: the first page, newest first, with a cursor to the next
--- request eval
"GET /_api/links/t136a/clicks?$ENV{T136_RANGE}&limit=2"
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/"clicks": \[\{.*"referrer": "\Q$ENV{T136_FIRST}\E".*\}, \{.*"referrer": "\Q$ENV{T136_SECOND}\E".*\}\].*"next_cursor": "\Q$ENV{T136_CURSOR}\E"/s
--- no_error_log
[error]



=== TEST 2: the next page by the cursor
--- request eval
"GET /_api/links/t136a/clicks?$ENV{T136_RANGE}&limit=2&cursor=$ENV{T136_CURSOR}"
--- error_code: 200
--- response_body_like eval
qr/"clicks": \[\{.*"referrer": "\Q$ENV{T136_THIRD}\E".*\}, \{.*"referrer": "\Q$ENV{T136_FOURTH}\E".*\}\]/s
--- no_error_log
[error]



=== TEST 3: every click of the range; visitor ids and addresses never come out
--- request eval
"GET /_api/links/t136a/clicks?$ENV{T136_RANGE}&limit=1000"
--- error_code: 200
--- response_body_like eval
qr/^(?!.*hidden-visitor)(?!.*198\.51\.100\.)(?:.*?"visitor_hash": "[0-9a-f]{16}"){30}(?!.*"visitor_hash").*"next_cursor": null/s
--- no_error_log
[error]



=== TEST 4: HEAD is answered like GET, without a body
--- request eval
"HEAD /_api/links/t136a/clicks?$ENV{T136_RANGE}&limit=2"
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body
--- no_error_log
[error]



=== TEST 5: a changed cursor, bad limits and times: 400 problem+json
--- request eval
["GET /_api/links/t136a/clicks?cursor=$ENV{T136_BAD_CURSOR}",
 "GET /_api/links/t136a/clicks?cursor=garbage",
 "GET /_api/links/t136a/clicks?limit=0",
 "GET /_api/links/t136a/clicks?limit=1001",
 "GET /_api/links/t136a/clicks?from=yesterday",
 "GET /_api/links/t136a/clicks?from=2001-01-21&to=2001-01-20",
 "GET /_api/links/t136a/clicks?interval=day"]
--- error_code eval
[(400) x 7]
--- response_headers eval
[("Content-Type: application/problem+json") x 7]
--- response_body_like eval
['bad-cursor', 'bad-cursor', ('limit must be a number from 1 to 1000') x 2,
 'from must be', 'to must not be before from', 'unknown query parameter']
--- no_error_log
[error]



=== TEST 6: another owner's link: 403; an unknown link: 404; POST: 405
--- request eval
["GET /_api/links/t136a/clicks", "GET /_api/links/t136zz/clicks",
 "POST /_api/links/t136a/clicks"]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_OTHER_KEY}"
--- error_code eval
[403, 404, 405]
--- response_headers eval
[("Content-Type: application/problem+json") x 3]
--- response_body_like eval
['not-your-link', 'link-not-found', 'allowed: GET, HEAD']
--- no_error_log
[error]
