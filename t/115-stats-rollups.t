# Statistics from rollups only (sql/014, 021, 022), without nginx: day
# buckets and distributions in a time zone across the 2026-10-25
# Europe/Berlin DST change, today, new vs returning visitors, the top
# lists of extra fields, set_stats of an owner and of a tag, the same
# answers before and after the merge and after a purge of the raw clicks,
# the API's 400/403, and open hours (partial rows, folded once closed).
#
# Codes start with "t115", owners with "t115-"; everything is removed at
# the start and at the end.  The purge part uses January 2002 (retention
# drops whole day partitions before its cut, as t/113 does with 2001).

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use ShortlinkTest;

my $P = 't115';
my $json = JSON::PP->new->utf8->canonical;

sub cleanup {
    sql(qq{
        SELECT shortlink.set_click_retention(NULL);
        DELETE FROM shortlink.clicks WHERE code LIKE '$P%';
        DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE '$P%';
        DELETE FROM shortlink.link_daily_clicks WHERE code LIKE '$P%';
        DELETE FROM shortlink.owner_daily_clicks WHERE owner LIKE '$P-%';
        DELETE FROM shortlink.owner_hourly_clicks WHERE owner LIKE '$P-%';
        DELETE FROM shortlink.links WHERE owner LIKE '$P-%' OR code LIKE '$P%';
        DELETE FROM shortlink.api_keys WHERE owner LIKE '$P-%';
    });
}

sub q_ {
    my ($v) = @_;
    return 'NULL' unless defined $v;
    $v =~ s/'/''/g;
    return "'$v'";
}

sub api {
    my ($method, $path, $query, $key) = @_;
    my $out = sql_value(
        "SELECT status || '|' || coalesce(body::text, '') FROM shortlink.api("
        . join(', ', map { q_($_) } $method, $path, $query, undef, $key,
               'https://sho.rt') . ')');
    my ($status, $text) = split /\|/, $out, 2;
    return ($status, $text eq '' ? undef : $json->decode($text));
}

# clicks: [code, time (timestamptz text), visitor, extra json or undef]
my $n = 0;
sub record {
    my (@c) = @_;
    my @ids = map { "md5('$P' || " . ($n++) . ")::uuid" } @c;
    return sql_value('SELECT shortlink.record_clicks(ARRAY[' . join(',', @ids) . '],'
        . 'ARRAY[' . join(',', map { "(extract(epoch FROM timestamptz '$_->[1]')"
                                     . " * 1000)::bigint" } @c) . '],'
        . 'ARRAY[' . join(',', map { q_($_->[0]) } @c) . ']::text[],'
        . 'ARRAY[' . join(',', map { "'192.0.2." . ($n + $_) % 250 . "'" }
                                0 .. $#c) . ']::text[],'
        . 'ARRAY[' . join(',', map { q_('Mozilla/5.0 (X11; Linux x86_64; rv:120.0) '
                                        . 'Gecko/20100101 Firefox/120.0') } @c)
        . ']::text[],'
        . 'ARRAY[' . join(',', map { q_('https://ref.example/x') } @c) . ']::text[],'
        . 'ARRAY[' . join(',', map { q_($_->[2]) } @c) . ']::text[],'
        . 'ARRAY[' . join(',', map { defined $_->[3] ? q_($_->[3]) : 'NULL' } @c)
        . ']::jsonb[])');
}

# (code, from, to[, interval[, tz]]): the defaults when left out
sub stats {
    my @args = @_;
    pop @args while !defined $args[-1];
    return $json->decode(sql_value(
        'SELECT shortlink.link_stats(' . join(', ', map { q_($_) } @args) . ')'));
}

# (owner, tag or undef, from, to[, interval[, tz]])
sub set_stats {
    my @args = @_;
    pop @args while !defined $args[-1];
    return $json->decode(sql_value(
        'SELECT shortlink.set_stats(' . join(', ', map { q_($_) } @args) . ')'));
}

sub merge_all {
    sql('DO $$ BEGIN WHILE shortlink.compact_hourly_clicks(5000) > 0 LOOP END LOOP; END $$');
}

cleanup();
# merges run when this suite says so
sql("UPDATE shortlink.hourly_compaction SET last_run = 'infinity'");

my $alice = sql_value("SELECT shortlink.create_api_key('$P-a')");
my $bob   = sql_value("SELECT shortlink.create_api_key('$P-b')");
my $admin = sql_value("SELECT shortlink.create_api_key('$P-admin', true)");
sql(qq{INSERT INTO shortlink.links (code, url, owner, tags) VALUES
       ('${P}a', 'https://example.com/a', '$P-a', '{camp}'),
       ('${P}b', 'https://example.com/b', '$P-a', '{camp}'),
       ('${P}c', 'https://example.com/c', '$P-a', '{}'),
       ('${P}x', 'https://example.com/x', '$P-b', '{camp}'),
       ('${P}p', 'https://example.com/p', '$P-p', '{}')});


# --- time zone: the DST change of 2026-10-25 in Europe/Berlin -------------------

my $ex = '{"country": "DE", "language": "de", "network": "AS3320", "source": "qr"}';
is(record(
    [ "${P}a", '2026-10-24 21:30:00+00', 'v1', $ex ],     # Sat 23:30 CEST
    [ "${P}a", '2026-10-24 22:10:00+00', 'v2', undef ],   # Sun 00:10 CEST
    [ "${P}a", '2026-10-25 00:20:00+00', 'v2', '{"language": "en-us"}' ],
                                                           # Sun 02:20 CEST
    [ "${P}a", '2026-10-25 01:20:00+00', 'v3', undef ],   # Sun 02:20 CET
    [ "${P}a", '2026-10-25 22:50:00+00', 'v1', undef ],   # Sun 23:50 CET
    [ "${P}a", '2026-10-25 23:10:00+00', 'v4', '{"source": "qr"}' ],
                                                           # Mon 00:10 CET
    [ "${P}b", '2026-10-25 12:00:00+00', 'v1', undef ],
    [ "${P}c", '2026-10-25 12:00:00+00', 'v9', undef ],
    [ "${P}x", '2026-10-25 12:00:00+00', 'v9', undef ]), 9, 'nine clicks recorded');

my $berlin = stats("${P}a", '2026-10-23 22:00+00', '2026-10-26 23:00+00', 'day',
                   'Europe/Berlin');
is_deeply([ @$berlin{qw(from to interval tz)} ],
          [ '2026-10-24T00:00:00+02:00', '2026-10-27T00:00:00+01:00', 'day',
            'Europe/Berlin' ], 'from and to in the zone, with its offsets');
is_deeply([ map { "$_->{t} $_->{pv}" } @{ $berlin->{series} } ],
          [ '2026-10-24T00:00:00+02:00 1', '2026-10-25T00:00:00+02:00 4',
            '2026-10-26T00:00:00+01:00 1' ],
          'local day buckets: the 25-hour day holds the clicks from 00:10 CEST to '
          . '23:50 CET');
is_deeply($berlin->{hours_of_day},
          [ 2, 0, 2, (0) x 20, 2 ], 'hours of the day: local hours (02:xx twice)');
is_deeply($berlin->{weekdays}, [ 1, 0, 0, 0, 0, 1, 4 ],
          'weekdays, Monday first: Sat 1, Sun 4, Mon 1');

my $utc = stats("${P}a", '2026-10-24 00:00+00', '2026-10-27 00:00+00');
is_deeply([ map { "$_->{t} $_->{pv}" } @{ $utc->{series} } ],
          [ '2026-10-24T00:00:00Z 2', '2026-10-25T00:00:00Z 4',
            '2026-10-26T00:00:00Z 0' ], 'the same clicks in UTC days');

my $hours = stats("${P}a", '2026-10-25 00:00+00', '2026-10-25 03:00+00', 'hour',
                  'Europe/Berlin');
is_deeply([ map { "$_->{t} $_->{pv}" } @{ $hours->{series} } ],
          [ '2026-10-25T02:00:00+02:00 1', '2026-10-25T02:00:00+01:00 1',
            '2026-10-25T03:00:00+01:00 0' ],
          'hour buckets: 02:00 twice, with their two offsets');

my $kolkata = stats("${P}a", '2026-10-24 00:00+00', '2026-10-27 00:00+00', 'day',
                    'Asia/Kolkata');
is($kolkata->{series}[0]{t}, '2026-10-24T00:00:00+05:30',
   'a half-hour zone: buckets at local midnight');
my $sum = 0;
$sum += $_->{pv} for @{ $kolkata->{series} };
is($sum, 6, 'and every click of the range in one of them');

# --- top lists of the extra fields, and new vs returning -------------------------

is_deeply([ map { $berlin->{top}{$_} } qw(languages networks sources countries) ],
          [ [ { value => 'de', count => 1 }, { value => 'en-us', count => 1 } ],
            [ { value => 'AS3320', count => 1 } ],
            [ { value => 'qr', count => 2 } ],
            [ { value => 'DE', count => 1 } ] ],
          'top languages, networks, sources, countries from extra');
is_deeply($berlin->{top}{referrers}, [ { value => 'ref.example', count => 6 } ],
          'referrer hosts');

# visitors by Berlin day: Sat v1; Sun v2 v2 v3 v1; Mon v4
is_deeply([ map { "$_->{uv} $_->{new_visitors} $_->{returning_visitors}" }
            @{ $berlin->{series} } ],
          [ '1 1 0', '3 2 1', '1 1 0' ],
          'new vs returning per bucket: v1 returns on Sunday');
is_deeply([ @{ $berlin->{totals} }{qw(pv uv new_visitors returning_visitors)} ],
          [ 6, 4, 4, 0 ], 'totals: four visitors, none seen before the range');
my $later = stats("${P}a", '2026-10-25 22:00+00', '2026-10-26 00:00+00', 'hour');
is_deeply([ @{ $later->{totals} }{qw(uv new_visitors returning_visitors)} ],
          [ 2, 1, 1 ], 'a later range: v1 returning, v4 new');

# --- set_stats --------------------------------------------------------------------

my $owner = set_stats("$P-a", undef, '2026-10-24 00:00+00', '2026-10-27 00:00+00');
is_deeply([ @$owner{qw(owner tag links)}, @{ $owner->{totals} }{qw(pv uv)} ],
          [ "$P-a", undef, 3, 8, 5 ],
          'an owner: three links, 8 clicks, 5 visitors (v1 on two links once)');
my $tag = set_stats("$P-a", 'camp', '2026-10-24 00:00+00', '2026-10-27 00:00+00');
is_deeply([ @$tag{qw(owner tag links)}, @{ $tag->{totals} }{qw(pv uv)} ],
          [ "$P-a", 'camp', 2, 7, 4 ], 'a tag: two of them (not the other owner\'s)');

# --- the merge and a purge change nothing ---------------------------------------

my @cases = (
    [ 'link, Berlin days', sub { stats("${P}a", '2026-10-23 22:00+00',
                                       '2026-10-26 23:00+00', 'day', 'Europe/Berlin') } ],
    [ 'link, hours', sub { stats("${P}a", '2026-10-24 20:00+00',
                                 '2026-10-26 01:00+00', 'hour') } ],
    [ 'owner', sub { set_stats("$P-a", undef, '2026-10-24 00:00+00',
                               '2026-10-27 00:00+00', 'day', 'Europe/Berlin') } ],
    [ 'tag', sub { set_stats("$P-a", 'camp', '2026-10-24 00:00+00',
                             '2026-10-27 00:00+00') } ],
    # whole UTC days come from the daily tiers once merged
    [ 'link, UTC days', sub { stats("${P}a", '2026-10-24 00:00+00',
                                    '2026-10-27 00:00+00') } ],
    [ 'owner, UTC days', sub { set_stats("$P-a", undef, '2026-10-24 00:00+00',
                                         '2026-10-27 00:00+00') } ],
    [ 'link, later range', sub { stats("${P}a", '2026-10-26 00:00+00',
                                       '2026-10-28 00:00+00') } ],
);
my %before = map { $_->[0] => $_->[1]->() } @cases;
merge_all();
is(sql_value("SELECT count(*) FROM shortlink.link_hourly_clicks
               WHERE code LIKE '$P%' AND visitors IS NULL"), 0, 'everything merged');
cmp_ok(sql_value("SELECT count(*) FROM shortlink.owner_hourly_clicks
                   WHERE owner = '$P-a'"), '>', 0, 'into the owner tier too');
is_deeply($_->[1]->(), $before{ $_->[0] }, "$_->[0]: the same after the merge")
    for @cases;

# a merge of new rows into merged ones
is(record([ "${P}a", '2026-10-25 01:40:00+00', 'v5', $ex ]), 1, 'one more click');
my $more = stats("${P}a", '2026-10-23 22:00+00', '2026-10-26 23:00+00', 'day',
                 'Europe/Berlin');
merge_all();
is_deeply(stats("${P}a", '2026-10-23 22:00+00', '2026-10-26 23:00+00', 'day',
                'Europe/Berlin'), $more, 'appended and merged rows add up');
is($more->{top}{networks}[0]{count}, 2, 'the new click is in the top lists');

# January 2002: the purge of raw clicks leaves every statistic as it was
is(record(map { [ "${P}p", sprintf('2002-01-%02d 1%d:00:00+00', 1 + $_ % 3, $_ % 10),
                  "p$_", $ex ] } 0 .. 29), 30, 'thirty clicks in January 2002');
my $p_stats = sub { stats("${P}p", '2002-01-01 00:00+00', '2002-01-05 00:00+00') };
my $p_before = $p_stats->();
is($p_before->{top}{browsers}[0]{count}, 30, 'their top lists');
sql("SELECT shortlink.set_click_retention(now() - timestamptz '2002-01-04 00:00+00')");
1 while sql_value('SELECT deleted FROM shortlink.purge_clicks(1000)') > 0;
is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}p'"), 0,
   'the raw clicks are gone');
sql('SELECT shortlink.set_click_retention(NULL)');
is_deeply($p_stats->(), $p_before, 'every figure unchanged after the purge');
merge_all();
is_deeply($p_stats->(), $p_before, 'and after the merge of their rows');

# --- today --------------------------------------------------------------------------

is(record([ "${P}c", sql_value('SELECT now()'), 'vt', undef ]), 1, 'a click now');
for my $tz ('UTC', 'Europe/Berlin', 'America/New_York') {
    my $s = stats("${P}c", '2026-10-01 00:00+00', '2026-10-02 00:00+00', 'day', $tz);
    is_deeply([ @{ $s->{today} }{qw(since pv uv)} ],
              [ sql_value("SELECT shortlink.stats_iso((now() AT TIME ZONE '$tz')::date
                                                      ::timestamp AT TIME ZONE '$tz', '$tz')"),
                1, 1 ], "today in $tz: since local midnight, the click of now");
}
like(stats("${P}c", '2026-10-01 00:00+00', '2026-10-02 00:00+00')->{today}{since},
     qr/^\d{4}-\d\d-\d\dT00:00:00Z$/, 'since in UTC');

# --- errors ---------------------------------------------------------------------------

eval { stats("${P}a", '2026-10-24 00:00+00', '2026-10-27 00:00+00', 'day', 'Mars/Olympus') };
like($@, qr/unknown time zone/, 'link_stats: an unknown zone is an error');
eval { stats("${P}a", '2026-10-24 00:00+00', '2026-10-27 00:00+00', 'day', "UTC'; --") };
like($@, qr/unknown time zone/, 'and so is anything else');

my ($st, $b) = api('GET', "/links/${P}a/stats",
                   'from=2026-10-24&to=2026-10-27&tz=Europe/Berlin', $alice);
is("$st $b->{tz} $b->{series}[1]{pv}", '200 Europe/Berlin 5',
   'GET /links/{code}/stats?tz=');
($st, $b) = api('GET', "/links/${P}a/stats", 'tz=Mars/Olympus', $alice);
is("$st $b->{status}", '400 400', 'a bad tz is a 400 problem');
like($b->{detail}, qr/tz/, 'that names tz');

($st, $b) = api('GET', '/stats', 'from=2026-10-24&to=2026-10-27', $alice);
is("$st $b->{owner} $b->{links} $b->{totals}{pv}", "200 $P-a 3 9",
   'GET /stats: the key owner\'s links');
($st, $b) = api('GET', '/stats', 'from=2026-10-24&to=2026-10-27&tag=camp', $alice);
is("$st $b->{tag} $b->{links} $b->{totals}{pv}", '200 camp 2 8', 'GET /stats?tag=');
($st, $b) = api('GET', '/stats', "owner=$P-b", $alice);
is("$st $b->{status}", '403 403', 'another owner\'s statistics: 403');
($st, $b) = api('GET', '/stats', "owner=$P-b&from=2026-10-24&to=2026-10-27", $admin);
is("$st $b->{owner} $b->{links} $b->{totals}{pv}", "200 $P-b 1 1",
   'an admin key may name the owner');
($st, $b) = api('GET', '/stats', 'tz=Nowhere', $bob);
is($st, 400, 'GET /stats with a bad tz: 400');
($st, $b) = api('GET', '/stats', 'tag=a%20b', $bob);
is($st, 400, 'GET /stats with a malformed tag: 400');
($st, $b) = api('POST', '/stats', undef, $bob);
is($st, 405, 'POST /stats: 405');

# --- the daily tiers hold closed days only, rolled up once ------------------------

# days from daily_through on are open: a merge leaves their daily rows
# alone, readers take their hours; the roll-up then builds them (here:
# daily_through moved back to before the suite's days, as if they had
# not ended yet; the roll-up recomputes every day since, so other
# suites' days stay right too)
my $day_pv = sub {
    my ($table, $key, $value) = @_;
    return sql_value("SELECT coalesce(sum(pv), 0) FROM shortlink.$table
                       WHERE $key = '$value' AND day = '2026-10-25 00:00+00'");
};
# today is open: merged into the hourly tiers only
is(record([ "${P}a", sql_value("SELECT now() - interval '1 minute'"), 'v7', $ex ]), 1,
   'a click today');
merge_all();
is(sql_value("SELECT count(*) FROM shortlink.link_daily_clicks
               WHERE day >= (SELECT daily_through FROM shortlink.hourly_compaction)"),
   0, 'today is not in the daily tier');
is(stats("${P}a", sql_value("SELECT date_bin('1 day', now(), timestamptz '1970-01-01 00:00+00')"),
         sql_value("SELECT now() + interval '1 hour'"))->{totals}{pv}, 1,
   'but in its statistics');
my $link_day = $day_pv->('link_daily_clicks', 'code', "${P}a");
my $owner_day = $day_pv->('owner_daily_clicks', 'owner', "$P-a");
cmp_ok($link_day, '>', 0, 'a closed day is in the daily tier');
%before = map { $_->[0] => $_->[1]->() } @cases;
sql("UPDATE shortlink.hourly_compaction
        SET daily_through = '2026-10-24 00:00+00'");
is_deeply($_->[1]->(), $before{ $_->[0] }, "$_->[0]: the same read from hours")
    for @cases;
is(record([ "${P}a", '2026-10-25 02:10:00+00', 'v6', $ex ]), 1,
   'a click on a day not rolled up');
my %open = map { $_->[0] => $_->[1]->() } @cases;
is($open{'link, UTC days'}{totals}{pv},
   $before{'link, UTC days'}{totals}{pv} + 1, 'counted before the merge');
is($day_pv->('link_daily_clicks', 'code', "${P}a"), $link_day,
   'the open day\'s daily row untouched so far');
merge_all();   # rolls up [2026-10-24, today) first, then merges
is(sql_value('SELECT daily_through FROM shortlink.hourly_compaction'),
   sql_value("SELECT date_bin('1 day', now(), timestamptz '1970-01-01 00:00+00')"),
   'the merge rolled the ended days up: daily_through is today');
is($day_pv->('link_daily_clicks', 'code', "${P}a"), $link_day + 1,
   'the link\'s day has the new click');
is($day_pv->('owner_daily_clicks', 'owner', "$P-a"), $owner_day + 1,
   'the owner\'s day too');
is_deeply($_->[1]->(), $open{ $_->[0] }, "$_->[0]: the same after the roll-up")
    for @cases;
is(sql_value("SELECT count(*) FROM shortlink.link_daily_clicks
               WHERE day >= (SELECT daily_through FROM shortlink.hourly_compaction)"),
   0, 'no open day in the daily tier');
is(sql_value('SELECT shortlink.stats_rollup_days()'), 0, 'a second roll-up: nothing to do');


# --- open hours: a merge appends a partial row, the closed hour is folded (022) --

sql(qq{INSERT INTO shortlink.links (code, url, owner) VALUES
       ('${P}o', 'https://example.com/o', '$P-o')});
my $rows = sub {   # rows of the link: all/partial/appended
    return sql_value("SELECT count(*) || '/' || count(*) FILTER (WHERE partial)
                             || '/' || count(*) FILTER (WHERE visitors IS NULL)
                        FROM shortlink.link_hourly_clicks WHERE code = '${P}o'");
};
my $now = sql_value('SELECT now()');
is(record(map { [ "${P}o", $now, $_, $ex ] } qw(v1 v2 v1)), 3, 'three clicks now');
merge_all();
is($rows->(), '1/1/0', 'the merge made a partial row of the open hour');
is(record(map { [ "${P}o", $now, $_, $ex ] } qw(v3 v1)), 2, 'two more');
merge_all();
is($rows->(), '2/2/0', 'the next merge another one, the first left alone');
my $o_range = [ sql_value("SELECT date_bin('1 hour', now(), timestamptz '1970-01-01 00:00+00')
                                  - interval '1 hour'"),
                sql_value("SELECT now() + interval '1 hour'") ];
my @o_cases = (
    [ 'link by hour', sub { stats("${P}o", @$o_range, 'hour') } ],
    [ 'link by day',  sub { stats("${P}o", @$o_range, 'day', 'Europe/Berlin') } ],
    [ 'owner',        sub { set_stats("$P-o", undef, @$o_range, 'hour') } ],
);
my %o_before = map { $_->[0] => $_->[1]->() } @o_cases;
is_deeply([ @{ $o_before{'link by hour'}{totals} }{qw(pv uv)} ], [ 5, 3 ],
          'the partial rows add up: 5 clicks, 3 visitors');
is_deeply([ map { "$_->{pv} $_->{uv}" } grep { $_->{pv} }
            @{ $o_before{'link by hour'}{series} } ], [ '5 3' ],
          'in one hourly bucket');
is($o_before{'link by hour'}{top}{browsers}[0]{count}, 5, 'top lists too');
is_deeply([ @{ $o_before{owner}{totals} }{qw(pv uv)} ], [ 5, 3 ], 'and the owner');
sql(q{DO $$ BEGIN
          WHILE shortlink.compact_hourly_clicks(5000, 'infinity') > 0 LOOP END LOOP;
      END $$});
is($rows->(), '1/0/0', 'folded into one row once the hour counts as closed');
is_deeply($_->[1]->(), $o_before{ $_->[0] }, "$_->[0]: the same after the fold")
    for @o_cases;

my $earlier = sql_value("SELECT now() - interval '3 hours'");
is(record([ "${P}o", $earlier, 'v4', $ex ]), 1, 'a click three hours ago');
merge_all();
is(sql_value("SELECT count(*) || '/' || count(*) FILTER (WHERE partial)
                FROM shortlink.link_hourly_clicks
               WHERE code = '${P}o' AND hour < now() - interval '2 hours'"),
   '1/0', 'a closed hour is folded at once');
is(record([ "${P}o", $earlier, 'v5', $ex ]), 1, 'another one');
sql(q{SELECT shortlink.compact_hourly_clicks(5000, '-infinity')});
is(sql_value("SELECT count(*) || '/' || count(*) FILTER (WHERE partial)
                FROM shortlink.link_hourly_clicks
               WHERE code = '${P}o' AND hour < now() - interval '2 hours'"),
   '2/1', 'merged as if the hour were open: a partial row beside the folded one');
merge_all();
is(sql_value("SELECT count(*) || '/' || count(*) FILTER (WHERE partial) || '/' || sum(pv)
                FROM shortlink.link_hourly_clicks
               WHERE code = '${P}o' AND hour < now() - interval '2 hours'"),
   '1/0/2', 'the next merge folds the closed hour\'s partial row in');
is(stats("${P}o", sql_value("SELECT now() - interval '4 hours'"),
         sql_value("SELECT now() + interval '1 hour'"))->{totals}{pv}, 7,
   'every click counted once');

cleanup();
sql("UPDATE shortlink.hourly_compaction SET last_run = '-infinity'");

done_testing();
