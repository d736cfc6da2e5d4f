# A worker killed with SIGKILL in the middle of a flush: nothing is lost,
# nothing is written twice.  The flush is held up by a lock on the clicks
# table, every worker is killed while it waits, the lock is released: the
# killed flusher's statement may still commit, and the next lease holder
# sends the same batch again.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use POSIX ();

sql(q{
    DELETE FROM shortlink.links WHERE code = 'kill1';
    INSERT INTO shortlink.links (code, url) VALUES ('kill1', 'https://example.com/kill1');
    DELETE FROM shortlink.clicks WHERE code = 'kill1';
});

# kill every worker of the nginx under test, after a delay, in the
# background
sub kill_workers_later {
    my ($delay) = @_;
    my $pidfile = Test::Nginx::Socket::server_root() . "/logs/nginx.pid";
    open my $fh, '<', $pidfile or die "$pidfile: $!";
    chomp(my $master = <$fh>);
    my $pid = fork // die "fork: $!";
    return if $pid;
    select(undef, undef, undef, $delay);
    for my $w (split ' ', `pgrep -P $master`) {
        kill 'KILL', $w;
    }
    POSIX::_exit(0);
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms timeout=1s;
_EOC_
    $block->set_value("config", "location / { shortlink; }");
});

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 'kill1'"),
   40, 'all 40 clicks are in PostgreSQL');
is(sql_value("SELECT count(DISTINCT event_id) FROM shortlink.clicks"
             . " WHERE code = 'kill1'"), 40, 'none of them twice');

__DATA__

=== TEST 1: twenty clicks, flushed normally
--- request eval
[("GET /kill1") x 20]
--- error_code eval
[(302) x 20]
--- wait: 0.5



=== TEST 2: twenty more; the flush waits on a lock; the workers are killed
--- init
ShortlinkTest::sql_bg("BEGIN; LOCK TABLE shortlink.clicks IN ACCESS EXCLUSIVE MODE;"
                      . " SELECT pg_sleep(2); COMMIT;");
select(undef, undef, undef, 0.2);
main::kill_workers_later(0.6);
--- request eval
[("GET /kill1") x 20]
--- error_code eval
[(302) x 20]
--- wait: 5
