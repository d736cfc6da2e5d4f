# The management API end to end through nginx: auth, create (and the first
# visit is a cache hit), change, delete, errors as problem+json, body
# limits, health.  The rules themselves are tested in t/130-api-sql.t.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{DELETE FROM shortlink.links WHERE code LIKE 'e2e%'});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t130-e2e')");
$ENV{TEST_NGINX_OTHER_KEY} = sql_value("SELECT shortlink.create_api_key('t130-other')");

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; add_header X-Cache $shortlink_cache always; }
    location /_api/ {
        shortlink_api;
        client_max_body_size 20m;
        client_body_buffer_size 2m;
    }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: no key: 401 as problem+json
--- request
GET /_api/links/e2e1
--- error_code: 401
--- response_headers
Content-Type: application/problem+json
Cache-Control: no-store
--- response_body_like: "status"\s*:\s*401



=== TEST 2: create a link with an alias: 201, and its first visit is a cache hit
--- request eval
["POST /_api/links\n{\"url\": \"https://example.com/e2e1\", \"code\": \"e2e1\"}",
 "GET /e2e1"]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}
Content-Type: application/json"
--- error_code eval
[201, 302]
--- response_headers eval
["Content-Type: application/json", "X-Cache: shm"]
--- response_body_like eval
['"short_url"\s*:\s*"http://localhost(:\d+)?/e2e1"', '.*']
--- no_error_log
[error]



=== TEST 3: the alias is taken: 409; a javascript: URL: 422
--- request eval
["POST /_api/links\n{\"url\": \"https://example.com/x\", \"code\": \"e2e1\"}",
 "POST /_api/links\n{\"url\": \"javascript:alert(1)\"}",
 "POST /_api/links\n{\"url\": \"https://example.com/a\\r\\nSet-Cookie: x=1\"}",
 "POST /_api/links\n{\"url\": "]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code eval
[409, 422, 422, 400]
--- response_headers eval
[("Content-Type: application/problem+json") x 4]



=== TEST 4: another owner's key: 403
--- request
GET /_api/links/e2e1
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_OTHER_KEY}"
--- error_code: 403



=== TEST 5: a change is seen by the redirect at once (NOTIFY)
--- request eval
["PATCH /_api/links/e2e1\n{\"url\": \"https://example.com/e2e1-new\"}",
 "GET /e2e1"]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code eval
[200, 302]
--- response_headers eval
["Content-Type: application/json", "Location: https://example.com/e2e1-new"]



=== TEST 6: delete: 204, then the link is gone
--- request eval
["DELETE /_api/links/e2e1", "GET /e2e1", "GET /_api/links/e2e1"]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code eval
[204, 404, 404]



=== TEST 7: a 10 MB body: 413 problem, nothing written
--- request eval
"POST /_api/links\n{\"url\": \"https://example.com/big\", \"title\": \"" . ("x" x 10_000_000) . "\"}"
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 413
--- response_headers
Content-Type: application/problem+json



=== TEST 8: a body that is not UTF-8: 400 problem
--- request eval
"POST /_api/links\n{\"url\": \"https://example.com/\xff\xfe\"}"
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 400
--- response_headers
Content-Type: application/problem+json



=== TEST 9: health
--- request
GET /_api/health
--- error_code: 200
--- response_body_like: ^\{"status":"ok","postgresql":"up","redis":"off","zone":\{"size":\d+,"free":\d+\}\}$
