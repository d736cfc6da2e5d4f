# L2, Redis: a PostgreSQL answer is written to Redis with a TTL and the
# row's version, Redis answers before PostgreSQL, malformed values are
# ignored, a change leaves a tombstone of its version and an older value
# never replaces a newer one, and Redis going away (stopped, or silent)
# only costs the fall-through to PostgreSQL.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

our $silent = silent_listener();
$ENV{TEST_NGINX_SILENT_PORT} = $silent->sockport;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'rd%';
    INSERT INTO shortlink.links (code, url, redirect_status) VALUES
        ('rd1', 'https://example.com/rd1', 302),
        ('rd2', 'https://example.com/rd2', 301),
        ('rd3', 'https://example.com/rd3', 302),
        ('rd4', 'https://example.com/rd4', 302),
        ('rd5', 'https://example.com/rd5', 302),
        ('rd6', 'https://example.com/rd6', 302);
    INSERT INTO shortlink.links (code, url, forward_query) VALUES
        ('rdf', 'https://example.com/rdf', true);
});
redis('del', (map { "sl:rd$_" } 1 .. 9), 'sl:rdf');

# valgrind slows nginx down more than 200 ms lets a handshake take
$ENV{TEST_NGINX_REDIS_TIMEOUT} = $ENV{TEST_NGINX_USE_VALGRIND} ? '2s' : '200ms';

our $http_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=$TEST_NGINX_REDIS_TIMEOUT ttl=10m backoff=300ms;
_EOC_

our $config = <<'_EOC_';
    location / {
        shortlink;
        add_header X-Cache $shortlink_cache always;
    }
_EOC_

# every block: these, unless it says otherwise
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $::http_config)
        unless defined $block->http_config;
    $block->set_value("config", $::config) unless defined $block->config;
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a PostgreSQL answer is written to Redis, then Redis answers
--- request eval
["GET /rd2", "GET /rd2"]
--- error_code eval
[301, 301]
--- response_headers eval
["X-Cache: pg", "X-Cache: redis"]
--- no_error_log
[error]
[warn]



=== TEST 2: the value and its TTL, as stored
--- init
Test::More::is(ShortlinkTest::redis('get', 'sl:rd2'),
               'v' . ShortlinkTest::sql_value("SELECT version FROM shortlink.links
                                               WHERE code = 'rd2'")
               . " 301 0 0 https://example.com/rd2", "the value in Redis, with the version");
my $ttl = ShortlinkTest::redis('ttl', 'sl:rd2');
Test::More::ok($ttl > 590 && $ttl <= 600, "its TTL is ttl=10m ($ttl)");
--- request
GET /rd2
--- error_code: 301
--- response_headers
X-Cache: redis



=== TEST 3: forward_query survives Redis
--- request eval
["GET /rdf?q=1", "GET /rdf?q=2"]
--- error_code eval
[302, 302]
--- response_headers eval
["Location: https://example.com/rdf?q=1\nX-Cache: pg",
 "Location: https://example.com/rdf?q=2\nX-Cache: redis"]



=== TEST 4: Redis is asked before PostgreSQL (a value PostgreSQL lacks)
--- init
ShortlinkTest::redis('set', 'sl:rd9', 'v1 307 0 0 https://example.com/only-in-redis');
--- request
GET /rd9
--- error_code: 307
--- response_headers
Location: https://example.com/only-in-redis
X-Cache: redis
--- error_log
shortlink: lookup "rd9" answered by redis
--- no_error_log
shortlink: lookup "rd9" answered by pg



=== TEST 5: a dangerous value in Redis is ignored: PostgreSQL decides
--- init
ShortlinkTest::redis('set', 'sl:rd1', "v1 302 0 0 javascript:alert(1)");
--- request
GET /rd1
--- error_code: 302
--- response_headers
Location: https://example.com/rd1
X-Cache: pg
--- error_log
malformed Redis value for "rd1" ignored



=== TEST 6: a value with a status nginx must not send is ignored
--- init
ShortlinkTest::redis('set', 'sl:rd3', "v1 200 0 0 https://example.com/x");
--- request
GET /rd3
--- error_code: 302
--- response_headers
Location: https://example.com/rd3
X-Cache: pg
--- error_log
malformed Redis value for "rd3" ignored



=== TEST 7: garbage in Redis for an unknown code: PostgreSQL says 404
--- init
ShortlinkTest::redis('set', 'sl:rd8', "garbage");
--- request
GET /rd8
--- error_code: 404
--- response_headers
X-Cache: pg
--- error_log
malformed Redis value for "rd8" ignored



=== TEST 8: a value without a version (an older format) is ignored
--- init
ShortlinkTest::redis('set', 'sl:rd5', "302 0 0 https://example.com/old-format");
--- request
GET /rd5
--- error_code: 302
--- response_headers
Location: https://example.com/rd5
X-Cache: pg
--- error_log
malformed Redis value for "rd5" ignored



=== TEST 9: a tombstone sends the lookup to PostgreSQL; an older answer does not replace it
--- init
ShortlinkTest::redis('set', 'sl:rd6', "v999 -");
--- request
GET /rd6
--- error_code: 302
--- response_headers
Location: https://example.com/rd6
X-Cache: pg
--- no_error_log
malformed Redis value for "rd6"



=== TEST 10: the tombstone of version 999 is still there
--- init
Test::More::is(ShortlinkTest::redis('get', 'sl:rd6'), "v999 -",
               "PostgreSQL's version 1 did not overwrite version 999");
ShortlinkTest::redis('set', 'sl:rd6', "v1 -");
--- request
GET /rd6
--- error_code: 302
--- response_headers
X-Cache: pg



=== TEST 11: a newer version replaces an older tombstone
--- init
Test::More::like(ShortlinkTest::redis('get', 'sl:rd6'), qr{^v1 302 0 0 https://example.com/rd6$},
                 "version 1 replaced the tombstone of version 1");
--- request
GET /rd6
--- error_code: 302
--- response_headers
X-Cache: redis



=== TEST 12: a change made in SQL leaves a tombstone of the new version
--- init
ShortlinkTest::sql("UPDATE shortlink.links SET url = 'https://example.com/rd6-new'
                     WHERE code = 'rd6'");
my $v = ShortlinkTest::sql_value("SELECT version FROM shortlink.links WHERE code = 'rd6'");
ShortlinkTest::wait_until(
    sub { ShortlinkTest::redis('get', 'sl:rd6') eq "v$v -" }, 2.5, 0.05);
Test::More::is(ShortlinkTest::redis('get', 'sl:rd6'), "v$v -",
               "the notification left a tombstone of version $v");
--- request eval
["GET /rd6", "GET /rd6"]
--- error_code eval
[302, 302]
--- response_headers eval
["Location: https://example.com/rd6-new\nX-Cache: pg",
 "Location: https://example.com/rd6-new\nX-Cache: redis"]



=== TEST 13: Redis stopped: PostgreSQL answers, quickly
--- init
ShortlinkTest::redis_stop();
--- request eval
["GET /rd4", "GET /rd4"]
--- error_code eval
[302, 302]
--- response_headers eval
["X-Cache: pg", "X-Cache: pg"]
--- timeout: 1
--- no_error_log
[alert]
[crit]



=== TEST 14: Redis back: used again after the backoff
--- init
ShortlinkTest::redis_start();
select(undef, undef, undef, 1.2);
--- request eval
["GET /rd4", "GET /rd4"]
--- error_code eval
[302, 302]
--- response_headers eval
["X-Cache: pg", "X-Cache: redis"]
--- no_error_log
[alert]



=== TEST 15: a silent Redis (accepts, never answers): PostgreSQL within the timeout
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_redis 127.0.0.1:$TEST_NGINX_SILENT_PORT timeout=200ms backoff=5s;
--- config
    # a config of its own, so that nginx restarts with this http_config
    location / {
        shortlink;
        add_header X-Cache $shortlink_cache always;
    }
--- request eval
["GET /rd1", "GET /rd2", "GET /rd3"]
--- error_code eval
[302, 301, 302]
--- response_headers eval
["X-Cache: pg", "X-Cache: pg", "X-Cache: pg"]
--- timeout: 1
--- no_error_log
[alert]
[crit]
