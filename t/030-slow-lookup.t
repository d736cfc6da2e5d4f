# A lookup made slow by a lock held in another session.  A client that gives
# up is detached from the lookup; the lookup still finishes (and fills the
# caches) and the connection is reused.  A query slower than query_timeout gets a 503, not a hung request.

# blocks build on what nginx kept from the previous one (connections,
# cache entries): restart nginx only when the config changes
BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'slow';
    INSERT INTO shortlink.links (code, url)
         VALUES ('slow', 'https://example.com/slow');
});

# hold an ACCESS EXCLUSIVE lock: the lookup waits until it is released
# (longer under valgrind, where the runner stretches client timeouts)
sub hold_lock {
    my ($seconds) = @_;
    $seconds *= 5 if $ENV{TEST_NGINX_USE_VALGRIND};
    ShortlinkTest::sql_bg("BEGIN; LOCK TABLE shortlink.links IN ACCESS "
                          . "EXCLUSIVE MODE; SELECT pg_sleep($seconds); COMMIT;");
    select(undef, undef, undef, 0.3);
}

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: warm up: one connection in the pool
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=1 query_timeout=20s;
--- config
    location / { shortlink; }
--- request
GET /slow
--- error_code: 302



=== TEST 2: the client gives up while the lookup waits on a lock
--- init
main::hold_lock(1.5);
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=1 query_timeout=20s;
--- config
    location / { shortlink; }
--- request
GET /slow
--- timeout: 0.3
--- abort
--- ignore_response
--- wait eval: $ENV{TEST_NGINX_USE_VALGRIND} ? 8 : 2
--- error_log
client prematurely closed connection
shortlink: request gone, lookup detached
shortlink: lookup "slow" answered by pg
--- no_error_log
[error]
[alert]



=== TEST 3: the same connection serves the next lookup: the log since TEST 1
started nginx shows one connect
--- init
ShortlinkTest::pg_wait_bg();
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=1 query_timeout=20s;
--- config
    location / { shortlink; }
--- request
GET /slow
--- error_code: 302
--- response_headers
Location: https://example.com/slow
--- grep_error_log: shortlink pg: connecting
--- grep_error_log_out
shortlink pg: connecting
--- no_error_log
[error]
[alert]



=== TEST 4: a lookup slower than query_timeout gets 503 in time
--- init
main::hold_lock(1.5);
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN" query_timeout=300ms;
--- config
    # a config of its own: only a changed --- config restarts nginx, and
    # this http_config needs a new one
    location / { shortlink; }  # query_timeout=300ms
--- request
GET /slow
--- error_code: 503
--- timeout: 1.2
--- error_log
PostgreSQL query timed out after 300 ms
--- no_error_log
[alert]
