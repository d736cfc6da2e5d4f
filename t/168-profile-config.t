# shortlink_profile's configuration: what is refused at start-up, and a
# profile location that works with nothing but PostgreSQL (no zone, no
# Redis, no filter: every page is a query, and still a page).

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.profiles WHERE username LIKE 't168%';
    INSERT INTO shortlink.profiles (username, owner, display_name)
    VALUES ('t168plain', 't168', 'Plain');
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: only PostgreSQL: pages from it, unknown names 404
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location /@ {
        shortlink_profile;
        add_header X-Cache $shortlink_cache always;
    }
--- request eval
["GET /\@t168plain", "GET /\@t168plain", "GET /\@t168none"]
--- error_code eval
[200, 200, 404]
--- response_headers eval
["X-Cache: pg", "X-Cache: pg", "X-Cache: pg"]
--- no_error_log
[error]



=== TEST 2: shortlink_profile without shortlink_postgres is refused
--- config
    location /@ { shortlink_profile; }
--- must_die
--- error_log
"shortlink" is used but "shortlink_postgres" is not set



=== TEST 3: links= must be a path from "/" to "/" without markup
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location /@ { shortlink_profile links=/go"/; }
--- must_die
--- error_log
"links=" must be a path from "/" to "/"



=== TEST 4: links= without its trailing slash
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location /@ { shortlink_profile links=/go; }
--- must_die
--- error_log
"links=" must be a path from "/" to "/"



=== TEST 5: ttl=0 and unknown parameters are refused
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location /@ { shortlink_profile ttl=0; }
--- must_die
--- error_log
invalid parameter "ttl=0"



=== TEST 6: an unknown parameter
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location /@ { shortlink_profile max-age=1s; }
--- must_die
--- error_log
invalid parameter "max-age=1s"



=== TEST 7: shortlink and shortlink_profile in one location, either order
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location /@ { shortlink; shortlink_profile; }
--- must_die
--- error_log
"shortlink_profile" directive cannot be used in a location with "shortlink"



=== TEST 8: ... the other order
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location /@ { shortlink_profile; shortlink; }
--- must_die
--- error_log
"shortlink" directive cannot be used in a location with "shortlink_profile"



=== TEST 9: at most once per location
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location /@ { shortlink_profile; shortlink_profile; }
--- must_die
--- error_log
"shortlink_profile" directive is duplicate
