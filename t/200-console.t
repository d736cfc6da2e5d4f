# The web console (console/) in a real browser: headless Chromium driven by
# t/console/drive.py through chromedriver, against nginx with the module
# (zone, Redis, bloom filter, click queue, API at /_links/, metrics) and the
# console served from the repository with its Content-Security-Policy.  A
# key is pasted, a link created, listed, followed (a click), found in its
# statistics (time zone, today, hours and weekdays, languages, sources),
# edited (a 422 shown at the URL field), disabled and deleted; a profile is
# created with two entries (a 422 shown at its entry), previewed, reordered
# with the keyboard, its public page opened (nginx's shortlink_profile) and
# its statistics read; the owner-wide statistics are read; the status page
# is read; any browser console error or CSP violation
# fails.  Screenshots go to build/t200-console/ (TEST_CONSOLE_OUT).
#
# Needs chromium, chromium-driver and python3-selenium (build.sh installs
# them): without them the suite fails, it does not skip.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Find qw(find);

our $root = dirname(dirname(abs_path(__FILE__)));
our $out = $ENV{TEST_CONSOLE_OUT} // "$root/build/t200-console";
our $owner = 't200-console';
our $code = 'c200link';
our $sample = 'c200sample';
our $sample_clicks = 600;

$ENV{TEST_NGINX_CONSOLE_DIR} = "$root/console/";
# nothing here is about timeouts: generous ones, so a loaded machine or
# valgrind does not make Redis look down
$ENV{TEST_NGINX_REDIS_TIMEOUT} = $ENV{TEST_NGINX_USE_VALGRIND} ? '5s' : '1s';
$ENV{TEST_NGINX_CSP} = "default-src 'self'; script-src 'self'; "
    . "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    . "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

# a key of its own owner: the console lists that owner's links only
sql(qq{
    DELETE FROM shortlink.profiles WHERE owner = '$owner'
                                      OR username LIKE 'c200%';
    DELETE FROM shortlink.links WHERE owner = '$owner' OR code LIKE 'c200%';
    DELETE FROM shortlink.clicks WHERE code LIKE 'c200%';
    DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE 'c200%';
    INSERT INTO shortlink.links (code, url, owner, title, tags)
        VALUES ('$sample', 'https://nginx.org/en/docs/', '$owner',
                'Sample data', ARRAY['sample']);
});
system('psql', '-X', '-q', '-o', '/dev/null', '-v', 'ON_ERROR_STOP=1',
       '-v', "code=$sample", '-v', "n=$sample_clicks",
       '-f', "$root/t/console/sample.sql", $ENV{TEST_NGINX_PG_DSN}) == 0
    or die "t/console/sample.sql failed\n";
our $key = sql_value("SELECT shortlink.create_api_key('$owner')");

# --- the files themselves: nothing the CSP would refuse, no HTML from data

my (@html, @js);
find(sub { push @html, $File::Find::name if /\.html\z/;
           push @js, $File::Find::name if /\.js\z/ }, "$root/console");

sub slurp { open my $fh, '<', $_[0] or die "$_[0]: $!"; local $/; <$fh> }

ok(@html && @js, 'console/ has HTML and JavaScript files');
for my $f (@html) {
    my $t = slurp($f);
    my $name = $f =~ s{^\Q$root\E/}{}r;
    unlike($t, qr/<script(?![^>]*\bsrc=)[^>]*>/i, "$name: no inline script");
    unlike($t, qr/<style\b|\sstyle\s*=/i, "$name: no inline style");
    unlike($t, qr/\son[a-z]+\s*=/i, "$name: no inline event handler");
    unlike($t, qr{(?:src|href)\s*=\s*"(?:https?:)?//}i,
           "$name: nothing from another origin");
}
for my $f (@js) {
    my $t = slurp($f);
    my $name = $f =~ s{^\Q$root\E/}{}r;
    unlike($t, qr/\.(?:inner|outer)HTML\s*[+]?=|insertAdjacentHTML\s*\(
                  |document\.write|createContextualFragment|DOMParser/x,
           "$name: no HTML built from strings");
    unlike($t, qr/\beval\s*\(|\bnew\s+Function\b|setTimeout\s*\(\s*['"`]/,
           "$name: no code from strings");
}

# --- the browser run --------------------------------------------------------

# t/console/drive.py prints TAP: each of its lines becomes a test here
sub drive {
    my $base = 'http://127.0.0.1:' . Test::Nginx::Socket::server_port();
    my ($planned, $seen, $failed_last) = (undef, 0, 0);

    ok(-x '/usr/bin/chromium' && -x '/usr/bin/chromedriver',
       'chromium and chromium-driver are installed (build.sh installs them)')
        or return;

    my @cmd = ('timeout', '240', '/usr/bin/python3', "$root/t/console/drive.py",
               '--base', $base, '--key', $key, '--code', $code,
               '--sample', $sample, '--sample-pv', $sample_clicks,
               '--profile', 'c200prof',
               '--out', $out);
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec @cmd or exit 127;
    }
    while (my $line = <$fh>) {
        chomp $line;
        if ($line =~ /^(not )?ok \d+ - (.*)$/) {
            $seen++;
            $failed_last = defined $1;
            ok(!$failed_last, "browser: $2");
        } elsif ($line =~ /^1\.\.(\d+)$/) {
            $planned = $1;
        } elsif ($line =~ /^# ?(.*)$/) {
            $failed_last ? Test::More::diag($1) : Test::More::note($1);
        } else {
            Test::More::diag($line);    # Python's own complaints
        }
    }
    close $fh;
    is($? >> 8, 0, 'drive.py exits 0');
    ok(defined $planned && $planned == $seen && $seen > 40,
       "drive.py ran to its end ($seen checks)");
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m;
    shortlink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=$TEST_NGINX_REDIS_TIMEOUT;
    shortlink_bloom capacity=10000;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms;
_EOC_
    $block->set_value("config", <<'_EOC_');
    location / { shortlink; }
    location /@ { shortlink_profile; }
    # the browser asks for it on the profile page, which names no icon
    location = /favicon.ico { return 204; }
    location /_links/ { shortlink_api; }
    location = /metrics { shortlink_metrics; }

    location = /console { return 301 /console/; }
    location /console/ {
        alias $TEST_NGINX_CONSOLE_DIR;
        index index.html;
        types {
            text/html html;
            text/css css;
            application/javascript js;
            image/svg+xml svg;
            image/png png;
        }
        charset utf-8;
        charset_types text/css application/javascript image/svg+xml;
        add_header Content-Security-Policy "$TEST_NGINX_CSP" always;
        add_header X-Content-Type-Options nosniff always;
        add_header Referrer-Policy no-referrer always;
        add_header Cache-Control no-cache always;
    }
    location /console/vendor/chart.js/ {
        alias /usr/share/javascript/chart.js/;
        types { application/javascript js; }
        charset utf-8;
        charset_types application/javascript;
        add_header X-Content-Type-Options nosniff always;
    }
_EOC_
});

no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: the console, with its Content-Security-Policy
--- request
GET /console/
--- response_headers eval
["Content-Type: text/html; charset=utf-8",
 "Content-Security-Policy: $ENV{TEST_NGINX_CSP}",
 "X-Content-Type-Options: nosniff"]
--- response_body_like: <script type="module" src="js/app.js"></script>
--- no_error_log
[error]



=== TEST 2: /console is sent to /console/
--- request
GET /console
--- error_code: 301
--- response_headers_like
Location: .*/console/$



=== TEST 3: modules and Debian's Chart.js are served as JavaScript
--- request eval
["GET /console/js/app.js", "GET /console/vendor/chart.js/chart.esm.js",
 "GET /console/vendor/chart.js/chunks/helpers.segment.js"]
--- response_headers eval
[("Content-Type: application/javascript; charset=utf-8") x 3]
--- response_body_like eval
["^// The console's entry point", "Chart\\.js v3", "Chart\\.js v3"]



=== TEST 4: the browser run, from the key to the status page
--- init
main::drive();
--- request
GET /_links/health
--- response_body_like: "status"\s*:\s*"ok"
--- no_error_log
[error]
[alert]
[crit]
