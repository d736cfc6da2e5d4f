# Poison in the click pipeline: bytes PostgreSQL would refuse (ill-formed
# UTF-8, overlongs, surrogates, bytes 0xF5..0xFF, control characters) in
# User-Agent, Referer, the visitor cookie and an extra field.  Each such
# click is recorded with U+FFFD in place of the bad bytes, never refused;
# the clicks after it all reach PostgreSQL and the queue drains, also when
# the poison waited in the queue across a reload and an outage.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 'pz%';
    INSERT INTO shortlink.links (code, url) VALUES
        ('pz1', 'https://example.com/pz1'),
        ('pz2', 'https://example.com/pz2'),
        ('pz3', 'https://example.com/pz3'),
        ('pz4', 'https://example.com/pz4');
    DELETE FROM shortlink.clicks WHERE code LIKE 'pz%';
    DELETE FROM shortlink.clicks_rejected WHERE code LIKE 'pz%';
});

# each sequence once in each of five places: 50 requests
our @poison = ("\xc3\xc3", "\xf8\x90\x80\x80", "\xed\xa0\x80", "\xc0\xaf",
               "\xe0\x80\xaf", "\xff\xfe", "\x80", "\xf4\x90\x80\x80",
               "\xc3", "\x01\x1f\x7f");

our @headers = map {
    my $p = $_;
    ("User-Agent: ua-$p-end",
     "Referer: https://ref.example/$p",
     "Cookie: sl_vid=$p",
     "Cookie: sl_vid=" . substr($p x 32, 0, 32),
     "X-Campaign: cmp-$p")
} @poison;

our $n = @headers;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms;
    shortlink_click_field campaign $http_x_campaign;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location = /metrics { shortlink_metrics; }
_EOC_
});

# HEAD /pz4 answered 302 $n times in a row (a HEAD is no click)
sub head_ok {
    my ($n) = @_;
    require HTTP::Tiny;
    my $url = "http://127.0.0.1:" . Test::Nginx::Socket::server_port()
              . "/pz4";
    for (1 .. $n) {
        my $res = HTTP::Tiny->new(max_redirect => 0)->head($url);
        return 0 unless $res->{status} == 302;
    }
    return 1;
}

sub clicks { sql_value("SELECT count(*) FROM shortlink.clicks WHERE $_[0]") }

master_on();
workers(2);
no_shuffle();
no_root_location();
run_tests();

is(clicks("code = 'pz1'"), $n, "all $n poisoned clicks are recorded");
is(clicks("code = 'pz2'"), 100, 'the 100 clicks behind them too');
is(clicks("code = 'pz3'"), $n, 'poison queued across a reload and an outage');
is(clicks("code = 'pz4'"), 20, '... and the clicks after it');
is(sql_value("SELECT count(*) FROM shortlink.clicks_rejected"
             . " WHERE code LIKE 'pz%'"), 0, 'nothing had to be set aside');
is(sql_value("SELECT count(*) - count(DISTINCT event_id)"
             . " FROM shortlink.clicks WHERE code LIKE 'pz%'"), 0,
   'no click twice');

is(clicks("code = 'pz1' AND user_agent = 'ua-' || U&'\\FFFD\\FFFD' || '-end'"),
   3, 'c3 c3, c0 af, ff fe: two U+FFFD each');
is(clicks("code = 'pz1' AND user_agent = 'ua-' || repeat(U&'\\FFFD', 4)"
          . " || '-end'"), 2,
   'f8 90 80 80, f4 90 80 80: four each (no character begins there)');
is(clicks("code = 'pz1' AND user_agent = 'ua-' || repeat(U&'\\FFFD', 3)"
          . " || '-end'"), 2, 'a surrogate, a 3-byte overlong: three each');
is(clicks("code = 'pz1' AND user_agent = 'ua-' || U&'\\FFFD' || '-end'"), 2,
   '80, a lone c3: one each');
is(clicks("code = 'pz1' AND user_agent = 'ua-???-end'"), 1,
   'control characters become ?');
is(clicks("code = 'pz1' AND referer = 'https://ref.example/'"
          . " || U&'\\FFFD\\FFFD'"), 3, 'the referer is cleaned the same way');
is(clicks("code = 'pz1' AND extra->>'campaign' = 'cmp-' || U&'\\FFFD'"), 2,
   'so is an extra field (0x80, a lone 0xC3)');
is(clicks("code = 'pz1' AND visitor_id ~ '^[0-9a-f]{32}\$'"), $n,
   'a cookie that is not ours gets a new visitor id');


__DATA__

=== TEST 1: poison in every place a client fills
--- request eval
[("GET /pz1") x $::n]
--- more_headers eval
[@::headers]
--- error_code eval
[(302) x $::n]
--- no_error_log
[error]
[alert]



=== TEST 2: a hundred ordinary clicks after it (HEAD: no click, but cached)
--- request eval
[("GET /pz2") x 100, "HEAD /pz3", "HEAD /pz4"]
--- error_code eval
[(302) x 102]
--- no_error_log
[error]
[alert]



=== TEST 3: they all reach PostgreSQL, the queue drains
--- init
ShortlinkTest::wait_until(sub {
    ShortlinkTest::sql_value("SELECT count(*) FROM shortlink.clicks"
                             . " WHERE code IN ('pz1', 'pz2')") == $::n + 100
}, 30);
--- request
GET /metrics
--- response_body_like
(?m)^shortlink_click_queue_clicks 0$
--- no_error_log
[error]
[alert]



=== TEST 4: poison queued while PostgreSQL is down
--- init
ShortlinkTest::pg_stop();
--- request eval
[("GET /pz3") x $::n]
--- more_headers eval
[@::headers]
--- error_code eval
[(302) x $::n]



=== TEST 5: a reload, PostgreSQL back, more clicks
--- init
my $pidfile = Test::Nginx::Socket::server_root() . "/logs/nginx.pid";
open my $fh, '<', $pidfile or die "$pidfile: $!";
chomp(my $pid = <$fh>);
kill 'HUP', $pid or die "HUP $pid: $!";
select(undef, undef, undef, 1);
ShortlinkTest::pg_start();
# the queued poison went first; then both workers' pools are back
ShortlinkTest::wait_until(sub {
    ShortlinkTest::sql_value("SELECT count(*) FROM shortlink.clicks"
                             . " WHERE code = 'pz3'") == $::n
}, 60, 0.25);
ShortlinkTest::wait_until(sub { main::head_ok(4) }, 30, 0.25);
--- request eval
[("GET /pz4") x 20]
--- error_code eval
[(302) x 20]



=== TEST 6: everything arrives, the queue drains
--- init
ShortlinkTest::wait_until(sub {
    ShortlinkTest::sql_value("SELECT count(*) FROM shortlink.clicks"
                             . " WHERE code = 'pz4'") == 20
}, 30);
--- request
GET /metrics
--- response_body_like
(?m)^shortlink_click_queue_clicks 0$
