# The "_sls" source marker: /{code}?_sls=<source> records the click with
# source=<source> (1-16 of a-z), never forwards "_sls" to the target (links
# with forward_query), and ignores any other value without an error.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 't174%';
    DELETE FROM shortlink.clicks WHERE code LIKE 't174%';
    INSERT INTO shortlink.links (code, url, forward_query) VALUES
        ('t174f', 'https://example.com/f?x=1#frag', true),
        ('t174n', 'https://example.com/n', false),
        ('t174h', 'https://example.com/h', true);
});

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms batch=1000;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

# --- what reached PostgreSQL -------------------------------------------------

sub rows { sql_value("SELECT count(*) FROM shortlink.clicks WHERE $_[0]") }

ok(wait_until(sub { rows("code LIKE 't174%'") >= 17 }, 10),
   'all clicks of the suite arrived');
is(rows("code = 't174f' AND extra->>'source' = 'qr'"), 4,
   'forwarding link: the four valid markers are recorded as source=qr');
is(rows("code = 't174f' AND extra->>'source' = 'profile'"), 1,
   'another valid source');
is(rows("code = 't174f' AND NOT coalesce(extra ? 'source', false)"), 2,
   'no marker, or an empty one: no source');
is(rows("code = 't174n' AND extra->>'source' = 'qr'"), 1,
   'a link without forward_query records the marker too');
is(rows("code = 't174h'"), 9, 'every hostile marker still redirects and is recorded');
is(rows("code = 't174h' AND extra ? 'source'"), 0,
   'no hostile marker is recorded as a source');

__DATA__

=== TEST 1: the marker is recorded and never forwarded
--- request eval
["GET /t174f?_sls=qr",
 "GET /t174f?a=1&_sls=qr&b=2",
 "GET /t174f?_sls=qr&_sls=xx&c=3",
 "GET /t174f?d=4&_sls=qr",
 "GET /t174f?_sls=profile",
 "GET /t174f?e=5",
 "GET /t174f?_sls"]
--- error_code eval
[(302) x 7]
--- response_headers eval
["Location: https://example.com/f?x=1#frag",
 "Location: https://example.com/f?x=1&a=1&b=2#frag",
 "Location: https://example.com/f?x=1&c=3#frag",
 "Location: https://example.com/f?x=1&d=4#frag",
 "Location: https://example.com/f?x=1#frag",
 "Location: https://example.com/f?x=1&e=5#frag",
 "Location: https://example.com/f?x=1#frag"]
--- no_error_log
[error]



=== TEST 2: without forward_query the target is the link's URL
--- request
GET /t174n?_sls=qr&z=1
--- error_code: 302
--- response_headers
Location: https://example.com/n
--- no_error_log
[error]



=== TEST 3: hostile markers: ignored (stripped), never an error
--- request eval
["GET /t174h?_sls=QR",
 "GET /t174h?_sls=q%72",
 "GET /t174h?_sls=abcdefghijklmnopq",
 "GET /t174h?_sls=qr1&k=1",
 "GET /t174h?_sls=%3Cscript%3E",
 "GET /t174h?_sls=q'r",
 "GET /t174h?_sls=&_sls==qr",
 "GET /t174h?_slsx=qr",
 "GET /t174h?&&_sls=%00&&"]
--- error_code eval
[(302) x 9]
--- response_headers eval
["Location: https://example.com/h",
 "Location: https://example.com/h",
 "Location: https://example.com/h",
 "Location: https://example.com/h?k=1",
 "Location: https://example.com/h",
 "Location: https://example.com/h",
 "Location: https://example.com/h",
 "Location: https://example.com/h?_slsx=qr",
 "Location: https://example.com/h"]
--- no_error_log
[error]
[alert]
