# shortlink_metrics: the Prometheus text format, and counters that move as
# requests are answered.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'met1';
    INSERT INTO shortlink.links (code, url) VALUES ('met1', 'https://example.com/met1');
});

# every line a comment or "name{label="value",...} number"
our $exposition = qr/\A(?:(?:# (?:HELP|TYPE) [a-z_]+ [^\n]*|[a-z_]+(?:\{[a-z_]+="[^"\n]*"(?:,[a-z_]+="[^"\n]*")*\})? (?:\d+(?:\.\d+)?|\+Inf))\n)+\z/;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a fresh nginx: the format, zeros
--- request
GET /metrics
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- response_body_like eval
$::exposition



=== TEST 2: counters move with requests
--- request eval
["GET /met1", "GET /met1", "GET /nope", "GET /a.b", "POST /met1", "GET /metrics"]
--- error_code eval
[302, 302, 404, 404, 405, 200]
--- response_body_like eval
[".*", ".*", ".*", ".*", ".*",
 qr/shortlink_requests_total\{outcome="redirect",tier="shm"\}\ 1\n
    .*shortlink_requests_total\{outcome="redirect",tier="pg"\}\ 1\n
    .*shortlink_requests_total\{outcome="not_found",tier="pg"\}\ 1\n
    .*shortlink_requests_total\{outcome="not_found",tier="invalid"\}\ 1\n
    .*shortlink_requests_total\{outcome="method_not_allowed",tier="shm"\}\ 1\n
    .*shortlink_lookup_duration_seconds_count\ 2\n
    .*shortlink_postgresql_lookups_total\ 2\n
    .*shortlink_clicks_total\{state="enqueued"\}\ 2\n/sx]



=== TEST 3: clicks flushed, batches counted, still valid text
--- request eval
["GET /met1", "GET /metrics"]
--- error_code eval
[302, 200]
--- wait: 0.5
--- response_body_like eval
[".*", $::exposition]
