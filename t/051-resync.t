# Notifications missed while a worker's LISTEN connection was down: once it
# is subscribed again the zone starts over, so a change made meanwhile is
# not hidden behind a cached entry for its whole TTL.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'rs1';
    INSERT INTO shortlink.links (code, url) VALUES ('rs1', 'https://example.com/rs-old');
});

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
_EOC_
    $block->set_value("config",
        "location / { shortlink; add_header X-Cache \$shortlink_cache; }");
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: cached
--- request eval
["GET /rs1", "GET /rs1"]
--- error_code eval
[302, 302]
--- response_headers eval
["X-Cache: pg", "X-Cache: shm"]



=== TEST 2: the LISTEN connection is cut and the link changed before it is back
--- init
# one statement: the change commits before nginx can listen again
Test::More::cmp_ok(ShortlinkTest::sql_value(
    "WITH cut AS (SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n"
    . "             FROM pg_stat_activity WHERE query = 'LISTEN shortlink_links'),"
    . " changed AS (UPDATE shortlink.links SET url = 'https://example.com/rs-new'"
    . "              WHERE code = 'rs1' RETURNING 1)"
    . " SELECT n FROM cut, (SELECT count(*) FROM changed) c"), '>=', 1,
    'the LISTEN connection was cut');
select(undef, undef, undef, 0.6);
--- request
GET /rs1
--- error_code: 302
--- response_headers
Location: https://example.com/rs-new
X-Cache: pg
