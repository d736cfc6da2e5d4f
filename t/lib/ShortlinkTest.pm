package ShortlinkTest;

# Helpers the suites share: talk to the throw-away PostgreSQL that
# `./build.sh test` started (psql with the DSN from TEST_NGINX_PG_DSN), stop
# and start it, and hold locks in the background.  Plain Perl, usable under
# upstream Test::Nginx as well as under t/runner.

use strict;
use warnings;

use Exporter 'import';
use POSIX ':sys_wait_h';
use Time::HiRes qw(sleep);

our @EXPORT = qw(sql sql_value sql_rows sql_bg pg_stop pg_start pg_wait_bg
                 silent_listener redis redis_stop redis_start wait_until
                 refuse_clicks allow_clicks metrics_text http_get
                 sql_copy);

my @background;

sub _dsn {
    my $dsn = $ENV{TEST_NGINX_PG_DSN}
        or die "TEST_NGINX_PG_DSN is not set: run the suites with ./build.sh test\n";
    return $dsn;
}

# run SQL, die with psql's message if it fails; returns psql's output
sub sql {
    my ($sql) = @_;
    my $out = _psql($sql);
    return $out;
}

sub sql_value {
    my ($sql) = @_;
    my $out = _psql($sql, '-At');
    chomp $out;
    return $out;
}

# rows as array refs of column values (no NULLs told apart from '')
sub sql_rows {
    my ($sql) = @_;
    my $out = _psql($sql, '-At', '-F', "\x1f");
    return [ map { [ split /\x1f/, $_, -1 ] } split /\n/, $out ];
}

sub _psql {
    my ($sql, @opts) = @_;
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', @opts,
             _dsn(), '-c', $sql;
        exit 127;
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    die "psql failed ($?): $out\n" if $?;
    return $out;
}

# run SQL in the background (e.g. hold a lock); returns at once
sub sql_bg {
    my ($sql) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        exec 'psql', '-X', '-q', _dsn(), '-c', $sql;
        exit 127;
    }
    push @background, $pid;
    return $pid;
}

sub pg_wait_bg {
    waitpid($_, 0) for @background;
    @background = ();
}

sub _pg_ctl {
    my (@args) = @_;
    my $bin = $ENV{SHORTLINK_PG_BIN} or die "SHORTLINK_PG_BIN is not set\n";
    my $data = $ENV{SHORTLINK_PG_DATA} or die "SHORTLINK_PG_DATA is not set\n";
    my @cmd = ("$bin/pg_ctl", '-D', $data, '-w', @args);
    unshift @cmd, 'runuser', '-u', 'postgres', '--' if $> == 0;
    system(@cmd) == 0 or die "pg_ctl @args failed\n";
}

sub pg_stop {
    _pg_ctl('-m', 'fast', 'stop');
}

# pg_ctl keeps the options the server was last started with
sub pg_start {
    my $log = $ENV{SHORTLINK_PG_LOG} // '/dev/null';
    _pg_ctl('-l', $log, 'start');
}

# redis-cli against the test Redis; returns its output without the newline
sub redis {
    my (@args) = @_;
    my $port = $ENV{TEST_NGINX_REDIS_PORT} or die "TEST_NGINX_REDIS_PORT is not set\n";
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>', '/dev/null';
        exec 'redis-cli', '-h', '127.0.0.1', '-p', $port, @args;
        exit 127;
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    $out =~ s/\n\z//;
    return $out;
}

sub redis_stop {
    redis('shutdown', 'nosave');
    sleep 0.2;
}

sub redis_start {
    my $dir = $ENV{SHORTLINK_REDIS_DIR} or die "SHORTLINK_REDIS_DIR is not set\n";
    system('redis-server', "$dir/redis.conf") == 0 or die "redis-server failed\n";
    wait_until(sub { redis('ping') eq 'PONG' }, 2.5);
}

# poll $cond every 0.1 s (or $step) for up to $seconds; returns whether it
# became true.  The caller still asserts what it waited for
sub wait_until {
    my ($cond, $seconds, $step) = @_;
    my $deadline = Time::HiRes::time() + $seconds;
    for (;;) {
        return 1 if $cond->();
        return 0 if Time::HiRes::time() >= $deadline;
        sleep($step // 0.1);
    }
}

# PostgreSQL refuses every click whose code is LIKE $pattern (not a data
# error: nginx keeps the batch and sends it again) until allow_clicks();
# the trigger is dropped when the suite's process ends (not in a child)
my $refusing = 0;

sub refuse_clicks {
    my ($pattern) = @_;
    $refusing = $$;
    sql(qq{
        CREATE TABLE IF NOT EXISTS public.t_refuse_clicks (pattern text);
        DELETE FROM public.t_refuse_clicks;
        INSERT INTO public.t_refuse_clicks VALUES ('$pattern');
        CREATE OR REPLACE FUNCTION public.t_refuse_clicks() RETURNS trigger
        LANGUAGE plpgsql AS \$\$
        BEGIN
            IF EXISTS (SELECT FROM public.t_refuse_clicks r
                        WHERE NEW.code LIKE r.pattern) THEN
                RAISE EXCEPTION 'test: clicks of % refused', NEW.code;
            END IF;
            RETURN NEW;
        END;
        \$\$;
        DROP TRIGGER IF EXISTS t_refuse_clicks ON shortlink.clicks;
        CREATE TRIGGER t_refuse_clicks BEFORE INSERT ON shortlink.clicks
            FOR EACH ROW EXECUTE FUNCTION public.t_refuse_clicks();
    });
}

sub allow_clicks {
    sql("DELETE FROM public.t_refuse_clicks");
}

END {
    if ($refusing == $$) {
        local $?;
        eval {
            sql(q{DROP TRIGGER IF EXISTS t_refuse_clicks ON shortlink.clicks;
                  DROP FUNCTION IF EXISTS public.t_refuse_clicks();
                  DROP TABLE IF EXISTS public.t_refuse_clicks});
        };
    }
}

# a TCP port that accepts connections (the kernel completes the handshake)
# and never says a word: a hung database
sub silent_listener {
    require IO::Socket::INET;
    my $sock = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 64,
        Proto => 'tcp', ReuseAddr => 1,
    ) or die "listen: $!";
    return $sock;
}

# the test nginx's /metrics page (the suite's config serves it there), or
# '' when nothing answers
sub metrics_text {
    require IO::Socket::INET;
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => Test::Nginx::Util::server_port_for_client(),
        Timeout => 5) or return '';
    print $sock "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    return <$sock> // '';
}

# GET (or another method) over HTTP/1.0 from a --- init block or after a
# request: to the suite's nginx, or to another one when port is given.
# Returns { status, headers => { lower-case name => value }, body }.
sub http_get {
    my ($uri, %opt) = @_;
    require IO::Socket::INET;
    my $port = $opt{port} // Test::Nginx::Util::server_port_for_client();
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Timeout => 5)
        or return { status => 0, headers => {}, body => '' };
    my $method = $opt{method} // 'GET';
    my $extra = join '', map { "$_\r\n" } @{ $opt{headers} // [] };
    print $sock "$method $uri HTTP/1.0\r\nHost: localhost\r\n$extra\r\n";
    my $resp = do { local $/; <$sock> } // '';
    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
    my %h;
    for my $line (split /\r\n/, $head // '') {
        $h{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*)$/;
    }
    return { status => $status // 0, headers => \%h, body => $body // '' };
}

# COPY rows (array refs of values, undef for NULL) into $table's $columns
# (a list such as "a, b, c") with one psql; dies with psql's message
sub sql_copy {
    my ($table, $columns, $rows) = @_;
    my $out = "/tmp/shortlink-copy.$$.out";
    my $pid = open(my $fh, '|-');
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', _dsn(),
             '-c', "COPY $table ($columns) FROM STDIN";
        exit 127;
    }
    for my $row (@$rows) {
        print $fh join("\t", map {
            my $v = $_;
            if (defined $v) {
                $v =~ s/\\/\\\\/g;
                $v =~ s/\t/\\t/g;
                $v =~ s/\n/\\n/g;
                $v =~ s/\r/\\r/g;
            }
            defined $v ? $v : '\\N';
        } @$row), "\n";
    }
    my $ok = close $fh;
    my $msg = do { local (@ARGV, $/) = ($out); <> } // '';
    unlink $out;
    die "psql COPY into $table failed ($?): $msg\n" unless $ok;
    return scalar @$rows;
}

END { pg_wait_bg() }

1;
