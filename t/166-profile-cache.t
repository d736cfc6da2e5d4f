# Profile pages in the caches: two nodes (this suite's nginx and a second
# one, each with its own zone, both with the same Redis and PostgreSQL)
# cache a page for an hour, and every kind of change made in psql (a
# profile field, an entry added, removed or moved, a link disabled, the
# profile deleted) reaches both within a second through the notification
# "@<username>:<version>"; a scheduled entry appears on time without a
# write; views are queued and counted once; with PostgreSQL stopped an
# expired page is still served, an uncached one is a 503.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use File::Temp ();
use IO::Socket::INET ();
use Time::HiRes ();

sql(q{
    DELETE FROM shortlink.profiles WHERE username LIKE 't166%';
    DELETE FROM shortlink.links WHERE code LIKE 'pc166%';
    INSERT INTO shortlink.links (code, url, owner)
         SELECT 'pc166' || c, 'https://example.com/' || c, 't166'
           FROM unnest(ARRAY['a', 'b', 'c', 'd', 'v']) AS c;
    INSERT INTO shortlink.profiles (username, owner, display_name)
    VALUES ('t166bob', 't166', 'Bob One'),
           ('t166views', 't166', 'Views'),
           ('t166stale', 't166', 'Stale Sam'),
           ('t166cold', 't166', 'Never cached'),
           ('t166forged', 't166', 'Forged');
    INSERT INTO shortlink.profile_entries (profile_id, position, link_code,
                                           title)
    SELECT id, pos, code, title
      FROM shortlink.profiles,
           (VALUES (10, 'pc166a', 'Entry A'), (20, 'pc166b', 'Entry B'))
           AS e(pos, code, title)
     WHERE username = 't166bob';
    INSERT INTO shortlink.profile_entries (profile_id, position, link_code,
                                           title)
    SELECT id, 10, 'pc166v', 'Entry V'
      FROM shortlink.profiles WHERE username = 't166views';
});

our $views_code = '_p' . sql_value(
    q{SELECT id FROM shortlink.profiles WHERE username = 't166views'});
our $views_etag = '"p' . sql_value(
    q{SELECT version FROM shortlink.profiles WHERE username = 't166views'})
    . '-1"';
sql(qq{DELETE FROM shortlink.clicks WHERE code IN ('$views_code', 'pc166v')});

# a second (valgrind slows nginx down: five there)
our $window = $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;
# under valgrind a worker's first Redis handshake takes more than 1 s
$ENV{TEST_NGINX_REDIS_TIMEOUT} = $ENV{TEST_NGINX_USE_VALGRIND} ? '10s' : '1s';

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
    shortlink_zone prof166b:1m ttl=1h;
    shortlink_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} ttl=1h
                    timeout=$ENV{TEST_NGINX_REDIS_TIMEOUT};
    server {
        listen 127.0.0.1:$node2_port;
        location / { shortlink; }
        location /@ {
            shortlink_profile ttl=1h;
            add_header X-Cache \$shortlink_cache always;
        }
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
    ShortlinkTest::wait_until(
        sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$node2_port") },
        4, 0.02);
}

END { kill 'QUIT', $node2_pid and waitpid $node2_pid, 0 if $node2_pid }

sub node1 { ShortlinkTest::http_get("/\@$_[0]") }
sub node2 { ShortlinkTest::http_get("/\@$_[0]", port => $node2_port) }

# a change made in psql is seen by both nodes within the window
sub both_see {
    my ($name, $change, $test) = @_;
    ShortlinkTest::sql($change);
    my $t0 = Time::HiRes::time();
    my ($r1, $r2);
    my $ok = ShortlinkTest::wait_until(sub {
        $r1 = node1('t166bob');
        $r2 = node2('t166bob');
        $test->($r1) && $test->($r2);
    }, $window, 0.02);
    Test::More::ok($ok, sprintf("$name: both nodes within %.2f s",
                                Time::HiRes::time() - $t0))
        or Test::More::diag("node 1: $r1->{status} $r1->{body}\n"
                            . "node 2: $r2->{status} $r2->{body}");
}

# the <li> of the page in order, as "code:title"
sub entries {
    my ($r) = @_;
    my @li = $r->{body}
        =~ m{<li><a href="/(\w+)\?_sls=profile" dir="auto">([^<]*)</a></li>}g;
    return join ' ', map { "$li[2 * $_]:$li[2 * $_ + 1]" } 0 .. @li / 2 - 1;
}

sub clicks {
    ShortlinkTest::sql_value(
        "SELECT count(*) FROM shortlink.clicks WHERE $_[0]");
}

our $http_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone prof166a:1m ttl=1h;
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT ttl=1h
                    timeout=$TEST_NGINX_REDIS_TIMEOUT;
    shortlink_queue clicks166:1m;
    shortlink_flush interval=100ms;
_EOC_

our $config = <<'_EOC_';
    location / { shortlink; }
    location /@ {
        shortlink_profile ttl=1h;
        add_header X-Cache $shortlink_cache always;
    }
    location /s/ {
        shortlink_profile ttl=1s;
        add_header X-Cache $shortlink_cache always;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $::http_config);
    $block->set_value("config", $::config);
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: both nodes cache the page: PostgreSQL once, then the zone
--- init
main::start_node2();
Time::HiRes::sleep(0.3);
my @tiers = map { main::node2('t166bob')->{headers}{'x-cache'} } 1 .. 2;
Test::More::is("@tiers", "pg shm", "node 2: PostgreSQL, then its zone");
main::node1('t166bob');
--- request
GET /@t166bob
--- response_headers
X-Cache: shm
--- response_body_like
<h1 dir="auto">Bob One</h1>
--- no_error_log
[error]



=== TEST 2: a profile field changed
--- init
main::both_see('display name',
    q{UPDATE shortlink.profiles SET display_name = 'Bob Two'
       WHERE username = 't166bob'},
    sub { $_[0]{body} =~ m{<h1 dir="auto">Bob Two</h1>} });
main::both_see('theme',
    q{UPDATE shortlink.profiles SET theme = 'dark'
       WHERE username = 't166bob'},
    sub { $_[0]{body} =~ m{<body class="t-dark">} });
--- request
GET /@t166bob
--- response_body_like
<h1 dir="auto">Bob Two</h1>
--- no_error_log
[error]



=== TEST 3: an entry added, one removed, the list reordered
--- init
main::both_see('entry added',
    q{INSERT INTO shortlink.profile_entries (profile_id, position, link_code,
                                             title)
      SELECT id, 30, 'pc166c', 'Entry C' FROM shortlink.profiles
       WHERE username = 't166bob'},
    sub { main::entries($_[0]) eq
          'pc166a:Entry A pc166b:Entry B pc166c:Entry C' });
main::both_see('entry removed',
    q{DELETE FROM shortlink.profile_entries WHERE link_code = 'pc166a'},
    sub { main::entries($_[0]) eq 'pc166b:Entry B pc166c:Entry C' });
main::both_see('reordered',
    q{UPDATE shortlink.profile_entries
         SET position = CASE link_code WHEN 'pc166b' THEN 30 ELSE 20 END
       WHERE link_code IN ('pc166b', 'pc166c')},
    sub { main::entries($_[0]) eq 'pc166c:Entry C pc166b:Entry B' });
main::both_see('entry title',
    q{UPDATE shortlink.profile_entries SET title = 'Entry B2'
       WHERE link_code = 'pc166b'},
    sub { main::entries($_[0]) eq 'pc166c:Entry C pc166b:Entry B2' });
main::both_see('entry disabled',
    q{UPDATE shortlink.profile_entries SET enabled = false
       WHERE link_code = 'pc166c'},
    sub { main::entries($_[0]) eq 'pc166b:Entry B2' });
--- request
GET /@t166bob
--- response_headers
X-Cache: shm
--- no_error_log
[error]



=== TEST 4: a linked link disabled, enabled again, expired
--- init
main::both_see('link disabled',
    q{UPDATE shortlink.links SET enabled = false WHERE code = 'pc166b'},
    sub { main::entries($_[0]) eq '' && $_[0]{status} == 200 });
main::both_see('link enabled',
    q{UPDATE shortlink.links SET enabled = true WHERE code = 'pc166b'},
    sub { main::entries($_[0]) eq 'pc166b:Entry B2' });
main::both_see('link expired',
    q{UPDATE shortlink.links SET expires_at = now() - interval '1 second'
       WHERE code = 'pc166b'},
    sub { main::entries($_[0]) eq '' });
--- request
GET /@t166bob
--- no_error_log
[error]



=== TEST 5: a scheduled entry appears when its time comes, without a write
(the page is cached no longer than next_change_epoch)
--- init
ShortlinkTest::sql(q{
    UPDATE shortlink.links SET expires_at = NULL WHERE code = 'pc166b';
    UPDATE shortlink.profile_entries
       SET visible_from = now() + interval '2 seconds'
     WHERE link_code = 'pc166b'});
my $r;
ShortlinkTest::wait_until(sub {
    $r = main::node1('t166bob');
    main::entries($r) eq '';
}, $::window, 0.02);
Test::More::is(main::entries($r), '', 'not shown before its time');
my $t0 = Time::HiRes::time();
ShortlinkTest::wait_until(sub {
    main::entries(main::node1('t166bob')) eq 'pc166b:Entry B2'
    && main::entries(main::node2('t166bob')) eq 'pc166b:Entry B2';
}, 4 + $::window, 0.05);
Test::More::is(main::entries(main::node2('t166bob')), 'pc166b:Entry B2',
               sprintf('shown on both nodes after %.1f s',
                       Time::HiRes::time() - $t0));
--- request
GET /@t166bob
--- response_body_like chomp
pc166b\?_sls=profile
--- no_error_log
[error]



=== TEST 6: the profile deleted: 404 on both nodes
--- init
main::both_see('deleted',
    q{UPDATE shortlink.profiles SET deleted_at = now()
       WHERE username = 't166bob'},
    sub { $_[0]{status} == 404 });
--- request
GET /@t166bob
--- error_code: 404
--- no_error_log
[error]



=== TEST 7: views: each GET answered 200 or 304 is one click on "_p<id>"
with kind=profile_view; HEAD and node 2 (no queue) record none; an entry
followed from the page is one click on its link
--- request eval
["GET /\@t166views", "GET /\@t166views", "HEAD /\@t166views",
 "GET /\@t166views", "GET /pc166v?_sls=profile"]
--- error_code eval
[200, 200, 200, 200, 302]
--- no_error_log
[error]



=== TEST 8: ... written once each
--- init
my $views = "code = '$::views_code' AND extra->>'kind' = 'profile_view'";
ShortlinkTest::wait_until(sub { main::clicks($views) >= 3 }, 5, 0.05);
Time::HiRes::sleep(0.5);
Test::More::is(main::clicks($views), 3, 'three views, once each');
Test::More::is(main::clicks("code = '$::views_code'"), 3, 'nothing else');
Test::More::is(main::clicks("code = 'pc166v'"), 1, 'one entry click');
--- request
GET /@t166views
--- more_headers eval
"If-None-Match: $::views_etag\nAccept-Language: de-AT, en;q=0.5"
--- error_code: 304
--- no_error_log
[error]



=== TEST 9: ... a 304 is a view too
--- init
my $views = "code = '$::views_code' AND extra->>'kind' = 'profile_view'";
ShortlinkTest::wait_until(sub { main::clicks($views) >= 4 }, 5, 0.05);
Time::HiRes::sleep(0.3);
Test::More::is(main::clicks($views), 4, 'the 304 of block 8 counted once');
Test::More::is(main::clicks("$views AND extra->>'language' = 'de-at'"), 1,
               'with its language, like a redirect\'s click');
--- request
HEAD /@t166views
--- no_error_log
[error]



=== TEST 10: Redis: a page one node rendered is another's Redis hit; a
forged value (holes that do not add up) is ignored and PostgreSQL asked
--- init
Test::More::is(main::node2('t166views')->{headers}{'x-cache'}, 'redis',
               "node 2 finds node 1's page in Redis");
ShortlinkTest::redis('SET', 'sl:@t166forged',
                     "v99 P1 1 9999999999 5\n<p>forged</p>");
--- request
GET /@t166forged
--- response_headers
X-Cache: pg
--- response_body_like
<h1 dir="auto">Forged</h1>
--- error_log
malformed Redis value for "@t166forged" ignored



=== TEST 11: PostgreSQL stopped: an expired page is served stale
--- init
ShortlinkTest::http_get('/s/t166stale');
Time::HiRes::sleep(1.2);
ShortlinkTest::pg_stop();
--- request
GET /s/t166stale
--- response_headers
X-Cache: stale
--- response_body_like
<h1 dir="auto">Stale Sam</h1>
--- error_log eval
qr/backends unavailable, "\@t166stale" served from an expired cache entry/



=== TEST 12: ... an uncached profile is a 503 with Retry-After
--- request
GET /s/t166cold
--- error_code: 503
--- response_headers
X-Cache: error
--- response_headers_like
Retry-After: ^\d+$



=== TEST 13: PostgreSQL back: pages from it again
--- init
ShortlinkTest::pg_start();
ShortlinkTest::wait_until(sub {
    ShortlinkTest::http_get('/s/t166cold')->{status} == 200
}, 15, 0.2);
--- request
GET /s/t166stale
--- response_body_like
<h1 dir="auto">Stale Sam</h1>
