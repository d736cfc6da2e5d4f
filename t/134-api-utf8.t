# Bytes PostgreSQL would refuse, in every input of the management API: the
# path (raw and percent-encoded), the query string, the body, the bearer
# key and the Host header.  Each is the client's mistake: a 400
# problem+json, nothing logged above info, no backend error counted,
# nothing changed.  Only <location>/health is the health check: a link
# coded "health" can be read like any other.  And short URLs keep the
# port the client used.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code IN ('health', 'u8ok')
                                   OR code LIKE 'u8port%';
    INSERT INTO shortlink.links (code, url)
         VALUES ('health', 'https://example.com/health');
});

our $key = sql_value("SELECT shortlink.create_api_key('t134-utf8', true)");
our $auth = "Authorization: Bearer $key";

our @bad = (
    # path: percent-encoded and raw
    ["GET /_api/links/%C3%C3", $auth, "the path"],
    ["GET /_api/links/%F8%90%80%80/stats", $auth, "the path"],
    ["GET /_api/links/\xed\xa0\x80", $auth, "the path"],
    ["DELETE /_api/links/%C0%AF", $auth, "the path"],
    # query string, raw bytes
    ["GET /_api/links?tag=\xc3\xc3", $auth, "the query string"],
    ["GET /_api/links?cursor=\xff", $auth, "the query string"],
    # body
    ["POST /_api/links\n{\"url\": \"https://example.com/\xc3\xc3\"}",
     "$auth\nContent-Type: application/json", "the request body"],
    ["POST /_api/links\n{\"url\": \"https://example.com/\xf8\x90\x80\x80\"}",
     "$auth\nContent-Type: application/json", "the request body"],
    ["POST /_api/links\n{\"url\": \"https://example.com/\x00\"}",
     "$auth\nContent-Type: application/json", "the request body"],
    ["PATCH /_api/links/u8ok\n{\"title\": \"\xe0\x80\xaf\"}",
     "$auth\nContent-Type: application/json", "the request body"],
    # the key, with and without a valid prefix
    ["GET /_api/links", "Authorization: Bearer \xc3\xc3", "the Authorization"],
    ["GET /_api/links", "Authorization: Bearer ${key}\xff",
     "the Authorization"],
    # Host
    ["GET /_api/links", "$auth\nHost: \xc3\xc3.example", "the Host"],
);

our $n = @bad;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location /_api/ { shortlink_api; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

is(sql_value("SELECT count(*) FROM shortlink.links WHERE code = 'u8ok'"), 0,
   'nothing was created');


__DATA__

=== TEST 1: invalid UTF-8 in any input: 400 problem+json naming it
--- request eval
[map { $_->[0] } @::bad]
--- more_headers eval
[map { $_->[1] } @::bad]
--- error_code eval
[(400) x $::n]
--- response_headers eval
[("Content-Type: application/problem+json") x $::n]
--- response_body_like eval
[map { "\"detail\"\\s*:\\s*\"$_->[2]\[^\"]* is not valid UTF-8" } @::bad]
--- no_error_log
[error]
[crit]
[alert]
[warn]



=== TEST 2: no backend error was counted, PostgreSQL is fine
--- request eval
["GET /metrics", "GET /_api/health"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/shortlink_backend_errors_total\{backend="postgresql"\} 0\n/,
 qr/"postgresql"\s*:\s*"up"/]
--- no_error_log
[error]



=== TEST 3: a link coded "health" is a link like any other
--- request eval
["GET /_api/links/health", "GET /health"]
--- more_headers eval
[$::auth, ""]
--- error_code eval
[200, 302]
--- response_body_like eval
['"code"\s*:\s*"health"', '']
--- response_headers eval
["Content-Type: application/json", "Location: https://example.com/health"]



=== TEST 4: short_url keeps the Host's port, and only a port
--- request eval
[map { "POST /_api/links\n{\"url\": \"https://example.com/p\", \"code\": \"u8port$_\"}" } 1 .. 4]
--- more_headers eval
[map { "$::auth\nContent-Type: application/json\nHost: $_" }
     ("short.example:8443", "short.example", "[::1]:8080", "short.example:")]
--- error_code eval
[(201) x 4]
--- response_body_like eval
['"short_url"\s*:\s*"http://short\.example:8443/u8port1"',
 '"short_url"\s*:\s*"http://short\.example/u8port2"',
 '"short_url"\s*:\s*"http://\[::1\]:8080/u8port3"',
 '"short_url"\s*:\s*"http://short\.example/u8port4"']
