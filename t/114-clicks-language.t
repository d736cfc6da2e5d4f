# The click's language: nginx records the first tag of Accept-Language
# (by position, lower-cased, BCP 47's shape, at most 35 bytes) as the
# built-in field "language" in the click's extra; anything else is no
# field, never an error or a log line, and the redirect is unchanged.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'lg%';
    INSERT INTO shortlink.links (code, url)
        SELECT 'lg' || i, 'https://example.com/lg' || i
          FROM generate_series(1, 12) i;
    DELETE FROM shortlink.clicks WHERE code LIKE 'lg%';
});

our $http_config = <<'_EOC_';
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms batch=1000;
    shortlink_click_field country $http_x_country;
_EOC_

our $config = <<'_EOC_';
    location / { shortlink; }
_EOC_

# anything above debug that the module or a bad header could have logged
our $loud = qr/\[(?:info|notice|warn|error|crit|alert|emerg)\][^\n]*(?:shortlink|language|client sent)/;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $::http_config);
    $block->set_value("config", $::config);
    $block->set_value("no_error_log", [$::loud, '[error]', '[warn]'])
        unless defined $block->no_error_log;
});

no_shuffle();
no_root_location();
run_tests();

# --- what reached PostgreSQL -------------------------------------------------

my $expect = {
    lg1  => 'de-de',
    lg2  => 'fr',
    lg3  => 'zh-hant-tw',
    lg4  => undef,
    lg5  => undef,
    lg6  => undef,
    lg7  => undef,
    lg8  => 'it',
    lg9  => 'pt-br',
    lg10 => undef,
    lg11 => 'es-419',
    lg12 => 'en-aaaaaaaa-bbbbbbbb-cccccccc-ddddd',
};

# nginx flushes every 100 ms and is stopped only after this (upstream)
ok(wait_until(sub {
       sql_value("SELECT count(*) FROM shortlink.clicks WHERE code LIKE 'lg%'")
       == keys %$expect }, 10),
   'one click per link reached PostgreSQL');

my %got = map { $_->[0] => [$_->[1], $_->[2]] } @{ sql_rows(q{
    SELECT code, extra ? 'language', coalesce(extra->>'language', '')
      FROM shortlink.clicks WHERE code LIKE 'lg%'
}) };

for my $code (sort { substr($a, 2) <=> substr($b, 2) } keys %$expect) {
    my $want = $expect->{$code};
    if (defined $want) {
        is_deeply($got{$code}, ['t', $want], "$code: language $want");
    } else {
        is_deeply($got{$code}, ['f', ''], "$code: no language field");
    }
}

is(sql_value(q{SELECT count(*) FROM shortlink.clicks
                WHERE code = 'lg1' AND extra->>'country' = 'DE'}), 1,
   'shortlink_click_field fields are kept beside it');


__DATA__

=== TEST 1: a browser's list: the first tag, lower-cased
--- request
GET /lg1
--- more_headers
Accept-Language: de-DE,de;q=0.9,en;q=0.8
X-Country: DE
--- error_code: 302
--- response_headers
Location: https://example.com/lg1



=== TEST 2: by position, not by q-value
--- request
GET /lg2
--- more_headers
Accept-Language: FR;q=0.1, en;q=1
--- error_code: 302



=== TEST 3: script and region subtags
--- request
GET /lg3
--- more_headers
Accept-Language: zh-Hant-TW, zh;q=0.5
--- error_code: 302



=== TEST 4: the wildcard is no language
--- request
GET /lg4
--- more_headers
Accept-Language: *
--- error_code: 302



=== TEST 5: no Accept-Language at all
--- request
GET /lg5
--- error_code: 302



=== TEST 6: a very long header (7,000 letters) is no language and no error
--- request
GET /lg6
--- more_headers eval
"Accept-Language: " . ("a" x 7000)
--- error_code: 302



=== TEST 7: hostile bytes: HTML, quotes, bytes above ASCII
--- request
GET /lg7
--- more_headers eval
"Accept-Language: fran\xc3\xa7ais\"<script>alert(1)</script>, \xff\xfe, de"
--- error_code: 302



=== TEST 8: two Accept-Language headers: the first one's first tag
--- request
GET /lg8
--- more_headers
Accept-Language: it, de
Accept-Language: ja
--- error_code: 302



=== TEST 9: after 200 other headers
--- request
GET /lg9
--- more_headers eval
CORE::join("\r\n", (map { "X-Pad-$_: $_" } 1 .. 200), "Accept-Language: pt-BR, pt")
--- error_code: 302



=== TEST 10: an empty value
--- request
GET /lg10
--- more_headers eval
"Accept-Language: "
--- error_code: 302



=== TEST 11: empty list elements before the first tag
--- request
GET /lg11
--- more_headers
Accept-Language: , ,es-419;q=0.8
--- error_code: 302



=== TEST 12: 35 bytes are kept, whole
--- request
GET /lg12
--- more_headers
Accept-Language: en-aaaaaaaa-bbbbbbbb-cccccccc-ddddd,fr
--- error_code: 302
