# QR codes: GET <api>/links/{code}/qr?format=svg|png&size= encodes the short
# URL plus "?_sls=qr"; zbarimg (zbar-tools) decodes the PNG, and the SVG
# drawn into a bitmap, back to that URL; following it records a click with
# source=qr.  Owner-scoped like /links/{code}: 401, 403, 404; 400 for a
# bad format or size.

BEGIN { $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} = 0 }

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use File::Temp ();
use HTTP::Tiny ();
use Time::HiRes ();

sql(q{
    DELETE FROM shortlink.links WHERE code LIKE 't170%';
    DELETE FROM shortlink.clicks WHERE code LIKE 't170%';
    INSERT INTO shortlink.links (code, url, owner) VALUES
        ('t170a', 'https://example.com/qr-target', 't170'),
        ('t170b', 'https://example.com/other', 't170-other');
});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t170')");

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", <<'_EOC_');
    shortlink_postgres "$TEST_NGINX_PG_DSN";
    shortlink_zone links:1m ttl=1h;
    shortlink_queue clicks:1m;
    shortlink_flush interval=100ms batch=1000;
_EOC_
    $block->set_value("config", <<'_EOC_') unless defined $block->config;
    location / { shortlink; }
    location /_api/ { shortlink_api; }
_EOC_
    $block->set_value("more_headers",
                      "Authorization: Bearer $ENV{TEST_NGINX_API_KEY}")
        unless defined $block->more_headers;
});

no_shuffle();
no_root_location();
run_tests();

# --- the images, decoded -----------------------------------------------------

my $port = Test::Nginx::Socket::server_port();
my $base = "http://127.0.0.1:$port";
my $http = HTTP::Tiny->new(max_redirect => 0, timeout => 30);
my $auth = { headers => { Authorization => "Bearer $ENV{TEST_NGINX_API_KEY}" } };
my $dir = File::Temp::tempdir(CLEANUP => 1);
my $want = "$base/t170a?_sls=qr";

sub zbar {
    my ($file) = @_;
    my $out = `zbarimg --quiet --raw "$file" 2>/dev/null`;
    chomp $out;
    return $out;
}

sub png_size {
    my ($png) = @_;
    return unless substr($png, 0, 8) eq "\x89PNG\r\n\x1a\n"
                  && substr($png, 12, 4) eq 'IHDR';
    return unpack('NN', substr($png, 16, 8));
}

for my $size (64, 128, 256, 1024) {
    my $res = $http->get("$base/_api/links/t170a/qr?format=png&size=$size", $auth);
    is($res->{status}, 200, "png size=$size: 200");
    is($res->{headers}{'content-type'}, 'image/png', "png size=$size: image/png");
    my ($w, $h) = png_size($res->{content});
    ok(defined $w && $w == $h && $w <= $size && $w > $size / 2,
       "png size=$size: square, at most $size and more than half of it ("
       . ($w // 'no IHDR') . ')');
    open my $fh, '>:raw', "$dir/qr$size.png" or die $!;
    print $fh $res->{content};
    close $fh;
    # at 64 pixels a module is a single pixel: too small for zbar to read
    next if $size < 128;
    is(zbar("$dir/qr$size.png"), $want, "png size=$size decodes to the short URL with _sls=qr");
}

# the SVG: well-formed XML, drawn into a PBM bitmap from its path, decoded
{
    my $res = $http->get("$base/_api/links/t170a/qr", $auth);
    is($res->{status}, 200, 'svg (the default format): 200');
    is($res->{headers}{'content-type'}, 'image/svg+xml', 'svg: image/svg+xml');
    my $svg = $res->{content};
    open my $fh, '>', "$dir/qr.svg" or die $!;
    print $fh $svg;
    close $fh;
    my $xml = `python3 -c 'import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); print(d.documentElement.tagName, d.documentElement.getAttribute("width"))' "$dir/qr.svg" 2>&1`;
    chomp $xml;
    is($xml, 'svg 256', 'the SVG is well-formed XML, 256 pixels wide by default');

    my ($n) = $svg =~ /viewBox="0 0 (\d+) \1"/;
    my ($d) = $svg =~ / d="([^"]*)"/;
    ok($n && defined $d, 'a square viewBox and one path');
    my $scale = 4;
    my @bits = map { [ (0) x ($n * $scale) ] } 1 .. $n * $scale;
    my $runs = 0;
    while ($d =~ /M(\d+) (\d+)h(\d+)v1h-\3z/g) {
        my ($x, $y, $len) = ($1, $2, $3);
        $runs++;
        for my $yy ($y * $scale .. ($y + 1) * $scale - 1) {
            $bits[$yy][$_] = 1 for $x * $scale .. ($x + $len) * $scale - 1;
        }
    }
    (my $rest = $d) =~ s/M\d+ \d+h(\d+)v1h-\1z//g;
    is($rest, '', 'the path is nothing but runs of modules');
    open $fh, '>', "$dir/qr.pbm" or die $!;
    print $fh "P1\n", $n * $scale, ' ', $n * $scale, "\n";
    print $fh join(' ', @$_), "\n" for @bits;
    close $fh;
    is(zbar("$dir/qr.pbm"), $want, "the SVG's modules decode to the short URL with _sls=qr ($runs runs)");
}

# the public /{code}/qr ("shortlink_qr on", the last block's configuration)
{
    my $res = $http->get("$base/go/t170a/qr?format=png&size=256");
    is($res->{status}, 200, 'public /go/t170a/qr: 200');
    is($res->{headers}{'content-type'}, 'image/png', 'public: image/png');
    open my $fh, '>:raw', "$dir/public.png" or die $!;
    print $fh $res->{content};
    close $fh;
    is(zbar("$dir/public.png"), "$base/go/t170a?_sls=qr",
       'public: decodes to the URL it was asked under, with _sls=qr');
}

# a scan: following the decoded URL redirects and counts as source=qr
{
    my $res = $http->get($want);
    is($res->{status}, 302, 'the scanned URL redirects');
    is($res->{headers}{location}, 'https://example.com/qr-target',
       'to the target, without the marker');
    ok(wait_until(sub {
           sql_value(q{SELECT count(*) FROM shortlink.clicks
                        WHERE code = 't170a' AND extra->>'source' = 'qr'}) == 1
       }, 10),
       'the scan is recorded as a click with source=qr');
    Time::HiRes::sleep(0.3);
    # clicks of t170a: the scan and the plain visit of TEST 7, nothing for
    # the dozen images fetched through the API and /go/t170a/qr
    is(sql_value(q{SELECT count(*) FROM shortlink.clicks WHERE code = 't170a'}), 2,
       'fetching QR codes records no click');
}

__DATA__

=== TEST 1: no key: 401
--- more_headers
X-Nothing: 1
--- request
GET /_api/links/t170a/qr
--- error_code: 401
--- response_headers
Content-Type: application/problem+json



=== TEST 2: another owner's link: 403; an unknown one: 404
--- request eval
["GET /_api/links/t170b/qr", "GET /_api/links/t170zz/qr?format=png"]
--- error_code eval
[403, 404]
--- response_headers eval
[("Content-Type: application/problem+json") x 2]
--- no_error_log
[error]



=== TEST 3: bad format, size out of bounds, unknown parameter: 400
--- request eval
["GET /_api/links/t170a/qr?format=gif",
 "GET /_api/links/t170a/qr?size=63",
 "GET /_api/links/t170a/qr?size=1025",
 "GET /_api/links/t170a/qr?size=abc",
 "GET /_api/links/t170a/qr?size=",
 "GET /_api/links/t170a/qr?colour=red"]
--- error_code eval
[(400) x 6]
--- response_body_like eval
['format must be svg or png', ('size must be a number of pixels from 64 to 1024') x 4,
 'unknown query parameter']
--- no_error_log
[error]



=== TEST 4: HEAD: the image's headers, no body; other methods: 405
--- request eval
["HEAD /_api/links/t170a/qr?format=png", "POST /_api/links/t170a/qr\n{}"]
--- error_code eval
[200, 405]
--- response_headers eval
["Content-Type: image/png", "Allow: GET, HEAD"]
--- response_body eval
["", qr/./]
--- no_error_log
[error]



=== TEST 5: a Host that makes the short URL too long for a QR code: 400
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}\nHost: " . ('h' x 1100)
--- request
GET /_api/links/t170a/qr
--- error_code: 400
--- response_body_like: url-too-long
--- no_error_log
[error]



=== TEST 6: a deleted link has no QR code
--- init
ShortlinkTest::sql(q{INSERT INTO shortlink.links (code, url, owner, deleted_at)
                     VALUES ('t170d', 'https://example.com/d', 't170', now())
                     ON CONFLICT DO NOTHING});
--- request
GET /_api/links/t170d/qr
--- error_code: 404
--- no_error_log
[error]



=== TEST 7: shortlink_qr on: a public /{code}/qr for links that redirect
--- config
    location / { shortlink; }
    location /go/ { shortlink; shortlink_qr on; }
    location /_api/ { shortlink_api; }
--- more_headers
X-Nothing: 1
--- request eval
["GET /go/t170a/qr", "GET /go/t170a/qr?format=png&size=128", "HEAD /go/t170a/qr",
 "GET /go/t170zz/qr", "GET /go/t170d/qr", "GET /go/t170a/qr?format=gif",
 "GET /go/t170a/qr?size=2000", "GET /go/t170a/qr?size=x", "GET /t170a/qr",
 "POST /go/t170a/qr", "GET /go/t170a",
 "GET /go/" . ('x/' x 600) . "t170a/qr"]
--- error_code eval
[200, 200, 200, 404, 404, 400, 400, 400, 404, 405, 302, 400]
--- response_headers eval
["Content-Type: image/svg+xml", "Content-Type: image/png", "Content-Type: image/svg+xml",
 "", "", "", "", "", "", "Allow: GET, HEAD", "Location: https://example.com/qr-target", ""]
--- no_error_log
[error]
