package Test::Nginx::Util;

# Test::Nginx::Util - engine of the project's Test::Nginx::Socket runner.
#
# This is a clean-room implementation of the *documented* interface of
# upstream Test::Nginx (openresty/test-nginx v0.33, Test::Nginx::Socket POD):
# same section names, preamble functions, environment variables and TAP
# test accounting, so that suites written for upstream run unchanged here
# (and vice versa).  No upstream code was copied.
#
# Differences from upstream worth knowing (see t/runner/README.md):
#   * nginx runs in the foreground ("daemon off") as our own child and is
#     reaped with waitpid(), so restarts take milliseconds;
#   * where upstream is strict, so is this runner (a suite that passes here
#     must pass there): the restart rule (only --- config counts), the
#     error-log window (since the last start), nginx stopped only at exit,
#     no $TEST_NGINX_* in request or more_headers, HEAD in pipelined
#     batches, and the 3 x TEST_NGINX_SLEEP wait before each log read;
#   * the server listens on 127.0.0.1:$port only;
#   * HTTP/2, HTTP/3, curl, stap, UDP/TCP mock servers, leak checking and
#     benchmarking modes are not implemented.

use strict;
use warnings;

use Exporter 'import';
use Cwd ();
use Errno qw(EAGAIN EWOULDBLOCK EINTR EINPROGRESS);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use HTTP::Headers ();
use IO::Select ();
use IO::Socket::INET ();
use List::Util qw(shuffle);
use POSIX qw(:sys_wait_h);
use Socket qw(SOL_SOCKET SO_REUSEADDR);
use Test::Builder ();
use Test::LongString ();
use Test::More ();
use Time::HiRes qw(sleep time);

our $VERSION = '0.33';

our @EXPORT = qw(
    run_tests run_test repeat_each no_shuffle use_hup
    workers master_on master_off master_process_enabled
    log_level no_long_string no_root_location
    check_accum_error_log env_to_nginx html_dir server_root
    server_port server_port_for_client server_addr server_name
    worker_connections timeout config_preamble
    add_block_preprocessor add_cleanup_handler add_test_cleanup_handler
    add_response_body_check bail_out is_str
    expand_env_in_text parse_time
);

# ---------------------------------------------------------------------------
# Settings (preamble functions and environment)
# ---------------------------------------------------------------------------

our $RepeatEach          = 1;
our $NoShuffle           = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $Workers             = 1;
our $WorkerConnections   = 1024;
our $LogLevel            = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcess       = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $UseHup              = $ENV{TEST_NGINX_USE_HUP};
our $UseValgrind         = $ENV{TEST_NGINX_USE_VALGRIND};
our $NginxBinary         = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $ServerAddr          = '127.0.0.1';
our $ServerName          = 'localhost';
our $ServerPort          = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $Timeout             = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep      = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $LoadModules         = $ENV{TEST_NGINX_LOAD_MODULES};
our $EventType           = $ENV{TEST_NGINX_EVENT_TYPE};
our $PostponeOutput      = $ENV{TEST_NGINX_POSTPONE_OUTPUT};
our $CheckAccumErrLog    = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
# upstream's default: restart for every block (0 keeps nginx between blocks
# that share a config)
our $ForceRestart        = $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} // 1;
our $NoClean             = $ENV{TEST_NGINX_NO_CLEAN};
our $Verbose             = $ENV{TEST_NGINX_VERBOSE};
our $NoLongString;
our $NoRootLocation;
our $ConfigPreamble      = '';

our @EnvToNginx;
our @BlockPreprocessors;
our @CleanupHandlers;
our @TestCleanupHandlers;
our @ResponseBodyChecks;

our $ServRoot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT} || 't/servroot');
$ServRoot =~ s{/+$}{};
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_HTML_DIR} //= $HtmlDir;

# Name of the extra virtual server used to confirm HUP reloads.
my $VersionHost = 'test-nginx-config-version';

# ---------------------------------------------------------------------------
# Runtime state
# ---------------------------------------------------------------------------

my $ParentPid = $$;
my $NginxPid;           # our nginx child (master or single process)
my $PrevConfig;         # last "--- config" seen (inherited by later blocks)
my $NginxVersion;       # e.g. 1022001
my $NginxV = '';        # `nginx -V` output
my $ErrLogPos = 0;      # where the next error-log check starts reading
my $PrevBlock;          # the block run before the current one
my $BailedOut;
my %RandPorts;          # $TEST_NGINX_RAND_PORT_N values for this block
my %ValgrindPrinted;    # valgrind log file => bytes already shown
my $TotalConnectFailures = 0;

# ---------------------------------------------------------------------------
# Preamble functions
# ---------------------------------------------------------------------------

sub repeat_each (@) {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub no_shuffle ()       { $NoShuffle = 1 }
sub use_hup ()          { $UseHup = 1 }
sub no_long_string ()   { $NoLongString = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub html_dir ()         { return $HtmlDir }
sub server_root ()      { return $ServRoot }
sub config_preamble ($) { $ConfigPreamble = shift }

sub workers (@) {
    if (@_) {
        $Workers = shift;
        master_on() if $Workers > 1;
    }
    return $Workers;
}

sub master_on ()  { $MasterProcess = 'on' }
sub master_off () { $MasterProcess = 'off' }

sub master_process_enabled (@) {
    $MasterProcess = $_[0] ? 'on' : 'off' if @_;
    return $MasterProcess eq 'on';
}

sub log_level (@) {
    $LogLevel = shift if @_;
    return $LogLevel;
}

sub worker_connections (@) {
    $WorkerConnections = shift if @_;
    return $WorkerConnections;
}

sub timeout (@) {
    $Timeout = shift if @_;
    return $Timeout;
}

sub server_port (@) {
    $ServerPort = shift if @_;
    return $ServerPort;
}

sub server_port_for_client (@) {
    $ServerPortForClient = shift if @_;
    return $ServerPortForClient;
}

sub server_addr (@) {
    $ServerAddr = shift if @_;
    return $ServerAddr;
}

sub server_name (@) {
    $ServerName = shift if @_;
    return $ServerName;
}

sub env_to_nginx (@) { push @EnvToNginx, @_ }

sub add_block_preprocessor (&) { push @BlockPreprocessors, shift }
sub add_cleanup_handler ($)    { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

sub bail_out (@) {
    $BailedOut = 1;
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# String comparison honouring no_long_string() and qr// expectations.
sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    if ($NoLongString) {
        return Test::More::is($got, $expected, $desc);
    }
    return Test::LongString::is_string($got, $expected, $desc);
}

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

sub diag_warn { print STDERR map { "# $_" } map { /\n\z/ ? $_ : "$_\n" } @_ }

# "0.5" / "500ms" / "2s" => seconds (undef stays undef)
sub parse_time ($) {
    my $t = shift;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)\s*ms$/;
    return $1 + 0    if $t =~ /^([\d.]+)\s*s?$/;
    return $t;
}

sub slurp_from {
    my ($file, $pos) = @_;
    open my $fh, '<', $file or return ('', 0);
    binmode $fh;
    my $size = -s $fh;
    $pos = 0 if !defined $pos || $pos > $size;
    seek $fh, $pos, 0;
    local $/;
    my $data = <$fh> // '';
    my $end = tell $fh;
    close $fh;
    return ($data, $end);
}

sub file_size { my $s = -s $_[0]; return $s // 0 }

sub split_lines { my $d = shift; return [ $d =~ /([^\n]*\n|[^\n]+\z)/g ] }

sub fmt_str {
    my $s = shift;
    $s = "$s";
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub pick_rand_port {
    my %used = ($ServerPort => 1, map { $_ => 1 } values %RandPorts);
    for (1 .. 1000) {
        my $port = 20000 + int(rand(40000));
        next if $used{$port};
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or next;
        close $s;
        return $port;
    }
    return undef;
}

# Replace $TEST_NGINX_FOO by $ENV{TEST_NGINX_FOO}; unset => bail out.
sub expand_env_in_text ($$;$) {
    my ($text, $name) = @_;
    return $text if !defined $text || ref $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{env_value($1, $name)}ge;
    return $text;
}

sub env_value {
    my ($var, $name) = @_;
    if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
        $RandPorts{$var} //= pick_rand_port()
            // bail_out("$name - cannot find a free port for \$$var\n");
        return $RandPorts{$var};
    }
    return $ENV{$var} if defined $ENV{$var};
    my %builtin = (
        TEST_NGINX_SERVER_PORT => $ServerPort,
        TEST_NGINX_CLIENT_PORT => $ServerPortForClient,
        TEST_NGINX_HTML_DIR    => $HtmlDir,
        TEST_NGINX_SERVER_ROOT => $ServRoot,
    );
    return $builtin{$var} if defined $builtin{$var};
    bail_out("$name - No environment $var defined.\n");
}

# Value for request number $idx: arrays are required when the block sends
# several requests (upstream semantics).
sub get_indexed_value {
    my ($name, $value, $idx, $need_array) = @_;
    my $is_array = ref $value && ref $value eq 'ARRAY';
    if ($need_array) {
        return $value->[$idx] if $is_array;
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    return $is_array ? $value->[0] : $value;
}

# Turn a pattern section value (text lines, qr//, or array) into a list.
sub pattern_list {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [ grep { length } split /\n+/, $pats ];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub line_matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub value_mentions {
    my ($val, $str) = @_;
    return 0 unless defined $val;
    for my $v (ref $val eq 'ARRAY' ? @$val : ($val)) {
        return 1 if defined $v && index("$v", $str) >= 0;
    }
    return 0;
}

# ---------------------------------------------------------------------------
# nginx binary, configuration and server root
# ---------------------------------------------------------------------------

sub probe_nginx {
    return if $NginxV;
    $NginxV = `$NginxBinary -V 2>&1` // '';
    if ($NginxV =~ m{nginx version: \S+?/(\d+)\.(\d+)\.(\d+)}) {
        $NginxVersion = $1 * 1000000 + $2 * 1000 + $3;
    } elsif ($? != 0) {
        bail_out("cannot run nginx binary \"$NginxBinary\" "
                 . "(set TEST_NGINX_BINARY or PATH): $NginxV");
    }
}

sub use_master { return $UseHup || $MasterProcess eq 'on' || $Workers > 1 }

sub gen_config {
    my ($block, $config, %opt) = @_;
    my $name = $block->name;

    my $http_config      = expand_env_in_text($block->http_config // '', $name);
    my $main_config      = expand_env_in_text($block->main_config // '', $name);
    my $post_main_config = expand_env_in_text($block->post_main_config // '', $name);
    my $server_name      = $block->server_name // $ServerName;
    my $log_level        = $block->log_level // $LogLevel;
    $log_level =~ s/^\s+|\s+$//g;
    my $err_log_file     = expand_env_in_text($block->error_log_file // $ErrLogFile, $name);
    my $master           = ($opt{master} // use_master()) ? 'on' : 'off';
    $server_name =~ s/^\s+|\s+$//g;
    $server_name =~ s/(['\\])/\\$1/g;

    my $c = '';
    if ($LoadModules) {
        $c .= "load_module $_;\n" for grep { length } split /\s+/, $LoadModules;
    }
    $c .= "daemon off;\n";
    $c .= "master_process $master;\n";
    $c .= "worker_processes $Workers;\n";
    $c .= "user root;\n" if $> == 0;
    $c .= "error_log $err_log_file $log_level;\n";
    $c .= "pid $PidFile;\n";
    for my $v (qw(LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS), @EnvToNginx) {
        $c .= $v =~ /\s/ ? "env '$v';\n" : "env $v;\n";
    }
    $c .= "\n$main_config\n" if length $main_config;
    $c .= "\nevents {\n    accept_mutex off;\n    worker_connections $WorkerConnections;\n";
    $c .= "    use $EventType;\n" if $EventType;
    $c .= "}\n\nhttp {\n";
    $c .= "    access_log $AccLogFile;\n";
    $c .= "    default_type text/plain;\n";
    $c .= "    keepalive_timeout 68;\n";
    for my $t (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if $http_config =~ /\b${t}_temp_path\b/;
        next if $t ne 'client_body' && $t ne 'proxy'
             && $NginxV =~ /--without-http_${t}_module/;
        $c .= "    ${t}_temp_path $ServRoot/${t}_temp;\n";
    }
    if (defined $PostponeOutput && $http_config !~ /\bpostpone_output\b/) {
        $c .= "    postpone_output $PostponeOutput;\n";
    }
    $c .= "\n$http_config\n" if length $http_config;
    $c .= "    server {\n";
    $c .= "        listen $ServerAddr:$ServerPort;\n";
    $c .= "        server_name '$server_name';\n";
    $c .= "        client_max_body_size 30M;\n";
    $c .= "$ConfigPreamble\n" if length $ConfigPreamble;
    $c .= "        # Begin test case config...\n$config\n        # End test case config.\n";
    if (!$NoRootLocation) {
        $c .= "        location / {\n            root $HtmlDir;\n"
            . "            index index.html index.htm;\n        }\n";
    }
    $c .= "    }\n";
    $c .= "\@VERSION_SERVER\@" if $opt{hup};
    $c .= "}\n";
    $c .= "\n$post_main_config\n" if length $post_main_config;
    return $c;
}

sub write_config_text {
    my ($text, $version) = @_;
    my $vs = '';
    if (defined $version) {
        $vs = "    server {\n        listen $ServerAddr:$ServerPort;\n"
            . "        server_name '$VersionHost';\n"
            . "        location = /ver { return 200 '$version'; }\n    }\n";
    }
    $text =~ s/\@VERSION_SERVER\@/$vs/;
    make_path($ConfDir) unless -d $ConfDir;
    open my $out, '>', $ConfFile or bail_out("cannot write $ConfFile: $!");
    print $out $text;
    close $out;
}

sub setup_server_root {
    %ValgrindPrinted = ();
    if (-d $ServRoot) {
        # Only remove what we create ourselves, in case TEST_NGINX_SERVROOT
        # points somewhere precious.
        remove_tree(grep { -e } $ConfDir, $LogDir, $HtmlDir, "$ServRoot/cache",
                    glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
    }
    for my $d ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $d;
        make_path($d) or bail_out("cannot create directory $d: $!");
    }
    open my $out, '>', "$HtmlDir/index.html" or bail_out("cannot write index.html: $!");
    print $out '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $out;
}

sub run_post_setup_server_root {
    my $block = shift;
    my $code = $block->post_setup_server_root;
    return unless defined $code;
    eval "package main; no strict; $code; 1"
        or bail_out($block->name . " - post_setup_server_root failed: $@");
}

sub write_user_files {
    my $block = shift;
    my $name  = $block->name;
    my $files = $block->user_files;
    return unless defined $files && $files ne '';

    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+?))?\s*$/) {
                push @list, [$1, '', $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - --- user_files must be a string or an array ref");
    }

    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        (my $dir = $path) =~ s{/[^/]*$}{};
        make_path($dir) if length $dir && !-d $dir;
        $body = expand_env_in_text($body // '', $name);
        open my $out, '>', $path or bail_out("$name - cannot write $path: $!");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - touch -t '$date' $path failed");
        }
    }
}

# ---------------------------------------------------------------------------
# nginx process management
# ---------------------------------------------------------------------------

sub port_listening {
    my $port = shift;
    my $hex = sprintf '%04X', $port;
    if (open my $fh, '<', '/proc/net/tcp') {
        while (<$fh>) {
            my @f = split;
            return 1 if @f > 3 && $f[1] =~ /:$hex$/ && $f[3] eq '0A';
        }
        return 0;
    }
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $port,
                                  Proto => 'tcp', Timeout => 0.2);
    return $s ? 1 : 0;
}

sub valgrind_cmd {
    return () unless $UseValgrind;
    my @opts = $UseValgrind =~ /^\d+$/
        ? qw(--tool=memcheck --leak-check=full --show-possibly-lost=no --num-callers=30)
        : split ' ', $UseValgrind;
    for my $supp ('t/valgrind.suppress', 'valgrind.suppress') {
        if (-f $supp) {
            push @opts, '--suppressions=' . File::Spec->rel2abs($supp);
            last;
        }
    }
    return ('valgrind', '-q', @opts, "--log-file=$LogDir/valgrind.%p.log");
}

sub nginx_cmd {
    my %opt = @_;
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    push @cmd, '-e', $ErrLogFile if !defined $NginxVersion || $NginxVersion >= 1019005;
    unshift @cmd, valgrind_cmd() unless $opt{no_valgrind};
    return @cmd;
}

sub spawn {
    my ($cmd, $quiet) = @_;
    my $pid = fork;
    bail_out("fork failed: $!") unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';   # never hold the TAP pipe open
        open STDERR, '>', '/dev/null' if $quiet;
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0] failed: $!\n";
        POSIX::_exit(127);
    }
    warn "# spawned nginx ($pid): @$cmd\n" if $Verbose;
    return $pid;
}

sub describe_status {
    my $st = shift;
    return 'exit code ' . ($st >> 8) unless $st & 127;
    return 'signal ' . ($st & 127) . (($st & 128) ? ' (core dumped)' : '');
}

sub wait_child {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return 0 if $r == -1;      # not our child (anymore)
        return undef if time >= $deadline;
        sleep 0.002;
    }
}

# Reap nginx if it died behind our back.
sub check_nginx_alive {
    my $name = shift;
    return 0 unless $NginxPid;
    my $r = waitpid($NginxPid, WNOHANG);
    return 1 if $r == 0;
    my $st = $?;
    diag_warn("WARNING: $name - nginx (pid $NginxPid) exited unexpectedly: "
              . describe_status($st)) if $r == $NginxPid;
    undef $NginxPid;
    report_valgrind($name);
    return 0;
}

sub stop_nginx {
    my $name = shift // 'cleanup';
    return unless $NginxPid;
    my $pid = $NginxPid;
    undef $NginxPid;
    my $grace = $UseValgrind ? 60 : 3;
    my @plan = ($ENV{TEST_NGINX_FAST_SHUTDOWN} ? () : ([QUIT => $grace]),
                [TERM => $UseValgrind ? 20 : 2], [KILL => 5]);
    my $st;
    for my $step (@plan) {
        my ($sig, $secs) = @$step;
        kill $sig, $pid;
        $st = wait_child($pid, $secs);
        last if defined $st;
        diag_warn("WARNING: $name - nginx (pid $pid) ignored SIG$sig for ${secs}s");
    }
    # nginx exits 0 on QUIT/TERM; anything else (e.g. a crash while
    # shutting down) deserves attention.  SIGKILL is our own doing.
    if (defined $st && $st != 0 && ($st & 127) != 9) {
        diag_warn("WARNING: $name - nginx exited with " . describe_status($st));
    }
    report_valgrind($name);
}

sub read_tail {
    my ($file, $lines) = @_;
    my ($data) = slurp_from($file, 0);
    my @l = split /\n/, $data;
    splice @l, 0, @l - $lines if @l > $lines;
    return join '', map { "$_\n" } @l;
}

sub is_zombie {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    my $line = <$fh> // '';
    return $line =~ /^\d+ \(.*\) Z /;
}

# An nginx left running by an earlier TEST_NGINX_NO_CLEAN run on the same
# server root is not our child: stop it through its pid file, but only if
# its command line shows that it runs our nginx.conf.
sub stop_stale_nginx {
    open my $fh, '<', $PidFile or return;
    my ($pid) = (<$fh> // '') =~ /^(\d+)/;
    close $fh;
    return unless $pid && $pid != ($NginxPid // 0);
    my $cmd = proc_cmdline($pid);
    return unless defined $cmd && index($cmd, $ConfFile) >= 0;
    for my $sig (qw(QUIT TERM KILL)) {
        kill $sig, $pid;
        for (1 .. 500) {
            return unless kill 0, $pid;
            return if is_zombie($pid);     # exited, waiting for init to reap it
            sleep 0.01;
        }
    }
}

sub start_nginx {
    my ($block, $conf) = @_;
    my $name = $block->name;
    stop_stale_nginx();
    if (port_listening($ServerPort)) {
        bail_out("$name - port $ServerPort is already in use by another process; "
                 . "set TEST_NGINX_PORT to a free port");
    }
    setup_server_root();
    write_user_files($block);
    run_post_setup_server_root($block);
    write_config_text($conf, use_hup_now() ? new_config_version() : undef);
    my $pid = spawn([nginx_cmd()], defined $block->suppress_stderr);
    my $deadline = time + ($UseValgrind ? 60 : 10);
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) {
            my $st = $?;
            report_valgrind($name);
            bail_out("$name - nginx failed to start (" . describe_status($st) . ")."
                     . " Last lines of $ErrLogFile:\n" . read_tail($ErrLogFile, 20));
        }
        last if port_listening($ServerPort);
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            bail_out("$name - nginx did not start listening on port $ServerPort in time."
                     . " Last lines of $ErrLogFile:\n" . read_tail($ErrLogFile, 20));
        }
        sleep 0.01;
    }
    $NginxPid = $pid;
}

# --- HUP reload support -----------------------------------------------------

sub use_hup_now { return $UseHup }

sub new_config_version {
    return join '', map { ('a' .. 'z', 0 .. 9)[rand 36] } 1 .. 12;
}

sub child_pids {
    my $ppid = shift;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        push @kids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $ppid;
    }
    return @kids;
}

sub proc_cmdline {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/cmdline" or return undef;
    local $/;
    my $c = <$fh> // '';
    $c =~ tr/\0/ /;
    return $c;
}

sub fetch_version {
    my $resp = http_get_raw("GET /ver HTTP/1.0\r\nHost: $VersionHost\r\n\r\n", 1);
    return undef unless defined $resp && $resp =~ /\A\S+ 200 .*?\r\n\r\n(.*)\z/s;
    return $1;
}

sub reload_nginx {
    my ($block, $conf) = @_;
    my $name = $block->name;
    my @old_workers = child_pids($NginxPid);
    write_user_files($block);
    run_post_setup_server_root($block);
    my $version = new_config_version();
    write_config_text($conf, $version);
    # upstream empties the server root before a reload, logs included: the
    # new configuration starts fresh log files
    unlink $ErrLogFile, $AccLogFile;
    kill 'HUP', $NginxPid or bail_out("$name - cannot send HUP to nginx: $!");

    my $deadline = time + ($UseValgrind ? 60 : 10);
    my $ok = 0;
    while (time < $deadline) {
        my $got = fetch_version();
        if (defined $got && $got eq $version) {
            $ok++;
            last if $ok >= 3;
            next;
        }
        $ok = 0;
        if (!check_nginx_alive($name)) {
            bail_out("$name - nginx died during HUP reload. Last lines of $ErrLogFile:\n"
                     . read_tail($ErrLogFile, 20));
        }
        sleep 0.02;
    }
    if ($ok < 3) {
        bail_out("$name - nginx did not pick up the new configuration after HUP."
                 . " Last lines of $ErrLogFile:\n" . read_tail($ErrLogFile, 20));
    }
    # Old workers stop accepting as soon as they start shutting down; wait
    # for that (or their exit) so no request of this block reaches them.
    my $wait_until = time + ($UseValgrind ? 20 : 3);
    while (time < $wait_until) {
        my @busy = grep { my $c = proc_cmdline($_); defined $c && $c ne ''
                          && $c !~ /shutting down/ } @old_workers;
        last unless @busy;
        sleep 0.01;
    }
}

sub report_valgrind {
    my $name = shift // '';
    return unless $UseValgrind;
    for my $f (sort glob "$LogDir/valgrind.*.log") {
        my $seen = $ValgrindPrinted{$f} // 0;
        my $size = file_size($f);
        next if $size <= $seen;
        my ($data) = slurp_from($f, $seen);
        $ValgrindPrinted{$f} = $size;
        next unless $data =~ /\S/;
        print STDERR "# valgrind report ($f) after $name:\n$data";
    }
}

# The suite's cleanup handlers.  As upstream, they run when run_tests()
# returns and again at exit, so they must not mind running twice.
sub run_cleanup_handlers {
    return unless $$ == $ParentPid;
    for my $h (@CleanupHandlers) { eval { $h->() }; warn $@ if $@ }
}

# Stop everything (bail out, signals, exit).
sub cleanup {
    return unless $$ == $ParentPid;
    run_cleanup_handlers();
    if ($NoClean) {
        diag_warn("TEST_NGINX_NO_CLEAN: leaving nginx (pid $NginxPid) running")
            if $NginxPid;
        undef $NginxPid;
        return;
    }
    stop_nginx('cleanup');
}

# As upstream, nginx keeps running after run_tests() returns: it is stopped
# here, at exit, and only then are the last block's shutdown_error_log
# checks made.  Code after run_tests() still talks to the last nginx.
END {
    if ($$ == $ParentPid) {
        local $?;
        cleanup();
        check_prev_block_shutdown_error_log() unless $BailedOut;
        # no plan is made up for a suite that declared none: as under
        # upstream, Test::Base's END then fails it ("No plan found")
    }
}

for my $sig (qw(INT TERM HUP PIPE)) {
    $SIG{$sig} = sub { cleanup(); $SIG{$sig} = 'DEFAULT'; kill $sig, $$ };
}

# ---------------------------------------------------------------------------
# Main loop
# ---------------------------------------------------------------------------

sub run_tests () {
    probe_nginx();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;

    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', "$0 " . ($block->name // ''));
        run_test($block);
        for my $h (@TestCleanupHandlers) { $h->($block) }
        $PrevBlock = $block;
    }

    run_cleanup_handlers();
}

# A block's shutdown_error_log is checked when nginx stops for another
# reason: when the next block restarts it, or at exit.  If the next block
# keeps nginx running, the check is never made (as upstream).
sub check_prev_block_shutdown_error_log {
    my $block = $PrevBlock;
    return unless $block;
    return unless defined $block->shutdown_error_log
               || defined $block->no_shutdown_error_log;
    my $skip;
    $skip = 'the HUP reload mode' if $UseHup;
    $skip = 'TEST_NGINX_NO_CLEAN' if $NoClean;
    check_shutdown_error_log($block, $skip);
}

sub run_test ($) {
    my $block = shift;
    my $name  = $block->name;
    %RandPorts = ();

    return if defined $block->SKIP;

    # Upstream's rule: a block without its own --- config never restarts
    # nginx (it talks to whatever runs); a block with one restarts it when
    # restarts are forced (the default) or when that --- config differs
    # from the one nginx was last started with.  Nothing else counts: a
    # changed http_config, main_config or user_files alone keeps the
    # running nginx, and a dead nginx is not brought back.
    my $config = $block->config;
    my $restart;
    if (!defined $config) {
        bail_out("$name - No '--- config' section specified and could not get "
                 . "previous one") unless defined $PrevConfig;
        $config = $PrevConfig;
        $restart = 0;
    } else {
        $config = expand_env_in_text($config, $name);
        $restart = $ForceRestart || !defined $PrevConfig || $config ne $PrevConfig;
    }

    my ($tests_to_skip, $skip_reason) = skip_spec($block);
    if (defined $tests_to_skip) {
        SKIP: { Test::More::skip("$name - $skip_reason", $tests_to_skip) }
        return;
    }

    if (defined $block->must_die) {
        $PrevConfig = $config;
        stop_nginx($name);
        check_prev_block_shutdown_error_log();
        run_must_die($block, $config);
        return;
    }

    check_nginx_alive($name);
    if ($restart) {
        my $conf = gen_config($block, $config, hup => use_hup_now());
        $PrevConfig = $config;
        if ($NginxPid && use_hup_now()) {
            reload_nginx($block, $conf);
            check_prev_block_shutdown_error_log();
        } else {
            stop_nginx($name);
            check_prev_block_shutdown_error_log();
            start_nginx($block, $conf);
        }
    }

    if (defined(my $init = $block->init)) {
        eval "package main; no strict; $init; 1"
            or bail_out("$name - init failed: $@");
    }

    # The error log is only emptied when nginx (re)starts, and each block's
    # first check reads it from the top: a block that did not restart nginx
    # sees what the blocks before it caused, since the last start.  Later
    # checks in the block read on from the previous one.
    $ErrLogPos = 0;

    for my $rep (0 .. $RepeatEach - 1) {
        run_requests($block, $rep);
    }

    report_valgrind($name);
}

# Parses --- skip_eval / --- skip_nginx; returns (count, reason) if skipping.
sub skip_spec {
    my $block = shift;
    my $name = $block->name;
    if (defined(my $spec = $block->skip_eval)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*?)\s*$/s
            or bail_out("$name - invalid --- skip_eval spec: $spec");
        my ($n, $code) = ($1, $2);
        my $r = eval "package main; $code";
        bail_out("$name - skip_eval failed: $@") if $@;
        return ($n, 'skip_eval') if $r;
    }
    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ /^\s*(\d+)\s*:\s*([<>]=?|==|!=)\s*(\d+)\.(\d+)\.(\d+)\s*(?::\s*(.*?))?\s*$/s
            or bail_out("$name - invalid --- skip_nginx spec: $spec");
        my ($n, $op, $want, $why) = ($1, $2, $3 * 1000000 + $4 * 1000 + $5, $6);
        my $v = $NginxVersion // 0;
        my $hit = $op eq '<' ? $v < $want : $op eq '<=' ? $v <= $want
                : $op eq '>' ? $v > $want : $op eq '>=' ? $v >= $want
                : $op eq '==' ? $v == $want : $v != $want;
        return ($n, $why || "nginx version $op $3.$4.$5") if $hit;
    }
    return;
}

sub run_must_die {
    my ($block, $config) = @_;
    my $name = $block->name;
    my $must_die = $block->must_die;
    $must_die =~ s/^\s+|\s+$//g;

    stop_nginx($name);
    local $UseValgrind;
    setup_server_root();
    write_user_files($block);
    run_post_setup_server_root($block);
    write_config_text(gen_config($block, $config, master => $MasterProcess eq 'on'
                                                          || $Workers > 1));
    if (defined(my $init = $block->init)) {
        eval "package main; no strict; $init; 1"
            or bail_out("$name - init failed: $@");
    }

    $ErrLogPos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        my $pid = spawn([nginx_cmd(no_valgrind => 1)], defined $block->suppress_stderr);
        my $st;
        my $deadline = time + 5;
        while (time < $deadline) {
            $st = wait_child($pid, 0.05);
            last if defined $st;
            if (port_listening($ServerPort)) {
                # it is serving; give it a moment to die anyway
                $st = wait_child($pid, 0.2);
                last;
            }
        }
        if (!defined $st) {
            diag_warn("WARNING: $name - nginx must die but it does not; killing it");
            $NginxPid = $pid;
            stop_nginx($name);
            $st = 0;
        }
        if (($st & 127) == 0 && ($st >> 8) == 127) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($st & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif ($must_die =~ /^\d+$/) {
            Test::More::is($st >> 8, $must_die, "$name - die with the expected exit code");
        } else {
            Test::More::isnt($st, 0, "$name - die as expected");
        }
        check_error_log($block, $rep, 0);
    }
}

# ---------------------------------------------------------------------------
# Building requests
# ---------------------------------------------------------------------------

# As upstream, $TEST_NGINX_* is not expanded here: a header that needs a
# variable's value comes from "--- more_headers eval" or a preprocessor.
sub parse_more_headers {
    my ($text, $name) = @_;
    $text //= '';
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $text) {
        next if $line =~ /^\s*#/ || $line !~ /\S/;
        $line =~ s/\r$//;
        my ($k, $v) = split /:\s*/, $line, 2;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# Build one HTTP request from the "--- request" grammar.  $packets is a list
# of strings or { value => ..., delay_before => ... } hashes whose
# concatenation is "METHOD [URI [PROTO]]\n[body]".  Returns the list of
# packets to write, with packet boundaries kept inside the body.
sub build_request {
    my ($name, $packets, $more_headers, $conn) = @_;
    my @pk = map { ref $_ ? {%$_} : { value => $_ // '' } } @$packets;
    my $text = join '', map { $_->{value} } @pk;

    my $orig_len = length $text;
    1 while $text =~ s/^\s*#[^\n]*\n//;
    $text =~ s/^\s+//;
    my $skipped = $orig_len - length $text;

    my ($first, $body) = $text =~ /\A([^\n]*)(?:\n(.*))?\z/s;
    bail_out("$name - Request line should be non-empty") unless defined $first && $first =~ /\S/;
    my $first_len = $skipped + length($first) + (defined $body ? 1 : 0);
    $body //= '';
    $first =~ s/\r$//;
    my @parts = split ' ', $first;
    bail_out("$name - Request line is not valid. Should be 'meth [url [version]]' "
             . "but got \"$first\".") if @parts > 3;
    my ($method, $uri, $proto) = @parts;
    $uri   //= '/';
    $proto //= 'HTTP/1.1';

    my ($hdrs, $chunked) = parse_more_headers($more_headers, $name);
    my $body_lead = 0;
    my $len_hdr = '';
    if (!$chunked && $body ne '' && $hdrs !~ /^Content-Length:/mi) {
        my $before = length $body;
        $body =~ s/^\s+//;
        $body_lead = $before - length $body;
        $body =~ s/\s+$//;
        $len_hdr = 'Content-Length: ' . length($body) . "\r\n";
    }
    my $head = "$method $uri $proto\r\n";
    $head .= "Host: $ServerName\r\n" unless $hdrs =~ /^Host:/mi;
    $head .= "Connection: $conn\r\n" unless $hdrs =~ /^Connection\b/mi;
    $head .= "$hdrs$len_hdr\r\n";

    my $full = $head . $body;
    my @out;
    my ($offset, $cut) = (0, 0);
    for my $i (0 .. $#pk) {
        $offset += length $pk[$i]{value};
        my $end;
        if ($i == $#pk) {
            $end = length $full;
        } else {
            my $in_body = $offset - $first_len - $body_lead;
            $end = length($head) + ($in_body > 0 ? $in_body : 0);
            $end = length $full if $end > length $full;
            $end = $cut if $end < $cut;
        }
        push @out, { %{ $pk[$i] }, value => substr($full, $cut, $end - $cut) };
        $cut = $end;
    }
    return \@out;
}

# Returns a list of connections: { packets => [...], head => bool, n => N }
# where N is the number of responses expected on the connection.
sub requests_from_block {
    my $block = shift;
    my $name = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        my @pk = map { ref $_ ? $_ : { value => $_ } } (ref $raw eq 'ARRAY' ? @$raw : ($raw));
        my $joined = join '', map { $_->{value} } @pk;
        return [{ packets => \@pk, head => $joined =~ /^\s*HEAD\s/ ? 1 : 0, n => 1 }];
    }

    my $more = $block->more_headers // '';
    my $hdr_for = sub {
        my $i = shift;
        return $more unless ref $more eq 'ARRAY';
        my $h = $more->[$i];
        bail_out("$name - --- more_headers lacks data for request $i") unless defined $h;
        return $h;
    };
    if (defined(my $reqs = $block->pipelined_requests)) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            unless ref $reqs eq 'ARRAY';
        my $buf = '';
        for my $i (0 .. $#$reqs) {
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            # the only request text in which $TEST_NGINX_* is expanded
            my $req = expand_env_in_text($reqs->[$i], $name);
            my $pk = build_request($name, [$req], $hdr_for->($i), $conn);
            $buf .= join '', map { $_->{value} } @$pk;
        }
        # As upstream, the batch is one request as far as HEAD goes: it
        # is HEAD if its first request is, which only spares the warning
        # about a short body (see parse_response: every response's
        # Content-Length is read from what follows it, HEAD or not).
        return [{ packets => [{ value => $buf }], head => $buf =~ /^\s*HEAD\s/ ? 1 : 0,
                  n => scalar @$reqs }];
    }

    my $req = $block->request;
    bail_out("$name - request empty") unless defined $req;
    my @list = ref $req eq 'ARRAY' ? @$req : ($req);
    my @conns;
    for my $i (0 .. $#list) {
        my $one = $list[$i];
        my $pk = build_request($name, ref $one eq 'ARRAY' ? $one : [$one],
                               $hdr_for->($i), 'close');
        my $is_head = $pk->[0]{value} =~ /^HEAD\s/ ? 1 : 0;
        push @conns, { packets => $pk, head => $is_head, n => 1 };
    }
    return \@conns;
}

# ---------------------------------------------------------------------------
# Raw socket HTTP client
# ---------------------------------------------------------------------------

sub connect_server {
    my ($timeout, $name) = @_;
    my $sock;
    my $err;
    for my $try (1 .. 20) {
        $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $ServerPortForClient,
                                      Proto => 'tcp', Timeout => $timeout);
        return $sock if $sock;
        $err = $!;
        last if $NginxPid && !check_nginx_alive($name);
        sleep 0.02 * $try;
    }
    $! = $err;
    return undef;
}

# Send packets and read until EOF or an I/O inactivity timeout.
# Returns (raw response, timed_out).
sub send_request {
    my ($conn, $timeout, $block) = @_;
    my $name = $block->name;
    local $SIG{PIPE} = 'IGNORE';

    my $sock = connect_server($timeout, $name);
    if (!$sock) {
        my $msg = "$name - Can't connect to $ServerAddr:$ServerPortForClient: $! (aborted)";
        bail_out($msg) if ++$TotalConnectFailures >= 3;
        Test::More::fail($msg);
        return ('', 0);
    }
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my $middle_delay = $block->raw_request_middle_delay;
    my ($resp, $timed_out, $write_failed) = ('', 0, 0);

    my @packets = @{ $conn->{packets} };
    PACKET:
    for my $i (0 .. $#packets) {
        my $p = $packets[$i];
        my $delay = $p->{delay_before} // ($i > 0 ? $middle_delay : undef);
        sleep $delay if $delay;
        my $buf = $p->{value} // '';
        my $off = 0;
        while ($off < length $buf) {
            if (!$sel->can_write($timeout)) { $timed_out = 1; last PACKET }
            my $n = syswrite($sock, $buf, length($buf) - $off, $off);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                warn "# $name - write failed: $!\n" if $Verbose;
                $write_failed = 1;
                last PACKET;
            }
            $off += $n;
        }
    }

    if (!$timed_out && !$write_failed && defined $block->shutdown) {
        my $how = $block->shutdown;
        $how = 1 if $how !~ /^\d$/;
        shutdown($sock, $how);
    }

    while (!$timed_out) {
        if (!$sel->can_read($timeout)) { $timed_out = 1; last }
        my $n = sysread($sock, my $chunk, 65536);
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            warn "# WARNING: $name - HTTP response read failure: $!\n" if !length $resp;
            last;
        }
        last if $n == 0;
        $resp .= $chunk;
    }
    close $sock;

    if ($timed_out) {
        if (defined $block->abort) {
            sleep 0.005;
        } else {
            Test::More::fail("ERROR: client socket timed out - $name");
        }
    }
    return ($resp, $timed_out);
}

# Minimal one-shot GET used for the HUP version probe.
sub http_get_raw {
    my ($req, $timeout) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $ServerPortForClient,
                                  Proto => 'tcp', Timeout => $timeout) or return undef;
    local $SIG{PIPE} = 'IGNORE';
    print {$s} $req;
    my $sel = IO::Select->new($s);
    my $buf = '';
    while ($sel->can_read($timeout)) {
        my $n = sysread($s, my $chunk, 4096);
        last unless $n;
        $buf .= $chunk;
    }
    close $s;
    return $buf;
}

# Parse one response off the front of $raw.  Returns ($res, $raw_headers,
# $left) where $res is { code, headers (HTTP::Headers), content }.
sub parse_response {
    my ($name, $raw, $head_req) = @_;
    my $res = { code => undef, headers => HTTP::Headers->new, content => '' };

    my ($head, $rest);
    if ($raw =~ /\A(.*?\r?\n)\r?\n(.*)\z/s) {
        ($head, $rest) = ($1, $2);
    } else {
        ($head, $rest) = ($raw, '');
    }
    my $raw_headers = $head;

    my @lines = split /\r?\n/, $head;
    my $status = shift(@lines) // '';
    if ($status =~ m{^HTTP/\d+(?:\.\d+)?\s+(\d{3})\b}) {
        $res->{code} = $1;
    } else {
        # not an HTTP response at all (e.g. HTTP/0.9 or garbage)
        $res->{content} = $raw;
        return ($res, '', undef);
    }
    for my $l (@lines) {
        if ($l =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/) {
            $res->{headers}->push_header($1 => $2);
        }
    }

    # As upstream, only 304 and 101 are known to have no body (and then
    # nothing after them is looked at); HEAD is not special when reading:
    # a Content-Length takes that many bytes of whatever follows, so in a
    # pipelined batch a HEAD response eats into the next response.  $head_req
    # only spares the warning about a short body.
    my $code = $res->{code};
    if ($code == 304 || $code == 101) {
        $res->{content} = $rest;
        return ($res, $raw_headers, undef);
    }

    my $te  = $res->{headers}->header('Transfer-Encoding');
    my $len = $res->{headers}->header('Content-Length');
    my $left;

    if (defined $te && $te =~ /\bchunked\b/i) {
        my $decoded = '';
        my $pos = 0;
        while (1) {
            pos($rest) = $pos;
            if ($rest !~ /\G[ \t]*([0-9A-Fa-f]+)[^\r\n]*\r\n/gc) {
                if ($pos >= length $rest) {
                    Test::More::fail("$name - no last chunk found - " . fmt_str($decoded));
                } else {
                    Test::More::fail("$name - invalid chunked body received: "
                                     . fmt_str(substr($rest, $pos, 60)));
                }
                last;
            }
            my $size = hex $1;
            $pos = pos($rest);
            if ($size == 0) {
                # skip optional trailers up to the empty line
                my $end = index($rest, "\r\n", $pos);
                while ($end > $pos) {
                    $pos = $end + 2;
                    $end = index($rest, "\r\n", $pos);
                }
                $pos = $end + 2 if $end == $pos;
                $left = substr($rest, $pos) if $pos < length $rest;
                last;
            }
            if (length($rest) - $pos < $size + 2) {
                $decoded .= substr($rest, $pos);
                Test::More::fail("$name - invalid chunked data received "
                                 . "(not enough octets for the data section)");
                last;
            }
            $decoded .= substr($rest, $pos, $size);
            $pos += $size;
            if (substr($rest, $pos, 2) ne "\r\n") {
                Test::More::fail("$name - invalid chunked data received (expected CRLF).");
                last;
            }
            $pos += 2;
        }
        $res->{content} = $decoded;

    } elsif (defined $len && $len =~ /^\s*(\d+)\s*$/) {
        $len = $1;
        if (length $rest < $len) {
            warn "WARNING: $name - response body truncated: $len expected, but got "
                 . length($rest) . "\n" unless $head_req;
            $res->{content} = $rest;
        } else {
            $res->{content} = substr($rest, 0, $len);
            $left = substr($rest, $len) if length $rest > $len;
        }

    } else {
        $res->{content} = $rest;
    }
    return ($res, $raw_headers, $left);
}

# ---------------------------------------------------------------------------
# Running one repetition of a block
# ---------------------------------------------------------------------------

sub run_requests {
    my ($block, $rep) = @_;
    my $name = $block->name;

    my $conns = requests_from_block($block);
    my $timeout = parse_time($block->timeout) // parse_time($Timeout);
    $timeout *= 5 if $UseValgrind;

    my $need_array = defined $block->pipelined_requests ? 1 : @$conns > 1 ? 1 : 0;
    my $total = 0;
    $total += $_->{n} for @$conns;
    my $idx = 0;
    my $last_res;
    my $ignore = defined $block->ignore_response;

    for my $conn (@$conns) {
        my ($raw, $timed_out) = send_request($conn, $timeout, $block);
        for my $k (1 .. $conn->{n}) {
            my ($res, $raw_headers, $left);
            if (!$ignore) {
                if (defined $block->http09) {
                    ($res, $raw_headers) = ({ code => 200, headers => HTTP::Headers->new,
                                              content => $raw }, '');
                } else {
                    ($res, $raw_headers, $left) = parse_response($name, $raw // '',
                                                                 $conn->{head});
                }
                if ($k == $conn->{n} && defined $left && length $left) {
                    warn "WARNING: $name - unexpected extra bytes after the last response: \""
                         . fmt_str($left) . "\"\n";
                }
                $raw = $left;

                # A client abort before any response line arrived: the
                # response checks are reported as skipped.
                my $skip;
                $skip = 'the client aborted (--- abort) before any response'
                    if $timed_out && defined $block->abort && !defined $res->{code};
                check_error_code($block, $res, $idx, $need_array, $skip);
                check_raw_response_headers($block, $raw_headers, $idx, $need_array, $skip);
                check_response_headers($block, $res, $raw_headers, $idx, $need_array, $skip);
                transform_response_body($block, $res, $idx);
                check_response_body($block, $res, $idx, $rep, $need_array, $skip);
                $last_res = $res;
            }
            if ($idx < $total - 1) {
                sleep parse_time($block->wait) if $block->wait;
                check_error_log($block, $rep, $need_array);
                check_access_log($block, $rep) unless $ignore;
            }
            $idx++;
        }
    }

    sleep parse_time($block->wait) if $block->wait;
    check_error_log($block, $rep, $need_array);
    check_access_log($block, $rep) unless $ignore;
}

# ---------------------------------------------------------------------------
# Response checks
# ---------------------------------------------------------------------------

sub check_error_code {
    my ($block, $res, $idx, $need_array, $skip) = @_;
    my $name = $block->name;
    SKIP: {
        Test::More::skip("$name - tests skipped due to $skip", 1) if $skip;
        my $code = ($res && $res->{code}) || '';
        if (defined $block->error_code_like) {
            my $pat = get_indexed_value($name, $block->error_code_like, $idx, $need_array);
            Test::More::like($code, qr/$pat/sm, "$name - status code ok");
        } elsif (defined $block->error_code) {
            my $want = get_indexed_value($name, $block->error_code, $idx, $need_array);
            $want =~ s/^\s+|\s+$//g if defined $want;
            Test::More::is($code, $want, "$name - status code ok");
        } else {
            Test::More::is($code, 200, "$name - status code ok");
        }
    }
}

sub check_raw_response_headers {
    my ($block, $raw_headers, $idx, $need_array, $skip) = @_;
    my $name = $block->name;
    for my $kind (qw(like unlike)) {
        my $sec = "raw_response_headers_$kind";
        next unless defined $block->$sec;
        SKIP: {
            Test::More::skip("$name - $sec - tests skipped due to $skip", 1) if $skip;
            my $pat = get_indexed_value($name, $block->$sec, $idx, $need_array);
            my $fn = $kind eq 'like' ? \&Test::More::like : \&Test::More::unlike;
            $fn->($raw_headers // '', qr/$pat/s, "$name - raw resp headers $kind");
        }
    }
}

# "Name: value" lines (order kept, later duplicates win); "!Name" => undef.
sub parse_header_spec {
    my $text = shift // '';
    my (@order, %h);
    for my $line (split /\n/, $text) {
        $line =~ s/^\s+|\s+$//g;
        next unless length $line;
        my ($key, $val);
        if ($line =~ s/^!\s*//) {
            $key = $line;
        } else {
            ($key, $val) = split /\s*:\s*/, $line, 2;
            $val //= '';
        }
        push @order, $key unless exists $h{$key};
        $h{$key} = $val;
    }
    return [ map { [$_, $h{$_}] } @order ];
}

sub check_response_headers {
    my ($block, $res, $raw_headers, $idx, $need_array, $skip) = @_;
    my $name = $block->name;
    if (defined $block->response_headers) {
        my $spec = parse_header_spec(
            get_indexed_value($name, $block->response_headers, $idx, $need_array));
        for my $kv (@$spec) {
            my ($key, $val) = @$kv;
            SKIP: {
                Test::More::skip("$name - response_headers - tests skipped due to $skip", 1)
                    if $skip;
                if (!defined $val) {
                    Test::More::unlike($raw_headers // '', qr/^\s*\Q$key\E\s*:/msi,
                                       "$name - header $key not present in the raw headers");
                    next;
                }
                $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
                $val =~ s/\$ServerPort\b/$ServerPort/g;
                my $actual = $res ? scalar $res->{headers}->header($key) : undef;
                Test::More::is($actual // '', $val, "$name - header $key ok");
            }
        }
    } elsif (defined $block->response_headers_like) {
        my $spec = parse_header_spec(
            get_indexed_value($name, $block->response_headers_like, $idx, $need_array));
        for my $kv (@$spec) {
            my ($key, $val) = @$kv;
            $val //= '';
            SKIP: {
                Test::More::skip("$name - response_headers_like - tests skipped due to $skip", 1)
                    if $skip;
                my $actual = $res ? scalar $res->{headers}->header($key) : undef;
                Test::More::like($actual // '', qr/^$val$/, "$name - header $key like ok");
            }
        }
    }
}

my %BodyFilters = (
    md5_hex  => sub { require Digest::MD5; Digest::MD5::md5_hex($_[0]) },
    sha1_hex => sub { require Digest::SHA; Digest::SHA::sha1_hex($_[0]) },
    length   => sub { length $_[0] },
    uc       => sub { uc $_[0] },
    lc       => sub { lc $_[0] },
    ucfirst  => sub { ucfirst $_[0] },
    lcfirst  => sub { lcfirst $_[0] },
);

sub transform_response_body {
    my ($block, $res, $idx) = @_;
    my $filters = $block->response_body_filters;
    return unless defined $filters && $res && defined $res->{content};
    my $name = $block->name;
    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [ split /\s+/, $filters ];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    if (@$filters && ref $filters->[0] eq 'ARRAY') {
        $filters = $filters->[$idx]
            // bail_out("$name - no --- response_body_filters for request $idx");
    }
    my $body = $res->{content};
    for my $f (@$filters) {
        my $code = ref $f eq 'CODE' ? $f : $BodyFilters{$f}
            // bail_out("$name - unknown response body filter: $f");
        $body = $code->($body);
    }
    $res->{content} = $body;
}

sub check_response_body {
    my ($block, $res, $idx, $rep, $need_array, $skip) = @_;
    my $name = $block->name;
    my $content = $res ? $res->{content} : undef;

    if (defined $block->response_body || defined $block->response_body_eval) {
        if (defined $block->response_body_json_sort && defined $content) {
            require JSON::PP;
            my $js = JSON::PP->new->canonical(1)->loose(1);
            my $obj = eval { $js->decode($content) };
            $content = $js->encode($obj) . "\n" if defined $obj;
        }
        my $expected;
        if (defined $block->response_body_eval) {
            $expected = eval get_indexed_value($name, $block->response_body_eval, $idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, $block->response_body, $idx, $need_array);
        }
        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected = expand_env_in_text($expected, $name);
        }
        SKIP: {
            Test::More::skip("$name - response_body - tests skipped due to $skip", 1) if $skip;
            if (ref $expected) {
                Test::More::like($content, $expected,
                    "$name - response_body - like (repeated req $rep, req $idx)");
            } else {
                is_str($content, $expected,
                    "$name - response_body - response is expected (repeated req $rep, req $idx)");
            }
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $sec = "response_body_$type";
        my $pat = get_indexed_value($name, $block->$sec, $idx, $need_array);
        if (!ref $pat) {
            $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $pat =~ s/\$ServerPort\b/$ServerPort/g;
        }
        my $summary = $content // '';
        $summary =~ s/^\s+|\s+$//g;
        SKIP: {
            Test::More::skip("$name - $sec - tests skipped due to $skip", 1) if $skip;
            my $fn = $type eq 'like' ? \&Test::More::like : \&Test::More::unlike;
            $fn->($content, qr/$pat/s, "$name - $sec - response is expected ($summary)");
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $content, $idx, $rep, $skip);
    }
}

# ---------------------------------------------------------------------------
# Log checks
# ---------------------------------------------------------------------------

# Like upstream, every read of a log first waits 3 x TEST_NGINX_SLEEP
# (45 ms by default) for what nginx logs after the response.
sub error_log_lines {
    sleep 3 * $TestNginxSleep;
    my $from = $CheckAccumErrLog ? 0 : $ErrLogPos;
    my ($data, $end) = slurp_from($ErrLogFile, $from);
    $ErrLogPos = $end unless $CheckAccumErrLog;
    return split_lines($data);
}

sub access_log_lines {
    sleep 3 * $TestNginxSleep;
    # the whole file since nginx started, every time (as upstream)
    my ($data) = slurp_from($AccLogFile, 0);
    return split_lines($data);
}

# Shared by error_log / access_log / shutdown_error_log checks.
sub check_present {
    my ($lines, $pats, $label, $file, $suffix, $skip, $name) = @_;
    my @pending = @{ pattern_list($pats) };
    my @found = (0) x @pending;
    for my $line (@$lines) {
        for my $i (0 .. $#pending) {
            next if $found[$i] || !line_matches($line, $pending[$i]);
            $found[$i] = 1;
        }
    }
    for my $i (0 .. $#pending) {
        my $p = $pending[$i];
        SKIP: {
            Test::More::skip("$name - $label - tests skipped due to $skip", 1) if $skip;
            if ($found[$i]) {
                Test::More::pass("$name - pattern \"$p\" matches a line in $file$suffix");
            } else {
                Test::More::fail("$name - pattern \"$p\" should match a line in $file$suffix");
            }
        }
    }
}

sub check_absent {
    my ($lines, $pats, $label, $file, $suffix, $skip, $name) = @_;
    for my $p (@{ pattern_list($pats) }) {
        my @hits = grep { line_matches($lines->[$_], $p) } 0 .. $#$lines;
        SKIP: {
            Test::More::skip("$name - $label - tests skipped due to $skip", 1) if $skip;
            my $fp = fmt_str($p);
            if (@hits) {
                my $i = $hits[0];
                my $more = join '', @{$lines}[ $i + 1 .. ($i + 9 < $#$lines ? $i + 9 : $#$lines) ];
                Test::More::fail("$name - pattern \"$fp\" should not match any line in $file "
                                 . "but matches line \"" . fmt_str($lines->[$i]) . "\"$suffix\n$more");
            } else {
                Test::More::pass("$name - pattern \"$fp\" does not match a line in $file$suffix");
            }
        }
    }
}

sub check_error_log {
    my ($block, $rep, $need_array, $skip) = @_;
    my $name = $block->name;
    my $lines;
    my $suffix = " (req $rep)";

    my $grep_pat = $block->grep_error_log;
    if (defined $grep_pat) {
        $grep_pat = $grep_pat->[$rep] if ref $grep_pat eq 'ARRAY';
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            unless defined $expected;
        $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
        $expected = expand_env_in_text($expected, $name);
        $lines //= error_log_lines();
        my $out = '';
        for my $line (@$lines) {
            my $m;
            if (ref $grep_pat) {
                $m = $& if $line =~ $grep_pat;
            } elsif (index($line, $grep_pat) >= 0) {
                $m = $grep_pat;
            }
            $out .= "$m\n" if defined $m && $m !~ /\n/;
        }
        SKIP: {
            Test::More::skip("$name - error_log - tests skipped due to $skip", 1) if $skip;
            is_str($out, $expected, "$name - grep_error_log_out$suffix");
        }
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }

    if (defined $block->error_log) {
        $lines //= error_log_lines();
        check_present($lines, $block->error_log, 'error_log', 'error.log', $suffix, $skip, $name);
    }
    if (defined $block->no_error_log) {
        $lines //= error_log_lines();
        check_absent($lines, $block->no_error_log, 'no_error_log', 'error.log', $suffix, $skip, $name);
    }

    return if $skip;
    $lines //= error_log_lines();
    for my $level (qw(alert crit emerg)) {
        next if value_mentions(scalar $block->error_log, "[$level")
             || value_mentions(scalar $block->no_error_log, "[$level");
        for my $line (grep { /\[$level\]/ } @$lines) {
            warn "WARNING: $name - " . fmt_str($line) . "\n";
        }
    }
    for my $line (grep { /\bAssertion .*?failed\b/ } @$lines) {
        (my $l = $line) =~ s/\n$//;
        Test::More::fail("$name - $l");
    }
}

sub check_access_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    return unless defined $block->access_log || defined $block->no_access_log;
    my $lines = access_log_lines();
    check_present($lines, $block->access_log, 'access_log', 'access.log', " (req $rep)", undef, $name)
        if defined $block->access_log;
    check_absent($lines, $block->no_access_log, 'no_access_log', 'access.log', " (req $rep)", undef, $name)
        if defined $block->no_access_log;
}

sub check_shutdown_error_log {
    my ($block, $skip) = @_;
    my $name = $block->name;
    my $lines = $skip ? [] : error_log_lines();
    check_present($lines, $block->shutdown_error_log, 'shutdown_error_log', 'error.log', '',
                  $skip, $name) if defined $block->shutdown_error_log;
    check_absent($lines, $block->no_shutdown_error_log, 'no_shutdown_error_log', 'error.log', '',
                 $skip, $name) if defined $block->no_shutdown_error_log;
    for my $line (grep { /\bAssertion .*?failed\b/ } @$lines) {
        (my $l = $line) =~ s/\n$//;
        Test::More::fail("$name - $l");
    }
}

1;
