# Extra fields go by name, not by position: clicks queued while PostgreSQL
# is down keep their values under the right names across a reload whose
# shortlink_click_field lines are reordered (and one added).  The reload
# is made by hand (nginx.conf rewritten, SIGHUP to the master) so that the
# click queue's zone, and the clicks in it, survive it.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;

sql(q{
    DELETE FROM shortlink.links WHERE code = 'fld1';
    INSERT INTO shortlink.links (code, url) VALUES ('fld1', 'https://example.com/fld1');
    DELETE FROM shortlink.clicks WHERE code = 'fld1';
});

our $Down;

END { local $?; eval { pg_start() } if $Down }

sub rows {
    return sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = 'fld1'");
}

sub error_log_has {
    my ($re) = @_;
    my $file = Test::Nginx::Socket::server_root() . "/logs/error.log";
    open my $fh, '<', $file or return 0;
    local $/;
    my $text = <$fh>;
    return $text =~ $re;
}

# swap the two fields and add a third in nginx.conf, then reload
sub reload_reordered {
    my $root = Test::Nginx::Socket::server_root();
    my $conf = "$root/conf/nginx.conf";
    open my $in, '<', $conf or die "$conf: $!";
    my $text = do { local $/; <$in> };
    close $in;
    $text =~ s/shortlink_click_field alpha \$arg_a;\s*shortlink_click_field beta \$arg_b;/shortlink_click_field gamma \$arg_c;\n    shortlink_click_field beta \$arg_b;\n    shortlink_click_field alpha \$arg_a;/
        or die "fields not found in $conf";
    open my $out, '>', $conf or die "$conf: $!";
    print $out $text;
    close $out;
    open my $fh, '<', "$root/logs/nginx.pid" or die "nginx.pid: $!";
    chomp(my $pid = <$fh>);
    kill 'HUP', $pid or die "HUP $pid: $!";
    ShortlinkTest::wait_until(sub { error_log_has(qr/reconfiguring/) }, 30)
        or die "no reload";
    # the old worker makes its last flush (PostgreSQL is down) and exits
    ShortlinkTest::wait_until(sub { error_log_has(qr/not written to PostgreSQL at exit/) }, 30);
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN" pool=2;
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms timeout=1s;
    shortlink_click_field alpha $arg_a;
    shortlink_click_field beta $arg_b;
_EOC_
    $block->set_value("config", "location / { shortlink; }");
});

master_on();
workers(1);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: the link is cached, its click written
--- request
GET /fld1?a=first&b=first
--- error_code: 302
--- wait: 0.5



=== TEST 2: PostgreSQL stops; three clicks with both fields queue up
--- init
ShortlinkTest::pg_stop();
$main::Down = 1;
--- request eval
[("GET /fld1?a=one&b=two&c=never") x 3]
--- error_code eval
[(302) x 3]



=== TEST 3: reload with the fields reordered and one added; PostgreSQL back
--- init
main::reload_reordered();
ShortlinkTest::pg_start();
$main::Down = 0;
--- request
GET /fld1?a=x&b=y&c=z
--- error_code: 302



=== TEST 4: every click's values are under their own names
--- init
Test::More::ok(ShortlinkTest::wait_until(sub { main::rows() == 5 }, 30),
               'all five clicks are in PostgreSQL');
my $r = ShortlinkTest::sql_rows(q{SELECT extra::text FROM shortlink.clicks
                                   WHERE code = 'fld1' ORDER BY clicked_at, event_id});
Test::More::is_deeply([map { $_->[0] } @$r],
    ['{"beta": "first", "alpha": "first"}',
     ('{"beta": "two", "alpha": "one"}') x 3,
     '{"beta": "y", "alpha": "x", "gamma": "z"}'],
    'queued before the reload: alpha and beta as they were; after it: all three');
--- request
GET /fld1
--- error_code: 302
