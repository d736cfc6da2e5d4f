# GET /{code}: the redirect itself, per-link status, every reason for a 404,
# and what a malformed code gets (a 404 without any query).

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links;
    INSERT INTO shortlink.links
           (code, url, redirect_status, expires_at, enabled, deleted_at)
    VALUES ('r302', 'https://example.com/302', 302, NULL, true, NULL),
           ('r301', 'https://example.com/301', 301, NULL, true, NULL),
           ('r307', 'https://example.com/307', 307, NULL, true, NULL),
           ('r308', 'https://example.com/308', 308, NULL, true, NULL),
           ('expired', 'https://example.com/e', 302,
                now() - interval '1 minute', true, NULL),
           ('later', 'https://example.com/later', 302,
                now() + interval '1 day', true, NULL),
           ('disabled', 'https://example.com/d', 302, NULL, false, NULL),
           ('deleted', 'https://example.com/x', 302, NULL, true, now()),
           ('Ab_3-z', 'http://example.com/q?a=1&b=<2>', 302, NULL, true, NULL),
           (repeat('L', 64), 'https://example.com/long', 302, NULL, true, NULL);
    INSERT INTO shortlink.links (code, url, forward_query) VALUES
           ('fwd', 'https://example.com/f', true),
           ('fwdq', 'https://example.com/f?a=1#top', true);
});

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config",
                          qq{shortlink_postgres "$ENV{TEST_NGINX_PG_DSN}";});
    }

    if (!defined $block->config) {
        $block->set_value("config", "location / { shortlink; }");
    }
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a known code redirects with 302, Location and a small body
--- request
GET /r302
--- error_code: 302
--- response_headers
Location: https://example.com/302
Cache-Control: private, max-age=0
Content-Type: text/html
--- response_body eval
"<html><head><title>302 Found</title></head>\r\n"
. "<body><a href=\"https://example.com/302\">302 Found</a></body></html>\r\n"
--- error_log
shortlink pg: sending "shortlink_lookup"
--- no_error_log
[error]
[alert]



=== TEST 2: per-link 301
--- request
GET /r301
--- error_code: 301
--- response_headers
Location: https://example.com/301
Cache-Control: private, max-age=0
--- no_error_log
[error]



=== TEST 3: per-link 307
--- request
GET /r307
--- error_code: 307
--- response_headers
Location: https://example.com/307
--- no_error_log
[error]



=== TEST 4: per-link 308
--- request
GET /r308
--- error_code: 308
--- response_headers
Location: https://example.com/308
--- no_error_log
[error]



=== TEST 5: an unknown code is looked up and gets 404
--- request
GET /nosuchcode
--- error_code: 404
--- response_headers
!Location
--- error_log
shortlink pg: sending "shortlink_lookup"
--- no_error_log
[error]



=== TEST 6: expired, disabled and deleted links get 404
--- request eval
["GET /expired", "GET /disabled", "GET /deleted"]
--- error_code eval
[404, 404, 404]
--- no_error_log
[error]



=== TEST 7: a link that expires later still redirects
--- request
GET /later
--- error_code: 302
--- response_headers
Location: https://example.com/later



=== TEST 8: malformed codes get 404 and no query is sent
--- request eval
[
    "GET /a.b",
    "GET /a%20b",
    "GET /%41bc",
    "GET /r302%0d%0aSet-Cookie:%20x=1",
    "GET /r302%00",
    "GET /r30%32",
    "GET /r302%252F",
    "GET /",
    "GET /" . ("L" x 65),
    "GET /\xc3\xa9t\xc3\xa9",
    "GET /r302;x=1",
]
--- error_code eval
[404, 404, 404, 404, 400, 404, 404, 404, 404, 404, 404]
--- no_error_log
shortlink pg: sending
[error]



=== TEST 9: the longest valid code (64 characters) redirects
--- request eval
"GET /" . ("L" x 64)
--- error_code: 302
--- response_headers
Location: https://example.com/long



=== TEST 10: the target is HTML-escaped in the body, untouched in Location
--- request
GET /Ab_3-z
--- error_code: 302
--- response_headers
Location: http://example.com/q?a=1&b=<2>
--- response_body_like chomp
^.*<a href="http://example\.com/q\?a=1&amp;b=&lt;2&gt;">.*$



=== TEST 11: HEAD gets the redirect without a body
--- request
HEAD /r302
--- error_code: 302
--- response_headers
Location: https://example.com/302
--- response_body



=== TEST 12: other methods get 405 with Allow (POST after the lookup: a link with a password takes it)
--- request
POST /r302
hello
--- error_code: 405
--- response_headers
Allow: GET, HEAD
--- no_error_log
[error]



=== TEST 13: the query string is not part of the code
--- request
GET /r302?utm_source=test
--- error_code: 302
--- response_headers
Location: https://example.com/302



=== TEST 14: the code is the last path segment
--- request
GET /some/prefix/r301
--- error_code: 301
--- response_headers
Location: https://example.com/301



=== TEST 15: the code can come from a regex capture or any variable
--- config
    location ~ ^/s/([^/]+)/go$ { shortlink $1; }
    location = /go { shortlink $arg_c; }
--- request eval
["GET /s/r307/go", "GET /go?c=r308", "GET /go?c=bad.code", "GET /go"]
--- error_code eval
[307, 308, 404, 404]



=== TEST 16: many requests on one keep-alive connection, a HEAD last
(Test::Nginx reads each response of a batch as if it had a body, so a HEAD
anywhere else would take the next response's bytes as its body; last, its
body is empty and the runner warns that it is short)
--- pipelined_requests eval
["GET /r302", "GET /nosuchcode", "GET /r301", "GET /a.b", "GET /r308",
 "GET /r302", "GET /expired", "GET /r302", "GET /r301", "HEAD /r307"]
--- error_code eval
[302, 404, 301, 404, 308, 302, 404, 302, 301, 307]
--- response_body_like eval
[("\\S") x 9, "^\$"]
--- no_error_log
[error]
[alert]



=== TEST 17: $shortlink_code and $shortlink_url for logs and headers
--- config
    location / {
        shortlink;
        add_header X-Code $shortlink_code;
        add_header X-Url $shortlink_url;
    }
--- request
GET /r301
--- error_code: 301
--- response_headers
X-Code: r301
X-Url: https://example.com/301



=== TEST 18: forward_query: the visitor's query string goes to the target
--- request eval
["GET /fwd?utm_source=x&b=2", "GET /fwdq?utm_source=x", "GET /fwd", "GET /r302?utm=x"]
--- error_code eval
[302, 302, 302, 302]
--- response_headers eval
["Location: https://example.com/f?utm_source=x&b=2",
 "Location: https://example.com/f?a=1&utm_source=x#top",
 "Location: https://example.com/f",
 "Location: https://example.com/302"]
