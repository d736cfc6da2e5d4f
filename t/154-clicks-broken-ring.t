# Nothing read from the click queue's ring is trusted.  gdb breaks the ring
# of a running nginx while clicks wait in it (PostgreSQL is down): a frame
# length past the ring's end, a record whose parts do not add up to its
# length, a count that disagrees with the bytes in use.  Each time the
# flusher (or the next push) finds it, logs it at alert, empties the queue
# and counts the clicks it held as dropped; nothing is read out of bounds,
# no worker dies, and clicks after it are written as usual.

our $gdb_bin;

BEGIN {
    $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0;
    $gdb_bin = `command -v gdb 2>/dev/null`;
    chomp $gdb_bin;
    require Test::More;
    Test::More::plan(skip_all => 'gdb is needed to write into a running nginx')
        unless $gdb_bin;
    Test::More::plan(skip_all => 'gdb cannot attach to nginx under valgrind')
        if $ENV{TEST_NGINX_USE_VALGRIND};
}

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'ring1';
    INSERT INTO shortlink.links (code, url) VALUES ('ring1', 'https://example.com/r');
    DELETE FROM shortlink.clicks WHERE code = 'ring1';
});

our $Down;
our $sh;

END { local $?; eval { pg_start() } if $Down }

sub rows {
    return sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 'ring1'");
}

sub error_log_count {
    my ($re) = @_;
    my $file = Test::Nginx::Socket::server_root() . "/logs/error.log";
    open my $fh, '<', $file or return 0;
    my $n = 0;
    while (<$fh>) {
        $n++ if $_ =~ $re;
    }
    return $n;
}

# the queue's shared state, as gdb sees it in a worker
$sh = '((ngx_http_shortlink_queue_ctx_t *) ((ngx_http_shortlink_main_conf_t *)'
         . ' ((ngx_http_conf_ctx_t *) ngx_cycle->conf_ctx[ngx_http_module.index])'
         . '->main_conf[ngx_http_shortlink_module.ctx_index])->queue->data)->sh';

# run gdb commands in the (only) worker of the nginx under test
sub gdb {
    my (@cmds) = @_;
    my $root = Test::Nginx::Socket::server_root();
    open my $fh, '<', "$root/logs/nginx.pid" or die "nginx.pid: $!";
    chomp(my $master = <$fh>);
    my ($worker) = split ' ', `pgrep -P $master`;
    die "no worker" unless $worker;
    my $out = `$gdb_bin -nx -batch -p $worker -ex 'set pagination off' @{[
                 join ' ', map { "-ex '$_'" } @cmds ]} -ex detach 2>&1`;
    return $out;
}

sub metric {
    my ($name) = @_;
    return metrics_text() =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

sub broken_alerts {
    my $file = Test::Nginx::Socket::server_root() . "/logs/error.log";
    open my $fh, '<', $file or return ();
    return map { /\[alert\] .*click queue "clicks" found broken and emptied, (\d+) clicks dropped/
                 ? $1 : () } <$fh>;
}

# break the ring, PostgreSQL back, wait for the alert: $lost clicks
# dropped (the three queued; for a wild count, what it claimed, within
# the ring's bounds)
sub break_and_recover {
    my ($what, $lost, @cmds) = @_;
    my $alerts = () = broken_alerts();
    my $dropped = metric('shortlink_clicks_total{state="dropped"}');
    my $out = gdb(@cmds, "print $sh->count");
    Test::More::like($out, qr/\$\d+ = \d+/, "gdb broke the ring: $what");
    ShortlinkTest::pg_start();
    $main::Down = 0;
    my @a;
    Test::More::ok(ShortlinkTest::wait_until(sub { (@a = broken_alerts()) > $alerts }, 30),
                   "$what: found and the queue emptied, once");
    Test::More::is(scalar(@a), $alerts + 1, "$what: one alert");
    Test::More::like($a[-1] // '', $lost, "$what: the clicks it held dropped");
    Test::More::is(metric('shortlink_clicks_total{state="dropped"}'), $dropped + ($a[-1] // 0),
                   "$what: counted as dropped");
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
workers(1);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: the link is cached, its click written; PostgreSQL stops
--- request
GET /ring1
--- error_code: 302
--- wait: 0.5



=== TEST 2: three clicks wait; the head's frame length is made to point past the ring
--- init
ShortlinkTest::wait_until(sub { main::rows() == 1 }, 10);
ShortlinkTest::pg_stop();
$main::Down = 1;
--- request eval
[("GET /ring1") x 3]
--- error_code eval
[(302) x 3]



=== TEST 3: found, emptied; three clicks wait; a record's parts no longer add up
--- init
main::break_and_recover('a frame past the end', qr/^3$/,
    "set var *(unsigned int *) ($main::sh->data + $main::sh->head) = 0x7ffffff0");
ShortlinkTest::pg_stop();
$main::Down = 1;
--- request eval
[("GET /ring1") x 3]
--- error_code eval
[(302) x 3]



=== TEST 4: found, emptied; three clicks wait; the count disagrees with the bytes
--- init
# the code's length (byte 24 of a record, after the 8-byte frame)
main::break_and_recover('a record that does not add up', qr/^3$/,
    "set var *($main::sh->data + $main::sh->head + 8 + 24) = 200");
ShortlinkTest::pg_stop();
$main::Down = 1;
--- request eval
[("GET /ring1") x 3]
--- error_code eval
[(302) x 3]



=== TEST 5: found, emptied; the queue works again
--- init
main::break_and_recover('a count past the bytes', qr/^1000$/,
                        "set var $main::sh->count = 1000");
--- request eval
[("GET /ring1") x 5]
--- error_code eval
[(302) x 5]



=== TEST 6: the five clicks after it are written, the queue at 0
--- init
Test::More::ok(ShortlinkTest::wait_until(sub { main::rows() == 6 }, 30),
               'the clicks after the breakage are in PostgreSQL');
--- request
GET /metrics
--- response_body_like
(?m)^shortlink_click_queue_clicks 0$
--- no_error_log
[crit]
[emerg]
