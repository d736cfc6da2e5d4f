# Queued clicks and the end of a worker: a reload's old workers and a
# graceful stop both make one last flush, so nothing queued is lost.  The
# flush interval is an hour here: only the last flush can write anything.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'exit1';
    INSERT INTO shortlink.links (code, url) VALUES ('exit1', 'https://example.com/exit1');
    DELETE FROM shortlink.clicks WHERE code = 'exit1';
});

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=1h timeout=3s;
_EOC_
    $block->set_value("config", "location / { shortlink; }")
        unless defined $block->config;
});

master_on();
workers(1);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: ten clicks, queued
--- request eval
[("GET /exit1") x 10]
--- error_code eval
[(302) x 10]



=== TEST 2: a reload: the old worker writes them on its way out
--- init
my $pidfile = Test::Nginx::Socket::server_root() . "/logs/nginx.pid";
open my $fh, '<', $pidfile or die "$pidfile: $!";
chomp(my $pid = <$fh>);
kill 'HUP', $pid or die "HUP $pid: $!";
select(undef, undef, undef, 1.5);
Test::More::is(ShortlinkTest::sql_value(
    "SELECT count(*) FROM shortlink.clicks WHERE code = 'exit1'"),
    10, 'the reload flushed the ten queued clicks');
--- request eval
[("GET /exit1") x 5]
--- error_code eval
[(302) x 5]



=== TEST 3: a graceful stop (when TEST 4 restarts nginx): the last five are written too
--- request
GET /nosuch.code
--- error_code: 404
--- shutdown_error_log eval
qr/shortlink flush: 5 clicks committed/
--- no_shutdown_error_log
clicks not written to PostgreSQL at exit
[alert]



=== TEST 4: a config of its own stops the nginx of TEST 1-3 first: by now
the clicks queued before the reload and before the stop all arrived
--- config
    location / { return 204; }
--- init
Test::More::is(ShortlinkTest::sql_value(
    "SELECT count(*) FROM shortlink.clicks WHERE code = 'exit1'"),
    15, 'the clicks queued before the reload and before the stop all arrived');
--- request
GET /exit1
--- error_code: 204
