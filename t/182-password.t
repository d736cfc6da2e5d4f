# Password-protected links: the form (escaped, strict CSP, no external
# resource; GET shows it, HEAD the same without a body, POST checks, other
# methods 405), the password checked in PostgreSQL (bcrypt) through the
# async pool, the signed cookie (tampered, expired, another code's: the
# form again), the attempt limit, the click recorded when the redirect
# happens, malformed bodies, and PostgreSQL down (503, never a redirect).

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use Digest::SHA ();
use File::Temp ();
use POSIX ();

our $secret = 'test-secret-0123456789abcdef-0123456789';

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'pw%';
    DELETE FROM shortlink.clicks WHERE code LIKE 'pw%';
    INSERT INTO shortlink.links (code, url, owner) VALUES
      ('pw1', 'https://example.com/pw1', 't182'),
      ('pw2', 'https://example.com/pw2', 't182'),
      ('pwlock', 'https://example.com/pwlock', 't182'),
      ('pwplain', 'https://example.com/pwplain', 't182'),
      ('pwrace', 'https://example.com/pwrace', 't182');
    SELECT shortlink.set_link_password('pw1', 's3cret ü&=+');
    SELECT shortlink.set_link_password('pw2', 'other');
    SELECT shortlink.set_link_password('pwlock', 'right');
    SELECT shortlink.set_link_password('pwrace', 'right');
});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t182')");

# the hash is bcrypt, made by PostgreSQL; the password is nowhere
is(sql_value(q{SELECT count(*) FROM shortlink.links WHERE code LIKE 'pw%'
                 AND password_hash ~ '^\$2a\$10\$'}), 4, 'bcrypt hashes');
my $err = eval { sql(q{UPDATE shortlink.links SET password_hash = 'plain'
                        WHERE code = 'pw1'}); 1 } ? '' : "$@";
like($err, qr/links_password_bcrypt/, 'psql cannot store a password that is not bcrypt');

# a cookie as nginx would sign it
sub cookie {
    my ($code, $expires, $signed_code) = @_;
    my $mac = Digest::SHA::hmac_sha256_hex(($signed_code // $code) . "\n$expires",
                                           $::secret);
    return "slpw_$code=$expires.$mac";
}

our $good = cookie('pw1', time() + 600);
(our $tampered = $good) =~ s/([0-9a-f])$/$1 eq 'a' ? 'b' : 'a'/e;
our $expired = cookie('pw1', time() - 1);
our $other_code = cookie('pw1', time() + 600, 'pw2');
our $moved_expiry = do { my ($e, $m) = $good =~ /=(\d+)\.(\w+)$/;
                         "slpw_pw1=" . ($e + 1000) . ".$m" };

our $http_config = <<"_EOC_";
    shortlink_postgres "\$TEST_NGINX_PG_DSN";
    shortlink_zone passwords:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms batch=1000;
    shortlink_password_secret $secret;
_EOC_

our $config = <<'_EOC_';
    location / { shortlink; }
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

=== TEST 1: GET a protected link: the form, not a redirect
--- request
GET /pw1
--- error_code: 200
--- response_headers
Content-Type: text/html; charset=utf-8
Content-Security-Policy: default-src 'none'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'
Cache-Control: no-store
Referrer-Policy: no-referrer
Location:
Set-Cookie:
--- response_body_like: \A<!DOCTYPE html>\r\n<html lang="en"><head><meta charset="utf-8">.*<title>Password required</title>.*<p>The link <code>pw1</code> is protected by a password.</p>\r\n<form method="post"><label>Password <input type="password" name="password" required autofocus maxlength="256" autocomplete="current-password"></label> <button type="submit">Continue</button></form>\r\n</body></html>\r\n\z



=== TEST 2: the form has no script, no style, no resource from anywhere
--- request
GET /pw1
--- error_code: 200
--- response_body_unlike: <script|<style|<link|<img|src=|style=|https?:|action=



=== TEST 3: HEAD: the form's headers, no body
--- request
HEAD /pw1
--- error_code: 200
--- response_headers
Content-Security-Policy: default-src 'none'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'
--- response_body



=== TEST 4: PUT, DELETE: 405
--- request eval
["PUT /pw1\npassword=x", "DELETE /pw1"]
--- error_code eval
[405, 405]



=== TEST 5: POST to a link without a password: 405
--- request
POST /pwplain
password=x
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 405
--- response_headers
Location:



=== TEST 6: a wrong password: 403 and the form again
--- request
POST /pw1
password=s3cret
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 403
--- response_headers
Location:
Set-Cookie:
--- response_body_like: <p role="alert">Wrong password.</p>.*<form method="post">



=== TEST 7: the right password: 303 to the target and a signed cookie for this code
--- request
POST /pw1
password=s3cret+%C3%BC%26%3D%2B
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 303
--- response_headers
Location: https://example.com/pw1
--- response_headers_like
Set-Cookie: ^slpw_pw1=\d+\.[0-9a-f]{64}; Path=/pw1; Max-Age=3600; HttpOnly; SameSite=Lax$



=== TEST 8: with the cookie (as nginx signs it): the redirect at once
--- request
GET /pw1
--- more_headers eval
"Cookie: a=b; $::good"
--- error_code: 302
--- response_headers
Location: https://example.com/pw1



=== TEST 9: a tampered cookie: the form
--- request
GET /pw1
--- more_headers eval
"Cookie: $::tampered"
--- error_code: 200
--- response_headers
Location:



=== TEST 10: an expired cookie, or a moved expiry: the form
--- request eval
["GET /pw1", "GET /pw1"]
--- more_headers eval
["Cookie: $::expired", "Cookie: $::moved_expiry"]
--- error_code eval
[200, 200]



=== TEST 11: a cookie signed for another code: the form
--- request
GET /pw1
--- more_headers eval
"Cookie: $::other_code"
--- error_code: 200



=== TEST 12: pw1's good cookie does not open pw2
--- request
GET /pw2
--- more_headers eval
my $c = $::good; $c =~ s/^slpw_pw1/slpw_pw2/; "Cookie: $::good; $c"
--- error_code: 200



=== TEST 13: malformed bodies: 400 (no field, empty, bad UTF-8, a control character)
--- request eval
["POST /pw2\nuser=x", "POST /pw2\npassword=", "POST /pw2\npassword=%FF%FE",
 "POST /pw2\npassword=a%0Db", "POST /pw2\npassword=%C3"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code eval
[400, 400, 400, 400, 400]



=== TEST 14: a body too large: 413
--- request eval
"POST /pw2\npassword=" . ("a" x 5000)
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 413



=== TEST 15: the click was recorded when the redirects happened (POST, cookie)
--- init
my $window = $ENV{TEST_NGINX_USE_VALGRIND} ? 10 : 3;
my $n = 0;
ShortlinkTest::wait_until(sub {
    $n = ShortlinkTest::sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 'pw1'");
    $n >= 2 }, $window);
Time::HiRes::sleep(0.3);
$n = ShortlinkTest::sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 'pw1'");
Test::More::is($n, 2, 'two clicks: the POST and the cookie visit, no form views');
Test::More::is(ShortlinkTest::sql_value(
    "SELECT count(*) FROM shortlink.clicks WHERE code LIKE 'pw%' AND code <> 'pw1'"),
    0, 'no click for forms, wrong passwords, bad bodies');
--- request
GET /pw2
--- error_code: 200



=== TEST 16: ten wrong passwords ...
--- request eval
[map { "POST /pwlock\npassword=wrong$_" } 1 .. 10]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code eval
[(403) x 10]



=== TEST 17: ... lock the link: even the right one is refused, 429 with Retry-After
--- request
POST /pwlock
password=right
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 429
--- response_headers
Retry-After: 300
Location:
--- response_body_like: Too many wrong passwords



=== TEST 18: the lock is per link: pw2 still opens
--- request
POST /pw2
password=other
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 303
--- response_headers
Location: https://example.com/pw2



=== TEST 19: 15 wrong passwords at once: exactly 10 are checked, 5 refused
--- init
use IO::Socket::INET ();
my $port = Test::Nginx::Socket::server_port();
my @pids;
my $dir = File::Temp::tempdir(CLEANUP => 1);
for my $i (1 .. 15) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or POSIX::_exit(1);
        my $body = "password=wrong$i";
        print $s "POST /pwrace HTTP/1.0\r\nHost: localhost\r\n"
                 . "Content-Type: application/x-www-form-urlencoded\r\n"
                 . "Content-Length: " . length($body) . "\r\n\r\n$body";
        my $resp = do { local $/; <$s> } // '';
        my ($status) = $resp =~ m{^HTTP/1\.\d (\d+)};
        open my $fh, '>', "$dir/$i" or POSIX::_exit(1);
        print $fh $status // 'none';
        close $fh;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid $_, 0 for @pids;
my %n;
for my $i (1 .. 15) {
    open my $fh, '<', "$dir/$i" or die $!;
    $n{scalar <$fh>}++;
}
Test::More::is_deeply(\%n, { 403 => 10, 429 => 5 }, '10 checked and wrong, 5 refused');
--- request
POST /pwrace
password=right
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 429



=== TEST 20: the API sets and removes a password (never shows it)
--- init
ShortlinkTest::sql(q{SELECT shortlink.set_link_password('pwlock', NULL)});
--- request eval
["PUT /_api/links/pwplain/password\n{\"password\": \"new one\"}",
 "PUT /_api/links/pwplain/password\n{\"password\": \"\"}",
 "PUT /_api/links/pwplain/password\n{\"pw\": \"x\"}",
 "GET /_api/links/pwplain/password",
 "DELETE /_api/links/pwlock/password"]
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- error_code eval
[204, 422, 422, 405, 204]



=== TEST 21: the new password is asked for at once (the change was notified)
--- init
Time::HiRes::sleep(0.3);
--- request eval
["GET /pwplain", "POST /pwplain\npassword=new+one", "GET /pwlock"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code eval
[200, 303, 302]



=== TEST 22: PostgreSQL down: the form still shows (cached), the check is 503, never a redirect
--- init
ShortlinkTest::pg_stop();
--- request eval
["GET /pw2", "POST /pw2\npassword=other"]
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code eval
[200, 503]
--- response_headers_like eval
["", "Retry-After: \\d+"]
--- timeout: 3
--- no_error_log
[alert]
[crit]



=== TEST 23: PostgreSQL back: the password is checked again
--- init
ShortlinkTest::pg_start(); Time::HiRes::sleep(1);
--- request
POST /pw2
password=other
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 303
--- no_error_log
[alert]
[crit]
