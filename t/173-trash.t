# The recycle bin: GET /trash lists an owner's deleted links, POST
# /trash/{code}/restore makes one redirect again at once on every node (a
# second nginx that had cached its 404 sees it within a second), DELETE
# /trash/{code} purges it for good and its code stays taken (API and psql).

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use File::Temp ();
use IO::Socket::INET ();
use Time::HiRes ();

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 't173%';
    DELETE FROM shortlink.purged_codes WHERE code LIKE 't173%';
    INSERT INTO shortlink.links (code, url, owner) VALUES
        ('t173a', 'https://example.com/t173a', 't173'),
        ('t173b', 'https://example.com/t173b', 't173'),
        ('t173o', 'https://example.com/t173o', 't173-other');
    UPDATE shortlink.links SET deleted_at = now() WHERE code = 't173o';
});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t173')");

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
    shortlink_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} timeout=$ENV{TEST_NGINX_REDIS_TIMEOUT} ttl=1h;
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

# the rows above are new (version 1): drop what an earlier run of this
# suite left in Redis under their codes (higher versions)
redis('del', map { "sl:$_" } qw(t173a t173b t173o));

# valgrind (and a busy machine) slow the Redis handshake past 100 ms
$ENV{TEST_NGINX_REDIS_TIMEOUT} = $ENV{TEST_NGINX_USE_VALGRIND} ? '10s' : '1s';

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone node1:1m ttl=1h;
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=$TEST_NGINX_REDIS_TIMEOUT ttl=1h;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; add_header X-Cache $shortlink_cache always; }
    location /_api/ { shortlink_api; }
_EOC_
    $block->set_value("more_headers",
                      "Authorization: Bearer $ENV{TEST_NGINX_API_KEY}")
        unless defined $block->more_headers;
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: delete t173a; node 2 caches its 404
--- init
main::start_node2();
Time::HiRes::sleep(0.3);
--- request eval
["DELETE /_api/links/t173a", "GET /t173a"]
--- error_code eval
[204, 404]
--- no_error_log
[error]



=== TEST 2: the recycle bin holds the owner's deleted links only
--- init
my @first = main::node2_get('/t173a');
my @second = main::node2_get('/t173a');
Test::More::is($first[0], 404, 'node 2: 404 for the deleted link');
Test::More::is("$second[0] $second[2]", '404 negative', 'node 2 has cached the 404');
--- request eval
["GET /_api/trash", "GET /_api/trash?limit=0", "GET /_api/trash?cursor=zzz"]
--- error_code eval
[200, 400, 400]
--- response_body_like eval
['^\{"links": \[\{.*"code": "t173a".*"deleted_at": "20', 'limit', 'cursor']
--- response_body_unlike eval
['t173[bo]', 'x^', 'x^']
--- no_error_log
[error]



=== TEST 3: restore: another owner's 403, a live link 404, t173a 200
--- request eval
["POST /_api/trash/t173o/restore", "POST /_api/trash/t173b/restore",
 "POST /_api/trash/t173a/restore", "GET /t173a", "GET /_api/trash/t173a/restore"]
--- error_code eval
[403, 404, 200, 302, 405]
--- response_body_like eval
['another owner', 'no deleted link', '"code": "t173a"', '.*', 'POST']
--- no_error_log
[error]



=== TEST 4: within a second, node 2 redirects the restored link
--- init
my $window = $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;
my @got;
ShortlinkTest::wait_until(sub {
    @got = main::node2_get('/t173a');
    $got[0] == 302;
}, $window, 0.02);
Test::More::is("$got[0] $got[1]", '302 https://example.com/t173a',
               'node 2 sees the restore within the window');
--- request
GET /_api/trash
--- error_code: 200
--- response_body_unlike: t173a



=== TEST 5: purge: only from the bin; then the row is gone
--- request eval
["DELETE /_api/trash/t173b", "DELETE /_api/links/t173b", "DELETE /_api/trash/t173b",
 "DELETE /_api/trash/t173b", "GET /t173b", "DELETE /_api/trash/t173o"]
--- error_code eval
[404, 204, 204, 404, 404, 403]
--- no_error_log
[error]



=== TEST 6: the purged code stays taken, for the API and for psql
--- init
Test::More::is(ShortlinkTest::sql_value(
    q{SELECT count(*) FROM shortlink.links WHERE code = 't173b'}), 0, 'the row is gone');
my $err = eval { ShortlinkTest::sql(q{INSERT INTO shortlink.links (code, url)
                                      VALUES ('t173b', 'https://example.com/again')}); 1 }
          ? '' : $@;
Test::More::like($err, qr/belonged to a purged link and is never reused/,
                 'psql: the insert fails');
--- request
POST /_api/links
{"url": "https://example.com/again", "code": "t173b"}
--- error_code: 409
--- response_body_like: "type": "https://shortlink.invalid/problems/code-taken".*purged link
--- no_error_log
[error]
