# Clicks: every redirect (not 404, not HEAD) is queued and written to
# PostgreSQL once, with its fields; the visitor cookie; Do Not Track and
# Global Privacy Control; IP anonymisation; extra fields from variables.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'ck%';
    INSERT INTO shortlink.links (code, url) VALUES
        ('ck1', 'https://example.com/ck1'),
        ('ck2', 'https://example.com/ck2'),
        ('ck3', 'https://example.com/ck3'),
        ('ck4', 'https://example.com/ck4');
    DELETE FROM shortlink.clicks WHERE code LIKE 'ck%';
});

our $http_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms batch=1000;
    shortlink_click_field country $http_x_country;
    shortlink_click_field lang $arg_lang;
_EOC_

our $config = <<'_EOC_';
    location / { shortlink; }
    location /full/ { shortlink; shortlink_click_ip full; }
    location /nocookie/ { shortlink; shortlink_visitor_cookie off; }
    location /dnt-ignored/ { shortlink; shortlink_respect_dnt off; }
_EOC_

our $chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
              . "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $::http_config);
    $block->set_value("config", $::config);
});

no_shuffle();
no_root_location();
run_tests();

# --- what reached PostgreSQL -------------------------------------------------

sub rows { sql_value("SELECT count(*) FROM shortlink.clicks WHERE $_[0]") }

is(rows("code = 'ck1'"), 5, 'five redirects of ck1: five rows');
is(rows("code = 'ck1' AND ip = '127.0.0.0'"), 5,
   'the IP is anonymised to its /24 by default');
is(rows("code = 'ck1' AND referer = 'https://news.example.org/a?b=1'"
        . " AND referer_host = 'news.example.org'"), 5, 'referer and its host');
is(rows("code = 'ck1' AND extra->>'country' = 'DE' AND extra->>'lang' = 'fr'"),
   5, 'extra fields from variables');
is(rows("code = 'ck1' AND browser = 'Chrome' AND os = 'Windows'"
        . " AND device = 'desktop' AND NOT is_bot"), 5,
   'browser, OS and device derived from the user agent');
is(rows("code = 'ck1' AND visitor_id ~ '^[0-9a-f]{32}\$'"), 5,
   'a visitor id on every ordinary click');
is(sql_value("SELECT count(DISTINCT event_id) FROM shortlink.clicks"
             . " WHERE code LIKE 'ck%'"),
   rows("code LIKE 'ck%'"), 'event ids are unique');

is(rows("code = 'ck2'"), 2, 'DNT and GPC clicks are counted');
is(rows("code = 'ck2' AND visitor_id IS NULL AND ip IS NULL"), 2,
   '... without visitor id or IP');

is(rows("code = 'ck3' AND visitor_id = '0123456789abcdef0123456789abcdef'"),
   2, 'a visitor cookie of ours is reused (one visitor, two clicks)');
is(rows("code = 'ck3'"), 3, 'an invalid cookie gets a new id, still counted');

is(rows("code = 'ck4' AND ip = '127.0.0.1'"), 1,
   'shortlink_click_ip full keeps the whole address');
is(rows("code = 'ck4' AND is_bot AND device = 'bot'"), 1, 'bots are flagged');
is(rows("code = 'ck4' AND length(user_agent) = 512"), 1,
   'a long user agent is cut to 512 bytes, not refused');
is(rows("code = 'ck4'"), 2, 'nothing else for ck4');

is(rows("code = 'nope' OR code = 'ck-head'"), 0,
   '404s and HEAD requests are not recorded');


__DATA__

=== TEST 1: five ordinary redirects
--- request eval
[("GET /ck1?lang=fr") x 5]
--- more_headers eval
"User-Agent: $::chrome\r\nReferer: https://news.example.org/a?b=1\r\nX-Country: DE"
--- error_code eval
[(302) x 5]
--- response_headers_like eval
[("Set-Cookie: sl_vid=[0-9a-f]{32}; Max-Age=31536000; Path=/; HttpOnly; SameSite=Lax") x 5]
--- no_error_log
[error]



=== TEST 2: HEAD and 404 are not clicks
--- request eval
["HEAD /ck1", "GET /nope", "GET /bad.code"]
--- error_code eval
[302, 404, 404]



=== TEST 3: DNT: 1 counts the click without visitor id or IP, sets no cookie
--- request
GET /ck2
--- more_headers
DNT: 1
--- error_code: 302
--- response_headers
!Set-Cookie



=== TEST 4: Sec-GPC: 1 likewise
--- request
GET /ck2
--- more_headers
Sec-GPC: 1
--- error_code: 302
--- response_headers
!Set-Cookie



=== TEST 5: a visitor cookie of ours is reused, not reissued
--- request eval
["GET /ck3", "GET /ck3"]
--- more_headers
Cookie: other=1; sl_vid=0123456789abcdef0123456789abcdef
--- error_code eval
[302, 302]
--- response_headers eval
["!Set-Cookie", "!Set-Cookie"]



=== TEST 6: a cookie that is not ours is replaced
--- request
GET /ck3
--- more_headers
Cookie: sl_vid=<script>
--- error_code: 302
--- response_headers_like
Set-Cookie: sl_vid=[0-9a-f]{32}; Max-Age=31536000; Path=/; HttpOnly; SameSite=Lax



=== TEST 7: full IP, a bot, a very long user agent
--- request
GET /full/ck4
--- more_headers eval
"User-Agent: Googlebot/2.1 (+http://www.google.com/bot.html) " . ("x" x 2000)
--- error_code: 302



=== TEST 8: visitor cookie off: none set
--- request
GET /nocookie/ck4
--- error_code: 302
--- response_headers
!Set-Cookie
--- wait: 1
