# PostgreSQL stopped while clicks arrive: redirects keep coming from the
# zone, clicks wait in the queue, and all of them arrive exactly once when
# PostgreSQL is back.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'out1';
    INSERT INTO shortlink.links (code, url) VALUES ('out1', 'https://example.com/out1');
    DELETE FROM shortlink.clicks WHERE code = 'out1';
});

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN" backoff=200ms;
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms;
_EOC_
    $block->set_value("config", "location / { shortlink; }");
});

no_shuffle();
no_root_location();
run_tests();

is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 'out1'"),
   22, 'every click arrived once the database was back');
is(sql_value("SELECT count(DISTINCT event_id) FROM shortlink.clicks"
             . " WHERE code = 'out1'"), 22, '... and none twice');

__DATA__

=== TEST 1: one click while PostgreSQL is up (and the link gets cached)
--- request
GET /out1
--- error_code: 302
--- wait: 0.3



=== TEST 2: PostgreSQL stopped: redirects from the zone, clicks wait
--- init
ShortlinkTest::pg_stop();
--- request eval
[("GET /out1") x 20]
--- error_code eval
[(302) x 20]
--- wait: 0.5
--- no_error_log
[alert]
[crit]



=== TEST 3: the flusher says it keeps them (it retries with backoff)
--- request
GET /out1
--- error_code: 302
--- wait: 3.5
--- error_log
clicks could not be written to PostgreSQL, kept in the queue and retried



=== TEST 4: PostgreSQL back: the queue drains
--- init
ShortlinkTest::pg_start();
--- request
GET /nosuch.code
--- error_code: 404
--- wait: 3
--- error_log
clicks are written again
