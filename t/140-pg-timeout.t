# A query nginx gives up on is really stopped by PostgreSQL: the pool sets
# statement_timeout from the query's own timeout, so PostgreSQL cancels
# the statement (and nginx hears why) instead of running it to the end
# after nginx has answered 503.  Shown with a lookup and with an API create
# held up by a lock: no backend is left running, and the create that got a
# 503 did not happen, so sending it again makes the link (201, not 409).
# And a statement PostgreSQL refuses for its data (SQLSTATE class 22 or
# 23) is a warning and no backend error; any other refusal is both (shown
# with shortlink.resolve() replaced for a moment by one that refuses some
# codes; shortlink.api() and record_clicks() catch their own errors).

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 't140%';
    INSERT INTO shortlink.links (code, url)
         VALUES ('t140a', 'https://example.com/t140a'),
                ('t140b', 'https://example.com/t140b');
});

$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t140')");

our $auth = "Authorization: Bearer $ENV{TEST_NGINX_API_KEY}\n"
            . "Content-Type: application/json";

# long enough for two blocks to run into it, under valgrind too
our $lock_seconds = $ENV{TEST_NGINX_USE_VALGRIND} ? 30 : 8;

# every statement on links waits until the lock is released
sub hold_lock {
    ShortlinkTest::sql_bg("BEGIN; LOCK TABLE shortlink.links IN ACCESS "
                          . "EXCLUSIVE MODE; SELECT pg_sleep($lock_seconds);"
                          . " COMMIT;");
    ShortlinkTest::wait_until(sub {
        ShortlinkTest::sql_value("SELECT count(*) FROM pg_locks l"
            . " JOIN pg_class c ON c.oid = l.relation"
            . " WHERE c.relname = 'links' AND l.mode = 'AccessExclusiveLock'"
            . " AND l.granted") > 0
    }, 5) or die "the lock was not taken\n";
}

# nginx's statements PostgreSQL is still running (the LISTEN check aside)
sub running {
    return ShortlinkTest::sql_value(
        "SELECT count(*) FROM pg_stat_activity"
        . " WHERE application_name = 'nginx-shortlink' AND state = 'active'"
        . " AND query NOT LIKE 'LISTEN %'");
}

# the lock is still held: without statement_timeout the abandoned
# statement would be waiting for it, active, until it is released
sub assert_none_running {
    my ($what) = @_;
    ShortlinkTest::wait_until(sub { running() == 0 }, 2);
    Test::More::is(running(), 0, "$what: no statement left running");
    Test::More::cmp_ok(ShortlinkTest::sql_value(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        . " WHERE NOT l.granted AND a.application_name = 'nginx-shortlink'"),
        '==', 0, "$what: nothing of nginx's waits for the lock");
}

# shortlink.resolve() refuses codes starting with t140bad (a broken
# constraint, 23514) and t140err (an ordinary exception, P0001); the
# original is put back when the suite ends
my $resolve_columns = 'TABLE(url text, redirect_status smallint, '
    . 'expires_epoch bigint, version bigint, forward_query boolean, '
    . 'rules text, password boolean)';

sub refuse_codes {
    my $result = ShortlinkTest::sql_value(
        "SELECT pg_get_function_result('shortlink.resolve(text)'::regprocedure)");
    die "shortlink.resolve() returns $result now: update this suite\n"
        unless $result eq $resolve_columns;
    ShortlinkTest::sql(qq{
        ALTER FUNCTION shortlink.resolve(text) RENAME TO t140_resolve;
        ALTER FUNCTION shortlink.t140_resolve(text) SET SCHEMA public;
        CREATE FUNCTION shortlink.resolve(p_code text) RETURNS $resolve_columns
        LANGUAGE plpgsql STABLE AS \$\$
        BEGIN
            IF p_code LIKE 't140bad%' THEN
                RAISE EXCEPTION 'test: % breaks a rule', p_code
                      USING ERRCODE = 'check_violation';
            END IF;
            IF p_code LIKE 't140err%' THEN
                RAISE EXCEPTION 'test: % refused', p_code;
            END IF;
            RETURN QUERY SELECT * FROM public.t140_resolve(p_code);
        END;
        \$\$;
    });
}

sub restore_resolve {
    ShortlinkTest::sql(q{
        DO $$
        BEGIN
            IF to_regprocedure('public.t140_resolve(text)') IS NOT NULL THEN
                DROP FUNCTION shortlink.resolve(text);
                ALTER FUNCTION public.t140_resolve(text) SET SCHEMA shortlink;
                ALTER FUNCTION shortlink.t140_resolve(text) RENAME TO resolve;
            END IF;
        END;
        $$;
    });
}

sub error_log {
    my $log = Test::Nginx::Socket::server_root() . "/logs/error.log";
    open my $fh, '<', $log or die "$log: $!";
    local $/;
    return <$fh>;
}

my $suite = $$;

END {
    if ($$ == $suite) {
        local $?;
        eval { restore_resolve() };
    }
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN" query_timeout=300ms;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location /_api/ { shortlink_api; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: warm up: a connection in the pool
--- request
GET /t140a
--- error_code: 302
--- no_error_log
[error]



=== TEST 2: a lookup held up by a lock: 503 after query_timeout, cancelled by PostgreSQL
--- init
main::hold_lock();
--- request
GET /t140b
--- error_code: 503
--- error_log
PostgreSQL query timed out after 300 ms, cancelled by PostgreSQL
canceling statement due to statement timeout



=== TEST 3: the lookup is not left running; an API create held up too: 503
--- init
main::assert_none_running("the lookup");
--- request
POST /_api/links
{"url": "https://example.com/t140new", "code": "t140new"}
--- more_headers eval: $::auth
--- error_code: 503
--- response_body_like: PostgreSQL could not answer
--- error_log
PostgreSQL query timed out after 1500 ms, cancelled by PostgreSQL



=== TEST 4: the create was not made after its 503: sent again, it makes the link
--- init
main::assert_none_running("the create");
ShortlinkTest::pg_wait_bg();
Test::More::is(ShortlinkTest::sql_value(
    "SELECT count(*) FROM shortlink.links WHERE code = 't140new'"), 0,
    "the create answered 503 did not commit once the lock was gone");
--- request
POST /_api/links
{"url": "https://example.com/t140new", "code": "t140new"}
--- more_headers eval: $::auth
--- error_code: 201



=== TEST 5: and the link redirects
--- request
GET /t140new
--- error_code: 302
--- response_headers
Location: https://example.com/t140new



=== TEST 6: so far timeouts only, no backend error
--- request
GET /metrics
--- response_body_like eval
qr/shortlink_backend_errors_total\{backend="postgresql"\} 0\n/



=== TEST 7: a lookup PostgreSQL refuses for its data: 503
--- init
main::refuse_codes();
--- request
GET /t140bad1
--- error_code: 503



=== TEST 8: logged as a warning, and no backend error counted; any other refusal: 503
--- init
Test::More::like(main::error_log(),
    qr/\[warn\] .*PostgreSQL query failed \(SQLSTATE 23514\): ERROR:  test: t140bad1 breaks a rule/,
    "a data error is a warning");
--- request eval
["GET /metrics", "GET /t140err1"]
--- error_code eval
[200, 503]
--- response_body_like eval
[qr/shortlink_backend_errors_total\{backend="postgresql"\} 0\n/, qr/.*/]



=== TEST 9: logged as an error, and counted
--- init
Test::More::like(main::error_log(),
    qr/\[error\] .*PostgreSQL query failed \(SQLSTATE P0001\): ERROR:  test: t140err1 refused/,
    "another refusal is an error");
--- request
GET /metrics
--- response_body_like eval
qr/shortlink_backend_errors_total\{backend="postgresql"\} 1\n/



=== TEST 10: the lookup is back as it was
--- init
main::restore_resolve();
--- request
GET /t140a
--- error_code: 302
