# Redirect rules: each condition alone (device, language with q-values,
# country from shortlink_rule_country, a query parameter, a time window)
# and combined, the first matching rule wins, the link's own url when none
# does; rules travel through the zone and Redis (old values still decode,
# malformed ones are refused, the password flag travels too); a change is
# seen within a second by a second nginx that had the link cached; the
# click records the rule; the API and the database refuse invalid rules.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use File::Temp ();
use IO::Socket::INET ();
use Time::HiRes ();

our $ios = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
           . "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
           . "Mobile/15E148 Safari/604.1";
our $android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
               . "(KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
our $desktop = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
               . "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'ru%';
    DELETE FROM shortlink.clicks WHERE code LIKE 'ru%';
    INSERT INTO shortlink.links (code, url, owner, rules) VALUES
      ('rudev', 'https://example.com/default', 't180', '[
         {"device": "ios", "url": "https://example.com/ios"},
         {"device": "android", "url": "https://example.com/android"},
         {"device": "desktop", "url": "https://example.com/desktop"}]'),
      ('rulang', 'https://example.com/default', 't180', '[
         {"language": "pt-BR", "url": "https://example.com/pt-br"},
         {"language": "de", "url": "https://example.com/de"}]'),
      ('ructy', 'https://example.com/default', 't180', '[
         {"country": "AT", "url": "https://example.com/at"}]'),
      ('ruq', 'https://example.com/default', 't180', '[
         {"query": {"name": "v", "value": "b"}, "url": "https://example.com/b"}]'),
      ('rucomb', 'https://example.com/default', 't180', '[
         {"device": "ios", "language": "de", "url": "https://example.com/ios-de"},
         {"device": "ios", "url": "https://example.com/ios"},
         {"language": "de", "country": "AT", "query": {"name": "x", "value": "1"},
          "url": "https://example.com/de-at-x"}]'),
      ('rubad', 'https://example.com/rubad', 't180', '[]'),
      ('ruold', 'https://example.com/ruold-pg', 't180', '[]'),
      ('rupw', 'https://example.com/rupw-pg', 't180', '[]'),
      ('ruflag', 'https://example.com/ruflag-pg', 't180', '[]'),
      ('ruredis', 'https://example.com/default', 't180', '[
         {"device": "android", "url": "https://example.com/android"}]'),
      ('runode', 'https://example.com/default', 't180', '[
         {"device": "ios", "url": "https://example.com/ios-before"}]');
    INSERT INTO shortlink.links (code, url, owner, rules, forward_query)
    VALUES ('rufwd', 'https://example.com/default', 't180', '[
         {"device": "ios", "url": "https://example.com/ios?a=1"}]', true);
    INSERT INTO shortlink.links (code, url, owner, rules)
    SELECT 'rutime', 'https://example.com/default', 't180', jsonb_build_array(
        jsonb_build_object('from', shortlink.api_iso(now() + interval '1 day'),
                           'url', 'https://example.com/future'),
        jsonb_build_object('until', shortlink.api_iso(now() - interval '1 day'),
                           'url', 'https://example.com/past'),
        jsonb_build_object('from', shortlink.api_iso(now() - interval '1 hour'),
                           'until', shortlink.api_iso(now() + interval '1 hour'),
                           'url', 'https://example.com/now'));
    INSERT INTO shortlink.links (code, url, owner, rules)
    SELECT 'ruopen', 'https://example.com/default', 't180', jsonb_build_array(
        jsonb_build_object('from', shortlink.api_iso(now() + interval '3 seconds'),
                           'url', 'https://example.com/opened'));
});
redis('del', map { "sl:$_" } qw(rudev rulang ructy ruq rucomb rubad ruold rupw ruflag
                                 ruredis runode rufwd rutime ruopen));
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t180')");
$ENV{TEST_NGINX_OTHER_KEY} = sql_value("SELECT shortlink.create_api_key('t180b')");

# valgrind slows nginx down more than a 100 ms Redis handshake allows
$ENV{TEST_NGINX_REDIS_TIMEOUT} = $ENV{TEST_NGINX_USE_VALGRIND} ? '2s' : '200ms';

# Redis: a value of the format before rules, and one with malformed rules
redis('set', 'sl:ruold', "v1 302 0 0 https://example.com/ruold-redis");
# the password flag (2) in the forward field, and a flag that does not exist
redis('set', 'sl:rupw', "v1 302 0 3 https://example.com/rupw-redis\nd=ios t=https://x.org/");
redis('set', 'sl:ruflag', "v1 302 0 4 https://example.com/ruflag-redis");
redis('set', 'sl:rubad',
      "v1 302 0 0 https://example.com/rubad-redis\nd=phone t=https://evil.example/");

# the database refuses invalid rules whoever writes them
for my $bad ('{"device": "ios"}',
             '[{"device": "phone", "url": "https://example.com/"}]',
             '[{"url": "https://example.com/"}]',
             '[{"device": "ios", "url": "javascript:alert(1)"}]',
             '[{"query": {"name": "a b", "value": "1"}, "url": "https://x.org/"}]',
             '[{"language": "de\nd=ios", "url": "https://x.org/"}]') {
    my $err = eval { sql(qq{UPDATE shortlink.links SET rules = '$bad'
                            WHERE code = 'rudev'}); 1 } ? '' : "$@";
    like($err, qr/links_rules_valid/, "psql cannot store rules $bad");
}

# --- a second nginx, as in t/132-two-nodes.t ---------------------------------

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

# GET through node 2 as an iPhone or an Android phone: (status, Location, X-Cache)
sub node2_get {
    my ($uri, $ua) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$node2_port")
        or die "node 2: $!";
    print $s "GET $uri HTTP/1.0\r\nHost: localhost\r\nUser-Agent: $ua\r\n\r\n";
    my $resp = do { local $/; <$s> };
    my ($status) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my ($loc) = $resp =~ m{^Location: (\S+)}mi;
    my ($tier) = $resp =~ m{^X-Cache: (\S+)}mi;
    return ($status // '', $loc // '', $tier // '');
}

END { kill 'QUIT', $node2_pid and waitpid $node2_pid, 0 if $node2_pid }

our $http_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone rules:1m ttl=1h;
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=$TEST_NGINX_REDIS_TIMEOUT ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms batch=1000;
_EOC_

our $config = <<'_EOC_';
    location / {
        shortlink;
        shortlink_rule_country $http_x_country;
        add_header X-Cache $shortlink_cache always;
    }
    location /nocountry/ { shortlink; }
    location /_api/ { shortlink_api; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $::http_config);
    $block->set_value("config", $::config);
    $block->set_value("no_error_log", "[error]\n[alert]\n[crit]")
        unless defined $block->no_error_log;
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: device ios (from PostgreSQL)
--- request
GET /rudev
--- more_headers eval
"User-Agent: $::ios"
--- error_code: 302
--- response_headers
Location: https://example.com/ios
X-Cache: pg



=== TEST 2: device android (from the zone now)
--- request
GET /rudev
--- more_headers eval
"User-Agent: $::android"
--- error_code: 302
--- response_headers
Location: https://example.com/android
X-Cache: shm



=== TEST 3: device desktop
--- request
GET /rudev
--- more_headers eval
"User-Agent: $::desktop"
--- error_code: 302
--- response_headers
Location: https://example.com/desktop



=== TEST 4: no User-Agent: no device rule, the link's url
--- request
GET /rudev
--- error_code: 302
--- response_headers
Location: https://example.com/default



=== TEST 5: language: a sub-tag of the wanted one matches
--- request
GET /rulang
--- more_headers
Accept-Language: de-AT,en;q=0.5
--- error_code: 302
--- response_headers
Location: https://example.com/de



=== TEST 6: language with q-values: a later range with q > 0 matches
--- request
GET /rulang
--- more_headers
Accept-Language: fr-CH, fr;q=0.9, en;q=0.8, de;q=0.001, *;q=0.5
--- error_code: 302
--- response_headers
Location: https://example.com/de



=== TEST 7: language with q=0 is not wanted
--- request
GET /rulang
--- more_headers
Accept-Language: en, de;q=0, DE-at;q=0.000
--- error_code: 302
--- response_headers
Location: https://example.com/default



=== TEST 8: language: rules in order, the more specific tag first
--- request
GET /rulang
--- more_headers
Accept-Language: de;q=1.0, PT-br;q=0.2
--- error_code: 302
--- response_headers
Location: https://example.com/pt-br



=== TEST 9: language: "pt" does not want "pt-BR", a malformed q is ignored
--- request
GET /rulang
--- more_headers
Accept-Language: pt, de;q=2, de;q=0.5x, ;;,,
--- error_code: 302
--- response_headers
Location: https://example.com/default



=== TEST 10: country from shortlink_rule_country, case-insensitive
--- request
GET /ructy
--- more_headers
X-Country: at
--- error_code: 302
--- response_headers
Location: https://example.com/at



=== TEST 11: another country: the link's url
--- request
GET /ructy
--- more_headers
X-Country: DE
--- error_code: 302
--- response_headers
Location: https://example.com/default



=== TEST 12: a location without shortlink_rule_country: country rules never match
--- request
GET /nocountry/ructy
--- more_headers
X-Country: AT
--- error_code: 302
--- response_headers
Location: https://example.com/default



=== TEST 13: query parameter equal to the value
--- request
GET /ruq?a=1&v=b
--- error_code: 302
--- response_headers
Location: https://example.com/b



=== TEST 14: query parameter with another value, or only a prefix
--- request eval
["GET /ruq?v=bb", "GET /ruq?vv=b", "GET /ruq?v", "GET /ruq?V=b"]
--- error_code eval
[302, 302, 302, 302]
--- response_headers eval
["Location: https://example.com/default", "Location: https://example.com/default",
 "Location: https://example.com/default", "Location: https://example.com/default"]



=== TEST 15: time window: not yet, no longer, now
--- request
GET /rutime
--- error_code: 302
--- response_headers
Location: https://example.com/now



=== TEST 16: combined: all conditions of the first rule hold
--- request
GET /rucomb
--- more_headers eval
"User-Agent: $::ios\r\nAccept-Language: de"
--- error_code: 302
--- response_headers
Location: https://example.com/ios-de



=== TEST 17: combined: one condition fails, the next rule wins
--- request
GET /rucomb
--- more_headers eval
"User-Agent: $::ios\r\nAccept-Language: en"
--- error_code: 302
--- response_headers
Location: https://example.com/ios



=== TEST 18: combined: three conditions of the third rule
--- request
GET /rucomb?x=1
--- more_headers eval
"User-Agent: $::desktop\r\nAccept-Language: de\r\nX-Country: AT"
--- error_code: 302
--- response_headers
Location: https://example.com/de-at-x



=== TEST 19: combined: one of the three missing, the link's url
--- request
GET /rucomb?x=2
--- more_headers eval
"User-Agent: $::desktop\r\nAccept-Language: de\r\nX-Country: AT"
--- error_code: 302
--- response_headers
Location: https://example.com/default



=== TEST 20: forward_query applies to a rule's target too
--- request
GET /rufwd?utm=x
--- more_headers eval
"User-Agent: $::ios"
--- error_code: 302
--- response_headers
Location: https://example.com/ios?a=1&utm=x



=== TEST 21: HEAD applies the rules too (and records no click)
--- request
HEAD /rucomb
--- more_headers eval
"User-Agent: $::android\r\nAccept-Language: de"
--- error_code: 302
--- response_headers
Location: https://example.com/default



=== TEST 22: the click records the rule that matched
--- init
my $window = $ENV{TEST_NGINX_USE_VALGRIND} ? 10 : 3;
my $q = "SELECT string_agg(coalesce(extra->>'rule', '-'), ',' ORDER BY clicked_at)"
        . " FROM shortlink.clicks WHERE code = 'rucomb'";
my $got = '';
ShortlinkTest::wait_until(sub { $got = ShortlinkTest::sql_value($q) // ''; $got eq '0,1,2,-' },
                          $window);
Test::More::is($got, '0,1,2,-', 'rules 0, 1, 2 and none were recorded, HEAD not');
--- request
GET /rudev
--- error_code: 302



=== TEST 23: a time window opening while the link is cached
--- init
ShortlinkTest::sql(q{UPDATE shortlink.links SET rules = jsonb_build_array(
    jsonb_build_object('from', shortlink.api_iso(now() + interval '2 seconds'),
                       'url', 'https://example.com/opened'))
  WHERE code = 'ruopen'});
--- request
GET /ruopen
--- error_code: 302
--- response_headers
Location: https://example.com/default



=== TEST 24: ... is applied by nginx from the zone, no backend asked
--- init
Time::HiRes::sleep(2.2);
--- request
GET /ruopen
--- error_code: 302
--- response_headers
Location: https://example.com/opened
X-Cache: shm



=== TEST 25: a value of the format before rules still decodes
--- request
GET /ruold
--- error_code: 302
--- response_headers
Location: https://example.com/ruold-redis
X-Cache: redis



=== TEST 26: malformed rules in Redis are refused: PostgreSQL answers
--- request
GET /rubad
--- more_headers eval
"User-Agent: $::ios"
--- error_code: 302
--- response_headers
Location: https://example.com/rubad
X-Cache: pg
--- error_log
malformed Redis value for "rubad"



=== TEST 27: the password flag travels in Redis: the form, not a redirect
--- request
GET /rupw
--- error_code: 200
--- response_headers
X-Cache: redis
Location:
--- response_body_like: <form method="post">



=== TEST 28: an unknown flag in Redis: malformed, PostgreSQL answers
--- request
GET /ruflag
--- error_code: 302
--- response_headers
Location: https://example.com/ruflag-pg
X-Cache: pg



=== TEST 29: rules travel in Redis: node 1 fills it, node 2 reads them there
--- init
main::start_node2();
--- request
GET /ruredis
--- error_code: 302
--- response_headers
X-Cache: pg



=== TEST 30: node 2 applies the rules it read from Redis
--- init
my @a = main::node2_get('/ruredis', $::android);
my @i = main::node2_get('/ruredis', $::ios);
Test::More::is("@a", "302 https://example.com/android redis", 'node 2: Redis value with rules');
Test::More::is("@i", "302 https://example.com/default shm", 'node 2: then its zone');
my @n = main::node2_get('/runode', $::ios);
my @m = main::node2_get('/runode', $::ios);
Test::More::is("@n", "302 https://example.com/ios-before pg", 'node 2 reads runode');
Test::More::is("@m", "302 https://example.com/ios-before shm", 'and caches it');
--- request
PUT /_api/links/runode/rules
[{"device": "ios", "url": "https://example.com/ios-after"},
 {"language": "fr", "url": "https://example.com/fr"}]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 200
--- response_body_like: "rules": \[\{"url": "https://example.com/ios-after", "device": "ios"\}



=== TEST 31: within a second node 2 follows the changed rules
--- init
my $window = $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;
my @got;
ShortlinkTest::wait_until(sub {
    @got = main::node2_get('/runode', $::ios);
    $got[1] eq 'https://example.com/ios-after';
}, $window, 0.02);
Test::More::is($got[1], 'https://example.com/ios-after', 'node 2 sees the new rules in time');
--- request
GET /runode
--- more_headers
Accept-Language: fr
--- error_code: 302
--- response_headers
Location: https://example.com/fr



=== TEST 32: GET the rules
--- request
GET /_api/links/runode/rules
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 200
--- response_body_like: ^\{"code": "runode", "rules": \[.*"https://example.com/fr".*\], "version": \d+\}$



=== TEST 33: invalid rules: 422 with pointers, nothing changed
--- request
PUT /_api/links/runode/rules
[{"device": "phone", "url": "https://example.com/x"}, {"url": "ftp://x"}, {"colour": "red", "url": "https://x.org/"}]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 422
--- response_body_like: "pointer": "/0/device".*"pointer": "/1/url".*"pointer": "/1".*"pointer": "/2/colour"



=== TEST 34: not an array, not JSON
--- request eval
["PUT /_api/links/runode/rules\n{\"device\": \"ios\"}", "PUT /_api/links/runode/rules\n[{"]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code eval
[400, 400]



=== TEST 35: another owner's link: 403; an unknown link: 404; DELETE: 405
--- request eval
["PUT /_api/links/runode/rules\n[]", "GET /_api/links/runode/rules",
 "GET /_api/links/nosuchrulelink/rules", "DELETE /_api/links/runode/rules"]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_OTHER_KEY}"
--- error_code eval
[403, 403, 404, 405]



=== TEST 36: the rules were not changed by the refused requests
--- request
GET /_api/links/runode/rules
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 200
--- response_body_like: "https://example.com/ios-after".*"https://example.com/fr"



=== TEST 37: [] removes the rules
--- request
PUT /_api/links/runode/rules
[]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code: 200
--- response_body_like: "rules": \[\]



=== TEST 38: ... and the link redirects to its url again
--- init
my $window = $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;
ShortlinkTest::wait_until(sub {
    (main::node2_get('/runode', $::ios))[1] eq 'https://example.com/default';
}, $window, 0.02);
--- request
GET /runode
--- more_headers eval
"User-Agent: $::ios"
--- error_code: 302
--- response_headers
Location: https://example.com/default
