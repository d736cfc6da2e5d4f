# A stalled flusher's late commit changes nothing.  The flush of a batch is
# held up by a lock on the clicks table; gdb stops the worker that sent it
# as it receives PostgreSQL's answer, before it commits (a stall outside
# the event loop: with SIGSTOP in epoll_wait the call's own timeout would
# fire first on waking).  Its lease expires, the other worker takes the
# lease over and commits the same batch (PostgreSQL's unique event ids
# make the second insert a no-op).  When the stalled worker goes on, its
# commit is refused, fenced by the lease and the queue head: nothing is
# lost, nothing counted twice, the queue stays consistent.

our $gdb_bin;

BEGIN {
    $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0;
    $gdb_bin = `command -v gdb 2>/dev/null`;
    chomp $gdb_bin;
    require Test::More;
    Test::More::plan(skip_all => 'gdb is needed to stop a worker at a given function')
        unless $gdb_bin;
    Test::More::plan(skip_all => 'gdb cannot stop a worker that runs under valgrind')
        if $ENV{TEST_NGINX_USE_VALGRIND};
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'fence1';
    INSERT INTO shortlink.links (code, url) VALUES ('fence1', 'https://example.com/f');
    DELETE FROM shortlink.clicks WHERE code = 'fence1';
});

our ($Stopped, $Gdb, $GdbOut, $GdbGo);


sub file_has {
    my ($file, $re) = @_;
    open my $fh, '<', $file or return 0;
    local $/;
    my $text = <$fh> // '';
    return $text =~ $re;
}

# gdb stops $pid when a flush call's answer arrives, and lets it go on
# once the file $GdbGo exists
sub gdb_hold {
    my ($pid) = @_;
    my $dir = Test::Nginx::Socket::server_root() . "/logs";
    $GdbOut = "$dir/gdb.out";
    $GdbGo = "$dir/gdb.go";
    unlink $GdbGo;
    $Gdb = fork // die "fork: $!";
    if ($Gdb == 0) {
        open STDOUT, '>', $GdbOut or die "$GdbOut: $!";
        open STDERR, '>&', \*STDOUT;
        exec $gdb_bin, '-nx', '-batch', '-p', $pid,
             '-ex', 'set pagination off',
             '-ex', 'break ngx_http_shortlink_flush_job_done',
             '-ex', 'continue',
             '-ex', "shell while [ ! -e $GdbGo ]; do sleep 0.1; done",
             '-ex', 'detach', '-ex', 'quit';
        exit 127;
    }
}

END {
    if ($Gdb) {
        local $?;
        open my $fh, '>', $GdbGo;
        close $fh;
        waitpid($Gdb, 0);
    }
}

sub rows {
    return sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 'fence1'");
}

sub error_log_has {
    my ($re) = @_;
    return file_has(Test::Nginx::Socket::server_root() . "/logs/error.log", $re);
}

# the nginx worker whose connection runs the record_clicks() call waiting
# for the lock: the process owning the local end of that connection
sub flusher_pid {
    my $port = sql_value(q{
        SELECT client_port FROM pg_stat_activity
         WHERE query LIKE '%record_clicks%' AND wait_event_type = 'Lock'
         LIMIT 1});
    return undef unless $port;
    my $out = `ss -tnpH state established '( sport = :$port )'`;
    return $out =~ /"nginx",pid=(\d+)/ ? $1 : undef;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=2;
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms timeout=5s parallel=1;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

ok(ShortlinkTest::wait_until(sub { rows() == 50 }, 30), 'all 50 clicks are in PostgreSQL');
is(sql_value("SELECT count(*) FROM shortlink.clicks_rejected WHERE code = 'fence1'"),
   0, 'none set aside');
is(sql_value("SELECT count(DISTINCT event_id) FROM shortlink.clicks WHERE code = 'fence1'"),
   rows(), 'none of them twice');

__DATA__

=== TEST 1: twenty clicks, flushed normally
--- request eval
[("GET /fence1") x 20]
--- error_code eval
[(302) x 20]
--- wait: 0.5



=== TEST 2: the clicks table is locked; twenty more clicks, their flush waits
--- init
ShortlinkTest::sql_bg("BEGIN; LOCK TABLE shortlink.clicks IN ACCESS EXCLUSIVE MODE;"
                      . " SELECT pg_sleep(120); COMMIT;");
ShortlinkTest::wait_until(sub {
    ShortlinkTest::sql_value("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock'"
        . " AND granted AND relation = 'shortlink.clicks'::regclass") > 0 }, 10);
--- request eval
[("GET /fence1") x 20]
--- error_code eval
[(302) x 20]



=== TEST 3: the flusher is held as its answer comes; the other worker takes over
--- init
ShortlinkTest::wait_until(sub { defined($main::Stopped = main::flusher_pid()) }, 10);
Test::More::ok($main::Stopped, "the flusher waiting for the lock is worker $main::Stopped");
main::gdb_hold($main::Stopped);
Test::More::ok(ShortlinkTest::wait_until(sub { main::file_has($main::GdbOut, qr/Breakpoint 1 at/) }, 30),
               'gdb is attached');
# the lock goes: PostgreSQL commits the flusher's statement and answers
ShortlinkTest::sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE query LIKE '%LOCK TABLE shortlink.clicks%'
                        AND pid <> pg_backend_pid()});
ShortlinkTest::pg_wait_bg();
Test::More::ok(ShortlinkTest::wait_until(
                   sub { main::file_has($main::GdbOut, qr/Breakpoint 1, ngx_http_shortlink_flush_job_done/) },
                   30),
               'the flusher is stopped with the answer, before its commit');
# its lease (timeout + 1 s) expires; the other worker takes it over and
# commits the batch (and whatever came after it)
Test::More::ok(ShortlinkTest::wait_until(
                   sub { main::error_log_has(qr/flush lease of process $main::Stopped expired, taken over/) },
                   30),
               'the other worker took the lease over');
Test::More::ok(ShortlinkTest::wait_until(sub { main::rows() == 40 }, 30),
               'all clicks are in PostgreSQL while the flusher is stopped');
--- request
GET /metrics
--- response_body_like
(?ms)^shortlink_clicks_total\{state="enqueued"\} 40$.*^shortlink_clicks_total\{state="flushed"\} 40$.*^shortlink_click_queue_clicks 0$



=== TEST 4: the stalled flusher goes on: its late commit is refused
--- init
open my $fh, '>', $main::GdbGo or die "$main::GdbGo: $!";
close $fh;
waitpid($main::Gdb, 0);
$main::Gdb = undef;
Test::More::ok(ShortlinkTest::wait_until(
                   sub { main::error_log_has(qr/\[notice\] $main::Stopped#\d+: shortlink: late commit of \d+ clicks ignored: the queue moved on meanwhile/) }, 30),
               'the late commit was refused');
--- request
GET /metrics
--- response_body_like
(?ms)^shortlink_clicks_total\{state="enqueued"\} 40$.*^shortlink_clicks_total\{state="flushed"\} 40$.*^shortlink_click_queue_clicks 0$.*^shortlink_click_queue_bytes\{state="used"\} 0$
--- no_error_log
[alert]
[crit]



=== TEST 5: the queue still works: ten more clicks arrive
--- request eval
[("GET /fence1") x 10]
--- error_code eval
[(302) x 10]
