# The access log's database side (sql/012_click_log.sql), without nginx:
# link_clicks() pages concatenate to exactly the clicks of the range, newest
# first, without duplicates or gaps even where many clicks share a time;
# cursors that are not link_clicks' are refused; visitor ids and addresses
# never come out; GET /links/{code}/clicks through shortlink.api() (owners,
# parameters, HEAD); retention (set_click_retention, purge_clicks, and the
# purge record_clicks runs) removes only raw clicks older than the
# retention and leaves the rollup figures of link_stats as they were.
#
# Clicks are in January 2001, far from every other suite's days (retention
# drops whole day partitions); codes start with "t113", owners with
# "t113-"; everything is removed at the start and at the end, and the
# retention is reset to NULL.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use ShortlinkTest;

my $P = 't113';
my $json = JSON::PP->new->utf8->canonical;

sub cleanup {
    sql(qq{
        SELECT shortlink.set_click_retention(NULL);
        DELETE FROM shortlink.clicks
         WHERE code LIKE '$P%' AND clicked_at < '2001-02-01+00';
        DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE '$P%';
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

# one API call as the module makes it: (status, decoded body or undef)
sub api {
    my ($method, $path, $query, $key) = @_;
    my $out = sql_value(
        "SELECT status || '|' || coalesce(body::text, '') FROM shortlink.api("
        . join(', ', map { q_($_) } $method, $path, $query, undef, $key,
               'https://sho.rt') . ')');
    my ($status, $text) = split /\|/, $out, 2;
    return ($status, $text eq '' ? undef : $json->decode($text), $text);
}

# $n clicks of $code through record_clicks: click g (1..$n) at
# $start - floor(g / $same) * $step seconds (so $same clicks share each
# time), visitor
# "secret-visitor-<g % 7>" (none for g % 5 = 0), address 192.0.2.<g % 250>,
# a referrer unique to the click; $tag makes the event ids distinct per call
sub load {
    my ($code, $n, $start, $same, $step, $tag) = @_;
    return sql_value(qq{
        SELECT shortlink.record_clicks(
            array_agg(md5('$P-$tag-' || g)::uuid ORDER BY g),
            array_agg((extract(epoch FROM '$start'::timestamptz) * 1000)::bigint
                      - (g / $same) * $step * 1000 ORDER BY g),
            array_agg('$code'::text ORDER BY g),
            array_agg('192.0.2.' || (g % 250) ORDER BY g),
            array_agg(CASE WHEN g % 11 = 0
                           THEN 'Mozilla/5.0 (compatible; Googlebot/2.1)'
                           ELSE 'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) '
                                'Gecko/20100101 Firefox/120.0' END ORDER BY g),
            array_agg('https://ref' || (g % 3) || '.example/$tag/' || g ORDER BY g),
            array_agg(CASE WHEN g % 5 <> 0 THEN 'secret-visitor-' || (g % 7) END
                      ORDER BY g),
            array_agg(jsonb_build_object('country', CASE WHEN g % 2 = 0 THEN 'DE'
                                                         ELSE 'FR' END) ORDER BY g))
          FROM generate_series(1, $n) g});
}

cleanup();

# record_clicks merges hourly rows every 10 s; the figures do not depend
# on it, but keep the runs alike
sql("UPDATE shortlink.hourly_compaction SET last_run = 'infinity'");

my $owner_key = sql_value("SELECT shortlink.create_api_key('$P-owner')");
my $other_key = sql_value("SELECT shortlink.create_api_key('$P-other')");
my $admin_key = sql_value("SELECT shortlink.create_api_key('$P-admin', true)");
sql(qq{INSERT INTO shortlink.links (code, url, owner) VALUES
       ('${P}a', 'https://example.com/a', '$P-owner'),
       ('${P}b', 'https://example.com/b', '$P-owner')});

is(load("${P}a", 300, '2001-01-10 12:00:00+00', 4, 10, 'a'), 300, '300 clicks of a recorded');
is(load("${P}b", 40, '2001-01-10 12:00:00+00', 4, 10, 'b'), 40, '40 clicks of b in the same seconds');

# --- pages ---------------------------------------------------------------

my $FROM = '2001-01-10 11:50:00+00';
my $TO = '2001-01-10 11:59:30+00';     # excludes the newest clicks

# the truth, newest first, ties by event id descending (what the key orders)
my $truth = sql_rows(qq{
    SELECT clicked_at, referer FROM shortlink.clicks
     WHERE code = '${P}a' AND clicked_at >= '$FROM' AND clicked_at < '$TO'
     ORDER BY clicked_at DESC, event_id DESC});
cmp_ok(scalar @$truth, '>', 200, 'the range holds most of the clicks');
my $ties = sql_value(qq{
    SELECT count(*) FROM (SELECT clicked_at FROM shortlink.clicks
                           WHERE code = '${P}a' GROUP BY 1 HAVING count(*) > 1) t});
cmp_ok($ties, '>', 50, 'many clicks share their time with others');

for my $limit (3, 7, 1000) {
    my (@got, $cursor, $pages);
    do {
        my $rows = sql_rows(
            "SELECT clicked_at, referrer, coalesce(next_cursor, '') FROM shortlink.link_clicks("
            . "'${P}a', '$FROM', '$TO', " . q_($cursor) . ", $limit)");
        $pages++;
        cmp_ok(scalar @$rows, '<=', $limit, "limit $limit: page $pages has at most $limit");
        my @cursors = grep { $_->[2] ne '' } @$rows;
        ok(@cursors <= 1 && (!@cursors || $cursors[0] == $rows->[-1]),
           "limit $limit: page $pages: a cursor only on its last row") or last;
        $cursor = @cursors ? $cursors[0][2] : undef;
        push @got, map { [ $_->[0], $_->[1] ] } @$rows;
    } while (defined $cursor && $pages < 1000);
    is_deeply(\@got, $truth,
              "limit $limit: $pages pages concatenate to the range, newest first");
}

is(sql_value(qq{SELECT count(*) FROM shortlink.link_clicks('${P}a', '$FROM', '$TO', NULL, 1000)
                 WHERE referrer NOT LIKE '%/a/%'}), 0, 'no click of another link');

# from is inclusive, to exclusive
my $t0 = '2001-01-10 11:58:00+00';
is(sql_value(qq{SELECT count(*) FROM shortlink.link_clicks('${P}a', '$t0', '$t0', NULL, 1000)}),
   0, 'from = to: nothing');
is(sql_value(qq{SELECT count(*) FROM shortlink.link_clicks('${P}a', '$t0', '$t0'::timestamptz
                                                             + interval '1 ms', NULL, 1000)}),
   sql_value(qq{SELECT count(*) FROM shortlink.clicks WHERE code = '${P}a'
                 AND clicked_at = '$t0'}), 'from is inclusive');

# --- what a click shows --------------------------------------------------

my $row = sql_rows(qq{
    SELECT c.country, c.browser, c.os, c.device, c.referrer_host, c.is_bot,
           c.visitor_hash, shortlink.visitor_hash(k.visitor_id)
      FROM shortlink.link_clicks('${P}a', '$FROM', '$TO', NULL, 1) c
      JOIN shortlink.clicks k ON k.code = '${P}a' AND k.referer = c.referrer})->[0];
like($row->[0], qr/^(DE|FR)$/, 'country from extra');
is_deeply([ @$row[1 .. 3] ], [ 'Firefox', 'Linux', 'desktop' ], 'browser, os, device')
    or diag explain $row;
like($row->[4], qr/^ref\d\.example$/, 'referrer host');
is($row->[5], 'f', 'bot flag');
is($row->[6], $row->[7], 'visitor_hash is shortlink.visitor_hash of the id');

my $all = sql_value(qq{SELECT string_agg(t::text, E'\\n')
                         FROM shortlink.link_clicks('${P}a', '2001-01-01', '2001-02-01',
                                                    NULL, 1000) t});
unlike($all, qr/secret-visitor|192\.0\.2\./, 'neither visitor ids nor addresses come out');
is(sql_value(qq{SELECT count(DISTINCT visitor_hash) || '/' || count(*) FILTER (WHERE visitor_hash IS NULL)
                  || '/' || count(*) FILTER (WHERE visitor_hash !~ '^[0-9a-f]{16}\$')
                  || '/' || count(*) FILTER (WHERE is_bot)
                  FROM shortlink.link_clicks('${P}a', '2001-01-01', '2001-02-01', NULL, 1000)}),
   '7/60/0/27', '7 visitors, 7 hashes; no hash for clicks without visitor; bots flagged');
isnt(sql_value("SELECT shortlink.visitor_hash('secret-visitor-1')"),
     sql_value("SELECT left(encode(sha256('secret-visitor-1'), 'hex'), 16)"),
     'the hash is salted');

# --- refused arguments ---------------------------------------------------

my $good = sql_value(qq{SELECT next_cursor FROM shortlink.link_clicks('${P}a', '$FROM', '$TO', NULL, 5)
                         WHERE next_cursor IS NOT NULL});
like($good, qr/^[A-Za-z0-9_-]+$/, 'a cursor is base64url');
my @bad = (
    substr($good, 0, -1),                              # truncated
    substr($good, 0, -4),
    substr($good, 0, 10) . (substr($good, 10, 1) eq 'A' ? 'B' : 'A') . substr($good, 11),
    'AAAA', '', 'x' x 101, "$good=", "$good'; DROP TABLE shortlink.clicks; --",
    sql_value(q{SELECT rtrim(translate(encode('123:not-a-uuid', 'base64'), '+/', '-_'), '=')}),
    sql_value(q{SELECT shortlink.api_cursor(now(), 'abc')}),   # a links cursor
    sql_value(qq{SELECT shortlink.click_cursor('${P}b', now(), gen_random_uuid())}),
);
for my $i (0 .. $#bad) {
    my $c = $bad[$i];
    my ($st, $body) = api('GET', "/links/${P}a/clicks", 'cursor=' . uri($c), $owner_key);
    is($st, 400, "tampered cursor $i: 400");
    is($body->{type}, 'https://shortlink.invalid/problems/bad-cursor', "tampered cursor $i: bad-cursor")
        if $st == 400 && $c ne '';
    eval { sql("SELECT * FROM shortlink.link_clicks('${P}a', '$FROM', '$TO', " . q_($c) . ', 5)') };
    like($@, qr/not a cursor|limit/, "tampered cursor $i: link_clicks raises");
}
for my $lim ('0', '1001', 'NULL', '-1') {
    eval { sql("SELECT * FROM shortlink.link_clicks('${P}a', '$FROM', '$TO', NULL, $lim)") };
    like($@, qr/limit must be from 1 to 1000/, "link_clicks limit $lim raises");
}
eval { sql("SELECT * FROM shortlink.link_clicks(NULL, '$FROM', '$TO')") };
like($@, qr/must not be NULL/, 'NULL code raises');

sub uri {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

# --- the API route -------------------------------------------------------

my $range = 'from=2001-01-10T11:50:00Z&to=2001-01-10T11:59:30Z';
my ($st, $body, $text) = api('GET', "/links/${P}a/clicks", "$range&limit=2", $owner_key);
is($st, 200, 'GET clicks: 200');
is(scalar @{ $body->{clicks} }, 2, 'limit=2: two clicks');
is($body->{clicks}[0]{referrer}, $truth->[0][1], 'the newest click first');
is_deeply([ sort keys %{ $body->{clicks}[0] } ],
          [ qw(bot browser clicked_at country device os referrer referrer_host visitor_hash) ],
          'the fields of a click');
is_deeply([ @$body{qw(code from to)} ], [ "${P}a", '2001-01-10T11:50:00Z', '2001-01-10T11:59:30Z' ],
          'code, from, to');
my ($st2, $body2) = api('GET', "/links/${P}a/clicks", "$range&limit=2&cursor=$body->{next_cursor}",
                        $owner_key);
is_deeply([ map { $_->{referrer} } @{ $body2->{clicks} } ], [ $truth->[2][1], $truth->[3][1] ],
          'the next page through the API');
($st, $body) = api('GET', "/links/${P}a/clicks", "$range&limit=1000", $owner_key);
is(scalar @{ $body->{clicks} }, scalar @$truth, 'limit=1000: the whole range');
is($body->{next_cursor}, undef, 'the last page has no next_cursor');
($st, $body) = api('GET', "/links/${P}a/clicks", '', $owner_key);
is_deeply([ $st, $body->{clicks} ], [ 200, [] ], 'default range: the last 7 days (none)');
($st, $body) = api('HEAD', "/links/${P}a/clicks", $range, $owner_key);
is($st, 200, 'HEAD: 200 like GET');
($st, $body) = api('GET', "/links/${P}a/clicks", $range, $admin_key);
is($st, 200, 'an admin key reads any link');

my @cases = (
    [ 'another owner',         "/links/${P}a/clicks", $range, $other_key, 403, 'not-your-link' ],
    [ 'unknown code',          "/links/${P}zz/clicks", $range, $owner_key, 404, 'link-not-found' ],
    [ 'limit 0',               "/links/${P}a/clicks", 'limit=0', $owner_key, 400, 'bad-query' ],
    [ 'limit 1001',            "/links/${P}a/clicks", 'limit=1001', $owner_key, 400, 'bad-query' ],
    [ 'limit abc',             "/links/${P}a/clicks", 'limit=abc', $owner_key, 400, 'bad-query' ],
    [ 'limit empty',           "/links/${P}a/clicks", 'limit=', $owner_key, 400, 'bad-query' ],
    [ 'from not a time',       "/links/${P}a/clicks", 'from=yesterday', $owner_key, 400, 'bad-query' ],
    [ 'to without zone',       "/links/${P}a/clicks", 'to=2001-01-10T11:00:00', $owner_key, 400, 'bad-query' ],
    [ 'to before from',        "/links/${P}a/clicks", 'from=2001-01-10&to=2001-01-09', $owner_key, 400, 'bad-query' ],
    [ 'unknown parameter',     "/links/${P}a/clicks", 'interval=day', $owner_key, 400, 'bad-query' ],
    [ 'repeated parameter',    "/links/${P}a/clicks", 'limit=1&limit=2', $owner_key, 400, 'bad-query' ],
    [ 'injection in from',     "/links/${P}a/clicks", "from=1'%3B%20DROP%20TABLE%20x", $owner_key, 400, 'bad-query' ],
    [ 'no key',                "/links/${P}a/clicks", $range, '', 401, 'unauthorized' ],
);
for my $c (@cases) {
    my ($name, $path, $query, $key, $want, $slug) = @$c;
    my ($s, $b) = api('GET', $path, $query, $key);
    is($s, $want, "$name: $want");
    is($b->{type}, "https://shortlink.invalid/problems/$slug", "$name: $slug");
}
($st, $body) = api('POST', "/links/${P}a/clicks", '', $owner_key);
is_deeply([ $st, $body->{allow} ], [ 405, 'GET, HEAD' ], 'POST: 405, Allow: GET, HEAD');
($st, $body) = api('GET', "/links/${P}a/clicks/x", '', $owner_key);
is($st, 404, 'a path below clicks: 404');
($st, $body) = api('GET', "/links/${P}a/stats", 'from=2001-01-10&to=2001-01-11', $owner_key);
is_deeply([ $st, $body->{totals}{pv} ], [ 200, 300 ], 'stats still answer');
sql(qq{UPDATE shortlink.links SET deleted_at = now() WHERE code = '${P}b'});
($st, $body) = api('GET', "/links/${P}b/clicks", $range, $owner_key);
is($st, 404, 'a deleted link: 404');

# --- retention -----------------------------------------------------------

is(sql_value('SELECT retention IS NULL FROM shortlink.click_log_settings'), 't',
   'retention: forever by default');
is(sql_value('SELECT row(p.*)::text FROM shortlink.purge_clicks() p'), '(0,0)',
   'without a retention nothing is purged');
eval { sql("SELECT shortlink.set_click_retention('0')") };
like($@, qr/not a positive interval/, 'a retention of 0 is refused');
eval { sql("SELECT shortlink.set_click_retention('-1 day')") };
like($@, qr/not a positive interval/, 'a negative retention is refused');

# link c: 4 clicks an hour from 2001-01-01 to 2001-01-05
sql(qq{INSERT INTO shortlink.links (code, url, owner)
       VALUES ('${P}c', 'https://example.com/c', '$P-owner')});
is(load("${P}c", 480, '2001-01-05 23:59:00+00', 4, 3600, 'c1'), 480, 'link c: 480 clicks over 5 days');
my $stats_sql = "SELECT jsonb_build_object('totals', s -> 'totals', 'series', s -> 'series')
                   FROM shortlink.link_stats('${P}c', '2001-01-01', '2001-01-07', 'hour') s";
my $before = sql_value($stats_sql);
my $cut = '2001-01-03 12:00:00+00';
my $older = sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}c'
                        AND clicked_at < '$cut'");
my $newer = sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}c'
                        AND clicked_at >= '$cut'");
cmp_ok($older, '>', 0, 'clicks before the cut');
cmp_ok($newer, '>', 0, 'clicks after the cut');
my $others = sql_value("SELECT count(*) FROM shortlink.clicks WHERE code NOT LIKE '$P%'");

# a retention reaching back to the cut (a few seconds pass until purge runs)
sql("SELECT shortlink.set_click_retention(now() - '$cut'::timestamptz)");
my ($parts, $deleted) = @{ sql_rows('SELECT * FROM shortlink.purge_clicks(25)')->[0] };
cmp_ok($parts, '>=', 2, "purge: whole days dropped ($parts partitions)");
is($deleted, 25, 'purge: at most p_limit rows of the cut day deleted');
1 while sql_value('SELECT deleted FROM shortlink.purge_clicks(25)') > 0;
is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}c'
               AND clicked_at < '$cut'::timestamptz + interval '1 minute'"), 0,
   'no click older than the retention is left');
is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}c'
               AND clicked_at >= '$cut'::timestamptz + interval '1 minute'"),
   sql_value("SELECT count(*) FROM generate_series(1, 480) g
               WHERE '2001-01-05 23:59:00+00'::timestamptz - (g / 4) * interval '1 h'
                     >= '$cut'::timestamptz + interval '1 minute'"),
   'every newer click is kept');
is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code NOT LIKE '$P%'"), $others,
   'clicks of other suites (later days) untouched');
is(sql_value($stats_sql), $before, 'link_stats totals and series unchanged (rollups kept)');
is(sql_value(qq{SELECT count(*) FROM shortlink.link_clicks('${P}c', '2001-01-01', '2001-01-07',
                                                            NULL, 1000)
                 WHERE clicked_at < '$cut'}), 0, 'the access log no longer shows them');

# record_clicks purges by itself when it is due
sql("UPDATE shortlink.click_log_settings SET last_purge = now() - interval '9 minutes'");
is(load("${P}c", 40, '2001-01-02 12:00:00+00', 1, 1, 'c2'), 40, 'older clicks arrive late');
is(load("${P}c", 1, '2001-01-06 00:00:00+00', 1, 1, 'c3'), 1, 'a batch before the purge is due');
cmp_ok(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}c'
                   AND clicked_at < '$cut'"), '>', 0, 'not due: kept for now');
sql("UPDATE shortlink.click_log_settings SET last_purge = now() - interval '11 minutes'");
is(load("${P}c", 1, '2001-01-06 00:00:01+00', 1, 1, 'c4'), 1, 'a batch when the purge is due');
is(sql_value("SELECT count(*) FROM shortlink.clicks WHERE code = '${P}c'
               AND clicked_at < '$cut'"), 0, 'record_clicks purged them');
is(sql_value("SELECT last_purge > now() - interval '1 minute' FROM shortlink.click_log_settings"),
   't', 'and noted when');

sql('SELECT shortlink.set_click_retention(NULL)');
sql("UPDATE shortlink.hourly_compaction SET last_run = '-infinity'");
cleanup();
done_testing();
