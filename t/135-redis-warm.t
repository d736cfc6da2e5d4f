# A link the API creates is put into Redis at once (warm-up, version v);
# the notification of that very insert (also version v) arrives later and
# must not replace it with a tombstone: a tombstone of v only replaces
# what is older than v.  Otherwise the first visit on every other node
# misses Redis.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{DELETE FROM shortlink.links WHERE code IN ('rw1', 'rw2')});
redis('del', 'sl:rw1', 'sl:rw2');

our $key = sql_value("SELECT shortlink.create_api_key('t135-warm', true)");

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s;
    shortlink_zone links:1m;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location /_api/ { shortlink_api; }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: create rw1 through the API; then rw2 from psql
--- request
POST /_api/links
{"url": "https://example.com/rw1", "code": "rw1"}
--- more_headers eval
"Authorization: Bearer $::key\nContent-Type: application/json"
--- error_code: 201
--- no_error_log
[error]



=== TEST 2: once rw2's notification is handled, rw1's was too: still a value
--- init
ShortlinkTest::sql("INSERT INTO shortlink.links (code, url)"
                   . " VALUES ('rw2', 'https://example.com/rw2')");
# one listener handles notifications in commit order: rw1's came first
Test::More::ok(ShortlinkTest::wait_until(
    sub { ShortlinkTest::redis('get', 'sl:rw2') ne '' }, 10),
    'the notification of rw2 reached Redis (a tombstone)');
Test::More::like(ShortlinkTest::redis('get', 'sl:rw2'), qr/^v\d+ -$/,
                 'rw2: a tombstone, nothing was cached');
Test::More::like(ShortlinkTest::redis('get', 'sl:rw1'),
                 qr{^v\d+ 302 \S+ \S+ https://example\.com/rw1$},
                 'rw1: the warm-up value survived its own notification');
--- request
GET /rw1
--- error_code: 302
--- response_headers
Location: https://example.com/rw1
