# The /profiles API through nginx (t/160 covers it in SQL): UTF-8 and
# markup in every text field travel both ways byte for byte, paths with
# percent-encoded junk are a 404 problem, methods a route lacks a 405
# with Allow, HEAD is GET without the body, statistics take an IANA zone
# in the query string -- and none of it logs an error or counts a backend
# error.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sub cleanup {
    sql(q{
        DELETE FROM shortlink.profiles WHERE owner = 't161';
        DELETE FROM shortlink.links WHERE owner = 't161';
        DELETE FROM shortlink.api_keys WHERE owner = 't161';
    });
}

cleanup();
sql(q{INSERT INTO shortlink.links (code, url, owner) VALUES
          ('t161a', 'https://example.com/a', 't161'),
          ('t161b', 'https://example.com/b', 't161')});

our $auth = "Authorization: Bearer " . sql_value("SELECT shortlink.create_api_key('t161')")
          . "\nContent-Type: application/json";

# bytes, as the client sends them: emoji, right-to-left text with an
# override, markup and quotes
our $name = "Ada \xf0\x9f\x98\x80 \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xe2\x80\xae<b>";
our $bio = "<script>alert('x')</script>\\n\\\"quoted\\\" & \xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb";
our $title = "</a><img src=x onerror=alert(1)> \xe2\x80\x8f";

our @req = (
    [ qq{POST /_api/profiles\n{"username": "t161u", "display_name": "$name", "bio": "$bio",
      "entries": [{"code": "t161a", "title": "$title"}]}},
      201, qr/"display_name": "\Q$name\E".*"bio": "\Q$bio\E"|"bio": "\Q$bio\E".*"display_name": "\Q$name\E"/s ],
    [ "GET /_api/profiles/t161u", 200, qr/"title": "\Q$title\E"/ ],
    [ "HEAD /_api/profiles/t161u", 200, qr/^$/ ],
    [ "GET /_api/profiles/t161u/entries", 405, qr/"allow": "POST, PUT"/ ],
    [ "GET /_api/profiles/%3Cscript%3E", 404, qr/profile-not-found/ ],
    [ "DELETE /_api/profiles/t161u/entries/%27%20OR%201=1", 404, qr/entry-not-found/ ],
    [ "GET /_api/profiles/t161u/stats?from=2026-01-05&tz=Europe%2FBerlin", 200,
      qr/"tz": "Europe\/Berlin".*"from": "2026-01-05T00:00:00\+01:00"/s ],
    [ "GET /_api/profiles/t161u/stats?tz=%27%3B%20DROP", 400, qr/IANA/ ],
    [ qq{PUT /_api/profiles/t161u/entries\n[{"code": "t161b", "title": "B"},
      {"code": "t161a", "title": "$title", "enabled": false}]}, 200,
      qr/"code": "t161b".*"code": "t161a"/s ],
    [ qq{POST /_api/profiles\n{"username": "T161 bad", "display_name": "a\\u0007", "theme": 1}},
      422, qr/"pointer": "\/display_name".*"pointer": "\/theme".*"pointer": "\/username"/s ],
    [ qq{PATCH /_api/profiles/t161u\n{"bio": "\\r"}}, 422, qr/"pointer": "\/bio"/ ],
    [ "DELETE /_api/profiles/t161u", 204, qr/^$/ ],
    [ "GET /_api/profiles/t161u", 404, qr/profile-not-found/ ],
);

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location /_api/ { shortlink_api; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

cleanup();

__DATA__

=== TEST 1: every route through nginx, hostile text kept byte for byte
--- request eval
[map { $_->[0] } @::req]
--- more_headers eval
[($::auth) x @::req]
--- error_code eval
[map { $_->[1] } @::req]
--- response_body_like eval
[map { $_->[2] } @::req]
--- no_error_log
[error]
[crit]
[alert]



=== TEST 2: no key: 401; no backend error was counted
--- request eval
["GET /_api/profiles", "GET /metrics"]
--- error_code eval
[401, 200]
--- response_body_like eval
[qr/unauthorized/, qr/shortlink_backend_errors_total\{backend="postgresql"\} 0\n/]
--- no_error_log
[error]
