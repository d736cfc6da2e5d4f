# The bloom filter: once built, unknown codes are refused without a
# PostgreSQL query; a link created in psql is never refused by it.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'bf%';
    INSERT INTO shortlink.links (code, url)
         SELECT 'bf' || i, 'https://example.com/bf' || i
           FROM generate_series(1, 2000) AS i;
});

our $http_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m negative_ttl=1s;
    shortlink_bloom capacity=10000 error=0.001;
_EOC_

our $config = <<'_EOC_';
    location / {
        shortlink;
        add_header X-Cache $shortlink_cache always;
    }
_EOC_

srand(7);
our @unknown = map { "GET /zz" . int(rand(1e9)) } 1 .. 50;

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: the filter is built from PostgreSQL after the LISTEN is up
--- http_config eval: $::http_config
--- config eval: $::config
--- request
GET /bf1
--- error_code: 302
--- wait: 0.5
--- no_error_log
[error]



=== TEST 2: random unknown codes: 404 from the filter, no query (the log
since nginx started has TEST 1's lookup of bf1, so the check names the codes)
--- init
# the worker logged these at start-up, maybe before block 1's part of the log
my $log = Test::Nginx::Socket::server_root() . "/logs/error.log";
open my $fh, '<', $log or die "$log: $!";
my $text = do { local $/; <$fh> };
Test::More::like($text, qr/shortlink: listening on "shortlink_links"/,
                 "the worker LISTENs for changes");
Test::More::like($text, qr/shortlink: bloom filter built: \d{4,} codes, \d+ bytes/,
                 "the filter was built");
--- http_config eval: $::http_config
--- config eval: $::config
--- request eval: \@::unknown
--- error_code eval: [(404) x 50]
--- response_headers eval: [("X-Cache: bloom") x 50]
--- no_error_log eval
[qr/shortlink: lookup "zz\d+" answered by pg/, "[error]"]



=== TEST 3: every existing link still redirects (no false "absent")
--- http_config eval: $::http_config
--- config eval: $::config
--- request eval: [map { "GET /bf$_" } 1 .. 50]
--- error_code eval: [(302) x 50]



=== TEST 4: a link created in psql gets through the filter at once
--- init
ShortlinkTest::sql("INSERT INTO shortlink.links (code, url) VALUES ('bfnew', 'https://example.com/bfnew')");
select(undef, undef, undef, 0.2);
--- http_config eval: $::http_config
--- config eval: $::config
--- request
GET /bfnew
--- error_code: 302
--- response_headers
Location: https://example.com/bfnew
X-Cache: pg



=== TEST 5: PostgreSQL stopped: the filter is bypassed, never trusted stale
--- init
ShortlinkTest::pg_stop();
select(undef, undef, undef, 0.3);
--- http_config eval: $::http_config
--- config eval: $::config
--- request
GET /zz42
--- error_code: 503
--- response_headers
X-Cache: error



=== TEST 6: PostgreSQL back: the filter is rebuilt and used again
--- init
ShortlinkTest::pg_start();
select(undef, undef, undef, 1.5);
--- http_config eval: $::http_config
--- config eval: $::config
--- request
GET /zz43
--- error_code: 404
--- response_headers
X-Cache: bloom
