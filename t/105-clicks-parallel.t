# shortlink_flush parallel=2: a batch of 1,200 clicks is split by code into
# two sub-batches sent at once.  One of them is refused (a trigger rejects
# one code while a flag is set): the other one commits, the batch stays in
# the queue, and when the refusal ends every click is in PostgreSQL exactly
# once, with exact rollups.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'pp%';
    INSERT INTO shortlink.links (code, url)
    SELECT 'pp' || i, 'https://example.com/pp' || i FROM generate_series(1, 50) i;
    INSERT INTO shortlink.links (code, url) VALUES ('ppfail', 'https://example.com/f');
    DELETE FROM shortlink.clicks WHERE code LIKE 'pp%';
    DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE 'pp%';
});
refuse_clicks('ppfail');

sub pp_rows {
    return sql_value("SELECT count(*) FROM shortlink.clicks WHERE code LIKE 'pp%'");
}

# 1,200 redirects: every code of pp1..pp50 and, every tenth, ppfail
our @Requests = map { $_ % 10 ? "GET /pp" . ($_ % 50 + 1) : "GET /ppfail" } 1 .. 1200;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=4;
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:4m;
    shortlink_flush interval=200ms batch=5000 parallel=2;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

# after the blocks (nginx has written everything in TEST 3): every click
# once, rollups exact
is(pp_rows(), 1200, 'all 1,200 clicks are in PostgreSQL once the refusal ends');
is(sql_value("SELECT count(DISTINCT event_id) FROM shortlink.clicks WHERE code LIKE 'pp%'"),
   1200, 'none of them twice');
is(sql_value("SELECT sum(pv) FROM shortlink.link_hourly_clicks WHERE code LIKE 'pp%'"),
   1200, 'the hourly page views add up to 1,200');
is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 'ppfail'"),
   120, 'the refused code\'s 120 clicks arrived too');

__DATA__

=== TEST 1: 1,200 clicks over 51 codes; the sub-batch with "ppfail" is refused
--- request eval: \@::Requests
--- error_code eval: [(302) x 1200]



=== TEST 2: the other sub-batch committed, the batch stays queued; the refusal ends
--- init
# flush attempts meanwhile: each takes what is queued, and the first one
# that finds all 1,200 splits them.  Attempts back off while they fail,
# so wait for the other sub-batch for up to a minute (nginx under
# valgrind is slow to answer the 1,200 requests)
ShortlinkTest::wait_until(sub { main::pp_rows() > 9 }, 60);
select(undef, undef, undef, 0.5);
my $rows = main::pp_rows();
# unsplit, nothing after the first "ppfail" (request 10) could commit
Test::More::ok($rows > 9 && $rows < 1080,
               "while one sub-batch is refused the other one committed ($rows rows)");
Test::More::is(ShortlinkTest::sql_value(
                   "SELECT count(*) FROM shortlink.clicks WHERE code = 'ppfail'"),
               0, "nothing of the refused sub-batch");
ShortlinkTest::allow_clicks();
--- request
GET /metrics
--- response_body_like
shortlink_click_queue_clicks [1-9]\d*\n(?s:.*)shortlink_flush_batches_total\{result="failed"\} [1-9]\d*



=== TEST 3: the whole batch is sent again: the queue empties
--- init
# the failed batch is retried after a backoff that doubled meanwhile (up
# to 30 s): wait for up to a minute
ShortlinkTest::wait_until(sub { main::pp_rows() == 1200 }, 60);
--- request
GET /metrics
--- response_body_like
(?m)^shortlink_click_queue_clicks 0$
