# `./build.sh demo` as a newcomer runs it: it starts on a free port, every
# curl line its banner prints works when pasted into a shell (create a link,
# follow it, its statistics, a sample link's statistics, metrics, health),
# the sample data fills every statistic, the console and Chart.js are
# served with their security headers, and Ctrl-C (SIGINT to the process
# group, as a terminal sends it) stops nginx, Redis and PostgreSQL and
# removes the run directory.
#
# A plain Test::More script: it starts its own demo (its own PostgreSQL,
# Redis and nginx) with the build.sh next to it, whichever Test::Nginx
# runs the other suites.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h setpgid);
use File::Temp qw(tempfile);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use Time::HiRes qw(time sleep);

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $json = JSON::PP->new;
my $csp = "default-src 'self'; script-src 'self'; style-src 'self'; "
        . "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        . "base-uri 'none'; form-action 'self'";

# a port nothing listens on, from one of this run's own
sub free_port {
    for my $p (map { 30000 + ($$ + $_) % 10000 } 0 .. 999) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $p, Listen => 1,
                                      ReuseAddr => 1);
        if ($s) { close $s; return $p; }
    }
    die "no free port\n";
}

# a pid that still runs (a zombie does not: its parent may reap it late)
sub alive {
    my ($pid) = @_;
    return 0 unless $pid && kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat !~ /^\d+ \(.*\) Z /;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    local $/;
    return <$fh> // '';
}

sub first_line {
    my ($file) = @_;
    my ($line) = split /\n/, slurp($file);
    return $line && $line =~ /^(\d+)/ ? $1 : undef;
}

my $port = free_port();
my (undef, $out) = tempfile('demo-XXXXXX', TMPDIR => 1, UNLINK => 1);

my $demo = fork // die "fork: $!";
my $demo_done;
if ($demo == 0) {
    setpgid(0, 0);
    open STDOUT, '>', $out or die "$out: $!";
    open STDERR, '>&', \*STDOUT;
    $ENV{SKIP_APT} = 1;
    exec "$root/build.sh", 'demo', $port;
    exit 127;
}

# whatever happens, the demo does not outlive the test
END {
    if ($demo && !$demo_done) {
        kill 'INT', -$demo;
        waitpid($demo, 0);
    }
}

# the banner ends with this line once nginx answers
my $deadline = time + 300;
my $status;
until (slurp($out) =~ /^Press Ctrl-C/m) {
    if (waitpid($demo, WNOHANG) == $demo) {
        $status = $?;
        $demo_done = 1;
        last;
    }
    if (time > $deadline) {
        kill 'INT', -$demo;
        last;
    }
    sleep 0.2;
}
my $banner = slurp($out);
ok(!defined $status && $banner =~ /^Press Ctrl-C/m, "the demo starts on $port")
    or BAIL_OUT("./build.sh demo did not start:\n$banner");

my ($key) = $banner =~ /^  API key  (sl_[0-9a-f]{64})$/m;
my ($run_dir) = $banner =~ m{^Logs: +(/\S+)/nginx/logs/$}m;
ok($key, 'an admin key is printed');
ok($run_dir && -d $run_dir, 'the run directory is printed');
like($banner, qr{^  Console  http://127\.0\.0\.1:$port/console/$}m,
     'the console URL is printed');

# the curl lines, continuation lines joined, in order
my @cmd;
my $cont = 0;
for my $line (split /\n/, $banner) {
    if ($cont) {
        $cmd[-1] .= "\n$line";
    } elsif ($line =~ /^  curl /) {
        push @cmd, $line;
    } else {
        next;
    }
    $cont = $line =~ /\\$/;
}
is(scalar @cmd, 6, 'six curl lines') or diag($banner);
my ($create, $follow, $today, $sample, $metrics, $health) = @cmd;

sub run_sh {
    my ($cmd) = @_;
    return '' unless defined $cmd;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        exec 'bash', '-c', $cmd;
        exit 127;
    }
    my $text = do { local $/; <$fh> } // '';
    close $fh;
    return $text;
}

sub run_json {
    my ($cmd) = @_;
    my $text = run_sh($cmd);
    my $v = eval { $json->decode($text) };
    diag("not JSON from\n$cmd\n$text") unless $v;
    return $v // {};
}

# create a link through the API
my $link = run_json($create);
is($link->{code}, 'try-me', 'create: the link try-me');
is($link->{url}, 'https://nginx.org/en/docs/', 'create: its target');

# follow it
my $r = run_sh($follow);
like($r, qr{^HTTP/1\.1 302 }, 'follow: 302');
like($r, qr{^Location: https://nginx\.org/en/docs/\r?$}m, 'follow: Location');

# its statistics: the click arrives within a second or so, with the
# browser, referrer and country (GeoIP) of the request
my $st;
my $until = time + 15;
while (1) {
    $st = run_json($today);
    last if ($st->{totals}{pv} // 0) >= 1 || time > $until;
    sleep 0.5;
}
is($st->{totals}{pv}, 1, 'stats: the click is counted');
is_deeply([ map { $_->{value} } @{ $st->{top}{browsers} // [] } ], ['Firefox'],
          'stats: its browser');
is_deeply([ map { $_->{value} } @{ $st->{top}{referrers} // [] } ],
          ['example.com'], 'stats: its referrer');
is_deeply([ map { $_->{value} } @{ $st->{top}{countries} // [] } ], ['GB'],
          'stats: its country, from the geoip module');

# a sample link: every figure has something to show
my $s = run_json($sample);
for my $t (qw(pv uv unique_ips bots)) {
    cmp_ok($s->{totals}{$t} // 0, '>', 0, "sample stats: totals $t");
}
cmp_ok(scalar(grep { $_->{pv} > 0 } @{ $s->{series} // [] }), '>=', 5,
       'sample stats: clicks on most days of the series');
for my $t (qw(referrers browsers os devices countries)) {
    cmp_ok(scalar @{ $s->{top}{$t} // [] }, '>=', 3, "sample stats: top $t");
}

like(run_sh($metrics), qr/^shortlink_clicks_total\{state="flushed"\} [1-9]/m,
     'metrics: clicks flushed');

my $h = run_json($health);
is_deeply([ @$h{qw(status postgresql redis)} ], [ 'ok', 'up', 'up' ],
          'health: ok, PostgreSQL and Redis up');

# the console: the repository's files (404 while there are none) and
# Chart.js from Debian, all with the console's headers
my $http = HTTP::Tiny->new(timeout => 5, max_redirect => 0);
my $base = "http://127.0.0.1:$port";

sub console_headers {
    my ($res, $what) = @_;
    is($res->{headers}{'content-security-policy'}, $csp, "$what: CSP");
    is($res->{headers}{'x-content-type-options'}, 'nosniff', "$what: nosniff");
    is($res->{headers}{'referrer-policy'}, 'no-referrer',
       "$what: Referrer-Policy");
}

$r = $http->get("$base/console/vendor/chart.js/chart.mjs");
is($r->{status}, 200, 'Chart.js (ES module) is served');
is($r->{headers}{'content-type'}, 'application/javascript',
   'Chart.js: a JavaScript MIME type');
is($r->{content}, slurp('/usr/share/javascript/chart.js/chart.mjs'),
   "Chart.js: Debian's file");
console_headers($r, 'Chart.js');

$r = $http->get("$base/console/");
if (-f "$root/console/index.html") {
    is($r->{status}, 200, 'the console is served');
    is($r->{content}, slurp("$root/console/index.html"),
       'the console: the repository\'s index.html');
} else {
    is($r->{status}, 404, 'no console/index.html in the repository: 404');
}
console_headers($r, 'the console');

$r = $http->get("$base/console");
is($r->{status}, 301, '/console redirects');
is($r->{headers}{location}, "$base/console/", '... to /console/');

# Ctrl-C: SIGINT to the process group, as a terminal sends it
my %pid = (
    nginx      => first_line("$run_dir/nginx/logs/nginx.pid"),
    redis      => first_line("$run_dir/redis.pid"),
    postgresql => first_line("$run_dir/pg/data/postmaster.pid"),
);
ok(alive($pid{$_}), "$_ runs") for sort keys %pid;

kill 'INT', -$demo;
$until = time + 60;
until (waitpid($demo, WNOHANG) == $demo) {
    if (time > $until) {
        kill 'KILL', -$demo;
        waitpid($demo, 0);
        last;
    }
    sleep 0.1;
}
$demo_done = 1;
is($?, 0, 'Ctrl-C: build.sh exits 0');

# daemons this process may have inherited (a subreaper) are reaped here
$until = time + 20;
while (time < $until && grep { alive($_) } values %pid) {
    1 while waitpid(-1, WNOHANG) > 0;
    sleep 0.1;
}
ok(!alive($pid{$_}), "Ctrl-C: $_ stopped") for sort keys %pid;
ok(!-e $run_dir, 'Ctrl-C: the run directory is removed');
ok(!IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 1),
   'Ctrl-C: nothing listens on the port');

done_testing();
