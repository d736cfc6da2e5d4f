# Click analytics in PostgreSQL (sql/003_clicks.sql), without nginx:
# record_clicks loads a known data set; link_stats must report exact PV, UV
# and unique IPs for any range (distinct counts are not sums of per-day
# figures), every bucket of a series, the top lists; a re-sent batch changes
# nothing; partitions appear by themselves and retention drops them.
#
# Everything this suite writes uses codes starting with "t110stats-" and is
# removed at the start and at the end; shared tables are never truncated.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use lib 't/lib';
use ShortlinkTest;

my $P = 't110stats-';          # code prefix of everything written here
my $json = JSON::PP->new->canonical;

# record_clicks merges the hourly rows every 10 s (see below); not while
# this suite counts them
sql("UPDATE shortlink.hourly_compaction SET last_run = 'infinity'");

sub cleanup {
    sql(qq{
        DELETE FROM shortlink.clicks WHERE code LIKE '$P%';
        DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE '$P%';
        DELETE FROM shortlink.clicks_rejected WHERE code LIKE '$P%';
    });
}

sub q_ {
    my ($v) = @_;
    return 'NULL' unless defined $v;
    $v =~ s/'/''/g;
    return "'$v'";
}

# "2025-03-10 10:05:00.250" (UTC) -> Unix milliseconds
sub ms {
    my ($t) = @_;
    my ($y, $mo, $d, $h, $mi, $s, $frac) =
        $t =~ /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{3}))?$/
        or die "bad time $t";
    return timegm($s, $mi, $h, $d, $mo - 1, $y) * 1000 + ($frac // 0);
}

# SQL calling record_clicks for a list of clicks (hashes)
sub batch_sql {
    my (@c) = @_;
    my $arr = sub {
        my ($key, $type, $fmt) = @_;
        'ARRAY[' . join(',', map { $fmt->($_->{$key}) } @c) . "]::$type\[]";
    };
    return 'SELECT shortlink.record_clicks('
        . join(",\n  ",
               $arr->('id', 'uuid', sub { "md5('$P' || " . q_($_[0]) . ')::uuid' }),
               $arr->('t', 'bigint', sub { ms($_[0]) }),
               $arr->('code', 'text', sub { q_($P . $_[0]) }),
               $arr->('ip', 'text', \&q_),
               $arr->('ua', 'text', \&q_),
               $arr->('ref', 'text', \&q_),
               $arr->('vis', 'text', \&q_),
               $arr->('country', 'jsonb',
                      sub { defined $_[0] ? q_(qq({"country":"$_[0]"})) : 'NULL' }))
        . ')';
}

# link_stats without what sql/014 added (time zone, today, distributions,
# new vs returning, the top lists of extra fields): t/115 checks those;
# here the figures of 003/010, which must not have changed
sub base_figures {
    my ($s) = @_;
    delete @$s{qw(tz today hours_of_day weekdays)};
    delete @{ $s->{totals} }{qw(new_visitors returning_visitors)};
    delete @$_{qw(new_visitors returning_visitors)} for @{ $s->{series} };
    delete @{ $s->{top} }{qw(languages networks sources)};
    return $s;
}

sub stats {
    my ($code, $from, $to, $interval) = @_;
    my $i = defined $interval ? ', ' . q_($interval) : '';
    return base_figures($json->decode(sql_value(
        "SELECT shortlink.link_stats('$P$code', '$from+00', '$to+00'$i)")));
}

my %UA = (
    chrome_win  => 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 '
                 . '(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
    safari_ios  => 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) '
                 . 'AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 '
                 . 'Mobile/15E148 Safari/604.1',
    ff_linux    => 'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0',
    chrome_andr => 'Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 '
                 . '(KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36',
    googlebot   => 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
    curl        => 'curl/8.0.1',
    safari_ipad => 'Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 '
                 . '(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
    edge_win    => 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 '
                 . '(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0',
);

# link "a": 9 clicks over 2025-03-10, -11 and -13 (nothing on the 12th);
# v1 comes back on the 11th, v2 on the 13th; click 4 is DNT (no visitor);
# 7 and 8 are bots
my @a = (
    { id => 'a1', t => '2025-03-10 10:05:00.000', code => 'a', ip => '10.0.0.1',
      ua => $UA{chrome_win}, ref => 'https://www.Google.com/search?q=x',
      vis => 'v1', country => 'DE' },
    { id => 'a2', t => '2025-03-10 10:20:00.500', code => 'a', ip => '10.0.0.1',
      ua => $UA{chrome_win}, ref => 'https://www.google.com/', vis => 'v1',
      country => 'DE' },
    { id => 'a3', t => '2025-03-10 11:00:00.000', code => 'a', ip => '10.0.0.2',
      ua => $UA{safari_ios}, ref => 'https://t.co/x', vis => 'v2', country => 'US' },
    { id => 'a4', t => '2025-03-10 11:30:00.000', code => 'a', ip => '10.0.0.3',
      ua => $UA{ff_linux}, ref => undef, vis => undef, country => 'DE' },
    { id => 'a5', t => '2025-03-10 23:59:59.999', code => 'a', ip => '10.0.0.1',
      ua => $UA{chrome_andr}, ref => 'https://www.google.com:443/', vis => 'v3',
      country => 'FR' },
    { id => 'a6', t => '2025-03-11 00:00:00.000', code => 'a', ip => '10.0.0.4',
      ua => $UA{chrome_win}, ref => 'https://news.ycombinator.com/item?id=1',
      vis => 'v1', country => 'DE' },
    { id => 'a7', t => '2025-03-11 09:00:00.000', code => 'a', ip => '66.249.66.1',
      ua => $UA{googlebot}, ref => undef, vis => undef, country => undef },
    { id => 'a8', t => '2025-03-11 09:10:00.000', code => 'a', ip => '10.0.0.9',
      ua => $UA{curl}, ref => '', vis => '', country => undef },
    { id => 'a10', t => '2025-03-13 08:00:00.000', code => 'a', ip => '10.0.0.2',
      ua => $UA{safari_ipad}, ref => 'https://t.co/y', vis => 'v2', country => 'US' },
);
# link "b": same visitors and addresses, must not leak into "a"
my @b = (
    { id => 'b1', t => '2025-03-10 10:00:00.000', code => 'b', ip => '10.0.0.7',
      ua => $UA{edge_win}, ref => 'https://bing.com/', vis => 'v9', country => 'NL' },
    { id => 'b2', t => '2025-03-11 10:00:00.000', code => 'b', ip => '10.0.0.1',
      ua => $UA{edge_win}, ref => undef, vis => 'v1', country => 'NL' },
);

my @days = qw(20250310 20250311 20250312 20250313);
my %existed = map {
    $_ => sql_value("SELECT to_regclass('shortlink.clicks_p$_') IS NOT NULL") eq 't'
} @days;

cleanup();


# --- loading ----------------------------------------------------------------

is(sql_value(batch_sql(@a, @b)), 11, 'record_clicks inserts the whole batch');

is(sql_value("SELECT string_agg(DISTINCT p.relname, ',' ORDER BY p.relname)
                FROM shortlink.clicks c JOIN pg_class p ON p.oid = c.tableoid
               WHERE c.code LIKE '$P%'"),
   'clicks_p20250310,clicks_p20250311,clicks_p20250313',
   'past days got their partitions, rows are in their UTC day');

is(sql_value("SELECT clicked_at AT TIME ZONE 'UTC' FROM shortlink.clicks
               WHERE event_id = md5('${P}a5')::uuid"),
   '2025-03-10 23:59:59.999', 'clicked_ms keeps its milliseconds');

is(sql_value("SELECT string_agg(concat_ws('|', coalesce(host(ip), '-'),
                                          coalesce(visitor_id, '-'),
                                          coalesce(referer_host, '-'),
                                          browser, os, device, is_bot,
                                          coalesce(extra->>'country', '-')), ' '
                                ORDER BY clicked_at)
                FROM shortlink.clicks WHERE code = '${P}a'"),
   join(' ',
        '10.0.0.1|v1|www.google.com|Chrome|Windows|desktop|f|DE',
        '10.0.0.1|v1|www.google.com|Chrome|Windows|desktop|f|DE',
        '10.0.0.2|v2|t.co|Safari|iOS|mobile|f|US',
        '10.0.0.3|-|-|Firefox|Linux|desktop|f|DE',
        '10.0.0.1|v3|www.google.com|Chrome|Android|mobile|f|FR',
        '10.0.0.4|v1|news.ycombinator.com|Chrome|Windows|desktop|f|DE',
        '66.249.66.1|-|-|other|other|bot|t|-',
        '10.0.0.9|-|-|other|other|bot|t|-',
        '10.0.0.2|v2|t.co|Safari|iOS|tablet|f|US'),
   'derived columns: referer host, browser, os, device, bot; empty strings are NULL');

is(sql_value(q{
    SELECT string_agg(concat_ws('|', shortlink.ua_browser(ua), shortlink.ua_os(ua),
                                shortlink.ua_device(ua), shortlink.ua_is_bot(ua)), ' '
                      ORDER BY n)
      FROM unnest(ARRAY[
        'Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36 OPR/105.0',
        'Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 SamsungBrowser/23.0 Chrome/115.0 Mobile Safari/537.36',
        'Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Chrome/120.0 Safari/537.36',
        'Mozilla/5.0 (Windows NT 6.1; Trident/7.0; rv:11.0) like Gecko',
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.1 Safari/605.1.15',
        'Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36',
        'Mozilla/5.0 (Linux; Android 11) HeadlessChrome/120.0 Safari/537.36',
        'facebookexternalhit/1.1',
        'python-requests/2.31',
        NULL]) WITH ORDINALITY AS u(ua, n)
}),
   join(' ',
        'Opera|Windows|desktop|f',
        'Samsung Internet|Android|mobile|f',
        'Chrome|Android|tablet|f',
        'IE|Windows|desktop|f',
        'Safari|macOS|desktop|f',
        'Chrome|ChromeOS|desktop|f',
        'Chrome|Android|bot|t',
        'other|other|bot|t',
        'other|other|bot|t',
        'other|other|other|f'),
   'user-agent markers: Opera, Samsung Internet, Android tablet, IE, macOS, '
   . 'ChromeOS, bots, missing user agent');


# --- totals and series --------------------------------------------------------

my $all = stats('a', '2025-03-10 00:00:00', '2025-03-14 00:00:00');

is_deeply($all->{totals}, { pv => 9, uv => 3, unique_ips => 6, bots => 2 },
          'four days: pv, exact uv and unique IPs, bots');

is_deeply($all->{series}, [
    { t => '2025-03-10T00:00:00Z', pv => 5, uv => 3, unique_ips => 3 },
    { t => '2025-03-11T00:00:00Z', pv => 3, uv => 1, unique_ips => 3 },
    { t => '2025-03-12T00:00:00Z', pv => 0, uv => 0, unique_ips => 0 },
    { t => '2025-03-13T00:00:00Z', pv => 1, uv => 1, unique_ips => 1 },
], 'day series: every UTC day, the empty one as zeros');

my ($uv_sum, $ip_sum) = (0, 0);
$uv_sum += $_->{uv} for @{ $all->{series} };
$ip_sum += $_->{unique_ips} for @{ $all->{series} };
ok($uv_sum == 5 && $ip_sum == 7 && $all->{totals}{uv} == 3 && $all->{totals}{unique_ips} == 6,
   'range uv/unique IPs are distinct counts, not the sum of the days (5, 7)');

is_deeply([ @$all{qw(code from to interval)} ],
          [ "${P}a", '2025-03-10T00:00:00Z', '2025-03-14T00:00:00Z', 'day' ],
          'code, range and interval are echoed');

is_deeply(stats('a', '2025-03-11 00:00:00', '2025-03-12 00:00:00')->{totals},
          { pv => 3, uv => 1, unique_ips => 3, bots => 2 },
          'one day: v1 once, three addresses, two bots');

is_deeply(stats('a', '2025-03-10 12:00:00', '2025-03-11 12:00:00')->{totals},
          { pv => 4, uv => 2, unique_ips => 4, bots => 2 },
          'a range across midnight');

is_deeply(stats('a', '2025-03-10 10:00:00', '2025-03-10 12:00:00', 'hour'), {
    code => "${P}a", from => '2025-03-10T10:00:00Z', to => '2025-03-10T12:00:00Z',
    interval => 'hour',
    totals => { pv => 4, uv => 2, unique_ips => 3, bots => 0 },
    series => [
        { t => '2025-03-10T10:00:00Z', pv => 2, uv => 1, unique_ips => 1 },
        { t => '2025-03-10T11:00:00Z', pv => 2, uv => 1, unique_ips => 2 },
    ],
    top => {
        referrers => [ { value => 'www.google.com', count => 2 },
                       { value => 't.co', count => 1 } ],
        browsers  => [ { value => 'Chrome', count => 2 },
                       { value => 'Firefox', count => 1 },
                       { value => 'Safari', count => 1 } ],
        os        => [ { value => 'Windows', count => 2 },
                       { value => 'Linux', count => 1 },
                       { value => 'iOS', count => 1 } ],
        devices   => [ { value => 'desktop', count => 3 },
                       { value => 'mobile', count => 1 } ],
        countries => [ { value => 'DE', count => 3 },
                       { value => 'US', count => 1 } ],
    },
}, 'hour interval: whole answer; the DNT click counts in pv, not in uv');

my $cut = stats('a', '2025-03-10 10:30:00', '2025-03-10 11:45:00', 'hour');
is_deeply([ $cut->{from}, $cut->{to}, $cut->{totals}{pv}, scalar @{ $cut->{series} } ],
          [ '2025-03-10T10:00:00Z', '2025-03-10T11:00:00Z', 2, 1 ],
          'from and to are truncated to the hour');

my $tz = sql_value("SET TimeZone = 'Asia/Kolkata';
                    SELECT shortlink.link_stats('${P}a', '2025-03-10 00:00+00',
                                                '2025-03-14 00:00+00')");
is_deeply(base_figures($json->decode($tz)), $all, 'day buckets are UTC whatever the session time zone');

is_deeply(stats('b', '2025-03-10 00:00:00', '2025-03-14 00:00:00')->{totals},
          { pv => 2, uv => 2, unique_ips => 2, bots => 0 },
          'another link sharing visitors and addresses is counted apart');

is_deeply(stats('nothing', '2025-03-10 00:00:00', '2025-03-11 00:00:00'), {
    code => "${P}nothing", from => '2025-03-10T00:00:00Z', to => '2025-03-11T00:00:00Z',
    interval => 'day', totals => { pv => 0, uv => 0, unique_ips => 0, bots => 0 },
    series => [ { t => '2025-03-10T00:00:00Z', pv => 0, uv => 0, unique_ips => 0 } ],
    top => { referrers => [], browsers => [], os => [], devices => [], countries => [] },
}, 'a link without clicks: zeros and empty lists');


# --- top lists ----------------------------------------------------------------

is_deeply($all->{top}, {
    referrers => [ { value => 'www.google.com', count => 3 },
                   { value => 't.co', count => 2 },
                   { value => 'news.ycombinator.com', count => 1 } ],
    browsers  => [ { value => 'Chrome', count => 4 },
                   { value => 'Safari', count => 2 },
                   { value => 'other', count => 2 },
                   { value => 'Firefox', count => 1 } ],
    os        => [ { value => 'Windows', count => 3 },
                   { value => 'iOS', count => 2 },
                   { value => 'other', count => 2 },
                   { value => 'Android', count => 1 },
                   { value => 'Linux', count => 1 } ],
    devices   => [ { value => 'desktop', count => 4 },
                   { value => 'bot', count => 2 },
                   { value => 'mobile', count => 2 },
                   { value => 'tablet', count => 1 } ],
    countries => [ { value => 'DE', count => 4 },
                   { value => 'US', count => 2 },
                   { value => 'FR', count => 1 } ],
}, 'top lists: by count then value, direct visits and unknown countries left out');

my @many = map {
    { id => "m$_", t => sprintf('2025-03-12 10:%02d:00.000', $_), code => 'many',
      ip => undef, ua => undef, ref => "https://site$_.example/", vis => undef,
      country => undef }
} 1 .. 12;
is(sql_value(batch_sql(@many)), 12, 'twelve referrers recorded');
my $many = stats('many', '2025-03-12 00:00:00', '2025-03-13 00:00:00');
is_deeply([ map { $_->{value} } @{ $many->{top}{referrers} } ],
          [ (sort map { "site$_.example" } 1 .. 12)[0 .. 9] ],
          'top lists stop at ten');
is($many->{totals}{unique_ips} . '/' . $many->{totals}{uv}, '0/0',
   'clicks without address or visitor add no unique rows');


# --- idempotency ----------------------------------------------------------------

my $snapshot = sub {
    sql_value("SELECT concat_ws(' ',
                   (SELECT count(*) FROM shortlink.clicks WHERE code LIKE '$P%'),
                   (SELECT sum(pv) || '/' || sum(bots) FROM shortlink.link_hourly_clicks
                     WHERE code LIKE '$P%'),
                   (SELECT count(*) FROM shortlink.link_hourly_clicks
                     WHERE code LIKE '$P%'))");
};
my $before = $snapshot->();

is(sql_value(batch_sql(@a, @b)), 0, 're-sent batch inserts nothing');
is($snapshot->(), $before, 're-sent batch changes no row and no counter');
is_deeply(stats('a', '2025-03-10 00:00:00', '2025-03-14 00:00:00'), $all,
          're-sent batch changes no statistic');

is(sql_value(batch_sql(@a[0 .. 2],
    { id => 'a11', t => '2025-03-12 15:00:00.000', code => 'a', ip => '10.0.0.1',
      ua => $UA{chrome_win}, ref => undef, vis => 'v1', country => 'DE' })),
   1, 'a batch partly sent before inserts only the new click');
is_deeply(stats('a', '2025-03-10 00:00:00', '2025-03-14 00:00:00')->{totals},
          { pv => 10, uv => 3, unique_ips => 6, bots => 2 },
          'and counts only it (v1 and 10.0.0.1 were already known)');

is(sql_value(batch_sql(
    ({ id => 'd1', t => '2025-03-12 16:00:00.000', code => 'a', ip => '10.0.0.5',
       ua => undef, ref => undef, vis => 'v5', country => undef }) x 2)),
   1, 'the same event twice in one batch is inserted once');

# a new click of a (visitor, address) the hour already has: its batch
# appends an hourly row, and the hour still counts the visitor once
my $rows_before = sql_value("SELECT count(*) FROM shortlink.link_hourly_clicks
                              WHERE code = '${P}a'");
is(sql_value(batch_sql(
    { id => 'a12', t => '2025-03-10 10:40:00.000', code => 'a', ip => '10.0.0.1',
      ua => $UA{chrome_win}, ref => undef, vis => 'v1', country => 'DE' })),
   1, 'a new click of a known visitor is recorded');
is(sql_value("SELECT count(*) FROM shortlink.link_hourly_clicks WHERE code = '${P}a'"),
   $rows_before + 1, 'and its batch appends one hourly row');
is_deeply(stats('a', '2025-03-10 10:00:00', '2025-03-10 11:00:00', 'hour')->{totals},
          { pv => 3, uv => 1, unique_ips => 1, bots => 0 },
          'counted in pv only');

# merging the rows of each hour changes no figure
my $unmerged = stats('a', '2025-03-10 00:00:00', '2025-03-14 00:00:00', 'hour');
cmp_ok(sql_value("SELECT count(*) FROM (SELECT hour FROM shortlink.link_hourly_clicks
                   WHERE code = '${P}a' GROUP BY hour HAVING count(*) > 1) x"),
       '>=', 1, 'an hour has several rows before the merge');
sql("DO \$\$ BEGIN
       WHILE shortlink.compact_hourly_clicks(1000) > 0 LOOP END LOOP;
     END \$\$");
is(sql_value("SELECT count(*) FROM (SELECT hour FROM shortlink.link_hourly_clicks
               WHERE code = '${P}a' GROUP BY hour HAVING count(*) > 1) x"),
   0, 'compact_hourly_clicks leaves one row per hour');
is(sql_value("SELECT count(*) FROM shortlink.link_hourly_clicks
               WHERE code = '${P}a' AND visitors IS NULL"),
   0, 'holding sketches, no hash arrays');
is_deeply(stats('a', '2025-03-10 00:00:00', '2025-03-14 00:00:00', 'hour'), $unmerged,
          'and the statistics are the same, hour by hour');

# record_clicks runs the merge itself when the last one is 10 s old
sql("UPDATE shortlink.hourly_compaction SET last_run = now() - interval '11 seconds'");
is(sql_value(batch_sql(
    { id => 'mg1', t => '2025-03-10 10:50:00.000', code => 'merge', ip => '10.0.0.9',
      ua => undef, ref => undef, vis => 'v9', country => undef })),
   1, 'a batch when the merge is due');
is(sql_value("SELECT last_run > now() - interval '1 minute'
                FROM shortlink.hourly_compaction"), 't', 'runs the merge');
is(sql_value("SELECT count(*) || '/' || count(visitors)
                FROM shortlink.link_hourly_clicks WHERE code = '${P}merge'"),
   '1/1', 'which merged its own row too');
is(sql_value(batch_sql(
    { id => 'mg2', t => '2025-03-10 10:51:00.000', code => 'merge', ip => '10.0.0.9',
      ua => undef, ref => undef, vis => 'v10', country => undef })),
   1, 'the next batch, within 10 s');
is(sql_value("SELECT count(*) || '/' || count(visitors)
                FROM shortlink.link_hourly_clicks WHERE code = '${P}merge'"),
   '2/1', 'only appends');
is_deeply(stats('merge', '2025-03-10 10:00:00', '2025-03-10 11:00:00')->{totals},
          { pv => 2, uv => 2, unique_ips => 1, bots => 0 },
          'and the hour counts the merged and the appended row');

# a merge that fails (here: a sketch of other parameters, written by hand)
# does not keep the batch from being recorded
sql("INSERT INTO shortlink.link_hourly_clicks (code, hour, pv, bots, visitors, ips)
     VALUES ('${P}odd', '2025-03-10 12:00:00+00', 1, 0,
             shortlink.hll_empty(11, 5, -1, 1), shortlink.hll_empty(11, 5, -1, 1))");
is(sql_value(batch_sql(
    { id => 'od1', t => '2025-03-10 12:05:00.000', code => 'odd', ip => '10.0.0.9',
      ua => undef, ref => undef, vis => 'v9', country => undef })),
   1, 'a click of an hour whose rows cannot be merged');
sql("UPDATE shortlink.hourly_compaction SET last_run = now() - interval '11 seconds'");
is(sql_value("SET client_min_messages = error; " . batch_sql(
    { id => 'mg3', t => '2025-03-10 10:52:00.000', code => 'merge', ip => '10.0.0.9',
      ua => undef, ref => undef, vis => 'v11', country => undef })),
   1, 'the batch that finds the merge due and failing is still recorded');
is(sql_value("SELECT last_run > now() - interval '1 minute'
                FROM shortlink.hourly_compaction"), 't',
   'and the next merge is 10 s away');
is(sql_value("SELECT count(*) FROM shortlink.link_hourly_clicks WHERE code = '${P}odd'"),
   2, 'the rows of that hour stay as they were');
sql("DELETE FROM shortlink.link_hourly_clicks WHERE code = '${P}odd'");
sql("UPDATE shortlink.hourly_compaction SET last_run = 'infinity'");

# uv and unique IPs are HyperLogLog sketches: exact up to 320 distinct
# values (every check above), estimates beyond, with a standard error of
# 1.6 %; over hours and batches they are the estimate of the union, not a
# sum.  4,000 visitors come back in the second batch.
my $wide = sub {
    my ($from, $to, $hours) = @_;
    sql_value(qq{
        SELECT shortlink.record_clicks(
                   array_agg(md5('${P}wide' || i)::uuid ORDER BY i),
                   array_agg(1741600800000 + (i % $hours) * 3600000 + i ORDER BY i),
                   array_agg(text '${P}wide' ORDER BY i),
                   array_agg('10.' || (i / 250 % 250) || '.' || (i % 250) || '.0' ORDER BY i),
                   NULL, NULL,
                   array_agg(CASE WHEN i % 10 = 0 THEN NULL
                                  ELSE md5('visitor' || (i % 16000)) END ORDER BY i),
                   NULL)
          FROM generate_series($from, $to) i});
};
is($wide->(1, 16000, 3), 16000, 'a wide batch of distinct visitors is recorded');
is($wide->(16001, 20000, 3), 4000, 'a second batch with returning visitors too');
my $wide_totals = stats('wide', '2025-03-10 00:00:00', '2025-03-11 00:00:00')->{totals};
my %exact = (
    uv => sql_value("SELECT count(DISTINCT visitor_id) FROM shortlink.clicks
                      WHERE code = '${P}wide'"),
    unique_ips => sql_value("SELECT count(DISTINCT ip) FROM shortlink.clicks
                              WHERE code = '${P}wide'"),
);
is($wide_totals->{pv}, 20000, 'pv of the wide link is exact');
for my $k (qw(uv unique_ips)) {
    my $err = abs($wide_totals->{$k} - $exact{$k}) / $exact{$k};
    cmp_ok($err, '<', 0.05,
           "$k over hours and batches is within 5 % of the exact $exact{$k} "
           . "($wide_totals->{$k})");
}
my $hour_uv = stats('wide', '2025-03-10 10:00:00', '2025-03-10 11:00:00', 'hour')
                  ->{totals}{uv};
cmp_ok($wide_totals->{uv}, '>', $hour_uv * 2,
       'the range is the union of its hours, more than any one hour');


# --- bad input ------------------------------------------------------------------

my $before_bad = $snapshot->();

eval {
    sql("SELECT shortlink.record_clicks(ARRAY[gen_random_uuid(), gen_random_uuid()],
             ARRAY[1741600800000]::bigint[], ARRAY['${P}a', '${P}a'],
             NULL, NULL, NULL, NULL, NULL)");
};
like($@, qr/arrays differ in length/, 'arrays of different lengths are refused');

eval {
    sql("SELECT shortlink.record_clicks(ARRAY[gen_random_uuid()],
             ARRAY[1741600800000]::bigint[], ARRAY['${P}a'],
             ARRAY['10.0.0.1', '10.0.0.2'], NULL, NULL, NULL, NULL)");
};
like($@, qr/arrays differ in length/, 'an optional array of another length is refused');

eval {
    sql("SELECT shortlink.record_clicks_checked(ARRAY[gen_random_uuid()],
             ARRAY[1741600800]::bigint[], ARRAY['${P}a'],
             NULL, NULL, NULL, NULL, NULL)");
};
like($@, qr/clicked_ms out of range/,
     'record_clicks_checked refuses seconds instead of milliseconds');

eval {
    sql("SELECT shortlink.record_clicks(ARRAY[NULL]::uuid[],
             ARRAY[1741600800000]::bigint[], ARRAY['${P}a'],
             NULL, NULL, NULL, NULL, NULL)");
};
like($@, qr/NULL in p_event_ids/, 'a click without event id is refused');

eval { stats('a', '2025-03-10 00:00:00', '2025-03-14 00:00:00', 'week') };
like($@, qr/interval must be 'hour' or 'day'/, 'an unknown interval is refused');

eval { stats('a', '2025-03-14 00:00:00', '2025-03-10 00:00:00') };
like($@, qr/is before/, 'a range ending before it starts is refused');

is($snapshot->(), $before_bad, 'refused calls wrote nothing');

# a time out of range (a wrong clock, seconds for milliseconds): that click
# is set aside in clicks_rejected, the rest of the batch is recorded; sent
# again, nothing is added twice
sql("DELETE FROM shortlink.clicks_rejected WHERE code LIKE '$P%'");
# (the WARNING record_clicks raises would be mixed into psql's output)
my $skew_sql = qq{SET client_min_messages = error; SELECT shortlink.record_clicks(
        ARRAY[md5('${P}skew1')::uuid, md5('${P}skew2')::uuid, md5('${P}skew3')::uuid],
        ARRAY[1741600800000, 1741600800, (extract(epoch FROM now() + interval '3 days')
                                          * 1000)::bigint]::bigint[],
        ARRAY['${P}skew', '${P}skew', '${P}skew'],
        ARRAY['10.0.0.1', NULL, '10.0.0.3'], NULL, NULL, ARRAY['v1', 'v2', 'v3'], NULL)};
is(sql_value($skew_sql), 1, 'a batch with two clicks out of range: the third is recorded');
is(sql_value("SELECT string_agg(visitor_id || ' ' || (reason LIKE 'clicked_ms is out of range%'),
                                ',' ORDER BY visitor_id)
                FROM shortlink.clicks_rejected WHERE code = '${P}skew'"),
   'v2 true,v3 true', 'the two are in clicks_rejected with the reason');
is(sql_value("SELECT string_agg(visitor_id, ',') FROM shortlink.clicks
               WHERE code = '${P}skew'"), 'v1', 'the good one is in clicks');
is(sql_value($skew_sql), 0, 'the same batch again: nothing inserted');
is(sql_value("SELECT count(*) FROM shortlink.clicks_rejected WHERE code = '${P}skew'")
   . ' ' . sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}skew'"),
   '2 1', 'nothing twice, in either table');
is(sql_value(qq{SET client_min_messages = error;
                SELECT shortlink.record_clicks(ARRAY[md5('${P}skew4')::uuid],
                    ARRAY[5]::bigint[], ARRAY['${P}skew'], NULL, NULL, NULL, NULL, NULL)}),
   0, 'a batch with no click in range: nothing recorded, no error');
eval {
    sql("SELECT shortlink.record_clicks(ARRAY[gen_random_uuid(), NULL],
             ARRAY[5, 1741600800000]::bigint[], ARRAY['${P}a', '${P}a'],
             NULL, NULL, NULL, NULL, NULL)");
};
like($@, qr/NULL in p_event_ids/, 'a malformed call is still an error');

# any click the database refuses for its data (here a constraint added for
# the test) is found by halving the batch and set aside; the rest is
# recorded
sql("ALTER TABLE shortlink.clicks ADD CONSTRAINT t110_poison
         CHECK (visitor_id IS DISTINCT FROM 'poison')");
my $poison_sql = qq{SET client_min_messages = error; SELECT shortlink.record_clicks(
        ARRAY[md5('${P}p1')::uuid, md5('${P}p2')::uuid, md5('${P}p3')::uuid,
              md5('${P}p4')::uuid, md5('${P}p5')::uuid],
        ARRAY[1741600800000, 1741600800001, 1741600800002, 1741600800003,
              1741600800004]::bigint[],
        ARRAY['${P}poison', '${P}poison', '${P}poison', '${P}poison', '${P}poison'],
        NULL, NULL, NULL, ARRAY['p1', 'p2', 'poison', 'p4', 'p5'], NULL)};
# the constraint must go whatever happens: a psql error fails the check
# instead of ending the suite
my $poisoned = eval { sql_value($poison_sql) };
diag($@) unless defined $poisoned;
is($poisoned, 4, 'a batch with one refused click: four recorded');
is(sql_value("SELECT string_agg(visitor_id || ' ' || (reason LIKE 'SQLSTATE 23514: %t110_poison%'), ',')
                FROM shortlink.clicks_rejected WHERE code = '${P}poison'"),
   'poison true', 'the refused one is in clicks_rejected with its SQLSTATE and message');
is(sql_value("SELECT string_agg(visitor_id, ',' ORDER BY visitor_id) FROM shortlink.clicks
               WHERE code = '${P}poison'"), 'p1,p2,p4,p5', 'the others are in clicks');
is(sql_value("SELECT sum(pv) FROM shortlink.link_hourly_clicks WHERE code = '${P}poison'"),
   4, 'and counted once each in the rollup');
is(sql_value($poison_sql), 0, 'the same batch again: nothing inserted');
is(sql_value("SELECT count(*) FROM shortlink.clicks_rejected WHERE code = '${P}poison'")
   . ' ' . sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}poison'"),
   '1 4', 'nothing twice, in either table');
sql("ALTER TABLE shortlink.clicks DROP CONSTRAINT t110_poison");
sql("DELETE FROM shortlink.clicks_rejected WHERE code LIKE '$P%'");
is(sql_value("SELECT shortlink.record_clicks('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')"),
   0, 'an empty batch inserts nothing');


# --- partitions -----------------------------------------------------------------

# the migration made them up to a week after its own day, which may be
# yesterday if this runs just after midnight UTC
is(sql_value("SELECT count(*) FROM generate_series(0, 6) g
               WHERE to_regclass('shortlink.clicks_p' ||
                     to_char((now() AT TIME ZONE 'UTC')::date + g, 'YYYYMMDD')) IS NOT NULL"),
   7, 'partitions exist from today to six days ahead');

is(sql_value(qq{SELECT shortlink.record_clicks(ARRAY[md5('${P}future')::uuid],
                    ARRAY[(extract(epoch FROM now() + interval '1 day') * 1000)::bigint],
                    ARRAY['${P}future'], NULL, NULL, NULL, NULL, NULL)}),
   1, 'a click from tomorrow (clock skew) is recorded');
is(sql_value("SELECT p.relname = 'clicks_p' || to_char(c.clicked_at AT TIME ZONE 'UTC', 'YYYYMMDD')
                      AND c.clicked_at > now()
                 FROM shortlink.clicks c JOIN pg_class p ON p.oid = c.tableoid
                WHERE c.code = '${P}future'"),
   't', 'in the partition of its (future) day');

# a flusher that needs a new partition waits for another one creating
# partitions (advisory lock), then finds its day and goes on
sql_bg("BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('shortlink.clicks partitions', 0));
        SELECT pg_sleep(1.5); COMMIT;");
sleep 0.4;
my $t0 = time;
is(sql_value(batch_sql(
    { id => 'old1', t => '2024-06-01 12:00:00.000', code => 'old', ip => '10.9.9.9',
      ua => undef, ref => undef, vis => 'vo', country => undef })),
   1, 'a click of a day long past is recorded');
my $waited = time - $t0;
pg_wait_bg();
cmp_ok($waited, '>', 0.5, 'creating its partition waited for the advisory lock');
is(sql_value("SELECT p.relname FROM shortlink.clicks c JOIN pg_class p ON p.oid = c.tableoid
               WHERE c.code = '${P}old'"),
   'clicks_p20240601', 'in a partition created for it');

is(sql_value("SELECT shortlink.ensure_click_partitions('2024-06-01', '2024-06-01')"),
   0, 'ensuring an existing partition creates nothing');


# --- retention ------------------------------------------------------------------

cmp_ok(sql_value("SELECT shortlink.drop_click_partitions('2024-06-02')"), '>=', 1,
       'retention drops the partitions before a date');
is(sql_value("SELECT to_regclass('shortlink.clicks_p20240601') IS NULL
                 AND to_regclass('shortlink.clicks_p20250310') IS NOT NULL"),
   't', 'the older day is gone, later days stay');
is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}old'"), 0,
   'its clicks are gone');
is_deeply(stats('old', '2024-06-01 00:00:00', '2024-06-02 00:00:00')->{totals},
          { pv => 1, uv => 1, unique_ips => 1, bots => 0 },
          'the rollups of that day stay');
is(sql_value("SELECT shortlink.drop_click_sets('2024-06-02') >= 1"), 't',
   'drop_click_sets removes the visitor and address sets before a date');
is_deeply(stats('old', '2024-06-01 00:00:00', '2024-06-02 00:00:00')->{totals},
          { pv => 1, uv => 0, unique_ips => 0, bots => 0 },
          'keeping the page views');

eval { sql("SELECT shortlink.drop_click_partitions(current_date + 2)") };
like($@, qr/is after today/, 'retention refuses to drop today or later');


# --- clean-up -------------------------------------------------------------------

cleanup();
for my $day (grep { !$existed{$_} } @days) {
    sql("DO \$\$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM shortlink.clicks_p$day) THEN
               DROP TABLE shortlink.clicks_p$day;
           END IF;
         END \$\$");
}
is(sql_value("SELECT (SELECT count(*) FROM shortlink.clicks WHERE code LIKE '$P%')
                   + (SELECT count(*) FROM shortlink.link_hourly_clicks WHERE code LIKE '$P%')"),
   0, 'nothing of this suite is left');
sql("UPDATE shortlink.hourly_compaction SET last_run = '-infinity'");

done_testing();
