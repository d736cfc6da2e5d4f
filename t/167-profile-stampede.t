# Stampede protection for profile pages: many concurrent misses for one
# username cause one PostgreSQL query, whether the profile exists or not.
# The concurrency comes from SSI: every include is a subrequest started at
# once, so all of them miss the zone together.  (Subrequests are no views.)

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.profiles WHERE username LIKE 't167%';
    INSERT INTO shortlink.profiles (username, owner, display_name)
    VALUES ('t167herd', 't167', 'Herd');
});

our $includes = join "",
    map { qq{<!--# include virtual="/\@t167herd" -->\n} } 1 .. 20;
our $includes2 = join "",
    map { qq{<!--# include virtual="/\@t167nobody" -->\n} } 1 .. 20;

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: 20 concurrent misses for one profile: one PostgreSQL query
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone profiles167:1m;
--- config
    location = /herd.html { ssi on; root html; }
    location /@ { shortlink_profile; }
--- user_files eval
">>> herd.html\n$::includes"
--- request
GET /herd.html
--- response_body_like: \A(?:<!DOCTYPE html>\n(?:(?!<!DOCTYPE)[\s\S])*<h1 dir="auto">Herd</h1>(?:(?!<!DOCTYPE)[\s\S])*</html>\n\n){20}\z
--- grep_error_log eval: qr/looking up "\@t167herd" in PostgreSQL|joins a lookup under way/
--- grep_error_log_out eval
"looking up \"\@t167herd\" in PostgreSQL\n"
. ("joins a lookup under way\n" x 19)
--- no_error_log
[error]
[alert]



=== TEST 2: 20 concurrent misses for an unknown profile: one query, 404s
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone profiles167:1m;
--- config
    location = /herd2.html { ssi on; ssi_silent_errors on; root html; }
    location /@ { shortlink_profile; }
--- user_files eval
">>> herd2.html\n$::includes2"
--- request
GET /herd2.html
--- grep_error_log eval: qr/looking up "\@t167nobody" in PostgreSQL|joins a lookup under way/
--- grep_error_log_out eval
"looking up \"\@t167nobody\" in PostgreSQL\n"
. ("joins a lookup under way\n" x 19)
--- no_error_log
[alert]
