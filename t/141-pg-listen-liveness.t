# A LISTEN connection that goes silent without a reset (a partition, a NAT
# that forgot it) is noticed by its check (LISTEN again, answered within
# listen_check_timeout), treated like a lost one and replaced; meanwhile
# the bloom filter is bypassed, so a link created while notifications are
# black-holed redirects instead of getting 404.
#
# nginx reaches PostgreSQL through a small TCP proxy below, on loopback.
# On SIGUSR1 it stops forwarding, in both directions, on every connection
# that has sent LISTEN, and keeps them open: packets vanish, nothing is
# reset.  Connections opened afterwards are forwarded as usual.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use POSIX ();
use IO::Select;
use IO::Socket::INET;
use Time::HiRes ();

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'lv%';
    INSERT INTO shortlink.links (code, url)
         SELECT 'lv' || i, 'https://example.com/lv' || i
           FROM generate_series(1, 200) AS i;
});

our $check = 1;             # listen_check, seconds
our $check_timeout = 2;     # listen_check_timeout, seconds
our $slack = $ENV{TEST_NGINX_USE_VALGRIND} ? 20 : 5;

our $proxy_pid = start_proxy();
our $holed_at;

sub start_proxy {
    my $server = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 64,
        Proto => 'tcp', ReuseAddr => 1,
    ) or die "listen: $!";

    $ENV{TEST_NGINX_PROXY_PORT} = $server->sockport;

    my $pid = fork;
    die "fork: $!" unless defined $pid;

    if ($pid) {
        close $server;
        return $pid;
    }

    proxy($server, $ENV{TEST_NGINX_PG_PORT});
    POSIX::_exit(0);
}

sub proxy {
    my ($server, $port) = @_;
    my (%peer, %listens, %holed);
    my $hole = 0;

    local $SIG{USR1} = sub { $hole = 1 };
    local $SIG{TERM} = sub { POSIX::_exit(0) };

    my $sel = IO::Select->new($server);

    for (;;) {
        if ($hole) {
            $hole = 0;
            for my $s (grep { $listens{$_} } $sel->handles) {
                $holed{$s} = $holed{$peer{$s}} = 1;
                $sel->remove($s, $peer{$s});
            }
        }

        for my $s ($sel->can_read(0.1)) {
            if ($s == $server) {
                my $client = $server->accept or next;
                my $pg = IO::Socket::INET->new(
                    PeerAddr => '127.0.0.1', PeerPort => $port,
                    Proto => 'tcp');
                if (!$pg) {
                    close $client;
                    next;
                }
                $peer{$client} = $pg;
                $peer{$pg} = $client;
                $listens{$client} = 0;
                $sel->add($client, $pg);
                next;
            }

            my $other = $peer{$s} or next;
            my $n = sysread($s, my $buf, 65536);

            if (!$n) {
                $sel->remove($s, $other);
                delete @peer{$s, $other};
                delete $listens{$s};
                close $s;
                close $other;
                next;
            }

            # a client connection that subscribes (both are its ends)
            if (exists $listens{$s} && $buf =~ /LISTEN /) {
                $listens{$s} = $listens{$other} = 1;
            }

            my $off = 0;
            while ($off < $n) {
                my $w = syswrite($other, $buf, $n - $off, $off);
                last unless defined $w;
                $off += $w;
            }
        }
    }
}

sub hole {
    kill 'USR1', $proxy_pid or die "kill: $!";
    $holed_at = Time::HiRes::time();
    select(undef, undef, undef, 0.3);
}

sub error_log {
    my $log = Test::Nginx::Socket::server_root() . "/logs/error.log";
    open my $fh, '<', $log or die "$log: $!";
    local $/;
    return <$fh>;
}

sub count_in_log {
    my ($re) = @_;
    my @m = (error_log() =~ /$re/g);
    return scalar @m;
}

END {
    if ($proxy_pid) {
        kill 'TERM', $proxy_pid;
        waitpid($proxy_pid, 0);
    }
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<"_EOC_");
    shortlink_postgres "host=127.0.0.1 port=\$TEST_NGINX_PROXY_PORT dbname=shortlink user=shortlink"
                       listen_check=${check}s listen_check_timeout=${check_timeout}s
                       backoff=500ms;
    shortlink_zone links:1m negative_ttl=1s;
    shortlink_bloom capacity=10000 error=0.001;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / {
        shortlink;
        add_header X-Cache $shortlink_cache always;
    }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: through the proxy: a link redirects, the filter gets built
--- request
GET /lv1
--- error_code: 302
--- wait: 1
--- no_error_log
[error]



=== TEST 2: the filter is trusted: an unknown code gets 404 from it
--- init
Test::More::ok(ShortlinkTest::wait_until(sub {
    main::count_in_log(qr/bloom filter built: \d+ codes/) >= 1 }, $::slack),
    "the filter was built");
--- request
GET /lvunknown1
--- error_code: 404
--- response_headers
X-Cache: bloom



=== TEST 3: LISTEN black-holed, a link created meanwhile: not announced, 404 until noticed
--- init
main::hole();
ShortlinkTest::sql("INSERT INTO shortlink.links (code, url) VALUES ('lvnew', 'https://example.com/lvnew')");
--- request
GET /lvnew
--- error_code: 404
--- response_headers
X-Cache: bloom



=== TEST 4: the dead LISTEN connection is noticed: the filter is bypassed, the new link redirects
--- init
Test::More::ok(ShortlinkTest::wait_until(sub {
    main::count_in_log(qr/LISTEN connection did not answer within 2000 ms/) >= 1
}, $::check + $::check_timeout + $::slack), "the dead LISTEN connection was noticed");
my $log = main::error_log();
Test::More::like($log, qr/bloom filter bypassed/, "the filter was bypassed");
--- request
GET /lvnew
--- error_code: 302
--- response_headers
Location: https://example.com/lvnew



=== TEST 5: replaced within listen_check + listen_check_timeout (+ backoff), then the filter is rebuilt and trusted again
--- init
Test::More::ok(ShortlinkTest::wait_until(sub {
    main::count_in_log(qr/listening on "shortlink_links"/) >= 2
    && main::count_in_log(qr/bloom filter built: \d+ codes/) >= 2
}, $::check + $::check_timeout + 1 + $::slack), "subscribed again, filter rebuilt");
my $took = Time::HiRes::time() - $::holed_at;
Test::More::cmp_ok($took, '<', $::check + $::check_timeout + 1 + $::slack,
                   "replaced within the bound ($took s)");
# the old backend is still there, held by the proxy; a new one listens too
Test::More::cmp_ok(ShortlinkTest::sql_value(
    "SELECT count(*) FROM pg_stat_activity"
    . " WHERE application_name = 'nginx-shortlink'"
    . " AND query = 'LISTEN shortlink_links'"), '>=', 2,
    "a new LISTEN connection besides the black-holed one");
--- request eval
["GET /lvnew", "GET /lvunknown2", "GET /lv2"]
--- error_code eval
[302, 404, 302]
--- response_headers eval
["Location: https://example.com/lvnew", "X-Cache: bloom", "X-Cache: pg"]



=== TEST 6: notifications arrive on the new connection
--- init
ShortlinkTest::sql("UPDATE shortlink.links SET url = 'https://example.com/lvchanged' WHERE code = 'lvnew'");
select(undef, undef, undef, 0.3);
--- request
GET /lvnew
--- error_code: 302
--- response_headers
Location: https://example.com/lvchanged
