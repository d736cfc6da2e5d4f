# A bounded fuzz: 20,000 requests (or 60 s, whichever comes first) with
# random bytes in the path, the query, the headers and the body, to the
# redirect and to the API locations.  Afterwards no worker has died on a
# signal, nothing answered 5xx, nothing was logged at error or above, a
# known code still redirects and ordinary clicks still reach PostgreSQL.
# The seed is printed; TEST_FUZZ_SEED=n replays a run, TEST_FUZZ_DUMP=file
# writes the requests that got no answer at all.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use IO::Socket::INET;
use Time::HiRes ();

sql(q{
    DELETE FROM shortlink.links WHERE code = 'fz1';
    INSERT INTO shortlink.links (code, url) VALUES ('fz1', 'https://example.com/fz1');
    DELETE FROM shortlink.clicks WHERE code = 'fz1';
});

our $key = sql_value("SELECT shortlink.create_api_key('t190-fuzz', true)");
our $seed = $ENV{TEST_FUZZ_SEED} // int(rand(2**31));
our %status;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s;
    shortlink_zone links:1m;
    shortlink_bloom capacity=10000;
    shortlink_queue clicks:4m;
    shortlink_flush interval=100ms;
    shortlink_click_field campaign $http_x_campaign;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location /_api/ { shortlink_api; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

our $printable = join '', map { chr } 0x21 .. 0x7e;

# up to $max random bytes: any, or from $charset; a third of them
# printable ASCII, so that much of the fuzz gets past nginx's parser and
# the UTF-8 checks to the lookups, the API's SQL and the click queue
sub rbytes {
    my ($max, $charset) = @_;
    my $n = int(rand($max + 1));
    $charset = $printable if rand() < 0.33;
    return join '', map { chr(int(rand(256))) } 1 .. $n unless $charset;
    return join '', map { substr($charset, int(rand(length $charset)), 1) }
                    1 .. $n;
}

# one random request; some bytes may break the request line or headers,
# which is nginx's own 400: also an answer
sub fuzz_request {
    my $noline = join '', map { chr } grep { $_ != 10 && $_ != 13 } 0 .. 255;
    my $path = rand() < 0.5 ? '/' : '/_api/' . (rand() < 0.5 ? 'links/' : '');
    $path .= rbytes(40, rand() < 0.5 ? undef : $noline);
    $path =~ s/[ \r\n]/%20/g if rand() < 0.8;
    $path = '/_api/links' if rand() < 0.15;
    $path .= '?' . rbytes(60, $noline) if rand() < 0.5;

    my @h;
    push @h, "Host: " . (rand() < 0.8 ? 'localhost' : rbytes(30, $noline));
    for my $name (qw(User-Agent Referer Cookie X-Campaign Accept-Language
                     DNT Sec-GPC X-Forwarded-For))
    {
        push @h, "$name: " . rbytes(120, $noline) if rand() < 0.3;
    }
    push @h, "Cookie: sl_vid=" . rbytes(32, $noline) if rand() < 0.2;
    push @h, "Authorization: Bearer "
             . (rand() < 0.5 ? $::key : rbytes(70, $noline)) if rand() < 0.5;

    my $method = (qw(GET GET GET HEAD POST PATCH DELETE PUT))[int(rand(8))];
    my $body = '';
    if ($method =~ /^(POST|PATCH|PUT)$/) {
        my $r = rand();
        $body = $r < 0.3
              ? '{"url": "https://example.com/' . rbytes(30) . '"}'
              : $r < 0.5
              ? '{"url": "https://example.com/'
                . rbytes(20, join('', 'a' .. 'z', 0 .. 9)) . '", "tags": ["'
                . rbytes(20, $printable) . '"]}'
              : rbytes(300);
        push @h, "Content-Type: application/json",
                 "Content-Length: " . length($body);
    }
    return "$method $path HTTP/1.1\r\n" . join('', map { "$_\r\n" } @h)
           . "Connection: close\r\n\r\n$body";
}

sub fuzz {
    my ($count, $seconds) = @_;
    srand($::seed);
    Test::More::diag("fuzz seed $::seed (TEST_FUZZ_SEED replays it)");
    my $port = Test::Nginx::Socket::server_port();
    my $deadline = Time::HiRes::time() + $seconds;
    my $sent = 0;
    while ($sent < $count && Time::HiRes::time() < $deadline) {
        my $req = fuzz_request();
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                         PeerPort => $port, Timeout => 5)
            or die "connect: $!";
        $sent++;
        print $sock $req;
        $sock->shutdown(1);
        my $res = '';
        my $start = Time::HiRes::time();
        while (Time::HiRes::time() - $start < 5) {
            my $n = sysread($sock, my $buf, 65536);
            last unless $n;
            $res .= $buf;
        }
        close $sock;
        # a raw LF in the path ends the request line: HTTP/0.9, answered
        # without a status line
        my ($code) = $res =~ m{^HTTP/1\.[01] (\d{3})};
        $::status{defined $code ? substr($code, 0, 1) . 'xx'
                  : length $res ? 'HTTP/0.9' : 'none'}++;
        $::status{"5xx: $code for " . substr($req, 0, 60)}++
            if defined $code && $code >= 500;
        push @::unanswered, [$req, $res] unless length $res;
    }
    if ($ENV{TEST_FUZZ_DUMP} && @::unanswered) {
        open my $fh, '>', $ENV{TEST_FUZZ_DUMP} or die;
        print $fh map { "=== REQ\n$_->[0]\n=== RES\n$_->[1]\n" } @::unanswered;
    }
    Test::More::diag("fuzz: $sent requests, "
                     . join(', ', map { "$_ $::status{$_}" }
                                  sort keys %::status));
    return $sent;
}

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a known code redirects
--- request
GET /fz1
--- error_code: 302



=== TEST 2: 20,000 random requests; none answered 5xx or went unanswered
--- init
main::fuzz(20000, 60);
Test::More::is(($::status{'5xx'} // 0), 0, 'no 5xx');
Test::More::is(($::status{none} // 0), 0, 'every request was answered');
--- request
GET /fz1
--- error_code: 302
--- no_error_log
[error]
[crit]
[alert]
[emerg]
exited on signal



=== TEST 3: a hundred ordinary clicks
--- request eval
[("GET /fz1") x 100]
--- error_code eval
[(302) x 100]



=== TEST 4: every click arrived, the queue drained, no worker died
--- init
ShortlinkTest::wait_until(sub {
    ShortlinkTest::sql_value("SELECT count(*) FROM shortlink.clicks"
                             . " WHERE code = 'fz1'") == 102
}, 30);
Test::More::is(ShortlinkTest::sql_value(
    "SELECT count(*) FROM shortlink.clicks WHERE code = 'fz1'"), 102,
    'the 102 clicks of fz1 are in PostgreSQL');
--- request
GET /metrics
--- response_body_like
(?m)^shortlink_click_queue_clicks 0$
--- no_error_log
[error]
[alert]
exited on signal
