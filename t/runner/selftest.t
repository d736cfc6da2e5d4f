# Self-test of the project's Test::Nginx runner (t/runner/lib).
#
# Runs the fixture suites in t/runner/fixtures/*.suite in subprocesses
# (perl -It/runner/lib ...), captures their TAP and checks that passing
# blocks are reported "ok" and that blocks which must fail are "not ok".
#
#   cd /work/main && prove -v -I t/runner/lib t/runner/selftest.t
#
# Uses TEST_NGINX_PORT if set, else the first free port in 1985..1999, and
# a private temporary server root, so it can run next to the real suites.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IPC::Run qw(run timeout);
use Test::More;
use Time::HiRes qw(time);

my $runner_dir = dirname(abs_path(__FILE__));
my $project    = abs_path("$runner_dir/../..");
my $lib        = "$runner_dir/lib";
chdir $project or die "chdir $project: $!";

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
plan skip_all => "nginx binary $nginx not found" unless -x $nginx || $ENV{TEST_NGINX_BINARY};

my $port     = $ENV{TEST_NGINX_PORT} || find_free_port(1985 .. 1999)
    or plan skip_all => 'no free port in 1985..1999 (set TEST_NGINX_PORT)';
my $servroot = tempdir('shortlink-runner-XXXXXX', TMPDIR => 1, CLEANUP => 1);

diag "using port $port, server root $servroot";

sub port_in_use {
    my $p = shift;
    my $hex = sprintf ':%04X', $p;
    if (open my $fh, '<', '/proc/net/tcp') {
        while (<$fh>) {
            my @f = split;
            return 1 if @f > 3 && $f[1] =~ /\Q$hex\E$/ && $f[3] eq '0A';
        }
        return 0;
    }
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p) ? 1 : 0;
}

sub find_free_port {
    for my $p (@_) {
        next if port_in_use($p);
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p,
                                      Listen => 1, ReuseAddr => 1) or next;
        close $s;
        return $p;
    }
    return undef;
}

# nginx processes started from our private server root
sub leftover_nginx {
    my @pids;
    for my $f (glob '/proc/[0-9]*/cmdline') {
        open my $fh, '<', $f or next;
        local $/;
        my $c = <$fh> // next;
        push @pids, $f =~ m{/proc/(\d+)/} if index($c, $servroot) >= 0;
    }
    return @pids;
}

# Run a fixture; returns a hash with rc, tap lines, parsed tests, stderr.
sub run_suite {
    my ($fixture, %env) = @_;
    local %ENV = %ENV;
    delete @ENV{grep { /^TEST_NGINX_/ } keys %ENV};
    %ENV = (%ENV, TEST_NGINX_BINARY => $nginx, TEST_NGINX_PORT => $port,
            TEST_NGINX_SERVROOT => $servroot, %env);
    my ($out, $err) = ('', '');
    my $t0 = time;
    run([$^X, "-I$lib", "t/runner/fixtures/$fixture"], \undef, \$out, \$err,
        timeout($env{TEST_NGINX_USE_VALGRIND} ? 300 : 120));
    my $rc = $? >> 8;
    my @tests;
    for my $line (split /\n/, $out) {
        next unless $line =~ /^(not )?ok (\d+)(?: - (.*?))?(?:\s*(?<!\\)# (skip|TODO)\b\s*(.*))?$/i;
        push @tests, { ok => !$1, num => $2, desc => $3 // $5 // '', skip => $4 ? 1 : 0 };
    }
    my ($planned) = $out =~ /^1\.\.(\d+)/m;
    return { rc => $rc, out => $out, err => $err, tests => \@tests, planned => $planned,
             bail => ($out =~ /^Bail out!\s*(.*)$/m ? $1 : undef), secs => time - $t0 };
}

sub show { my $r = shift; diag "--- stdout:\n$r->{out}\n--- stderr:\n$r->{err}" }

# All tests of a run are ok, the plan matches, and nginx is gone afterwards.
sub all_ok {
    my ($r, $label, $count) = @_;
    my @bad = grep { !$_->{ok} } @{ $r->{tests} };
    my $good = is(scalar(@bad), 0, "$label: no failing test")
             & is($r->{rc}, 0, "$label: exit code 0")
             & ok(!defined $r->{bail}, "$label: no bail out");
    $good &= is(scalar(@{ $r->{tests} }), $count, "$label: $count tests ran") if defined $count;
    $good &= is($r->{planned}, scalar(@{ $r->{tests} }), "$label: plan matches tests run");
    show($r) unless $good;
    nginx_gone($label);
}

sub nginx_gone {
    my $label = shift;
    ok(!port_in_use($port), "$label: nothing listens on port $port afterwards");
    is_deeply([leftover_nginx()], [], "$label: no nginx process left behind");
}

sub find_tests {
    my ($r, $re) = @_;
    return grep { $_->{desc} =~ $re } @{ $r->{tests} };
}

# --- blocks that must pass ---------------------------------------------------

{
    my $r = run_suite('pass.suite');
    all_ok($r, 'pass.suite', 58);
    ok($r->{secs} < 20, sprintf 'pass.suite runs quickly (%.2fs)', $r->{secs});
    is(scalar(find_tests($r, qr/TEST 2: .* - header X-Absent not present/)), 2,
       'pass.suite: "!Name" header check emitted per repetition');
    is(scalar(find_tests($r, qr/TEST 7: .* - grep_error_log_out \(req [01]\)/)), 2,
       'pass.suite: grep_error_log_out checked per repetition');
}

{
    my $r = run_suite('restart.suite');
    all_ok($r, 'restart.suite');
    my @hit = find_tests($r, qr/^the same config is restarted for the next block$/);
    ok(@hit == 1 && $hit[0]{ok},
       'restart.suite: nginx restarts for every block by default, as upstream');
}

{
    my $r = run_suite('features.suite');
    all_ok($r, 'features.suite');
    for my $t ('a block without --- config reuses the running nginx',
               'a changed config restarts nginx',
               'an identical config does not restart nginx',
               '--- init ran once') {
        my @hit = find_tests($r, qr/^\Q$t\E$/);
        ok(@hit == 1 && $hit[0]{ok}, "features.suite: $t");
    }
    is(scalar(grep { $_->{desc} =~ /TEST 1: .* - status code ok/ } @{ $r->{tests} }), 3,
       'features.suite: request eval array gives one status check per request');
    is(scalar(grep { $_->{desc} =~ /TEST 2: .* - status code ok/ } @{ $r->{tests} }), 2,
       'features.suite: pipelined requests give one status check per response');
    my @abort = find_tests($r, qr/TEST 15: /);
    ok(@abort == 2 && !grep({ !$_->{skip} } @abort),
       'features.suite: abort+timeout without a response skips the response checks');
    ok((grep { $_->{ok} } find_tests($r, qr/TEST 7: .*client prematurely closed/)) == 1,
       'features.suite: --- wait then error_log after a client abort');
    ok((grep { $_->{ok} } find_tests($r, qr/TEST 9: .*SIGQUIT/)) == 1,
       'features.suite: shutdown_error_log sees the shutdown messages');
}

# --- where upstream is strict (issue 11): one block per behaviour ------------

{
    my $r = run_suite('upstream.suite');
    all_ok($r, 'upstream.suite', 24);
    my @want = (
        [qr/TEST 1: .*response_body_like/, '1. no $TEST_NGINX_* expansion in request or more_headers'],
        [qr/TEST 2: .*X-Http-Config not present/, '2. a changed http_config alone does not restart nginx'],
        [qr/^TEST 2 and 3 talked to the same nginx$/, '2. the same nginx served TEST 2 and 3'],
        [qr/TEST 3: .*m=block1/, '3. the log window starts at the last start, not at the block'],
        [qr/^nginx \(\d+\) still runs after run_tests\(\) returns$/,
         '4. nginx still runs after run_tests() returns'],
        [qr/TEST 4: .*response_body_like/, '5. a pipelined HEAD response takes the next bytes as body'],
        [qr/^five requests with log reads took/, '6. every log read waits 3 x TEST_NGINX_SLEEP'],
    );
    for my $w (@want) {
        my @hit = find_tests($r, $w->[0]);
        ok(@hit && !grep({ !$_->{ok} } @hit), "upstream.suite: $w->[1]");
    }
}

# --- blocks that must fail ---------------------------------------------------

{
    my $r = run_suite('fail.suite');
    my %must_fail = (
        1  => qr/ - status code ok$/,
        2  => qr/ - response_body - response is expected/,
        3  => qr/pattern "this string never appears in the log" should match a line/,
        4  => qr/pattern "http request line" should not match any line/,
        5  => qr/ - header X-Foo ok$/,
        6  => qr/ - header X-Foo not present in the raw headers$/,
        7  => qr/ - response_body_like - response is expected/,
        8  => qr/^ERROR: client socket timed out - /,
        9  => qr/ - grep_error_log_out \(req 0\)$/,
        10 => qr/ - header X-Foo like ok$/,
        11 => qr/pattern "no such shutdown message" should match a line in error.log$/,
        12 => qr/ - status code ok$/,
        13 => qr/pattern "GET \/not-this-one" should match a line in access.log/,
        15 => qr/pattern "mark=fourteen" should not match any line in error.log/,
    );
    my (%failed, @unexpected);
    for my $t (@{ $r->{tests} }) {
        next if $t->{ok};
        my ($n) = $t->{desc} =~ /TEST (\d+):/;
        if (defined $n && $must_fail{$n} && $t->{desc} =~ $must_fail{$n}) {
            $failed{$n}++;
        } else {
            push @unexpected, $t->{desc};
        }
    }
    for my $n (sort { $a <=> $b } keys %must_fail) {
        is($failed{$n}, 1, "fail.suite: TEST $n reports exactly its expected failure");
    }
    is_deeply(\@unexpected, [], 'fail.suite: no other check failed');
    is(scalar(@{ $r->{tests} }), 30, 'fail.suite: 30 tests ran');
    isnt($r->{rc}, 0, 'fail.suite: non-zero exit code');
    ok(!defined $r->{bail}, 'fail.suite: no bail out');
    nginx_gone('fail.suite');
}

# --- must_die ------------------------------------------------------------------

{
    my $r = run_suite('must_die.suite');
    all_ok($r, 'must_die.suite', 7);
    is(scalar(find_tests($r, qr/ - die as expected$/)), 1, 'must_die.suite: "die as expected"');
    is(scalar(find_tests($r, qr/ - die with the expected exit code$/)), 1,
       'must_die.suite: "--- must_die: 1" compares the exit code');

    $r = run_suite('must_die_fails.suite');
    my @t = @{ $r->{tests} };
    ok(@t == 1 && !$t[0]{ok} && $t[0]{desc} =~ / - die as expected$/,
       'must_die_fails.suite: a config that starts fine is "not ok" under --- must_die')
        or show($r);
    nginx_gone('must_die_fails.suite');

    $r = run_suite('load_module.suite',
                   TEST_NGINX_LOAD_MODULES => '/nonexistent/ngx_fake_module.so');
    all_ok($r, 'load_module.suite', 2);
    open my $fh, '<', "$servroot/conf/nginx.conf" or die $!;
    my $first = <$fh>;
    is($first, "load_module /nonexistent/ngx_fake_module.so;\n",
       'TEST_NGINX_LOAD_MODULES: load_module lines at the top of nginx.conf');
}

# --- block control ---------------------------------------------------------------

{
    my $r = run_suite('only.suite');
    all_ok($r, 'only.suite', 2);
    is(scalar(find_tests($r, qr/TEST 2: the only one/)), 2, 'only.suite: only the ONLY block ran');

    $r = run_suite('skip_last.suite');
    all_ok($r, 'skip_last.suite', 12);
    is(scalar(find_tests($r, qr/TEST [24]:/)), 0, 'skip_last.suite: SKIP and post-LAST blocks did not run');
}

# --- environment ------------------------------------------------------------------

{
    my $r = run_suite('missing_env.suite');
    like($r->{bail} // '', qr/No environment TEST_NGINX_SURELY_UNSET_VAR defined/,
         'missing_env.suite: an unset $TEST_NGINX_* variable bails out') or show($r);
    isnt($r->{rc}, 0, 'missing_env.suite: non-zero exit code');
    nginx_gone('missing_env.suite');

    $r = run_suite('conf.suite');
    all_ok($r, 'conf.suite', 2);
    open my $fh, '<', "$servroot/conf/nginx.conf" or die $!;
    my $conf = do { local $/; <$fh> };
    like($conf, qr/^daemon off;$/m, 'nginx.conf: daemon off');
    like($conf, qr/^master_process on;$/m, 'nginx.conf: workers(2) turns the master on');
    like($conf, qr/^worker_processes 2;$/m, 'nginx.conf: worker_processes 2');
    like($conf, qr/^error_log \Q$servroot\E\/logs\/error.log warn;$/m, 'nginx.conf: log_level()');
    like($conf, qr/^pid \Q$servroot\E\/logs\/nginx.pid;$/m, 'nginx.conf: pid file');
    like($conf, qr/^env SHORTLINK_TEST_ENV=xyz;$/m, 'nginx.conf: env_to_nginx()');
    like($conf, qr/^env 'SHORTLINK_SPACED=a b';$/m, 'nginx.conf: env_to_nginx() quotes spaces');
    like($conf, qr/worker_connections 1024;/, 'nginx.conf: worker_connections 1024');
    like($conf, qr/listen 127\.0\.0\.1:$port;/, 'nginx.conf: listens on 127.0.0.1:port');
    unlike($conf, qr/root \Q$servroot\E\/html;/, 'nginx.conf: no_root_location()');
    if ($> == 0) {
        like($conf, qr/^user root;$/m, 'nginx.conf: user root when running as root');
    }
}

# --- reload and valgrind modes ------------------------------------------------------

{
    my $r = run_suite('hup.suite', TEST_NGINX_USE_HUP => 1);
    all_ok($r, 'hup.suite (TEST_NGINX_USE_HUP=1)', 8);
}

SKIP: {
    skip 'valgrind not installed', 1
        unless grep { -x "$_/valgrind" } split /:/, $ENV{PATH} // '';
    skip 'TEST_RUNNER_SKIP_VALGRIND set', 1 if $ENV{TEST_RUNNER_SKIP_VALGRIND};
    my $r = run_suite('valgrind.suite', TEST_NGINX_USE_VALGRIND => 1);
    all_ok($r, 'valgrind.suite (TEST_NGINX_USE_VALGRIND=1)', 4);
}

done_testing();
