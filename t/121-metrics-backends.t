# shortlink_metrics for operators of the backends: timeouts counted apart
# from errors (Redis and PostgreSQL), pool connections in use, and each
# worker's bloom filter fill.

# a block's log expectation holds for its one request; the next block,
# with the same configuration, reads the metrics of the same nginx
BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

our $silent = silent_listener();
$ENV{TEST_NGINX_SILENT_PORT} = $silent->sockport;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'mb%';
    INSERT INTO shortlink.links (code, url) VALUES ('mb1', 'https://example.com/mb1'),
                                                   ('mb3', 'https://example.com/mb3');
});
redis('del', 'sl:mb2');
redis('rpush', 'sl:mb2', 'not a string');

# hold an ACCESS EXCLUSIVE lock on links: a lookup waits behind it
sub hold_lock {
    my ($seconds) = @_;
    ShortlinkTest::sql_bg("BEGIN; LOCK TABLE shortlink.links IN ACCESS "
                          . "EXCLUSIVE MODE; SELECT pg_sleep($seconds); COMMIT;");
    select(undef, undef, undef, 0.3);
}

# under valgrind a Redis handshake alone may take longer than 200 ms
$ENV{TEST_NGINX_REDIS_TIMEOUT} = $ENV{TEST_NGINX_USE_VALGRIND} ? '2s' : '200ms';

our $redis_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=$TEST_NGINX_REDIS_TIMEOUT;
_EOC_

our $pg_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN" query_timeout=300ms;
_EOC_

our $config = <<'_EOC_';
    location / { shortlink; }
    location = /metrics { shortlink_metrics; }
_EOC_

# Only a changed --- config restarts nginx: each http_config above comes
# with a config of its own, told apart by a comment
sub config { return "    # $_[0]\n$::config" }

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a silent Redis: timeouts (handshake, GET), no error; pool and bloom filter gauges
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_redis 127.0.0.1:$TEST_NGINX_SILENT_PORT timeout=200ms backoff=5s;
    shortlink_bloom capacity=100000;
--- config eval: main::config("a silent Redis")
--- request eval
["GET /mb1", "GET /metrics"]
--- error_code eval
[302, 200]
--- response_body_like eval
[".*",
 qr/shortlink_backend_errors_total\{backend="postgresql"\}\ 0\n
    shortlink_backend_errors_total\{backend="redis"\}\ 0\n
    .*shortlink_backend_timeouts_total\{backend="postgresql"\}\ 0\n
    shortlink_backend_timeouts_total\{backend="redis"\}\ [12]\n
    .*shortlink_postgresql_connections\{state="open"\}\ [1-9]\d*\n
    shortlink_postgresql_connections\{state="busy"\}\ \d+\n
    .*shortlink_bloom_codes\{worker="0"\}\ [1-9]\d*\n
    .*shortlink_bloom_fill_ratio\{worker="0"\}\ 0\.\d{4}\n/sx]



=== TEST 2: Redis answers an error
--- http_config eval: $::redis_config
--- config eval: main::config("redis_config")
--- request
GET /mb2
--- error_code: 404
--- error_log
GET failed: WRONGTYPE



=== TEST 3: ... one error, no timeout
--- http_config eval: $::redis_config
--- config eval: main::config("redis_config")
--- request
GET /metrics
--- response_body_like eval
qr/shortlink_backend_errors_total\{backend="postgresql"\}\ 0\n
   shortlink_backend_errors_total\{backend="redis"\}\ 1\n
   .*shortlink_backend_timeouts_total\{backend="postgresql"\}\ 0\n
   shortlink_backend_timeouts_total\{backend="redis"\}\ 0\n/sx



=== TEST 4: a PostgreSQL query over query_timeout
--- init
main::hold_lock(2);
--- http_config eval: $::pg_config
--- config eval: main::config("pg_config")
--- request
GET /mb3
--- error_code: 503
--- error_log
PostgreSQL query timed out after 300 ms



=== TEST 5: ... one timeout, no error
--- http_config eval: $::pg_config
--- config eval: main::config("pg_config")
--- request
GET /metrics
--- response_body_like eval
qr/shortlink_backend_errors_total\{backend="postgresql"\}\ 0\n
   .*shortlink_backend_timeouts_total\{backend="postgresql"\}\ 1\n/sx
