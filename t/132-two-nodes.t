# Two nginx instances (two "nodes") sharing one PostgreSQL and one Redis: a
# change made through one node's API is seen by the other within a second,
# although the other had the old target cached in its zone and in Redis.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use File::Temp ();
use IO::Socket::INET ();
use Time::HiRes ();

sql(q{DELETE FROM shortlink.links WHERE code = 'node1'});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t132')");
sql(q{INSERT INTO shortlink.links (code, url, owner)
      VALUES ('node1', 'https://example.com/before', 't132')});

# the second node: its own nginx, its own zone, the same backends
our $node2_dir = File::Temp::tempdir(CLEANUP => 1);
our $node2_port = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die $!;
    my $p = $s->sockport;
    close $s;
    $p;
};
our $node2_pid;

sub start_node2 {
    mkdir "$node2_dir/logs";
    open my $fh, '>', "$node2_dir/nginx.conf" or die $!;
    my $user = $> == 0 ? "user root;" : "";
    print $fh <<"_EOC_";
load_module $ENV{TEST_NGINX_LOAD_MODULES};
daemon off; master_process off; $user
error_log $node2_dir/logs/error.log info;
pid $node2_dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $node2_dir/body;
    proxy_temp_path $node2_dir/proxy;
    fastcgi_temp_path $node2_dir/fastcgi;
    uwsgi_temp_path $node2_dir/uwsgi;
    scgi_temp_path $node2_dir/scgi;
    shortlink_postgres "$ENV{TEST_NGINX_PG_DSN}";
    shortlink_zone node2:1m ttl=1h;
    shortlink_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} ttl=1h;
    server {
        listen 127.0.0.1:$node2_port;
        location / { shortlink; add_header X-Cache \$shortlink_cache always; }
    }
}
_EOC_
    close $fh;
    $node2_pid = fork // die "fork: $!";
    if ($node2_pid == 0) {
        exec $ENV{TEST_NGINX_BINARY} || 'nginx', '-p', "$node2_dir/",
             '-c', "$node2_dir/nginx.conf";
        exit 127;
    }
    wait_until(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$node2_port") },
               4, 0.02);
}

# GET through node 2: (status, Location, X-Cache)
sub node2_get {
    my ($uri) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$node2_port")
        or die "node 2: $!";
    print $s "GET $uri HTTP/1.0\r\nHost: localhost\r\n\r\n";
    my $resp = do { local $/; <$s> };
    my ($status) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my ($loc) = $resp =~ m{^Location: (\S+)}mi;
    my ($tier) = $resp =~ m{^X-Cache: (\S+)}mi;
    return ($status, $loc // '', $tier // '');
}

END { kill 'QUIT', $node2_pid and waitpid $node2_pid, 0 if $node2_pid }

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: node 2 has the old target cached (zone and Redis)
--- init
main::start_node2();
Time::HiRes::sleep(0.3);
my @first = main::node2_get('/node1');
my @second = main::node2_get('/node1');
Test::More::is("@first", "302 https://example.com/before pg", "node 2 asks PostgreSQL once");
Test::More::is("@second", "302 https://example.com/before shm", "then answers from its zone");
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone node1:1m ttl=1h;
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT ttl=1h;
--- config
    location / { shortlink; }
    location /_api/ { shortlink_api; }
--- request
PATCH /_api/links/node1
{"url": "https://example.com/after"}
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 200



=== TEST 2: within a second, node 2 redirects to the new target
--- init
# a second (valgrind slows nginx down: five there)
my $window = $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;
my @got;
ShortlinkTest::wait_until(sub {
    @got = main::node2_get('/node1');
    $got[1] eq 'https://example.com/after';
}, $window, 0.02);
Test::More::is($got[1], 'https://example.com/after',
               'node 2 sees the change within the window');
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone node1:1m ttl=1h;
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT ttl=1h;
--- config
    location / { shortlink; }
    location /_api/ { shortlink_api; }
--- request
GET /node1
--- error_code: 302
--- response_headers
Location: https://example.com/after
