# Groups: named, ordered groups per owner; every link in exactly one (the
# default group, created on first use, holds the others); list a group's
# links, move links (PUT /groups/{id}/links/{code}), reorder, rename,
# delete (its links go back to the default group), statistics per group
# (the set statistics of sql/014 over its links) from real clicks.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use POSIX ();

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 't171%';
    DELETE FROM shortlink.groups WHERE owner LIKE 't171%';
    DELETE FROM shortlink.clicks WHERE code LIKE 't171%';
    DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE 't171%';
    INSERT INTO shortlink.links (code, url, owner, created_at) VALUES
        ('t171a', 'https://example.com/a', 't171', now() - interval '3 s'),
        ('t171b', 'https://example.com/b', 't171', now() - interval '2 s'),
        ('t171c', 'https://example.com/c', 't171', now() - interval '1 s'),
        ('t171o', 'https://example.com/o', 't171-other', now());
});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t171')");
$ENV{TEST_NGINX_OTHER_KEY} = sql_value("SELECT shortlink.create_api_key('t171-other')");
$ENV{T171_DEFAULT} = sql_value("SELECT shortlink.default_group('t171')");
$ENV{T171_WORK} = sql_value(q{INSERT INTO shortlink.groups (owner, name, position)
                              VALUES ('t171', 'Work', 1) RETURNING id});
$ENV{T171_TRIPS} = sql_value(q{INSERT INTO shortlink.groups (owner, name, position)
                               VALUES ('t171', 'Trips', 2) RETURNING id});
$ENV{T171_OTHER} = sql_value("SELECT shortlink.default_group('t171-other')");

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms batch=1000;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
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

=== TEST 1: the owner's groups in order, the default one holding every link
--- request
GET /_api/groups
--- error_code: 200
--- response_body_like eval
qr/^\{"groups": \[\{[^}]*"name": "Default"[^}]*"links": 3[^}]*"default": true[^}]*"position": 0[^}]*\}, \{[^}]*"name": "Work"[^}]*"position": 1[^}]*\}, \{[^}]*"name": "Trips"[^}]*"position": 2/
--- no_error_log
[error]



=== TEST 2: create: at the end, or at a position; names are checked
--- request eval
["POST /_api/groups\n{\"name\": \"Home\", \"position\": 1}",
 "POST /_api/groups\n{\"name\": \"Later\"}",
 "POST /_api/groups\n{\"name\": \"Home\"}",
 "POST /_api/groups\n{\"name\": \" padded\", \"colour\": 1}",
 "POST /_api/groups\n{\"name\": \"\"}",
 "POST /_api/groups\n{\"name\": \"a\\u0001b\"}",
 "POST /_api/groups\n[1]",
 "POST /_api/groups\n{\"name\": "]
--- error_code eval
[201, 201, 409, 422, 422, 422, 400, 400]
--- response_body_like eval
['"name": "Home".*"position": 1', '"name": "Later".*"position": 4',
 'group-name-taken', '"pointer": "/colour".*"pointer": "/name"|"pointer": "/name".*"pointer": "/colour"',
 '"pointer": "/name"', '"pointer": "/name"', 'not-an-object', 'malformed-json']
--- no_error_log
[error]



=== TEST 3: the others moved down; Home sits at 1
--- request
GET /_api/groups
--- response_body_like eval
qr/"name": "Default".*"name": "Home".*"name": "Work".*"name": "Trips".*"name": "Later"/
--- no_error_log
[error]



=== TEST 4: move links; list a group's links
--- request eval
["PUT /_api/groups/$ENV{T171_WORK}/links/t171a",
 "PUT /_api/groups/$ENV{T171_WORK}/links/t171a",
 "PUT /_api/groups/$ENV{T171_TRIPS}/links/t171c",
 "PUT /_api/groups/$ENV{T171_WORK}/links/t171o",
 "PUT /_api/groups/$ENV{T171_OTHER}/links/t171b",
 "PUT /_api/groups/$ENV{T171_WORK}/links/t171zz",
 "PUT /_api/groups/999999999999/links/t171b",
 "GET /_api/groups/$ENV{T171_WORK}/links",
 "GET /_api/groups/$ENV{T171_DEFAULT}/links",
 "GET /_api/groups/$ENV{T171_DEFAULT}/links?limit=1"]
--- error_code eval
[200, 200, 200, 403, 403, 404, 404, 200, 200, 200]
--- response_body_like eval
["\"code\": \"t171a\".*\"group\": $ENV{T171_WORK}", "\"group\": $ENV{T171_WORK}",
 "\"group\": $ENV{T171_TRIPS}", 'not-your-link', 'not-your-group', 'link-not-found',
 'group-not-found',
 '^\{"group": \d+, "links": \[\{[^{]*"code": "t171a"[^{]*\}\], "next_cursor": null\}$',
 '^\{"group": \d+, "links": \[\{[^{]*"code": "t171b"[^{]*\}\], "next_cursor": null\}$',
 '"code": "t171b".*"next_cursor": null']
--- no_error_log
[error]



=== TEST 5: reorder and rename
--- request eval
["PATCH /_api/groups/$ENV{T171_TRIPS}\n{\"position\": 0}",
 "PATCH /_api/groups/$ENV{T171_TRIPS}\n{\"name\": \"Home\"}",
 "PATCH /_api/groups/$ENV{T171_TRIPS}\n{\"name\": \"Travel\"}",
 "PATCH /_api/groups/$ENV{T171_TRIPS}\n{}",
 "PATCH /_api/groups/$ENV{T171_TRIPS}\n{\"position\": -1}",
 "GET /_api/groups"]
--- error_code eval
[200, 409, 200, 400, 422, 200]
--- response_body_like eval
['"name": "Trips".*"position": 0', 'group-name-taken', '"name": "Travel"', 'empty-patch',
 '"pointer": "/position"',
 '"name": "Travel".*"name": "Default".*"name": "Home".*"name": "Work".*"name": "Later"']
--- no_error_log
[error]



=== TEST 6: another owner sees none of it
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_OTHER_KEY}"
--- request eval
["GET /_api/groups/$ENV{T171_WORK}", "GET /_api/groups/$ENV{T171_WORK}/links",
 "GET /_api/groups/$ENV{T171_WORK}/stats", "DELETE /_api/groups/$ENV{T171_WORK}",
 "GET /_api/groups"]
--- error_code eval
[403, 403, 403, 403, 200]
--- response_body_unlike eval
['x^', 'x^', 'x^', 'x^', '"Work"|"Travel"']
--- no_error_log
[error]



=== TEST 7: clicks: three on t171a (Work), two on t171b (Default)
--- request eval
["GET /t171a", "GET /t171a", "GET /t171a", "GET /t171b", "GET /t171b"]
--- error_code eval
[(302) x 5]



=== TEST 8: statistics per group: the set statistics of its links (stats_doc of 014)
--- init
ShortlinkTest::wait_until(sub {
    ShortlinkTest::sql_value(q{SELECT coalesce(sum(pv), 0) FROM shortlink.link_hourly_clicks
                               WHERE code IN ('t171a', 't171b')}) == 5
}, 15);
--- request eval
# [yesterday, tomorrow) in UTC: the default range ends at the start of
# the current hour, which holds the clicks (and a run at midnight finds
# them too)
my @d = map { POSIX::strftime('%Y-%m-%d', gmtime(time + $_)) } -86400, 86400;
["GET /_api/groups/$ENV{T171_WORK}/stats?interval=hour&from=$d[0]&to=$d[1]",
 "GET /_api/groups/$ENV{T171_DEFAULT}/stats?tz=Europe/Berlin&from=$d[0]&to=$d[1]",
 "GET /_api/groups/$ENV{T171_TRIPS}/stats?from=$d[0]&to=$d[1]",
 "GET /_api/groups/$ENV{T171_WORK}/stats?interval=week",
 "GET /_api/groups/$ENV{T171_WORK}/stats?from=2030-01-01&to=2029-01-01",
 "GET /_api/groups/$ENV{T171_WORK}/stats?tz=Nowhere/City",
 "GET /_api/groups/$ENV{T171_WORK}/stats?colour=red"]
--- error_code eval
[200, 200, 200, 400, 400, 400, 400]
--- response_body_like eval
['"tz": "UTC".*"name": "Work".*"links": 1.*"totals": \{"pv": 3, "uv": 3, "bots": 0.*"interval": "hour"',
 '"tz": "Europe/Berlin".*"links": 1.*"totals": \{"pv": 2, "uv": 2, "bots": 0',
 '"links": 1.*"totals": \{"pv": 0, "uv": 0, "bots": 0',
 'interval must be hour or day', 'to must not be before from', 'tz must be', 'unknown query parameter']
--- no_error_log
[error]



=== TEST 9: delete: not the default group; Work's link goes back to it
--- request eval
["DELETE /_api/groups/$ENV{T171_DEFAULT}",
 "DELETE /_api/groups/$ENV{T171_WORK}",
 "GET /_api/groups/$ENV{T171_WORK}",
 "GET /_api/groups/$ENV{T171_DEFAULT}/links",
 "GET /_api/groups"]
--- error_code eval
[409, 204, 404, 200, 200]
--- response_body_like eval
['default-group', '^$', 'group-not-found', '"code": "t171a".*"code": "t171b"',
 '"name": "Travel", [^}]*"position": 0.*"name": "Default"[^}]*"position": 1.*"name": "Home"[^}]*"position": 2.*"name": "Later"[^}]*"position": 3']
--- no_error_log
[error]
