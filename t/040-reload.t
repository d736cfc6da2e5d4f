# nginx -s reload (SIGHUP) with the module loaded: old workers close their
# PostgreSQL connections and exit cleanly, new ones redirect.

# blocks build on what nginx kept from the previous one (connections,
# cache entries): restart nginx only when the config changes
BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'reload';
    INSERT INTO shortlink.links (code, url)
         VALUES ('reload', 'https://example.com/reload');
});

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: before the reload
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location / { shortlink; }
--- request eval
["GET /reload", "GET /reload", "GET /reload"]
--- error_code eval
[302, 302, 302]



=== TEST 2: after SIGHUP while idle
--- init
my $pidfile = Test::Nginx::Socket::server_root() . "/logs/nginx.pid";
open my $fh, '<', $pidfile or die "$pidfile: $!";
chomp(my $pid = <$fh>);
kill 'HUP', $pid or die "HUP $pid: $!";
select(undef, undef, undef, 1);
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location / { shortlink; }
--- request eval
["GET /reload", "GET /reload", "GET /reload"]
--- error_code eval
[302, 302, 302]
--- no_error_log
[alert]
[error]
[crit]
