# Visit limits and the fallback URL: a link stops redirecting to its url
# after max_visits recorded clicks (counted from the click pipeline's
# rollup), the overshoot under concurrent load stays within one flush
# interval times the click rate (plus commit and notification), and an
# expired, disabled or exhausted link with a fallback_url redirects there
# instead of answering 404.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use IO::Socket::INET ();
use Time::HiRes ();

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'lm%';
    DELETE FROM shortlink.clicks WHERE code LIKE 'lm%';
    DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE 'lm%';
    INSERT INTO shortlink.links (code, url, owner, expires_at, enabled,
                                 fallback_url, max_visits) VALUES
      ('lmexp', 'https://example.com/lmexp', 't181', now() - interval '1 hour',
       true, 'https://example.com/fallback-expired', NULL),
      ('lmdis', 'https://example.com/lmdis', 't181', NULL, false,
       'https://example.com/fallback-disabled', NULL),
      ('lmnofb', 'https://example.com/lmnofb', 't181', now() - interval '1 hour',
       true, NULL, NULL),
      ('lmsoon', 'https://example.com/lmsoon', 't181', now() + interval '2 seconds',
       true, 'https://example.com/fallback-soon', NULL),
      ('lmlim', 'https://example.com/lmlim', 't181', NULL, true,
       'https://example.com/fallback-limit', 3),
      ('lmlim0', 'https://example.com/lmlim0', 't181', NULL, true, NULL, 2),
      ('lmload', 'https://example.com/lmload', 't181', NULL, true,
       'https://example.com/fallback-load', 100);
});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t181')");

# the database refuses what the API would
for my $bad ("max_visits = 0", "fallback_url = 'javascript:alert(1)'",
             "fallback_url = 'https://x.org/a b'",
             "exhausted_at = now()") {
    my $err = eval { sql("UPDATE shortlink.links SET $bad WHERE code = 'lmdis'"); 1 }
              ? '' : "$@";
    like($err, qr/violates check constraint/, "psql cannot set $bad");
}

our $http_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone limits:1m ttl=1h;
    shortlink_queue clicks:4m;
    shortlink_flush interval=100ms batch=1000;
_EOC_

our $config = <<'_EOC_';
    location / { shortlink; add_header X-Cache $shortlink_cache always; }
    location /_api/ { shortlink_api; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $::http_config);
    $block->set_value("config", $::config);
    $block->set_value("no_error_log", "[error]\n[alert]\n[crit]")
        unless defined $block->no_error_log;
});

# $n clients GET $uri one after another until each has seen $enough
# redirects to $fallback (or $seconds passed): (target, fallback, other,
# elapsed seconds)
sub hammer {
    my ($uri, $fallback, $n, $enough, $seconds) = @_;
    my $port = Test::Nginx::Socket::server_port();
    my @files;
    my @pids;
    my $start = Time::HiRes::time();
    for my $i (1 .. $n) {
        my $file = "/tmp/t181.$$.$i";
        push @files, $file;
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my ($t, $f, $o) = (0, 0, 0);
            my $end = Time::HiRes::time() + $seconds;
            while ($f < $enough && Time::HiRes::time() < $end) {
                my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")
                    or next;
                print $s "GET $uri HTTP/1.0\r\nHost: localhost\r\n\r\n";
                my $resp = do { local $/; <$s> } // '';
                my ($loc) = $resp =~ m{^Location: (\S+)}mi;
                if (!defined $loc) { $o++ }
                elsif ($loc eq $fallback) { $f++ }
                else { $t++ }
            }
            open my $fh, '>', $file or die $!;
            print $fh "$t $f $o\n";
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid $_, 0 for @pids;
    my $elapsed = Time::HiRes::time() - $start;
    my ($t, $f, $o) = (0, 0, 0);
    for my $file (@files) {
        open my $fh, '<', $file or die "$file: $!";
        my ($a, $b, $c) = split ' ', scalar <$fh>;
        close $fh;
        unlink $file;
        $t += $a; $f += $b; $o += $c;
    }
    return ($t, $f, $o, $elapsed);
}

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: expired, with a fallback: redirected there
--- request
GET /lmexp
--- error_code: 302
--- response_headers
Location: https://example.com/fallback-expired



=== TEST 2: disabled, with a fallback: redirected there
--- request
GET /lmdis
--- error_code: 302
--- response_headers
Location: https://example.com/fallback-disabled



=== TEST 3: expired, without a fallback: 404 as before
--- request
GET /lmnofb
--- error_code: 404



=== TEST 4: a link about to expire, cached
--- init
ShortlinkTest::sql(q{UPDATE shortlink.links SET expires_at = now() + interval '2 seconds'
                      WHERE code = 'lmsoon'});
--- request
GET /lmsoon
--- error_code: 302
--- response_headers
Location: https://example.com/lmsoon



=== TEST 5: ... once expired goes to its fallback
--- init
# expires_epoch is whole seconds (rounded) and nginx compares whole seconds:
# the link may live up to a second past expires_at
Time::HiRes::sleep(3.2);
--- request
GET /lmsoon
--- error_code: 302
--- response_headers
Location: https://example.com/fallback-soon



=== TEST 6: a limited link redirects while under its limit
--- request eval
["GET /lmlim", "GET /lmlim", "GET /lmlim", "GET /lmlim0", "GET /lmlim0"]
--- error_code eval
[302, 302, 302, 302, 302]
--- response_headers eval
["Location: https://example.com/lmlim", "Location: https://example.com/lmlim",
 "Location: https://example.com/lmlim", "Location: https://example.com/lmlim0",
 "Location: https://example.com/lmlim0"]



=== TEST 7: the limit reached: the fallback (seen within a few flushes)
--- init
my $window = $ENV{TEST_NGINX_USE_VALGRIND} ? 10 : 3;
my $ok = ShortlinkTest::wait_until(sub {
    ShortlinkTest::sql_value(q{SELECT count(*) FROM shortlink.links
                                WHERE code IN ('lmlim', 'lmlim0')
                                  AND exhausted_at IS NOT NULL}) == 2
}, $window);
Test::More::ok($ok, 'both links marked exhausted by the click pipeline');
Time::HiRes::sleep(0.3);       # the notification
--- request
GET /lmlim
--- error_code: 302
--- response_headers
Location: https://example.com/fallback-limit



=== TEST 8: the limit reached, without a fallback: 404
--- request
GET /lmlim0
--- error_code: 404



=== TEST 9: the API shows the limit and the count (the fallback visit too)
--- request
GET /_api/links/lmlim/limits
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 200
--- response_body_like: ^\{"code": "lmlim", "visits": 4, "version": \d+, "max_visits": 3, "exhausted_at": "20\d\d-[^"]+Z", "fallback_url": "https://example.com/fallback-limit"\}$



=== TEST 10: raising the limit makes the link redirect again at once
--- request
PUT /_api/links/lmlim/limits
{"max_visits": 10}
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 200
--- response_body_like: "exhausted_at": null



=== TEST 11: ... (the notification dropped the cached fallback)
--- init
Time::HiRes::sleep(0.3);
--- request
GET /lmlim
--- error_code: 302
--- response_headers
Location: https://example.com/lmlim



=== TEST 12: invalid limits: 422, nothing changed
--- request eval
["PUT /_api/links/lmlim/limits\n{\"max_visits\": 0, \"fallback_url\": \"ftp://x\", \"colour\": 1}",
 "PUT /_api/links/lmlim/limits\n{\"max_visits\": 1.5}",
 "PUT /_api/links/lmlim/limits\n[]",
 "GET /_api/links/lmlim/limits"]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code eval
[422, 422, 400, 200]
--- response_body_like eval
['"pointer": "/colour".*"pointer": "/fallback_url".*"pointer": "/max_visits"',
 '"pointer": "/max_visits"', 'not an object', '"max_visits": 10']



=== TEST 13: overshoot under concurrent load stays within the bound
--- init
my $interval = 0.1;
my ($t, $f, $o, $elapsed) = main::hammer('/lmload', 'https://example.com/fallback-load',
                                         4, 20, 20);
my $rate = ($t + $f + $o) / $elapsed;
my $over = $t - 100;
# a flush interval, the batch's commit and the notification: 0.5 s for the
# last two on a loaded machine
my $bound = $rate * ($interval + 0.5);
Test::More::diag(sprintf("lmload: %d to the target, %d to the fallback, %d other "
                         . "in %.2f s (%.0f/s): overshoot %d, bound %.0f",
                         $t, $f, $o, $elapsed, $rate, $over, $bound));
Test::More::is($o, 0, 'every answer is a redirect');
Test::More::cmp_ok($t, '>=', 100, 'at least max_visits visitors reached the target');
Test::More::cmp_ok($over, '<=', $bound, 'overshoot within rate x (interval + 0.5 s)');
Test::More::cmp_ok($f, '>=', 80, 'then every client was sent to the fallback');
--- request
GET /lmload
--- error_code: 302
--- response_headers
Location: https://example.com/fallback-load
