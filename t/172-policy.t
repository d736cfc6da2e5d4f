# The target policy: allow/deny rules on target hosts, global and per owner,
# enforced by the database for every writer (psql and the API: 422 naming
# the rule); a link a new deny rule covers answers 410 Gone at once (no
# Location, no click) and is in GET /policy/report; without the rule it
# redirects again.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use HTTP::Tiny ();

sql(q{
    DELETE FROM shortlink.policy_rules WHERE host LIKE '%t172.example';
    DELETE FROM shortlink.links WHERE code LIKE 't172%';
    DELETE FROM shortlink.clicks WHERE code LIKE 't172%';
    INSERT INTO shortlink.links (code, url, owner) VALUES
        ('t172a', 'https://x.bad-t172.example/a', 't172'),
        ('t172b', 'https://good-t172.example/b', 't172'),
        ('t172c', 'https://other-t172.example/c', 't172'),
        ('t172d', 'https://other-t172.example/d', 't172-someone-else'),
        ('t172r', 'https://r.bad-t172.example/r', 't172');
    UPDATE shortlink.links SET deleted_at = now() WHERE code = 't172r';
});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t172')");
$ENV{TEST_NGINX_ADMIN_KEY} = sql_value("SELECT shortlink.create_api_key('t172-admin', true)");

# the rows above are new (version 1): drop what an earlier run of this
# suite left in Redis under their codes (higher versions)
redis('del', map { "sl:$_" } qw(t172a t172b t172c t172d t172r));

# valgrind (and a busy machine) slow the Redis handshake past 100 ms
$ENV{TEST_NGINX_REDIS_TIMEOUT} = $ENV{TEST_NGINX_USE_VALGRIND} ? '10s' : '1s';

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=$TEST_NGINX_REDIS_TIMEOUT ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms batch=1000;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; add_header X-Cache $shortlink_cache always; }
    location /_api/ { shortlink_api; }
_EOC_
    $block->set_value("more_headers",
                      "Authorization: Bearer $ENV{TEST_NGINX_API_KEY}")
        unless defined $block->more_headers;
});

# poll GET $uri until it answers $status (a NOTIFY is asynchronous)
sub wait_status {
    my ($uri, $status) = @_;
    my $url = "http://127.0.0.1:" . Test::Nginx::Socket::server_port() . $uri;
    my $window = $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;
    return ShortlinkTest::wait_until(sub {
        HTTP::Tiny->new(max_redirect => 0)->get($url)->{status} == $status
    }, $window, 0.02);
}

no_shuffle();
no_root_location();
run_tests();

# --- after the blocks --------------------------------------------------------

ok(wait_until(sub {
       sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 't172a'") >= 4
   }, 10), 'the clicks of t172a arrived');
Time::HiRes::sleep(0.3);
# redirects of t172a: two in TEST 1, the poll that saw 302 again and the
# request of TEST 9; none of the 410 answers in between
is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 't172a'"), 4,
   'a 410 records no click: only the four redirects are clicks');

__DATA__

=== TEST 1: before any rule the link redirects (and is cached)
--- request eval
["GET /t172a", "GET /t172a"]
--- error_code eval
[302, 302]
--- response_headers eval
["Location: https://x.bad-t172.example/a", "X-Cache: shm"]
--- no_error_log
[error]



=== TEST 2: an owner key may not write global rules; an admin key may
--- request eval
["POST /_api/policy/rules\n{\"kind\": \"deny\", \"host\": \"*.bad-t172.example\", \"global\": true}",
 "POST /_api/policy/rules\n{\"kind\": \"deny\", \"host\": \"*.BAD-t172.example\", \"global\": true, \"note\": \"phishing\"}",
 "POST /_api/policy/rules\n{\"kind\": \"deny\", \"host\": \"*.bad-t172.example\", \"global\": true}",
 "POST /_api/policy/rules\n{\"kind\": \"block\", \"host\": \"a b\"}"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_API_KEY}",
 "Authorization: Bearer $ENV{TEST_NGINX_ADMIN_KEY}",
 "Authorization: Bearer $ENV{TEST_NGINX_ADMIN_KEY}",
 "Authorization: Bearer $ENV{TEST_NGINX_ADMIN_KEY}"]
--- error_code eval
[403, 201, 409, 422]
--- response_body_like eval
['only an admin key',
 '"host": "\*\.bad-t172\.example".*"global": true.*"blocked_links": [1-9]',
 'there is a deny rule for .{0,4}\*\.bad-t172\.example.{0,4} in this scope already',
 '"pointer": "/kind".*"pointer": "/host"']
--- no_error_log
[error]



=== TEST 3: the cached link now answers 410 Gone, without Location
--- init
Test::More::ok(main::wait_status('/t172a', 410), 'the rule reached the zone within the window');
--- request eval
["GET /t172a", "HEAD /t172a"]
--- error_code eval
[410, 410]
--- response_headers eval
["!Location", "!Location"]
--- no_error_log
[error]



=== TEST 4: the API refuses a covered target with 422 naming the rule
--- request eval
["POST /_api/links\n{\"url\": \"https://y.bad-t172.example/\", \"code\": \"t172x\"}",
 "POST /_api/links\n{\"url\": \"https://good-t172.example\@y.bad-t172.example/\"}",
 "POST /_api/links\n{\"url\": \"https://y.bad-t172.example\\\\\@good-t172.example/\"}",
 "POST /_api/links\n{\"url\": \"https://Y.BAD-T172.EXAMPLE.:443/\"}",
 "POST /_api/links\n{\"url\": \"https://y%2ebad-t172.example/\"}",
 "PATCH /_api/links/t172b\n{\"url\": \"http://z.bad-t172.example/\"}",
 "POST /_api/links/bulk\n[{\"url\": \"https://good-t172.example/1\"}, {\"url\": \"https://q.bad-t172.example/2\"}]"]
--- error_code eval
[(422) x 7]
--- response_headers eval
[("Content-Type: application/problem+json") x 7]
--- response_body_like eval
[('"detail": "the target host \\\\"y\.bad-t172\.example\\\\" is refused by deny rule \d+ \(\*\.bad-t172\.example, global\)".*"policy": \{.*"reason": "deny"') x 5,
 'the target host \\\\"z\.bad-t172\.example\\\\" is refused by deny rule',
 'the target host \\\\"q\.bad-t172\.example\\\\" is refused by deny rule']
--- no_error_log
[error]



=== TEST 5: nothing of a refused request was written
--- init
Test::More::is(ShortlinkTest::sql_value(q{SELECT count(*) FROM shortlink.links
    WHERE code = 't172x' OR url LIKE 'https://good-t172.example/1'}), 0,
    'no refused link and no link of the refused bulk request');
Test::More::is(ShortlinkTest::sql_value(q{SELECT url FROM shortlink.links WHERE code = 't172b'}),
    'https://good-t172.example/b', 't172b kept its target');
my $err = eval { ShortlinkTest::sql(q{INSERT INTO shortlink.links (code, url)
                                      VALUES ('t172y', 'https://w.bad-t172.example/')}); 1 }
          ? '' : $@;
Test::More::like($err, qr/refused by deny rule \d+ \(\*\.bad-t172\.example, global\)/,
                 'psql: the insert fails naming the rule');
--- request
GET /t172b
--- error_code: 302



=== TEST 6: the report lists the blocked link with its rule
--- request
GET /_api/policy/report
--- error_code: 200
--- response_body_like: "code": "t172a".*"detail": "the target host \\"x\.bad-t172\.example\\" is refused by deny rule
--- response_body_unlike: t172[bcd]
--- no_error_log
[error]



=== TEST 7: an owner's allow list: only its hosts, for that owner's links only
--- request eval
["POST /_api/policy/rules\n{\"kind\": \"allow\", \"host\": \"good-t172.example\"}",
 "POST /_api/links\n{\"url\": \"https://other-t172.example/new\"}",
 "GET /_api/policy/report"]
--- error_code eval
[201, 422, 200]
--- response_body_like eval
['"owner": "t172".*"blocked_links": 2',
 'matches no rule of the owner\'s allow list',
 '"code": "t172a".*"code": "t172c".*"reason": "not-allowed"']
--- no_error_log
[error]



=== TEST 8: another owner's link to the same host is not affected; a link restored from the bin is judged again
--- init
Test::More::ok(main::wait_status('/t172c', 410), 't172c answers 410');
--- request eval
["GET /t172d", "POST /_api/trash/t172r/restore", "GET /t172r", "GET /_api/policy/report"]
--- error_code eval
[302, 200, 410, 200]
--- response_headers eval
["Location: https://other-t172.example/d", "", "!Location", ""]
--- response_body_like eval
['.*', '"code": "t172r"', '.*', '"code": "t172r".*refused by deny rule']
--- no_error_log
[error]



=== TEST 9: rules deleted: the links redirect again
--- init
for my $id (split /\n/, ShortlinkTest::sql_value(q{SELECT string_agg(id::text, E'\n')
        FROM shortlink.policy_rules WHERE host LIKE '%t172.example'})) {
    my $key = $id ? $ENV{TEST_NGINX_ADMIN_KEY} : '';
    my $res = HTTP::Tiny->new->request('DELETE',
        "http://127.0.0.1:" . Test::Nginx::Socket::server_port() . "/_api/policy/rules/$id",
        { headers => { Authorization => "Bearer $key" } });
    Test::More::is($res->{status}, 204, "rule $id deleted");
}
Test::More::ok(main::wait_status('/t172a', 302), 't172a redirects again within the window');
--- request eval
["GET /t172a", "GET /t172c", "GET /t172r", "GET /_api/policy/report"]
--- error_code eval
[302, 302, 302, 200]
--- response_body_like eval
['.*', '.*', '.*', '"links": \[\]']
--- no_error_log
[error]
