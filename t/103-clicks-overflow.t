# A full click queue: the redirect still succeeds, the click is counted as
# dropped, and the error log says so at most once a second.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use Time::HiRes ();

sql(q{
    DELETE FROM shortlink.links WHERE code = 'full1';
    INSERT INTO shortlink.links (code, url) VALUES ('full1', 'https://example.com/full1');
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: 200 redirects into a queue that holds far fewer
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
    shortlink_queue tiny:64k;
    shortlink_flush interval=1h;
--- config
    location / { shortlink; }
--- init
$main::t0 = Time::HiRes::time();
--- request eval
[("GET /full1") x 200]
--- more_headers eval
"User-Agent: " . ("u" x 500)
--- error_code eval
[(302) x 200]
--- no_error_log
[error]
[alert]



=== TEST 2: the drops were logged, and at most once a second: no more lines
than the seconds TEST 1 touched (however fast the runner sent its requests)
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
    shortlink_queue tiny:64k;
    shortlink_flush interval=1h;
--- config
    location / { shortlink; }
--- init
my $log = Test::Nginx::Socket::server_root() . "/logs/error.log";
open my $fh, '<', $log or die "$log: $!";
my $n = grep { /click queue "tiny" is full, click dropped/ } <$fh>;
my $seconds = int(Time::HiRes::time()) - int($main::t0) + 1;
Test::More::ok($n >= 1 && $n <= $seconds,
               "queue-full lines in the log: $n, in $seconds distinct seconds");
--- request
GET /full1
--- error_code: 302
