# L1, the shared-memory zone: which tier answered ($shortlink_cache), TTL
# and negative TTL, a link's own expiry, changes made in psql, a full zone,
# and stale entries served while PostgreSQL is down.

# blocks build on what nginx kept from the previous one (connections,
# cache entries): restart nginx only when the config changes
BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links;
    INSERT INTO shortlink.links (code, url) VALUES
        ('c1', 'https://example.com/c1'),
        ('c2', 'https://example.com/c2'),
        ('c3', 'https://example.com/c3'),
        ('stale', 'https://example.com/stale');
    INSERT INTO shortlink.links (code, url)
         VALUES ('soon', 'https://example.com/soon');
    INSERT INTO shortlink.links (code, url, forward_query)
         VALUES ('fwdc', 'https://example.com/fwdc', true);
    INSERT INTO shortlink.links (code, url)
         SELECT 'big' || i, 'https://example.com/' || repeat('x', 2000) || i
           FROM generate_series(1, 300) AS i;
});

our $config = <<'_EOC_';
    location / {
        shortlink;
        add_header X-Cache $shortlink_cache always;
    }
_EOC_

# TEST 8-10 need an nginx with long TTLs: only a changed --- config restarts
# nginx, so they have a config of their own (the same three times)
our $config_1h = <<'_EOC_';
    # ttl=1h negative_ttl=1h
    location / {
        shortlink;
        add_header X-Cache $shortlink_cache always;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("config", $::config) unless defined $block->config;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    shortlink_postgres "$ENV{TEST_NGINX_PG_DSN}" backoff=200ms;
    shortlink_zone links:1m ttl=1s negative_ttl=1s stale_if_error=1h;
_EOC_
    }
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a miss is answered by PostgreSQL, the next request by the zone
--- request eval
["GET /c1", "GET /c1"]
--- error_code eval
[302, 302]
--- response_headers eval
["X-Cache: pg", "X-Cache: shm"]
--- no_error_log
[error]
[alert]



=== TEST 2: a cache hit sends no query: since nginx started, TEST 1's miss
was the only lookup
--- request
GET /c1
--- error_code: 302
--- response_headers
X-Cache: shm
Location: https://example.com/c1
--- grep_error_log eval: qr/shortlink pg: sending "shortlink_lookup"/
--- grep_error_log_out
shortlink pg: sending "shortlink_lookup"
--- no_error_log
[error]



=== TEST 3: an unknown code is answered by PostgreSQL ...
--- request
GET /nope
--- error_code: 404
--- response_headers
X-Cache: pg
--- error_log
shortlink pg: sending "shortlink_lookup"



=== TEST 4: ... and then cached as absent for negative_ttl: no query (the
two lookups since nginx started are TEST 1's and TEST 3's)
--- request
GET /nope
--- error_code: 404
--- response_headers
X-Cache: negative
--- grep_error_log eval: qr/shortlink pg: sending "shortlink_lookup"/
--- grep_error_log_out
shortlink pg: sending "shortlink_lookup"
shortlink pg: sending "shortlink_lookup"



=== TEST 5: after the TTL the zone asks PostgreSQL again
--- init
select(undef, undef, undef, 1.2);
--- request eval
["GET /c1", "GET /nope"]
--- error_code eval
[302, 404]
--- response_headers eval
["X-Cache: pg", "X-Cache: pg"]



=== TEST 6: an entry never outlives its link's expires_at
--- init
ShortlinkTest::sql("UPDATE shortlink.links SET expires_at = now() + interval '3 s' WHERE code = 'soon'");
select(undef, undef, undef, 0.2);
--- request eval
["GET /soon", "GET /soon"]
--- error_code eval
[302, 302]
--- response_headers eval
["X-Cache: pg", "X-Cache: shm"]



=== TEST 7: ... and once the link expired, the zone does not serve it
--- init
select(undef, undef, undef, 3.1);
--- request
GET /soon
--- error_code: 404
--- response_headers
X-Cache: pg



=== TEST 8: a change made in psql reaches the zone at once (NOTIFY)
--- init
ShortlinkTest::sql("UPDATE shortlink.links SET url = 'https://example.com/c2-new' WHERE code = 'c2'");
select(undef, undef, undef, 0.3);
--- config eval: $::config_1h
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN" backoff=200ms;
    shortlink_zone links:1m ttl=1h negative_ttl=1h;
--- request
GET /c2
--- error_code: 302
--- response_headers
Location: https://example.com/c2-new
X-Cache: pg
--- no_error_log
[error]



=== TEST 9: a link created in psql is found even after it was cached as absent
--- config eval: $::config_1h
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN" backoff=200ms;
    shortlink_zone links:1m ttl=1h negative_ttl=1h;
--- request eval
["GET /fresh", "GET /fresh"]
--- error_code eval
[404, 404]
--- response_headers eval
["X-Cache: pg", "X-Cache: negative"]



=== TEST 10: ... created now
--- init
ShortlinkTest::sql("INSERT INTO shortlink.links (code, url) VALUES ('fresh', 'https://example.com/fresh')");
select(undef, undef, undef, 0.3);
--- config eval: $::config_1h
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN" backoff=200ms;
    shortlink_zone links:1m ttl=1h negative_ttl=1h;
--- request
GET /fresh
--- error_code: 302
--- response_headers
Location: https://example.com/fresh
X-Cache: pg



=== TEST 11: a full zone evicts the least recently used entries, quietly
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone tiny:32k ttl=1h;
--- config
    location = /fill.html { ssi on; root html; }
    location / { shortlink; }
--- user_files eval
">>> fill.html\n" . CORE::join("", map { qq{<!--# include virtual="/big$_" -->} } 1 .. 40)
--- request
GET /fill.html
--- response_body_like: ^(<html>.*?</html>\r\n){40}$
--- error_log
shortlink cache: evicted "big
--- no_error_log
[error]
[crit]
[alert]
[warn]



=== TEST 12: warm an entry that will be served stale
--- request eval
["GET /stale", "GET /stale"]
--- error_code eval
[302, 302]
--- response_headers eval
["X-Cache: pg", "X-Cache: shm"]



=== TEST 13: PostgreSQL down: the expired entry is served (stale-if-error)
--- init
select(undef, undef, undef, 1.2);
ShortlinkTest::pg_stop();
--- request
GET /stale
--- error_code: 302
--- response_headers
Location: https://example.com/stale
X-Cache: stale
--- error_log
served from an expired cache entry



=== TEST 14: ... a link never cached gets 503, not a hang
--- request
GET /c3
--- error_code: 503
--- response_headers
X-Cache: error
--- timeout: 2



=== TEST 15: PostgreSQL back: fresh answers again
--- init
ShortlinkTest::pg_start(); select(undef, undef, undef, 0.6);
--- request
GET /stale
--- error_code: 302
--- response_headers
X-Cache: pg
--- no_error_log
[alert]



=== TEST 16: forward_query survives the zone
--- request eval
["GET /fwdc?q=1", "GET /fwdc?q=2"]
--- error_code eval
[302, 302]
--- response_headers eval
["Location: https://example.com/fwdc?q=1\nX-Cache: pg",
 "Location: https://example.com/fwdc?q=2\nX-Cache: shm"]
