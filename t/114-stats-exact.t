# The statistics against a generated ground truth (issue 12): about
# 200,000 clicks with known visitors, addresses, user agents, referrers,
# countries, languages, networks and sources, spread unevenly over 41 days
# around the end of summer time in Europe/Berlin (2026-10-25, a 25-hour
# day), written through record_clicks() in batches of 20,000.  Every
# figure link_stats() and set_stats() return is compared with the truth
# computed here in Perl:
#
#   * exactly: pv, bots, every top list (top 10 by count, then value),
#     hours_of_day, weekdays, the series' buckets (t) and pv per local day
#     in Europe/Berlin, per UTC day, per hour across the DST change, the
#     number of links of a set, today's pv;
#   * distinct counts (uv, unique_ips, new and returning visitors) as
#     sql/014 documents them: exact while the sketches hold at most 320
#     values; beyond, HyperLogLog with 1.6 % standard error: each figure
#     within 4 standard errors (6.5 %), and their mean error within 2 %;
#     returning visitors (inclusion-exclusion of three estimates) within
#     4 x 1.6 % of |B| + |P| + |B u P|, and new + returning = uv always.
#
# Twice: with every batch's rows still unmerged (the merge held off), and
# after compact_hourly_clicks() merged everything (daily and owner tiers).
# Everything written here uses codes "t114x-", owners "t114-"; removed at
# the start and the end.  A plain Test::More script (no nginx), like
# t/110-stats.t.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time);
use JSON::PP;
use POSIX qw(floor mktime strftime);
use Time::Local qw(timegm);
use Digest::MD5 qw(md5_hex);
use List::Util qw(sum0 max);
use lib 't/lib';
use ShortlinkTest;

my $P = 't114x-';
my $OWNER = 't114-owner';
my $OTHER = 't114-other';
my $json = JSON::PP->new;

# Perl's localtime is Europe/Berlin from here on; gmtime is UTC
$ENV{TZ} = 'Europe/Berlin';
POSIX::tzset();

sub cleanup {
    sql(qq{
        DO \$\$
        BEGIN
            DELETE FROM shortlink.clicks WHERE code LIKE '$P%';
            DELETE FROM shortlink.clicks_rejected WHERE code LIKE '$P%';
            DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE '$P%';
            IF to_regclass('shortlink.link_daily_tops') IS NOT NULL THEN
                DELETE FROM shortlink.link_daily_tops WHERE code LIKE '$P%';
            END IF;
            IF to_regclass('shortlink.owner_hourly_clicks') IS NOT NULL THEN
                DELETE FROM shortlink.owner_hourly_clicks
                 WHERE owner IN ('$OWNER', '$OTHER');
            END IF;
            DELETE FROM shortlink.links WHERE code LIKE '$P%';
            DROP TABLE IF EXISTS public.t114_staging;
        END;
        \$\$;
    });
}

# --- the ground truth --------------------------------------------------------

srand(114);

# user agents with what sql/003's rules make of them
my @UAS = (
    # ua, browser, os, device, bot, weight
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
     'Chrome', 'Windows', 'desktop', 0, 30],
    ['Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0',
     'Firefox', 'Linux', 'desktop', 0, 8],
    ['Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
     'Safari', 'iOS', 'mobile', 0, 20],
    ['Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36',
     'Chrome', 'Android', 'mobile', 0, 18],
    ['Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36',
     'Samsung Internet', 'Android', 'tablet', 0, 4],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91',
     'Edge', 'Windows', 'desktop', 0, 7],
    ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
     'Safari', 'macOS', 'desktop', 0, 9],
    ['Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/120.0 Mobile/15E148 Safari/605.1.15',
     'Firefox', 'iOS', 'tablet', 0, 2],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/105.0.0.0',
     'Opera', 'Windows', 'desktop', 0, 2],
    ['Mozilla/5.0 (Windows NT 10.0; Trident/7.0; rv:11.0) like Gecko',
     'IE', 'Windows', 'desktop', 0, 1],
    ['Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
     'other', 'other', 'bot', 1, 3],
    ['curl/8.4.0', 'other', 'other', 'bot', 1, 1],
    ['Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
     'Chrome', 'ChromeOS', 'desktop', 0, 1],
    [undef, 'other', 'other', 'other', 0, 1],
);

# referrers: [url pattern, host] (undef host: not a URL, no host)
my @REFS = map { ["https://www.site$_.example/article/%d?utm=x", "www.site$_.example", 31 - $_] } 1 .. 30;
push @REFS, ['http://Upper.Example.ORG:8080/p/%d', 'upper.example.org', 5],
            ['https://user@news.example.net/%d#frag', 'news.example.net', 4],
            ['not a url %d', undef, 2],
            [undef, undef, 35];                           # no Referer

my @COUNTRIES = map { [$_->[0], $_->[1]] }
    (['DE', 30], ['US', 20], ['FR', 9], ['GB', 9], ['NL', 6], ['AT', 6],
     ['CH', 5], ['IT', 4], ['ES', 4], ['PL', 3], ['SE', 3], ['DK', 2],
     ['BE', 2], ['NO', 2], ['FI', 1], ['IE', 1], ['PT', 1], ['CZ', 1],
     ['JP', 1], ['BR', 1], ['IN', 1], ['CA', 1], ['AU', 1], ['MX', 1],
     [undef, 5]);
my @LANGS = (['de-de', 25], ['en-us', 20], ['de', 10], ['fr-fr', 7],
             ['en-gb', 7], ['en', 5], ['nl', 4], ['it', 3], ['es', 3],
             ['de-at', 3], ['pl', 2], ['sv', 2], ['ja', 1], ['pt-br', 1],
             ['zh-hant-tw', 1], [undef, 6]);
my @NETS = ((map { ["AS$_", 13 - $_ % 13] } 3320, 3209, 6805, 8881, 6830,
             15943, 7922, 701, 1299, 3356, 174, 6939), [undef, 60]);
my @SOURCES = (['qr', 3], ['profile', 1], [undef, 96]);

my %total_weight;

sub pick {                      # weighted choice: the weight is last
    my ($list) = @_;
    my $total = $total_weight{$list} //= sum0(map { $_->[-1] } @$list);
    my $r = rand($total);
    for my $e (@$list) {
        return $e if ($r -= $e->[-1]) < 0;
    }
    return $list->[-1];
}

# busy afternoons, quiet nights (by local hour)
my @HOUR_W = (1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 9, 10, 9, 8, 8, 9, 10, 9, 7, 5, 4, 3, 2);

my $W_FROM = timegm(0, 0, 0, 15, 9, 2026);       # 2026-10-15T00:00Z
my $W_TO   = timegm(0, 0, 0, 26, 10, 2026);      # 2026-11-26T00:00Z

BAIL_OUT('the clock says it is before 2026-11-26: this data set lies in the past')
    if time() < $W_TO + 3600;

my @links = map { sprintf('%sl%02d', $P, $_) } 3 .. 20;
my %owner = (map({ $_ => $OWNER } "${P}big", "${P}small", @links),
             "${P}other" => $OTHER);
my %tagged = map { $_ => 1 } "${P}big", @links[0 .. 3];
my $deleted = $links[-1];

my @clicks;
my $seq = 0;

sub ip_of { my $n = shift; sprintf('10.%d.%d.%d', ($n >> 16) & 255, ($n >> 8) & 255, $n & 255) }

# a click by visitor number $v from address number $ipn (both undef: DNT);
# the truth counts the numbers, PostgreSQL gets an id and an address
sub click_at {
    my ($code, $t, $v, $ipn) = @_;
    my $ua = pick(\@UAS);
    my $ref = pick(\@REFS);
    my $n = ++$seq;
    push @clicks, {
        id      => $n,
        code    => $code,
        ms      => int($t * 1000),
        v       => $v,
        ipn     => $ipn,
        visitor => defined $v ? md5_hex("t114 visitor $v") : undef,
        ip      => defined $ipn ? ip_of($ipn) : undef,
        ua      => $ua,
        browser => $ua->[1],
        os      => $ua->[2],
        device  => $ua->[3],
        bot     => $ua->[4],
        referer => defined $ref->[0] ? sprintf($ref->[0], $n % 1000) : undef,
        rhost   => $ref->[1],
        country => pick(\@COUNTRIES)->[0],
        language => pick(\@LANGS)->[0],
        network => pick(\@NETS)->[0],
        source  => pick(\@SOURCES)->[0],
    };
}

sub random_time {               # in the window, by the hour weights
    for (;;) {
        my $t = $W_FROM + rand($W_TO - $W_FROM);
        my $h = (localtime(int $t))[2];
        return int($t * 1000) / 1000 if rand(10) < $HOUR_W[$h];
    }
}

# link => [clicks, visitor pool, address pool, pool offset]
my %plan = ("${P}big" => [120000, 40000, 30000, 0],
            "${P}small" => [300, 150, 100, 900000],
            "${P}other" => [5000, 3000, 3000, 0]);
$plan{$_} = [4000, 30000, 20000, 0] for @links;   # share big's visitors

for my $code (sort keys %plan) {
    my ($n, $vpool, $ipool, $off) = @{ $plan{$code} };
    for (1 .. $n) {
        my ($v, $ipn);
        if (rand() >= 0.03) {               # 3 %: Do Not Track, neither
            $v = $off + int($vpool * rand() ** 2);
            # most visitors come from their own address
            $ipn = rand() < 0.8 ? $off + $v % $ipool
                                : 200000 + $off + int(rand($ipool));
        }
        click_at($code, random_time(), $v, $ipn);
    }
}

# today: clicks since local midnight, on big and on a set link
my $now = time();
my @lt = localtime($now);
my $midnight = mktime(0, 0, 0, $lt[3], $lt[4], $lt[5], 0, 0, -1);
for my $i (1 .. 150) {
    my $v = $i % 60;
    click_at("${P}big", $midnight + ($now - 1 - $midnight) * $i / 151,
             2000000 + $v, 500000 + $v % 50);
}
for my $i (1 .. 20) {
    click_at($links[0], $midnight + ($now - 1 - $midnight) * $i / 21,
             2000000 + $i, 500000 + $i);
}

# per click: the hour and ISO weekday, local (Berlin) and UTC; in time order
for my $c (@clicks) {
    my $s = int($c->{ms} / 1000);
    my @l = localtime($s);
    my @u = gmtime($s);
    $c->{'hour Europe/Berlin'} = $l[2];
    $c->{'wday Europe/Berlin'} = ($l[6] + 6) % 7;      # Monday 0
    $c->{'hour UTC'} = $u[2];
    $c->{'wday UTC'} = ($u[6] + 6) % 7;
}
@clicks = sort { $a->{ms} <=> $b->{ms} || $a->{id} <=> $b->{id} } @clicks;
note(sprintf('%d clicks generated in %.1f s', scalar @clicks, time() - $^T));

# --- load through record_clicks ----------------------------------------------

cleanup();

# the merge is held off until the second round, and allowed again at the
# end whatever happens
sql(q{UPDATE shortlink.hourly_compaction SET last_run = 'infinity'});

END {
    local $?;
    eval {
        sql(q{UPDATE shortlink.hourly_compaction SET last_run = '-infinity'});
        cleanup();
    };
}

sql("INSERT INTO shortlink.links (code, url, owner, tags) VALUES "
    . join(', ', map {
          my $tags = $tagged{$_} ? "'{t114-tag}'" : "'{}'";
          "('$_', 'https://example.com/$_', '$owner{$_}', $tags)"
      } sort keys %owner));

sql(q{CREATE TABLE public.t114_staging (seq integer, batch integer,
          event_id uuid, ms bigint, code text, ip text, ua text, referer text,
          visitor text, extra jsonb)});

my @sorted = @clicks;
my $i = 0;
sql_copy('public.t114_staging',
         'seq, batch, event_id, ms, code, ip, ua, referer, visitor, extra',
         [ map {
             my $c = $_;
             my %x;
             for my $k (qw(country language network source)) {
                 $x{$k} = $c->{$k} if defined $c->{$k};
             }
             my $h = md5_hex("t114 event $c->{id}");
             $h =~ s/^(.{8})(.{4})(.{4})(.{4})(.{12})$/$1-$2-$3-$4-$5/;
             my $row = [$i, int($i / 20000), $h, $c->{ms}, $c->{code}, $c->{ip},
                        $c->{ua}[0], $c->{referer}, $c->{visitor},
                        JSON::PP->new->canonical->encode(\%x)];
             $i++;
             $row;
         } @sorted ]);

my $batches = int(($#sorted) / 20000);
my $recorded = 0;
for my $b (0 .. $batches) {
    $recorded += sql_value(qq{
        SELECT shortlink.record_clicks(array_agg(event_id ORDER BY seq),
                   array_agg(ms ORDER BY seq), array_agg(code ORDER BY seq),
                   array_agg(ip ORDER BY seq), array_agg(ua ORDER BY seq),
                   array_agg(referer ORDER BY seq), array_agg(visitor ORDER BY seq),
                   array_agg(extra ORDER BY seq))
          FROM public.t114_staging WHERE batch = $b});
}
note(sprintf('recorded at %.1f s', time() - $^T));
is($recorded, scalar @clicks, scalar(@clicks) . ' clicks recorded in '
   . ($batches + 1) . ' batches');

sql("UPDATE shortlink.links SET deleted_at = now() WHERE code = '$deleted'");

# what sql/003 makes of the user agents and referrers is what this truth
# assumes (else the mistake is in the table above, not in the statistics)
is(sql_value(qq{
    SELECT count(*) FROM shortlink.clicks c JOIN public.t114_staging s
        ON s.event_id = c.event_id
     WHERE c.code LIKE '$P%'}), scalar @clicks, 'every click is in shortlink.clicks');

my %ua_class = map { (defined $_->[0] ? $_->[0] : '') => join('|', @$_[1 .. 4]) } @UAS;
my %got_class = map { $_->[0] => join('|', @$_[1 .. 4]) } @{ sql_rows(qq{
    SELECT DISTINCT coalesce(user_agent, ''), browser, os, device,
           CASE WHEN is_bot THEN 1 ELSE 0 END
      FROM shortlink.clicks WHERE code LIKE '$P%'}) };
is_deeply(\%got_class, \%ua_class, 'user agents classified as the truth assumes');

my %host_of = map { defined $_->[0] ? ($_->[0] => $_->[1] // '') : () }
              map { [ defined $_->{referer} ? $_->{referer} : undef, $_->{rhost} ] } @clicks;
my $bad_hosts = 0;
for my $r (@{ sql_rows(qq{SELECT DISTINCT referer, coalesce(referer_host, '')
                           FROM shortlink.clicks
                          WHERE code LIKE '$P%' AND referer IS NOT NULL}) }) {
    $bad_hosts++ if ($host_of{$r->[0]} // "\0") ne $r->[1];
}
is($bad_hosts, 0, 'referrer hosts as the truth assumes');

# --- the truth of a query ------------------------------------------------------

sub iso {                       # an instant in a zone, as sql/014 writes it
    my ($t, $tz) = @_;
    return strftime('%Y-%m-%dT%H:%M:%SZ', gmtime $t) if $tz eq 'UTC';
    my @l = localtime $t;
    my $off = timegm(@l[0 .. 5]) - $t;
    return strftime('%Y-%m-%dT%H:%M:%S', @l)
           . sprintf('%s%02d:%02d', $off < 0 ? '-' : '+', abs($off) / 3600,
                     abs($off) % 3600 / 60);
}

sub top10 {
    my ($n) = @_;
    my @v = sort { $n->{$b} <=> $n->{$a} || $a cmp $b } keys %$n;
    splice @v, 10 if @v > 10;
    return [ map { { value => $_, count => $n->{$_} } } @v ];
}

# every bucket start of a range: hours, or local (Berlin) / UTC midnights
sub buckets {
    my ($from, $to, $interval, $tz) = @_;
    my @b;
    if ($interval eq 'hour') {
        for (my $t = $from; $t < $to; $t += 3600) { push @b, $t }
        return @b;
    }
    my $t = $from;
    while ($t < $to) {
        push @b, $t;
        if ($tz eq 'UTC') {
            $t += 86400;
        } else {
            my @l = localtime($t + 26 * 3600);   # some time the next day
            $t = mktime(0, 0, 0, $l[3], $l[4], $l[5], 0, 0, -1);
        }
    }
    return @b;
}

my %truth_of;
my $truth_time = 0;

sub truth {
    my ($codes, $from, $to, $interval, $tz) = @_;
    my $key = join(',', sort(@$codes), $from, $to, $interval, $tz);
    my $t0 = time();
    $truth_of{$key} //= truth_of($codes, $from, $to, $interval, $tz);
    $truth_time += time() - $t0;
    return $truth_of{$key};
}

my %LIST_KEY = (referrers => 'rhost', browsers => 'browser', os => 'os',
                devices => 'device', countries => 'country',
                languages => 'language', networks => 'network',
                sources => 'source');

sub truth_of {
    my ($codes, $from, $to, $interval, $tz) = @_;
    my %in = map { $_ => 1 } @$codes;
    my ($from_ms, $to_ms) = ($from * 1000, $to * 1000);
    my ($hk, $wk) = ("hour $tz", "wday $tz");
    my @b = buckets($from, $to, $interval, $tz);
    push @b, $to;

    my (%t, %seen, %vis, %ips, %n, @hod, @wd, @series, $bv, $bb);
    @hod = (0) x 24;
    @wd = (0) x 7;
    $t{$_} = 0 for qw(pv bots returning);
    $bb = -1;

    # one pass over the clicks in time order
    for my $c (@clicks) {
        next unless $in{ $c->{code} };
        my $ms = $c->{ms};
        last if $ms >= $to_ms;
        my $v = $c->{v};

        if ($ms < $from_ms) {                   # before: only who was seen
            $seen{$v} = 1 if defined $v;
            next;
        }

        if ($bb < 0) {
            $bb = 0;
            $bv = { v => {}, i => {}, pv => 0 };
        }
        while ($ms >= $b[$bb + 1] * 1000) {     # the next bucket
            push @series, [$bb, $bv];
            $bv = { v => {}, i => {}, pv => 0 };
            $bb++;
        }

        $t{pv}++;
        $t{bots}++ if $c->{bot};
        $bv->{pv}++;
        if (defined $v) {
            $t{returning}++ if !$vis{$v} && $seen{$v};
            $vis{$v} = 1;
            $bv->{v}{$v} = 1;
        }
        if (defined $c->{ipn}) {
            $ips{ $c->{ipn} } = 1;
            $bv->{i}{ $c->{ipn} } = 1;
        }
        $hod[ $c->{$hk} ]++;
        $wd[ $c->{$wk} ]++;
        for my $list (keys %LIST_KEY) {
            my $x = $c->{ $LIST_KEY{$list} };
            $n{$list}{$x}++ if defined $x;
        }
    }

    if ($bb < 0) {
        $bb = 0;
        $bv = { v => {}, i => {}, pv => 0 };
    }
    while ($bb < $#b) {                         # the rest, empty or not
        push @series, [$bb, $bv];
        $bv = { v => {}, i => {}, pv => 0 };
        $bb++;
    }

    # returning in a bucket: seen before it (before the range or in an
    # earlier bucket)
    my %before = %seen;
    $t{before_n} = keys %seen;
    for my $s (@series) {
        my ($k, $x) = @$s;
        my $before_n = keys %before;
        my $uv = keys %{ $x->{v} };
        my $ret = grep { $before{$_} } keys %{ $x->{v} };
        $before{$_} = 1 for keys %{ $x->{v} };
        $s = { t => iso($b[$k], $tz), pv => $x->{pv}, uv => $uv,
               unique_ips => scalar keys %{ $x->{i} }, returning => $ret,
               before_n => $before_n, union_n => $before_n + $uv - $ret };
    }

    $t{uv} = keys %vis;
    $t{unique_ips} = keys %ips;
    $t{union_n} = $t{before_n} + $t{uv} - $t{returning};
    $t{hours_of_day} = \@hod;
    $t{weekdays} = \@wd;
    $t{top} = { map { $_ => top10($n{$_} // {}) } keys %LIST_KEY };
    $t{series} = \@series;
    return \%t;
}

# --- comparing -----------------------------------------------------------------

my @rel_errors;

sub estimate_is {
    my ($got, $want, $name) = @_;
    if ($want <= 320) {
        return is($got, $want, "$name: $want (exact)");
    }
    push @rel_errors, abs($got - $want) / $want;
    return ok(abs($got - $want) <= 0.065 * $want,
              "$name: $got within 6.5 % of $want");
}

sub returning_is {
    my ($got, $want, $b, $p, $u, $name) = @_;
    if ($u <= 320) {
        return is($got, $want, "$name: $want (exact)");
    }
    my $tol = 4 * 0.016 * ($b + $p + $u);
    return ok(abs($got - $want) <= $tol,
              "$name: $got within $tol of $want (three estimates)");
}

sub compare {
    my ($label, $got, $t, $tz) = @_;

    is($got->{totals}{pv}, $t->{pv}, "$label: pv $t->{pv}");
    is($got->{totals}{bots}, $t->{bots}, "$label: bots");
    estimate_is($got->{totals}{uv}, $t->{uv}, "$label: uv");
    estimate_is($got->{totals}{unique_ips}, $t->{unique_ips}, "$label: unique IPs");
    is($got->{totals}{new_visitors} + $got->{totals}{returning_visitors},
       $got->{totals}{uv}, "$label: new + returning = uv");
    returning_is($got->{totals}{returning_visitors}, $t->{returning},
                 $t->{uv}, $t->{before_n}, $t->{union_n}, "$label: returning");

    is_deeply($got->{hours_of_day}, $t->{hours_of_day}, "$label: hours_of_day");
    is_deeply($got->{weekdays}, $t->{weekdays}, "$label: weekdays");

    for my $list (sort keys %{ $t->{top} }) {
        is_deeply($got->{top}{$list}, $t->{top}{$list}, "$label: top $list");
    }

    my @gs = @{ $got->{series} };
    is_deeply([ map { $_->{t} } @gs ], [ map { $_->{t} } @{ $t->{series} } ],
              "$label: " . scalar(@{ $t->{series} }) . " buckets in $tz");
    is_deeply([ map { $_->{pv} } @gs ], [ map { $_->{pv} } @{ $t->{series} } ],
              "$label: pv of every bucket");

    my ($bad, $n) = (0, 0);
    for my $i (0 .. $#{ $t->{series} }) {
        my ($g, $w) = ($gs[$i] // {}, $t->{series}[$i]);
        my $ok = 1;
        for my $f (qw(uv unique_ips)) {
            my $gv = $g->{$f} // -1;
            if ($w->{$f} <= 320) {
                $ok &&= $gv == $w->{$f};
            } else {
                push @rel_errors, abs($gv - $w->{$f}) / $w->{$f};
                $ok &&= abs($gv - $w->{$f}) <= 0.065 * $w->{$f};
            }
        }
        my $gr = $g->{returning_visitors} // -1;
        $ok &&= ($g->{new_visitors} // -1) + $gr == ($g->{uv} // -2);
        if ($w->{union_n} <= 320) {
            $ok &&= $gr == $w->{returning};
        } else {
            $ok &&= abs($gr - $w->{returning})
                    <= 4 * 0.016 * ($w->{uv} + $w->{before_n} + $w->{union_n});
        }
        unless ($ok) {
            $bad++;
            diag("$label: bucket $w->{t}: got uv $g->{uv} ips $g->{unique_ips}"
                 . " ret $gr new $g->{new_visitors}; truth uv $w->{uv}"
                 . " ips $w->{unique_ips} ret $w->{returning}")
                if $bad <= 5;
        }
    }
    is($bad, 0, "$label: uv, unique IPs, new and returning of every bucket");
}

my $sql_time = 0;

sub stats {
    my ($sql) = @_;
    my $t0 = time();
    my $doc = $json->decode(sql_value($sql));
    $sql_time += time() - $t0;
    return $doc;
}

my $BER_FROM = mktime(0, 0, 0, 18, 9, 126, 0, 0, -1);    # 2026-10-18 local
my $BER_TO   = mktime(0, 0, 0, 25, 10, 126, 0, 0, -1);   # 2026-11-25 local
my $UTC_FROM = timegm(0, 0, 0, 18, 9, 2026);
my $UTC_TO   = timegm(0, 0, 0, 25, 10, 2026);
my $H_FROM   = mktime(0, 0, 0, 24, 9, 126, 0, 0, -1);    # 2026-10-24 local
my $H_TO     = mktime(0, 0, 0, 27, 9, 126, 0, 0, -1);    # 2026-10-27 local

sub ts { "to_timestamp($_[0])" }

sub check_all {
    my ($round) = @_;
    my $set_links = [ grep { $owner{$_} eq $OWNER } keys %owner ];
    my $tag_links = [ grep { $tagged{$_} } keys %owner ];

    for my $q (["${P}big", 'Europe/Berlin', $BER_FROM, $BER_TO, 'day'],
               ["${P}big", 'UTC', $UTC_FROM, $UTC_TO, 'day'],
               ["${P}big", 'Europe/Berlin', $H_FROM, $H_TO, 'hour'],
               ["${P}small", 'Europe/Berlin', $BER_FROM, $BER_TO, 'day'])
    {
        my ($code, $tz, $from, $to, $interval) = @$q;
        my $got = stats("SELECT shortlink.link_stats('$code', " . ts($from)
                        . ', ' . ts($to) . ", '$interval', '$tz')");
        my $label = "$round: link_stats $code $interval $tz";
        is($got->{code}, $code, "$label: code");
        is_deeply([@$got{qw(from to tz)}], [iso($from, $tz), iso($to, $tz), $tz],
                  "$label: from, to, tz");
        compare($label, $got, truth([$code], $from, $to, $interval, $tz), $tz);
    }

    for my $q ([undef, $set_links, 'owner'], ['t114-tag', $tag_links, 'tag']) {
        my ($tag, $codes, $what) = @$q;
        my $got = stats("SELECT shortlink.set_stats('$OWNER', "
                        . (defined $tag ? "'$tag'" : 'NULL') . ', '
                        . ts($BER_FROM) . ', ' . ts($BER_TO)
                        . ", 'day', 'Europe/Berlin')");
        my $label = "$round: set_stats by $what";
        is_deeply([@$got{qw(owner tag links)}], [$OWNER, $tag, scalar @$codes],
                  "$label: owner, tag, links (a soft-deleted one included)");
        compare($label, $got,
                truth($codes, $BER_FROM, $BER_TO, 'day', 'Europe/Berlin'),
                'Europe/Berlin');
    }

    # today: since local midnight in the caller's zone
    for my $q (["link_stats('${P}big'", ["${P}big"]],
               ["set_stats('$OWNER', 't114-tag'", $tag_links]) {
        my ($call, $codes) = @$q;
        my %in = map { $_ => 1 } @$codes;
        my @c = grep { $in{$_->{code}} && $_->{ms} >= $midnight * 1000 } @clicks;
        my (%v, %i);
        $v{$_->{v}} = 1 for grep { defined $_->{v} } @c;
        $i{$_->{ipn}} = 1 for grep { defined $_->{ipn} } @c;
        my $got = stats("SELECT shortlink.$call, now() - interval '2 days', now(),"
                        . " 'day', 'Europe/Berlin')")->{today};
        my $label = "$round: today of $call)";
        is($got->{since}, iso($midnight, 'Europe/Berlin'), "$label: since");
        is($got->{pv}, scalar @c, "$label: pv");
        estimate_is($got->{uv}, scalar keys %v, "$label: uv");
        estimate_is($got->{unique_ips}, scalar keys %i, "$label: unique IPs");
    }
}

is(sql_value(qq{SELECT count(*) FROM shortlink.link_hourly_clicks
                 WHERE code LIKE '$P%' AND visitors IS NOT NULL}), 0,
   'no hour merged yet: the first round reads the batches\' rows');

my $t0 = time();
check_all('unmerged');
note(sprintf('checked in %.1f s: %.1f s in link_stats/set_stats, %.1f s'
             . ' computing the truth', time() - $t0, $sql_time, $truth_time));

# the merge: every hour's rows into one, daily tops, the owner tier
sql(q{DO $$ BEGIN
          WHILE shortlink.compact_hourly_clicks(5000) > 0 LOOP END LOOP;
      END $$});
is(sql_value(qq{SELECT count(*) FROM shortlink.link_hourly_clicks
                 WHERE code LIKE '$P%' AND visitors IS NULL}), 0,
   'every hour merged');

check_all('merged');

my $mean = @rel_errors ? sum0(@rel_errors) / @rel_errors : 0;
cmp_ok($mean, '<', 0.02,
       sprintf('mean error of %d estimates above 320: %.2f %% (max %.2f %%)',
               scalar @rel_errors, 100 * $mean, 100 * (max(@rel_errors) // 0)));

note(sprintf("perl CPU %.1f s user, %.1f s sys; children %.1f s",
             (times)[0], (times)[1], (times)[2]));
done_testing();
