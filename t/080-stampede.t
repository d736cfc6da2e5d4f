# Stampede protection: many concurrent misses for one code cause one
# backend lookup.  The concurrency comes from SSI: every include is a
# subrequest started at once, so all of them miss the cache together.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code IN ('herd', 'herd2');
    INSERT INTO shortlink.links (code, url)
         VALUES ('herd', 'https://example.com/herd');
});

our $includes = join "", map { qq{<!--# include virtual="/herd" -->\n} } 1 .. 20;
our $includes2 = join "", map { qq{<!--# include virtual="/herd2" -->\n} } 1 .. 20;

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: 20 concurrent misses for one code: one PostgreSQL query
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m;
--- config
    location = /herd.html { ssi on; root html; }
    location / { shortlink; }
--- user_files eval
">>> herd.html\n$::includes"
--- request
GET /herd.html
--- response_body_like: ^(<html><head><title>302 Found</title></head>\r\n<body><a href="https://example.com/herd">302 Found</a></body></html>\r\n\n){20}$
--- grep_error_log eval: qr/shortlink pg: sending "shortlink_lookup"|joins a lookup under way/
--- grep_error_log_out eval
("joins a lookup under way\n" x 19)
. "shortlink pg: sending \"shortlink_lookup\"\n"
--- no_error_log
[error]
[alert]



=== TEST 2: 20 concurrent misses for an unknown code: one query, 404s
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m;
--- config
    location = /herd2.html { ssi on; ssi_silent_errors on; root html; }
    location / { shortlink; }
--- user_files eval
">>> herd2.html\n$::includes2"
--- request
GET /herd2.html
--- grep_error_log eval: qr/shortlink pg: sending "shortlink_lookup"|joins a lookup under way/
--- grep_error_log_out eval
("joins a lookup under way\n" x 19)
. "shortlink pg: sending \"shortlink_lookup\"\n"
--- no_error_log
[alert]
