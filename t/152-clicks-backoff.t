# With PostgreSQL down, the flush backoff is shared by all workers: three
# workers make the attempts of one flusher (interval doubled after every
# failure), not three times as many.  The bound is computed from the time
# the test itself measured, so it holds at any pace: a flusher cannot make
# more attempts in E seconds than the waits of one backoff sequence allow.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use Time::HiRes ();

sql(q{
    DELETE FROM shortlink.links WHERE code = 'bo1';
    INSERT INTO shortlink.links (code, url) VALUES ('bo1', 'https://example.com/bo1');
    DELETE FROM shortlink.clicks WHERE code = 'bo1';
});

our ($F0, $T0, $Down);

END { local $?; eval { pg_start() } if $Down }

sub failed {
    return metrics_text() =~ /^shortlink_flush_batches_total\{result="failed"\} (\d+)$/m
           ? $1 : undef;
}

# the most attempts one flusher can make within $e seconds: the first,
# then one after each wait (100 ms doubled after every failure, at most
# 32 times), plus one for clock granularity
sub most_attempts {
    my ($e) = @_;
    my ($n, $t) = (1, 0);
    for (my $j = 0; ; $j++) {
        $t += 0.1 * 2 ** ($j < 5 ? $j : 5);
        last if $t > $e;
        $n++;
    }
    return $n + 1;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=2;
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms timeout=1s;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

master_on();
workers(3);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: the link is cached, its click written
--- request
GET /bo1
--- error_code: 302
--- wait: 0.5



=== TEST 2: PostgreSQL stops; clicks queue up
--- init
ShortlinkTest::pg_stop();
$main::Down = 1;
$main::F0 = main::failed();
$main::T0 = Time::HiRes::time();
--- request eval
[("GET /bo1") x 5]
--- error_code eval
[(302) x 5]



=== TEST 3: the attempts are those of one flusher
--- init
Time::HiRes::sleep(4);
my $f = main::failed() - $main::F0;
my $e = Time::HiRes::time() - $main::T0;
my $most = main::most_attempts($e);
Test::More::ok($f >= 1, "the flush was attempted ($f times)");
Test::More::ok($f <= $most, sprintf("%d attempts in %.1f s, at most %d of one flusher",
                                    $f, $e, $most));
ShortlinkTest::pg_start();
$main::Down = 0;
Test::More::ok(ShortlinkTest::wait_until(sub {
                   ShortlinkTest::sql_value("SELECT count(*) FROM shortlink.clicks"
                                            . " WHERE code = 'bo1'") == 6 }, 30),
               'PostgreSQL back: the six clicks are written');
ShortlinkTest::wait_until(sub { ShortlinkTest::metrics_text() =~ /^shortlink_click_queue_clicks 0$/m }, 10);
--- request
GET /metrics
--- response_body_like
(?m)^shortlink_click_queue_clicks 0$
