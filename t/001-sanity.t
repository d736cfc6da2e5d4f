# The module loads into Debian's nginx, and configurations that cannot work
# are refused at start-up with a clear message.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'sanity%';
    INSERT INTO shortlink.links (code, url)
         VALUES ('sanity1', 'https://example.com/sanity');
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: the module loads and redirects a known link
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location / { shortlink; }
--- request
GET /sanity1
--- error_code: 302
--- response_headers
Location: https://example.com/sanity
--- no_error_log
[error]
[alert]



=== TEST 2: shortlink without shortlink_postgres is refused
--- config
    location / { shortlink; }
--- must_die
--- error_log
"shortlink" is used but "shortlink_postgres" is not set



=== TEST 3: a conninfo libpq cannot parse is refused
--- http_config
    shortlink_postgres "host=127.0.0.1 nosuchoption=1";
--- config
    location / { shortlink; }
--- must_die
--- error_log
invalid PostgreSQL conninfo



=== TEST 4: an invalid pool size is refused
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=0;
--- config
    location / { shortlink; }
--- must_die
--- error_log
invalid parameter "pool=0"



=== TEST 5: an unknown parameter is refused
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN" query_timeout=soon;
--- config
    location / { shortlink; }
--- must_die
--- error_log
invalid parameter "query_timeout=soon"



=== TEST 6: shortlink_postgres is allowed once
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location / { shortlink; }
--- must_die
--- error_log
"shortlink_postgres" directive is duplicate
