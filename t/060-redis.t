# L2, Redis: a PostgreSQL answer is written to Redis with a TTL, Redis
# answers before PostgreSQL, malformed values are ignored, and Redis going
# away (stopped, or silent) only costs the fall-through to PostgreSQL.

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
        ('rd4', 'https://example.com/rd4', 302);
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

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a PostgreSQL answer is written to Redis, then Redis answers
--- http_config eval: $::http_config
--- config eval: $::config
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
               "301 0 0 https://example.com/rd2", "the value in Redis");
my $ttl = ShortlinkTest::redis('ttl', 'sl:rd2');
Test::More::ok($ttl > 590 && $ttl <= 600, "its TTL is ttl=10m ($ttl)");
--- http_config eval: $::http_config
--- config eval: $::config
--- request
GET /rd2
--- error_code: 301
--- response_headers
X-Cache: redis



=== TEST 3: forward_query survives Redis
--- http_config eval: $::http_config
--- config eval: $::config
--- request eval
["GET /rdf?q=1", "GET /rdf?q=2"]
--- error_code eval
[302, 302]
--- response_headers eval
["Location: https://example.com/rdf?q=1\nX-Cache: pg",
 "Location: https://example.com/rdf?q=2\nX-Cache: redis"]



=== TEST 4: Redis is asked before PostgreSQL (a value PostgreSQL lacks)
--- init
ShortlinkTest::redis('set', 'sl:rd9', '307 0 0 https://example.com/only-in-redis');
--- http_config eval: $::http_config
--- config eval: $::config
--- request
GET /rd9
--- error_code: 307
--- response_headers
Location: https://example.com/only-in-redis
X-Cache: redis
--- no_error_log
shortlink pg: sending



=== TEST 5: a dangerous value in Redis is ignored: PostgreSQL decides
--- init
ShortlinkTest::redis('set', 'sl:rd1', "302 0 javascript:alert(1)");
--- http_config eval: $::http_config
--- config eval: $::config
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
ShortlinkTest::redis('set', 'sl:rd3', "200 0 https://example.com/x");
--- http_config eval: $::http_config
--- config eval: $::config
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
--- http_config eval: $::http_config
--- config eval: $::config
--- request
GET /rd8
--- error_code: 404
--- response_headers
X-Cache: pg
--- error_log
malformed Redis value for "rd8" ignored



=== TEST 8: Redis stopped: PostgreSQL answers, quickly
--- init
ShortlinkTest::redis_stop();
--- http_config eval: $::http_config
--- config eval: $::config
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



=== TEST 9: Redis back: used again after the backoff
--- init
ShortlinkTest::redis_start();
select(undef, undef, undef, 1.2);
--- http_config eval: $::http_config
--- config eval: $::config
--- request eval
["GET /rd4", "GET /rd4"]
--- error_code eval
[302, 302]
--- response_headers eval
["X-Cache: pg", "X-Cache: redis"]
--- no_error_log
[alert]



=== TEST 10: a silent Redis (accepts, never answers): PostgreSQL within the timeout
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_redis 127.0.0.1:$TEST_NGINX_SILENT_PORT timeout=200ms backoff=5s;
--- config eval: $::config
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
