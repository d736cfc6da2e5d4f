# PostgreSQL goes away: visitors get a quick 503 with Retry-After, never a
# hung request, and redirects come back by themselves once it returns.
# A database that accepts connections and never answers is bounded by
# connect_timeout.

# blocks build on what nginx kept from the previous one (connections,
# cache entries): restart nginx only when the config changes
BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

our $silent = silent_listener();
$ENV{TEST_NGINX_SILENT_PORT} = $silent->sockport;

# a port nothing listens on: connections are refused at once
{
    my $closed = silent_listener();
    $ENV{TEST_NGINX_CLOSED_PORT} = $closed->sockport;
    close $closed;
}

sql(q{
    DELETE FROM shortlink.links WHERE code = 'up';
    INSERT INTO shortlink.links (code, url) VALUES ('up', 'https://example.com/up');
});

our $http_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN" backoff=200ms query_timeout=2s;
_EOC_

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: PostgreSQL up: redirect (and an idle connection stays open)
--- http_config eval: $::http_config
--- config
    location / { shortlink; }
--- request
GET /up
--- error_code: 302
--- no_error_log
[error]



=== TEST 2: PostgreSQL stopped: 503 with Retry-After, at once
--- init
ShortlinkTest::pg_stop();
--- http_config eval: $::http_config
--- config
    location / { shortlink; }
--- request
GET /up
--- error_code: 503
--- response_headers_like
Retry-After: \d+
--- timeout: 1
--- no_error_log
[alert]
[crit]



=== TEST 3: still down: every request is answered, none hangs
--- http_config eval: $::http_config
--- config
    location / { shortlink; }
--- request eval
["GET /up", "GET /up", "GET /up"]
--- error_code eval
[503, 503, 503]
--- timeout: 1
--- no_error_log
[alert]
[crit]



=== TEST 4: PostgreSQL back: redirects resume without a restart
--- init
ShortlinkTest::pg_start(); select(undef, undef, undef, 0.6);
--- http_config eval: $::http_config
--- config
    location / { shortlink; }
--- request
GET /up
--- error_code: 302
--- response_headers
Location: https://example.com/up
--- no_error_log
[alert]
[crit]



=== TEST 5: a database that never answers: 503 after connect_timeout
--- http_config
    shortlink_postgres "host=127.0.0.1 port=$TEST_NGINX_SILENT_PORT dbname=x user=x sslmode=disable" connect_timeout=300ms query_timeout=5s;
--- config
    # a --- config of its own: only a changed config restarts nginx,
    # and this http_config needs a new nginx
    location / { shortlink; }  # silent database
--- request
GET /up
--- error_code: 503
--- response_headers_like
Retry-After: \d+
--- timeout: 2
--- error_log
PostgreSQL connect timed out after 300 ms
--- no_error_log
[alert]



=== TEST 6: several hosts, the first one dead: libpq moves to the next
(a new socket, often under the same fd number, must be watched anew)
--- http_config
    shortlink_postgres "host=127.0.0.1,127.0.0.1 port=$TEST_NGINX_CLOSED_PORT,$TEST_NGINX_PG_PORT dbname=shortlink user=shortlink";
--- config
    location / { shortlink; }  # two hosts: a config of its own, a new nginx
--- request
GET /up
--- error_code: 302
--- response_headers
Location: https://example.com/up
--- timeout: 5
--- no_error_log
[alert]
[error]
