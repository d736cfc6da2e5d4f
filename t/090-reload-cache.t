# nginx -s reload keeps the shared-memory zone: links cached before the
# reload are answered from it by the new workers.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'kept';
    INSERT INTO shortlink.links (code, url)
         VALUES ('kept', 'https://example.com/kept');
});

master_on();
workers(1);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: cached before the reload
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
--- config
    location / { shortlink; add_header X-Cache $shortlink_cache; }
--- request eval
["GET /kept", "GET /kept"]
--- error_code eval
[302, 302]
--- response_headers eval
["X-Cache: pg", "X-Cache: shm"]



=== TEST 2: after SIGHUP the new worker answers from the same zone: since
nginx started, PostgreSQL answered for "kept" once, in TEST 1
--- init
my $pidfile = Test::Nginx::Socket::server_root() . "/logs/nginx.pid";
open my $fh, '<', $pidfile or die "$pidfile: $!";
chomp(my $pid = <$fh>);
kill 'HUP', $pid or die "HUP $pid: $!";
select(undef, undef, undef, 1);
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
--- config
    location / { shortlink; add_header X-Cache $shortlink_cache; }
--- request
GET /kept
--- error_code: 302
--- response_headers
X-Cache: shm
--- grep_error_log eval: qr/shortlink: lookup "kept" answered by \w+/
--- grep_error_log_out
shortlink: lookup "kept" answered by pg
--- no_error_log
[alert]
[crit]
