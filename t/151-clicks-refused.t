# A batch PostgreSQL refuses for its data before record_clicks() can set
# anything aside (as binding refuses invalid UTF-8): nginx halves the batch
# until it finds the click refused alone, files it in
# shortlink.clicks_rejected through reject_click() with the SQLSTATE and
# message, and writes the rest, in the same flush.  If even filing the
# click fails, it is counted as discarded and logged; the rest is written
# all the same.  No failed flush, no [error] line, the queue back to 0.
#
# The refusal is provoked by a stand-in for record_clicks() that raises
# 22021 for any batch holding a user agent marked "t-refuse-me" (invalid
# bytes no longer reach the queue), and a trigger on clicks_rejected that
# refuses a click marked "t-discard-me" (23514).

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

my $sig = 'uuid[], bigint[], text[], text[], text[], text[], text[], jsonb[]';

sub restore {
    sql(qq{
        DO \$\$
        BEGIN
            IF to_regprocedure('shortlink.t_record_clicks_real($sig)') IS NOT NULL THEN
                DROP FUNCTION shortlink.record_clicks($sig);
                ALTER FUNCTION shortlink.t_record_clicks_real($sig)
                    RENAME TO record_clicks;
            END IF;
        END
        \$\$;
        DROP TRIGGER IF EXISTS t_refuse_rejected ON shortlink.clicks_rejected;
        DROP FUNCTION IF EXISTS public.t_refuse_rejected();
    });
}

restore();

sql(qq{
    DELETE FROM shortlink.links WHERE code LIKE 'rf%';
    INSERT INTO shortlink.links (code, url) VALUES
        ('rf1', 'https://example.com/rf1'), ('rf2', 'https://example.com/rf2');
    DELETE FROM shortlink.clicks WHERE code LIKE 'rf%';
    DELETE FROM shortlink.clicks_rejected WHERE code LIKE 'rf%';

    ALTER FUNCTION shortlink.record_clicks($sig) RENAME TO t_record_clicks_real;
    CREATE FUNCTION shortlink.record_clicks(
        p_event_ids uuid[], p_clicked_ms bigint[], p_codes text[], p_ips text[],
        p_user_agents text[], p_referers text[], p_visitors text[],
        p_extra jsonb[])
    RETURNS integer LANGUAGE plpgsql AS \$\$
    BEGIN
        IF EXISTS (SELECT FROM unnest(p_user_agents) u WHERE u LIKE '%t-refuse-me%') THEN
            RAISE EXCEPTION 'test: refused as if at binding'
                USING ERRCODE = 'character_not_in_repertoire';
        END IF;
        RETURN shortlink.t_record_clicks_real(p_event_ids, p_clicked_ms, p_codes,
                   p_ips, p_user_agents, p_referers, p_visitors, p_extra);
    END;
    \$\$;

    CREATE FUNCTION public.t_refuse_rejected() RETURNS trigger
    LANGUAGE plpgsql AS \$\$
    BEGIN
        IF NEW.user_agent LIKE '%t-discard-me%' THEN
            RAISE EXCEPTION 'test: not even filed' USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END;
    \$\$;
    CREATE TRIGGER t_refuse_rejected BEFORE INSERT ON shortlink.clicks_rejected
        FOR EACH ROW EXECUTE FUNCTION public.t_refuse_rejected();
});

END { local $?; eval { restore() } }

# GET /metrics from the nginx under test
sub queued {
    return metrics_text() =~ /^shortlink_click_queue_clicks (\d+)$/m ? $1 : -1;
}

sub error_log_has {
    my ($re) = @_;
    my $file = Test::Nginx::Socket::server_root() . "/logs/error.log";
    open my $fh, '<', $file or return 0;
    local $/;
    my $text = <$fh>;
    return $text =~ $re;
}

sub rows {
    return sql_value("SELECT count(*) FROM shortlink.clicks WHERE code LIKE 'rf%'");
}

# 100 redirects with an ordinary user agent around one marked one
sub around {
    my ($code, $ua) = @_;
    my @r = map { "GET /$code" } 1 .. 100;
    splice @r, 50, 0, "GET /$code";
    my @h = ("User-Agent: ordinary\nX-Tag: plain") x 101;
    $h[50] = "User-Agent: $ua\nX-Tag: marked";
    return (\@r, \@h);
}

our ($Req1, $Hdr1) = around('rf1', 't-refuse-me "quoted" back\\slash');
our ($Req2, $Hdr2) = around('rf2', 't-refuse-me t-discard-me');

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=4;
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:4m;
    shortlink_flush interval=300ms batch=5000 parallel=2;
    shortlink_click_field tag $http_x_tag;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: 101 clicks, one of them refused as a batch is bound
--- request eval: $::Req1
--- more_headers eval: $::Hdr1
--- error_code eval: [(302) x 101]



=== TEST 2: the 100 others are written, the refused one is filed, queue at 0
--- init
Test::More::ok(ShortlinkTest::wait_until(sub {
                   ShortlinkTest::sql_value("SELECT count(*) FROM shortlink.clicks_rejected"
                                            . " WHERE code = 'rf1'") == 1 }, 30),
               'the refused click was filed');
ShortlinkTest::wait_until(sub { main::queued() == 0 }, 30);
Test::More::ok(ShortlinkTest::wait_until(sub { main::rows() == 100 }, 30),
               'the 100 others are in PostgreSQL');
Test::More::is(ShortlinkTest::sql_value(
                   "SELECT count(*) FROM shortlink.clicks WHERE user_agent LIKE '%t-refuse-me%'"),
               0, 'not the refused one');
my $r = ShortlinkTest::sql_rows(q{SELECT user_agent, reason, extra->>'tag'
                                    FROM shortlink.clicks_rejected WHERE code = 'rf1'});
Test::More::is($r->[0][0], 't-refuse-me "quoted" back\\x5cslash',
               'its text is kept, a backslash as \\x5c');
Test::More::is($r->[0][1], 'SQLSTATE 22021: test: refused as if at binding',
               'with the SQLSTATE and message as the reason');
Test::More::is($r->[0][2], 'marked', 'and its extra field by name');
--- request
GET /metrics
--- response_body_like
(?ms)^shortlink_clicks_total\{state="rejected"\} 1$.*^shortlink_clicks_total\{state="discarded"\} 0$.*^shortlink_click_queue_clicks 0$.*^shortlink_flush_batches_total\{result="failed"\} 0$



=== TEST 3: 101 more, the marked one cannot even be filed
--- request eval: $::Req2
--- more_headers eval: $::Hdr2
--- error_code eval: [(302) x 101]



=== TEST 4: the 100 others are written, the one is counted as discarded
--- init
Test::More::ok(ShortlinkTest::wait_until(sub { main::rows() == 200 }, 30),
               'the 100 others are in PostgreSQL');
Test::More::is(ShortlinkTest::sql_value(
                   "SELECT count(*) FROM shortlink.clicks_rejected WHERE code = 'rf2'"),
               0, 'nothing filed for the discarded one');
Test::More::ok(ShortlinkTest::wait_until(sub {
                   main::error_log_has(qr/\[warn\] .*a click PostgreSQL refused could not be filed in shortlink\.clicks_rejected either \(SQLSTATE 23514: test: not even filed\), discarded/) }, 30),
               'the discarded click is logged at warn');
ShortlinkTest::wait_until(sub { main::queued() == 0 }, 30);
--- request
GET /metrics
--- response_body_like
(?ms)^shortlink_clicks_total\{state="rejected"\} 1$.*^shortlink_clicks_total\{state="discarded"\} 1$.*^shortlink_click_queue_clicks 0$.*^shortlink_flush_batches_total\{result="failed"\} 0$
--- no_error_log
[error]
[alert]
[crit]
