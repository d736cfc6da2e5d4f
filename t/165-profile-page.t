# Profile pages (shortlink_profile): the page rendered from the built-in
# template with every value escaped (markup, quotes, RTL text, emoji), the
# avatar's attribute escaped, entries in order without the disabled, the
# scheduled and the unfollowable ones, the headers (CSP with the
# stylesheet's hash, ETag, Cache-Control), 304, 405, HEAD, and 404 for bad
# usernames without a lookup and for unknown ones from the bloom filter.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use Digest::SHA ();

sql(q{
    DELETE FROM shortlink.profiles WHERE username LIKE 't165%';
    DELETE FROM shortlink.links WHERE code LIKE 'pp165%';
    INSERT INTO shortlink.links (code, url, owner) VALUES
        ('pp165a', 'https://example.com/a', 't165'),
        ('pp165b', 'https://example.com/b', 't165'),
        ('pp165c', 'https://example.com/c', 't165'),
        ('pp165d', 'https://example.com/d', 't165'),
        ('pp165e', 'https://example.com/e', 't165'),
        ('pp165f', 'https://example.com/f', 't165'),
        ('pp165g', 'https://example.com/g', 't165'),
        ('pp165h', 'https://example.com/h', 't165');
    UPDATE shortlink.links SET enabled = false WHERE code = 'pp165e';
    UPDATE shortlink.links SET expires_at = now() - interval '1 minute'
     WHERE code = 'pp165h';
    INSERT INTO shortlink.profiles
           (username, owner, display_name, bio, avatar_url, theme)
    VALUES ('t165ann', 't165', 'Ann "A" O''Neil & <b>co</b>',
            E'<script>alert(1)</script>\nשלום עולם 🎉 مرحبا',
            'https://img.example.org/a.png?x="><script>', 'dark'),
           ('t165.empty_1', 't165', 'Empty', '', NULL, 'contrast');
    INSERT INTO shortlink.profile_entries
           (profile_id, position, link_code, title, enabled, visible_from,
            visible_until)
    SELECT p.id, e.pos, e.code, e.title, e.en, e.vf, e.vu
      FROM shortlink.profiles p,
           (VALUES (30, 'pp165a', 'Third <i>x</i>', true, NULL, NULL),
                   (10, 'pp165b', 'First "one" & ''1''', true, NULL, NULL),
                   (20, 'pp165c', 'Second ✨ שלום', true, NULL, NULL),
                   (40, 'pp165d', 'Disabled entry', false, NULL, NULL),
                   (50, 'pp165e', 'Disabled link', true, NULL, NULL),
                   (60, 'pp165f', 'Not yet', true,
                    now() + interval '1 hour', NULL),
                   (70, 'pp165g', 'No more', true, NULL,
                    now() - interval '1 minute'),
                   (80, 'pp165h', 'Expired link', true, NULL, NULL))
           AS e(pos, code, title, en, vf, vu)
     WHERE p.username = 't165ann';
});

our $version = sql_value(
    q{SELECT version FROM shortlink.profiles WHERE username = 't165ann'});

# the database refuses an avatar that is no http(s) URL
eval { sql(q{UPDATE shortlink.profiles SET avatar_url = 'javascript:alert(1)'
              WHERE username = 't165ann'}) };
like($@, qr/profiles_avatar_url_format/, 'a javascript: avatar is refused');

our $http_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone profiles165:1m;
    shortlink_bloom capacity=10000 error=0.001;
    shortlink_queue clicks165:1m;
_EOC_

our $config = <<'_EOC_';
    location / { shortlink; }
    location /@ {
        shortlink_profile max_age=30s;
        add_header X-Cache $shortlink_cache always;
    }
    location /p/ { shortlink_profile links=/go/ ttl=1m; }
    location /go/ { shortlink; }
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

=== TEST 1: the page: every value escaped, UTF-8 (RTL, emoji) as it is
--- request
GET /@t165ann
--- response_body_like chomp
(?s)^<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ann &quot;A&quot; O&#39;Neil &amp; &lt;b&gt;co&lt;/b&gt;</title>
<style>[^<]+</style>
</head>
<body class="t-dark">
<main>
<header>
<img class="avatar" src="https://img.example.org/a.png\?x=&quot;&gt;&lt;script&gt;" alt="" width="96" height="96" referrerpolicy="no-referrer">
<h1 dir="auto">Ann &quot;A&quot; O&#39;Neil &amp; &lt;b&gt;co&lt;/b&gt;</h1>
<p class="bio" dir="auto">&lt;script&gt;alert\(1\)&lt;/script&gt;
שלום עולם 🎉 مرحبا</p>
</header>
<nav aria-label="Links">
<ul>
--- no_error_log
[error]



=== TEST 2: nothing from the database is markup
--- request
GET /@t165ann
--- response_body_unlike: <script|<b>|<i>|javascript:
--- no_error_log
[error]



=== TEST 3: entries in position order; disabled, scheduled, expired and
unfollowable ones are not shown
--- request
GET /@t165ann
--- response_body_like chomp
<ul>
<li><a href="/pp165b\?_sls=profile" dir="auto">First &quot;one&quot; &amp; &#39;1&#39;</a></li>
<li><a href="/pp165c\?_sls=profile" dir="auto">Second ✨ שלום</a></li>
<li><a href="/pp165a\?_sls=profile" dir="auto">Third &lt;i&gt;x&lt;/i&gt;</a></li>
</ul>
</nav>
</main>
</body>
</html>
\z
--- no_error_log
[error]



=== TEST 4: links= puts its prefix before each code; "@" is optional
--- request eval
["GET /p/t165ann", "GET /p/\@t165ann"]
--- response_body_like eval
[qr{<li><a href="/go/pp165b\?_sls=profile" dir="auto">First},
 qr{<li><a href="/go/pp165b\?_sls=profile" dir="auto">First}]
--- no_error_log
[error]



=== TEST 5: a profile without entries, another theme, no avatar
--- request
GET /@t165.empty_1
--- response_body_like
<body class="t-contrast">
<main>
<header>
<h1 dir="auto">Empty</h1>
</header>
<nav aria-label="Links">
<ul>
</ul>
--- no_error_log
[error]



=== TEST 6: the headers: strict CSP, ETag of version and template, a short
public Cache-Control (a returning visitor: no cookie to set)
--- request
GET /@t165ann
--- more_headers
Cookie: sl_vid=0123456789abcdef0123456789abcdef
--- response_headers eval
"Content-Type: text/html; charset=utf-8
Cache-Control: public, max-age=30
X-Content-Type-Options: nosniff
Referrer-Policy: same-origin
ETag: \"p$::version-1\""
--- response_headers_like
Content-Security-Policy: ^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]{43}='; img-src https: http:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'$
--- no_error_log
[error]



=== TEST 7: a new visitor gets the visitor cookie, and so a private
Cache-Control: no shared cache may hand that cookie to others
--- request
GET /@t165ann
--- response_headers
Cache-Control: private, max-age=30
--- response_headers_like
Set-Cookie: ^sl_vid=[0-9a-f]{32};
--- no_error_log
[error]



=== TEST 8: the CSP's hash is the inline stylesheet's: the page styles
itself and nothing else can
--- init
my $res = ShortlinkTest::http_get('/@t165ann');
my ($css) = $res->{body} =~ m{<style>(.*?)</style>}s;
my ($hash) = ($res->{headers}{'content-security-policy'} // '')
             =~ m{'sha256-([^']+)'};
Test::More::is($hash, Digest::SHA::sha256_base64($css) . '=',
               'style-src names the stylesheet by its SHA-256');
my @styles = $res->{body} =~ m{<style}g;
Test::More::is(scalar @styles, 1, 'one stylesheet, no style attributes');
Test::More::unlike($res->{body}, qr{style=}, 'no style attribute');
--- request
GET /@t165ann
--- no_error_log
[error]



=== TEST 9: If-None-Match with the ETag: 304 without a body
--- request
GET /@t165ann
--- more_headers eval
"If-None-Match: \"p$::version-1\""
--- error_code: 304
--- response_body:
--- response_headers eval
"ETag: \"p$::version-1\""
--- no_error_log
[error]



=== TEST 10: If-None-Match with another ETag (an older version, an older
template): the page
--- request
GET /@t165ann
--- more_headers eval
"If-None-Match: \"p0-1\", \"p$::version-0\""
--- error_code: 200
--- no_error_log
[error]



=== TEST 11: other methods: 405 with Allow
--- request
POST /@t165ann
x=1
--- error_code: 405
--- response_headers
Allow: GET, HEAD
--- no_error_log
[error]



=== TEST 12: HEAD: the headers only
--- request
HEAD /@t165ann
--- response_headers eval
"ETag: \"p$::version-1\""
--- response_body:
--- no_error_log
[error]



=== TEST 13: malformed usernames: 404 before any tier is asked (no
$shortlink_cache), no error
--- request eval
["GET /\@Ann", "GET /\@a-b", "GET /\@" . ("a" x 31), "GET /\@",
 "GET /\@%61nn", "GET /\@a%2Fb", "GET /\@t165ann/", "GET /p/t\@x",
 "GET /\@\xd7\xa9"]
--- error_code eval
[(404) x 9]
--- response_headers eval
[("!X-Cache") x 9]
--- no_error_log
[error]



=== TEST 14: once the bloom filter is built, unknown usernames are 404
without a query
--- init
ShortlinkTest::wait_until(sub {
    (ShortlinkTest::http_get('/@t165nobody')->{headers}{'x-cache'} // '') eq 'bloom';
}, 10, 0.1);
--- request eval
["GET /\@t165nobody", "GET /\@t165nobody2", "GET /\@zz.z_9"]
--- error_code eval
[404, 404, 404]
--- response_headers eval
[("X-Cache: bloom") x 3]
--- no_error_log
[error]



=== TEST 15: a known username is never refused by the filter, and a
profile created in psql is served at once
--- init
ShortlinkTest::sql(q{INSERT INTO shortlink.profiles (username, owner, display_name)
      VALUES ('t165late', 't165', 'Late')});
ShortlinkTest::wait_until(sub {
    ShortlinkTest::http_get('/@t165late')->{status} == 200 },
                          1, 0.02);
--- request eval
["GET /\@t165late", "GET /\@t165ann"]
--- error_code eval
[200, 200]
--- response_headers_like eval
["X-Cache: (?:shm|pg)", "X-Cache: (?:shm|pg)"]
--- no_error_log
[error]



=== TEST 16: 400 hostile requests (random bytes, escapes, dots and "@" in
the path, junk If-None-Match): no 5xx, and nothing logged as an error
--- init
srand(165);
my @chars = ('a' .. 'z', '0' .. '9', qw(_ . @ / % - + ~ ! $ ' " < > &),
             "\x80", "\xc3", "\xff", "\xd7\xa9", "%00", "%2F", "%40", "..");
my @bad;
for my $i (1 .. 400) {
    my $path = join '', map { $chars[int rand @chars] } 1 .. 1 + int rand 40;
    my $uri = ($i % 2 ? '/@' : '/p/') . $path;
    my $res = ShortlinkTest::http_get($uri, headers => [
        'If-None-Match: ' . join('', map { $chars[int rand @chars] } 1 .. 20),
        'Cookie: sl_vid=' . join('', map { $chars[int rand @chars] } 1 .. 32)]);
    push @bad, "$res->{status} $uri" if $res->{status} >= 500
                                        || $res->{status} == 0;
}
Test::More::is("@bad", '', 'no 5xx, no connection dropped');
--- request
GET /@t165ann
--- no_error_log
[error]
[alert]
[crit]
