# shortlink_flush batch=1000 parallel=2: batch= bounds one call of
# record_clicks(), and the flusher takes parallel= calls' worth at once.
# 2,000 clicks wait in the queue while PostgreSQL refuses them; once it
# takes them again they arrive in two calls of about 1,000 (two
# transactions), sent together, not in four calls of about 500.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'pq%';
    INSERT INTO shortlink.links (code, url)
    SELECT 'pq' || i, 'https://example.com/pq' || i FROM generate_series(1, 200) i;
    DELETE FROM shortlink.clicks WHERE code LIKE 'pq%';
    DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE 'pq%';
});
refuse_clicks('pq%');

sub pq_rows {
    return sql_value("SELECT count(*) FROM shortlink.clicks WHERE code LIKE 'pq%'");
}

# 2,000 redirects over 200 codes: each call of about 1,000 holds about 100
# codes, so the split by code cannot make one much larger than the other
our @Requests = map { "GET /pq" . ($_ % 200 + 1) } 1 .. 2000;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=4;
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:8m;
    shortlink_flush interval=200ms batch=1000 parallel=2;
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

=== TEST 1: 2,000 clicks over 200 codes, refused by PostgreSQL for now
--- request eval: \@::Requests
--- error_code eval: [(302) x 2000]



=== TEST 2: all of them queued
--- init
Test::More::is(main::pq_rows(), 0, 'nothing was written while refused');
--- request
GET /metrics
--- response_body_like
(?m)^shortlink_click_queue_clicks 2000$



=== TEST 3: the refusal ends: two calls of about 1,000 clicks, one transaction each
--- init
ShortlinkTest::allow_clicks();
# the failed batch is retried after a backoff that doubled meanwhile (up
# to 30 s): wait for up to a minute
ShortlinkTest::wait_until(sub { main::pq_rows() == 2000 }, 60);
Test::More::is(main::pq_rows(), 2000, 'all 2,000 clicks arrived');
Test::More::is(ShortlinkTest::sql_value(
                   "SELECT count(DISTINCT event_id) FROM shortlink.clicks
                     WHERE code LIKE 'pq%'"), 2000, 'each once');
my $calls = ShortlinkTest::sql_value(
    "SELECT string_agg(n::text, ' ' ORDER BY n)
       FROM (SELECT count(*) AS n FROM shortlink.clicks
              WHERE code LIKE 'pq%' GROUP BY xmin::text) t");
Test::More::like($calls, qr/^\d+ \d+$/, "in two transactions ($calls)");
my @n = split / /, $calls;
Test::More::ok($n[0] > 700 && $n[1] < 1300,
               "of about batch= clicks each ($calls)");
Test::More::is(ShortlinkTest::sql_value(
                   "SELECT sum(pv) FROM shortlink.link_hourly_clicks
                     WHERE code LIKE 'pq%'"), 2000, 'the hourly page views add up');
--- request
GET /metrics
--- response_body_like
(?m)^shortlink_click_queue_clicks 0$
