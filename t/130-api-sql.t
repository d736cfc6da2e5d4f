# The management API's database side (sql/004_api.sql), without nginx:
# shortlink.api(method, path, query, body, key, base_url) is called through
# psql exactly as the module calls it.  Every route's success, every error
# status, SQL-injection strings in every parameter and field, owners and
# admin keys, revoked keys, bulk creation, cursor pagination, generated
# codes, and that an error answer writes nothing (a fingerprint of the
# links and api_keys tables is taken before and after each one).
#
# Everything this suite writes belongs to owners "t130-..." or has a code
# starting with "t130" and is removed (hard delete) at the start and at the
# end; shared tables are never truncated.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use ShortlinkTest;

my $P = 't130';                 # code and owner prefix of this suite
my $BASE = 'https://sho.rt';
my $json = JSON::PP->new->utf8->canonical;

sub q_ {
    my ($v) = @_;
    return 'NULL' unless defined $v;
    $v =~ s/'/''/g;
    return "'$v'";
}

sub cleanup {
    sql(qq{
        DELETE FROM shortlink.links WHERE owner LIKE '$P-%' OR code LIKE '$P%';
        DELETE FROM shortlink.api_keys WHERE owner LIKE '$P-%';
        DELETE FROM shortlink.api_routes WHERE pattern LIKE '^/t130%';
        DROP FUNCTION IF EXISTS
            shortlink.t130_echo(text, text[], jsonb, text, text, boolean, text);
    });
}

# one API call; returns (status, decoded body or undef).  $codes: the
# candidate codes nginx would send (p_codes), as a Perl structure
sub api {
    my ($method, $path, $query, $body, $key, $base, $codes) = @_;
    $body = $json->encode($body) if ref $body;
    my $out = sql_value(
        'SELECT status || \'|\' || coalesce(body::text, \'\') FROM shortlink.api('
        . join(', ', map { q_($_) } $method, $path, $query, $body, $key,
               @_ >= 6 ? $base : $BASE)
        . (defined $codes ? ', ' . q_($json->encode($codes)) . '::jsonb' : '')
        . ')');
    my ($status, $text) = split /\|/, $out, 2;
    return ($status, length $text ? $json->decode($text) : undef);
}

# one API call with candidate codes, at the default base URL
sub api_codes {
    my ($method, $path, $query, $body, $key, $codes) = @_;
    return api($method, $path, $query, $body, $key, $BASE, $codes);
}

# a fingerprint of everything the API could write
sub fingerprint {
    return sql_value(q{
        SELECT md5(coalesce((SELECT string_agg(l::text, ',' ORDER BY code)
                               FROM shortlink.links l), '')
                   || coalesce((SELECT string_agg(k::text, ',' ORDER BY key_hash)
                                  FROM shortlink.api_keys k), ''))
    });
}

# an error answer: status, problem shape, and nothing written
sub refused {
    my ($want, $name, @call) = @_;
    my $before = fingerprint();
    my ($status, $body) = api(@call);
    my $after = fingerprint();
    my $ok = is($status, $want, "$name: $want");
    $ok &&= ok(ref $body eq 'HASH' && $body->{status} == $want
               && defined $body->{title} && defined $body->{detail}
               && $body->{type} =~ m{^(about:blank|https://shortlink\.invalid/problems/[a-z-]+)$},
               "$name: a problem object");
    is($after, $before, "$name: nothing written");
    diag(explain($body)) unless $ok;
    return $body;
}

# the field pointers of a 422 problem
sub pointers {
    my ($body) = @_;
    return join ' ', map { $_->{pointer} } @{ $body->{errors} || [] };
}

sub links_count {
    return sql_value("SELECT count(*) FROM shortlink.links
                       WHERE owner LIKE '$P-%' OR code LIKE '$P%'");
}

cleanup();

my $alice = sql_value("SELECT shortlink.create_api_key('$P-alice')");
my $bob   = sql_value("SELECT shortlink.create_api_key('$P-bob')");
my $root  = sql_value("SELECT shortlink.create_api_key('$P-root', true)");
my $gen   = sql_value("SELECT shortlink.create_api_key('$P-gen')");
my $carol = sql_value("SELECT shortlink.create_api_key('$P-carol')");


# --- keys -------------------------------------------------------------------

like($alice, qr/^sl_[0-9a-f]{64}$/, 'a key is sl_ and 64 hex digits');
isnt($alice, $bob, 'keys differ');
is(sql_value("SELECT count(*) FROM shortlink.api_keys
               WHERE key_hash = sha256(${\ q_($alice)}::bytea) AND owner = '$P-alice'
                 AND NOT is_admin"),
   1, 'the key is stored as its sha256');
is(sql_value("SELECT count(*) FROM shortlink.api_keys k
               WHERE k::text LIKE '%' || ${\ q_(substr($alice, 3))} || '%'"),
   0, 'the key itself is stored nowhere');


# --- POST /links ------------------------------------------------------------

my ($st, $b) = api('POST', '/links', undef,
    { url => 'https://example.com/a?x=1', code => "$P-a", title => 'Tee',
      tags => [ 'news', 'x:1', 'news' ], expires_at => '2099-01-01T02:00:00+02:00',
      redirect_status => 301, forward_query => JSON::PP::true }, $alice);
is($st, 201, 'POST /links: 201');
delete @$b{qw(created_at updated_at)};
is_deeply($b, {
    code => "$P-a", url => 'https://example.com/a?x=1', short_url => "$BASE/$P-a",
    title => 'Tee', tags => [ 'news', 'x:1' ], redirect_status => 301,
    forward_query => JSON::PP::true, expires_at => '2099-01-01T00:00:00Z',
    enabled => JSON::PP::true, owner => "$P-alice", version => 1,
}, 'the link: every field, tags de-duplicated, expires_at in UTC');
is(sql_value("SELECT url FROM shortlink.resolve('$P-a')"), 'https://example.com/a?x=1',
   'the redirect path finds it');

($st, $b) = api('POST', '/links', undef, { url => 'https://example.com/gen' }, $alice);
is($st, 201, 'POST /links without a code: 201');
like($b->{code}, qr/^[0-9A-Za-z]{7}$/, 'a generated code has 7 base62 characters');
is_deeply([ @$b{qw(redirect_status forward_query enabled title expires_at)}, $b->{tags} ],
          [ 302, JSON::PP::false, JSON::PP::true, undef, undef, [] ], 'defaults');
my $gen1 = $b->{code};

($st, $b) = api('POST', '/links', 'code_length=16', { url => 'https://example.com/gen' }, $alice);
is($st, 201, 'code_length=16: 201');
like($b->{code}, qr/^[0-9A-Za-z]{16}$/, 'a 16-character code');
isnt($b->{code}, $gen1, 'the same URL twice: two codes');

($st, $b) = api('POST', '/links', 'code_length=4', { url => 'https://example.com/gen' }, $root);
like("$st $b->{code} $b->{owner}", qr/^201 [0-9A-Za-z]{4} $P-root$/,
     'an admin key creates with its own owner name');

refused(400, 'code_length=3', 'POST', '/links', 'code_length=3', { url => 'https://e.com/' }, $alice);
refused(400, 'code_length=17', 'POST', '/links', 'code_length=17', { url => 'https://e.com/' }, $alice);
refused(400, 'code_length=x', 'POST', '/links', 'code_length=x', { url => 'https://e.com/' }, $alice);


# --- field validation: 422, nothing written ---------------------------------

my %bad = (
    'javascript: url'      => [ { url => 'javascript:alert(1)' }, '/url' ],
    'data: url'            => [ { url => 'data:text/html,<script>alert(1)</script>' }, '/url' ],
    'ftp: url'             => [ { url => 'ftp://example.com/f' }, '/url' ],
    'relative url'         => [ { url => '/just/a/path' }, '/url' ],
    'CR/LF in url'         => [ { url => "https://example.com/\r\nSet-Cookie: a=b" }, '/url' ],
    'LF in url'            => [ { url => "https://example.com/\nx" }, '/url' ],
    'space in url'         => [ { url => 'https://example.com/a b' }, '/url' ],
    'tab in url'           => [ { url => "https://example.com/a\tb" }, '/url' ],
    'NUL-free control char' => [ { url => "https://example.com/\x01" }, '/url' ],
    'non-ASCII url'        => [ { url => "https://example.com/\x{e9}" }, '/url' ],
    'url > 8192 bytes'     => [ { url => 'https://example.com/' . ('a' x 8173) }, '/url' ],
    'empty url'            => [ { url => '' }, '/url' ],
    'url not a string'     => [ { url => 42 }, '/url' ],
    'url missing'          => [ { title => 'x' }, '/url' ],
    'expires_at not ISO'   => [ { url => 'https://e.com/', expires_at => 'tomorrow' }, '/expires_at' ],
    'expires_at no zone'   => [ { url => 'https://e.com/', expires_at => '2099-01-01T00:00:00' }, '/expires_at' ],
    'expires_at Feb 30'    => [ { url => 'https://e.com/', expires_at => '2099-02-30T00:00:00Z' }, '/expires_at' ],
    'expires_at past'      => [ { url => 'https://e.com/', expires_at => '2001-01-01T00:00:00Z' }, '/expires_at' ],
    'expires_at a number'  => [ { url => 'https://e.com/', expires_at => 4102444800 }, '/expires_at' ],
    'redirect_status 303'  => [ { url => 'https://e.com/', redirect_status => 303 }, '/redirect_status' ],
    'redirect_status text' => [ { url => 'https://e.com/', redirect_status => '302' }, '/redirect_status' ],
    'code with a space'    => [ { url => 'https://e.com/', code => "$P x" }, '/code' ],
    'code too long'        => [ { url => 'https://e.com/', code => 'c' x 65 }, '/code' ],
    'code empty'           => [ { url => 'https://e.com/', code => '' }, '/code' ],
    'code a number'        => [ { url => 'https://e.com/', code => 12345 }, '/code' ],
    'code bulk'            => [ { url => 'https://e.com/', code => 'bulk' }, '/code' ],
    'title too long'       => [ { url => 'https://e.com/', title => 'x' x 513 }, '/title' ],
    'title an object'      => [ { url => 'https://e.com/', title => { a => 1 } }, '/title' ],
    '21 tags'              => [ { url => 'https://e.com/', tags => [ map { "t$_" } 1 .. 21 ] }, '/tags' ],
    'tag with a space'     => [ { url => 'https://e.com/', tags => [ 'ok', 'not ok' ] }, '/tags/1' ],
    'tag too long'         => [ { url => 'https://e.com/', tags => [ 'a' x 65 ] }, '/tags/0' ],
    'tag a number'         => [ { url => 'https://e.com/', tags => [ 1 ] }, '/tags/0' ],
    'tags a string'        => [ { url => 'https://e.com/', tags => 'news' }, '/tags' ],
    'forward_query text'   => [ { url => 'https://e.com/', forward_query => 'yes' }, '/forward_query' ],
    'enabled a number'     => [ { url => 'https://e.com/', enabled => 1 }, '/enabled' ],
    'unknown field'        => [ { url => 'https://e.com/', owner => 'someone' }, '/owner' ],
    'unknown field a/b'    => [ { url => 'https://e.com/', 'a/b~' => 1 }, '/a~1b~0' ],
);
for my $name (sort keys %bad) {
    my ($obj, $ptr) = @{ $bad{$name} };
    my $body = refused(422, "POST $name", 'POST', '/links', undef, $obj, $alice);
    is(pointers($body), $ptr, "POST $name: pointer $ptr");
}

my $many = refused(422, 'several bad fields', 'POST', '/links', undef,
    { url => 'javascript:x', code => 'a b', tags => [ 'ok', '' ], x => 1 }, $alice);
is(pointers($many), '/code /tags/1 /url /x', 'every bad field is listed');


# --- malformed requests: 400 --------------------------------------------------

refused(400, 'invalid JSON', 'POST', '/links', undef, '{"url": "https://e.com/"', $alice);
refused(400, 'not JSON at all', 'POST', '/links', undef, q{'; DROP TABLE shortlink.links; --}, $alice);
refused(400, 'body an array', 'POST', '/links', undef, '[{"url": "https://e.com/"}]', $alice);
refused(400, 'body a string', 'POST', '/links', undef, '"https://e.com/"', $alice);
refused(400, 'body null', 'POST', '/links', undef, 'null', $alice);
refused(400, 'no body', 'POST', '/links', undef, undef, $alice);
refused(400, 'empty body', 'POST', '/links', undef, '', $alice);
refused(400, 'bad %-encoding', 'GET', '/links', 'limit=%zz', undef, $alice);
refused(400, 'short %-encoding', 'GET', '/links', 'tag=a%2', undef, $alice);
refused(400, 'encoded non-UTF-8', 'GET', '/links', 'tag=%ff', undef, $alice);
refused(400, 'encoded NUL', 'GET', '/links', 'tag=%00', undef, $alice);
refused(400, 'unknown parameter', 'GET', '/links', 'limt=5', undef, $alice);
refused(400, 'repeated parameter', 'GET', '/links', 'limit=5&limit=6', undef, $alice);
refused(400, 'limit 0', 'GET', '/links', 'limit=0', undef, $alice);
refused(400, 'limit 1001', 'GET', '/links', 'limit=1001', undef, $alice);
refused(400, 'limit -1', 'GET', '/links', 'limit=-1', undef, $alice);
refused(400, 'bad tag', 'GET', '/links', 'tag=a+b', undef, $alice);
refused(400, 'parameter on a link', 'GET', "/links/$P-a", 'x=1', undef, $alice);
for my $cur ('abc', '!!!!', 'MTIz', 'bm90OmEgY3Vyc29y', 'A' x 300, '') {
    next if $cur eq '';
    refused(400, "bad cursor '" . substr($cur, 0, 12) . "'", 'GET', '/links',
            "cursor=$cur", undef, $alice);
}


# --- authentication: 401 ------------------------------------------------------

my $p = refused(401, 'no key', 'GET', '/links', undef, undef, undef);
like($p->{www_authenticate}, qr/^Bearer realm="shortlink"/, 'no key: WWW-Authenticate value');
refused(401, 'empty key', 'GET', '/links', undef, undef, '');
$p = refused(401, 'unknown key', 'POST', '/links', undef, { url => 'https://e.com/' },
             'sl_' . ('0' x 64));
like($p->{www_authenticate}, qr/error="invalid_token"/, 'unknown key: invalid_token');
refused(401, 'injection as key', 'GET', '/links', undef, undef, q{' OR '1'='1});
refused(401, 'backslash key', 'GET', '/links', undef, undef, q{\\x00'});

($st) = api('GET', '/links', undef, undef, $carol);
is($st, 200, 'carol\'s key works');
is(sql_value("SELECT shortlink.revoke_api_key(${\ q_($carol)})"), 't', 'revoke_api_key: true');
is(sql_value("SELECT shortlink.revoke_api_key(${\ q_($carol)})"), 'f', 'revoking again: false');
is(sql_value("SELECT shortlink.revoke_api_key('nope')"), 'f', 'revoking an unknown key: false');
refused(401, 'revoked key', 'GET', '/links', undef, undef, $carol);
refused(401, 'revoked key writing', 'POST', '/links', undef, { url => 'https://e.com/' }, $carol);


# --- routes: 404 and 405 --------------------------------------------------------

for my $path ('/', '/nope', '/links/', '/links//x', '/links/a b', '/links/x/y',
              '/links/x/stats/', '/LINKS', '/links/' . ('c' x 65),
              "/links/'; DROP TABLE shortlink.links; --", '', undef) {
    refused(404, 'route ' . ($path // 'NULL'), 'GET', $path, undef, undef, $alice);
}
refused(404, 'unknown link', 'GET', "/links/$P-none", undef, undef, $alice);
refused(404, 'unknown link PATCH', 'PATCH', "/links/$P-none", undef, { title => 'x' }, $alice);
refused(404, 'unknown link DELETE', 'DELETE', "/links/$P-none", undef, undef, $alice);
refused(404, 'unknown link stats', 'GET', "/links/$P-none/stats", undef, undef, $alice);

for my $c ([ 'PUT', '/links', 'GET, HEAD, POST' ],
           [ 'DELETE', '/links', 'GET, HEAD, POST' ],
           [ 'GET', '/links/bulk', 'POST' ], [ 'PATCH', '/links/bulk', 'POST' ],
           [ 'HEAD', '/links/bulk', 'POST' ],
           [ 'POST', "/links/$P-a", 'GET, HEAD, PATCH, DELETE' ],
           [ 'PUT', "/links/$P-a", 'GET, HEAD, PATCH, DELETE' ],
           [ 'DELETE', "/links/$P-a/stats", 'GET, HEAD' ],
           [ "GET'; DROP TABLE shortlink.links; --", '/links', 'GET, HEAD, POST' ]) {
    my $body = refused(405, "$c->[0] $c->[1]", $c->[0], $c->[1], undef,
                       { url => 'https://e.com/' }, $alice);
    is($body->{allow}, $c->[2], "$c->[0] $c->[1]: allow $c->[2]");
}


# --- GET, PATCH, DELETE /links/{code}; owners -------------------------------------

($st, $b) = api('GET', "/links/$P-a", undef, undef, $alice);
is("$st $b->{code} $b->{title}", "200 $P-a Tee", 'GET /links/{code}: 200');
($st, $b) = api('GET', "/links/$P-a", undef, undef, $root);
is($st, 200, 'an admin key reads another owner\'s link');

refused(403, 'another owner GET', 'GET', "/links/$P-a", undef, undef, $bob);
refused(403, 'another owner PATCH', 'PATCH', "/links/$P-a", undef, { title => 'mine' }, $bob);
refused(403, 'another owner DELETE', 'DELETE', "/links/$P-a", undef, undef, $bob);
refused(403, 'another owner stats', 'GET', "/links/$P-a/stats", undef, undef, $bob);

sql("INSERT INTO shortlink.links (code, url) VALUES ('$P-sql', 'https://example.com/sql')");
refused(403, 'an owner key and a link made in SQL', 'GET', "/links/$P-sql", undef, undef, $alice);
($st, $b) = api('GET', "/links/$P-sql", undef, undef, $root);
is("$st " . ($b->{owner} // 'null'), '200 null', 'an admin key reads a link made in SQL');

($st, $b) = api('PATCH', "/links/$P-a", undef,
    { url => 'https://example.org/new', title => undef, tags => [ 'z' ], expires_at => undef,
      redirect_status => 308, forward_query => JSON::PP::false, enabled => JSON::PP::false },
    $alice);
is($st, 200, 'PATCH: 200');
is_deeply([ @$b{qw(url title expires_at redirect_status forward_query enabled version)}, $b->{tags} ],
          [ 'https://example.org/new', undef, undef, 308, JSON::PP::false, JSON::PP::false, 2,
            [ 'z' ] ], 'PATCH changes every field; null clears title and expires_at');
is(sql_value("SELECT count(*) FROM shortlink.resolve('$P-a')"), 0,
   'the disabled link no longer redirects');

($st, $b) = api('PATCH', "/links/$P-a", undef, { enabled => JSON::PP::true }, $root);
is("$st $b->{version} $b->{url} $b->{enabled}", '200 3 https://example.org/new 1',
   'an admin PATCH of one field keeps the others');

refused(400, 'empty PATCH', 'PATCH', "/links/$P-a", undef, {}, $alice);
refused(400, 'PATCH invalid JSON', 'PATCH', "/links/$P-a", undef, '{title:1}', $alice);
refused(400, 'PATCH an array', 'PATCH', "/links/$P-a", undef, '[]', $alice);
is(pointers(refused(422, 'PATCH code', 'PATCH', "/links/$P-a", undef, { code => "$P-b" }, $alice)),
   '/code', 'PATCH code: pointer /code');
is(pointers(refused(422, 'PATCH url null', 'PATCH', "/links/$P-a", undef, { url => undef }, $alice)),
   '/url', 'PATCH url null: pointer /url');
is(pointers(refused(422, 'PATCH CR/LF url', 'PATCH', "/links/$P-a", undef,
                    { url => "https://e.com/\r\nLocation: https://evil.example/" }, $alice)),
   '/url', 'PATCH CR/LF url: pointer /url');
is(pointers(refused(422, 'PATCH javascript:', 'PATCH', "/links/$P-a", undef,
                    { url => 'JavaScript:alert(1)', title => 'ok' }, $alice)),
   '/url', 'PATCH with one bad field changes none');


# --- alias collisions: 409 -------------------------------------------------------

my $c409 = refused(409, 'alias taken', 'POST', '/links', undef,
                   { url => 'https://e.com/', code => "$P-a" }, $bob);
is(pointers($c409), '/code', 'alias taken: pointer /code');
refused(409, 'alias taken by a link made in SQL', 'POST', '/links', undef,
        { url => 'https://e.com/', code => "$P-sql" }, $root);

($st, $b) = api('DELETE', "/links/$P-a", undef, undef, $alice);
is($st . '|' . ($b // 'no body'), '204|no body', 'DELETE: 204 without a body');
is(sql_value("SELECT deleted_at IS NOT NULL FROM shortlink.links WHERE code = '$P-a'"), 't',
   'DELETE is a soft delete');
refused(404, 'GET a deleted link', 'GET', "/links/$P-a", undef, undef, $alice);
refused(404, 'PATCH a deleted link', 'PATCH', "/links/$P-a", undef, { title => 'x' }, $root);
refused(404, 'DELETE a deleted link', 'DELETE', "/links/$P-a", undef, undef, $alice);
refused(404, 'stats of a deleted link', 'GET', "/links/$P-a/stats", undef, undef, $alice);
refused(409, 'the code of a deleted link is never reused', 'POST', '/links', undef,
        { url => 'https://e.com/', code => "$P-a" }, $alice);


# --- SQL injection strings are data ------------------------------------------------

my $inj = q{'; DROP TABLE shortlink.links; --};
my $evil_url = q{https://example.com/?q=';DROP/**/TABLE/**/shortlink.links;--&x="\\};
($st, $b) = api('POST', '/links', undef,
    { url => $evil_url, code => "$P-inj", title => $inj . q{ "\\ $$ $x$ %s %L} }, $alice,
    q{https://sho.rt'||'x});
is($st, 201, 'injection strings in url and title: 201');
is_deeply([ @$b{qw(url title short_url)} ],
          [ $evil_url, $inj . q{ "\\ $$ $x$ %s %L}, q{https://sho.rt'||'x} . "/$P-inj" ],
          'stored and returned verbatim');
is(sql_value("SELECT url FROM shortlink.links WHERE code = '$P-inj'"), $evil_url,
   'the table holds the URL verbatim');
is(pointers(refused(422, 'injection as code', 'POST', '/links', undef,
                    { url => 'https://e.com/', code => $inj }, $alice)), '/code',
   'injection as code: /code');
is(pointers(refused(422, 'injection as tag', 'POST', '/links', undef,
                    { url => 'https://e.com/', tags => [ $inj ] }, $alice)), '/tags/0',
   'injection as tag: /tags/0');
is(pointers(refused(422, 'injection as field name', 'POST', '/links', undef,
                    { url => 'https://e.com/', $inj => 1 }, $alice)),
   '/' . $inj, 'injection as a field name: its pointer');
is(pointers(refused(422, 'injection as expires_at', 'POST', '/links', undef,
                    { url => 'https://e.com/', expires_at => "2099-01-01'; --" }, $alice)),
   '/expires_at', 'injection as expires_at');
is(pointers(refused(422, 'injection as redirect_status', 'POST', '/links', undef,
                    { url => 'https://e.com/', redirect_status => "302; $inj" }, $alice)),
   '/redirect_status', 'injection as redirect_status');
refused(400, 'injection in the query', 'GET', '/links',
        'tag=%27%3B%20DROP%20TABLE%20shortlink.links%3B%20--', undef, $alice);
refused(400, 'injection as a parameter name', 'GET', '/links',
        "%27%3B+DROP+TABLE+x%3B--=1", undef, $alice);
refused(400, 'injection as a cursor', 'GET', '/links', "cursor=$inj", undef, $alice);
refused(400, 'injection as stats from', 'GET', "/links/$P-inj/stats",
        'from=2025-01-01%27%3B--', undef, $alice);
is(sql_value("SELECT to_regclass('shortlink.links') IS NOT NULL"), 't', 'links is still there');


# --- stats ---------------------------------------------------------------------------

sql(qq{SELECT shortlink.record_clicks(
        ARRAY[md5('$P-c1')::uuid, md5('$P-c2')::uuid],
        ARRAY[(extract(epoch FROM now() - interval '1 hour') * 1000)::bigint,
              (extract(epoch FROM now() - interval '1 hour') * 1000)::bigint],
        ARRAY['$P-inj', '$P-inj'], ARRAY['10.1.1.1', '10.1.1.2'],
        NULL, NULL, ARRAY['v1', 'v1'], NULL)});
($st, $b) = api('GET', "/links/$P-inj/stats", undef, undef, $alice);
is("$st $b->{code} $b->{interval} $b->{totals}{pv} $b->{totals}{uv} $b->{totals}{unique_ips}",
   "200 $P-inj day 2 1 2", 'stats: default range (last 7 days) and interval');
like(scalar @{ $b->{series} }, qr/^[78]$/, 'seven days: the UTC days they touch');
($st, $b) = api('GET', "/links/$P-inj/stats",
                'from=2025-03-10&to=2025-03-10T06:00:00%2B02:00&interval=hour', undef, $root);
is("$st $b->{from} $b->{to} " . scalar @{ $b->{series} },
   '200 2025-03-10T00:00:00Z 2025-03-10T04:00:00Z 4', 'stats: from, to with an offset, hours');
refused(400, 'stats bad from', 'GET', "/links/$P-inj/stats", 'from=yesterday', undef, $alice);
refused(400, 'stats to without zone', 'GET', "/links/$P-inj/stats",
        'to=2025-03-10T06:00:00', undef, $alice);
refused(400, 'stats to before from', 'GET', "/links/$P-inj/stats",
        'from=2025-03-10&to=2025-03-09', undef, $alice);
refused(400, 'stats interval week', 'GET', "/links/$P-inj/stats", 'interval=week', undef, $alice);
refused(400, 'stats too many buckets', 'GET', "/links/$P-inj/stats",
        'from=2000-01-01&to=2025-01-01&interval=hour', undef, $alice);
refused(400, 'stats unknown parameter', 'GET', "/links/$P-inj/stats", 'limit=3', undef, $alice);
sql("DELETE FROM shortlink.clicks WHERE code LIKE '$P%';
     DELETE FROM shortlink.link_hourly_clicks WHERE code LIKE '$P%'");


# --- bulk ----------------------------------------------------------------------------

my $n0 = links_count();
($st, $b) = api('POST', '/links/bulk', undef, [
    { url => 'https://example.com/b0', code => "$P-b0" },
    { url => "https://example.com/\r\nX: y" },
    { url => 'https://example.com/b2', code => "$P-inj" },
    'not an object',
    { url => 'https://example.com/b4', tags => [ 'bulk' ] },
    { url => 'https://example.com/b5', code => "$P-b0" },
    { url => 'data:text/html,x', code => "$P-b6", zzz => 1 },
], $alice);
is($st, 200, 'bulk: 200');
is_deeply([ map { "$_->{index}:$_->{status}" } @{ $b->{results} } ],
          [ '0:201', '1:422', '2:409', '3:422', '4:201', '5:409', '6:422' ],
          'bulk: each item answered on its own');
is("$b->{created} $b->{refused}", '2 5', 'bulk: created and refused');
is_deeply([ map { pointers($_->{problem}) } @{ $b->{results} }[1, 2, 3, 5, 6] ],
          [ '/1/url', '/2/code', '/3', '/5/code', '/6/url /6/zzz' ],
          'bulk: pointers name the item');
is($b->{results}[4]{link}{owner}, "$P-alice", 'bulk: links belong to the key\'s owner');
is(links_count(), $n0 + 2, 'bulk: only the good items were written');
is(sql_value("SELECT count(*) FROM shortlink.links WHERE code = '$P-b6'"), 0,
   'bulk: a refused item left nothing');

($st, $b) = api('POST', '/links/bulk', undef, [], $alice);
is("$st $b->{created} $b->{refused}", '200 0 0', 'bulk: an empty array');
refused(413, 'bulk of 1001', 'POST', '/links/bulk', undef,
        [ map { { url => "https://example.com/$_" } } 1 .. 1001 ], $alice);
refused(400, 'bulk of an object', 'POST', '/links/bulk', undef, { url => 'https://e.com/' }, $alice);
refused(400, 'bulk invalid JSON', 'POST', '/links/bulk', undef, '[{"url":', $alice);
refused(400, 'bulk bad code_length', 'POST', '/links/bulk', 'code_length=99', [], $alice);


# --- listing and cursor pagination ----------------------------------------------------

# 120 links of bob's in three statements (three created_at values)
my @want;
for my $part (0 .. 2) {
    my @items = map { { url => "https://example.com/p$_", code => sprintf("$P-p%03d", $_),
                        tags => [ 't130page', ($_ % 2 ? 'odd' : 'even') ] } }
                reverse $part * 40 .. $part * 40 + 39;
    ($st, $b) = api('POST', '/links/bulk', undef, \@items, $bob);
    is("$st $b->{created}", '200 40', "40 links for pagination, part $part");
    push @want, map { sprintf("$P-p%03d", $_) } $part * 40 .. $part * 40 + 39;
}
sql("UPDATE shortlink.links SET created_at = created_at - interval '1 day'
      WHERE code IN ('$P-p100', '$P-p101')");  # order is created_at first
@want = ("$P-p100", "$P-p101", grep { !/^$P-p10[01]$/ } @want);

my (@got, $cursor);
my $pages = 0;
while ($pages < 30) {
    ($st, $b) = api('GET', '/links', 'limit=7&tag=t130page' . (defined $cursor ? "&cursor=$cursor" : ''),
                    undef, $bob);
    last unless $st == 200;
    $pages++;
    push @got, map { $_->{code} } @{ $b->{links} };
    $cursor = $b->{next_cursor};
    last unless defined $cursor;
}
is($pages, 18, '120 links in pages of 7: 18 pages');
is_deeply(\@got, \@want, 'every link once, in (created_at, code) order: no duplicates, no gaps');

sql("DELETE FROM shortlink.links WHERE code = '$P-p050'");   # gone between pages
($st, $b) = api('GET', '/links', 'limit=50&tag=t130page', undef, $bob);
my $mid = $b->{next_cursor};
($st, $b) = api('GET', '/links', "limit=1000&tag=t130page&cursor=$mid", undef, $bob);
is_deeply([ map { $_->{code} } @{ $b->{links} } ], [ grep { $_ ne "$P-p050" } @want[50 .. 119] ],
          'a cursor still works after its neighbours changed');
is($b->{next_cursor}, undef, 'the last page has no next_cursor');

($st, $b) = api('GET', '/links', 'limit=1000&tag=odd', undef, $bob);
is(scalar(grep { $_->{code} =~ /^$P-p/ } @{ $b->{links} }), 60, 'tag filter');
($st, $b) = api('GET', '/links', 'limit=1000', undef, $alice);
ok(!grep({ $_->{owner} ne "$P-alice" } @{ $b->{links} }) && @{ $b->{links} } >= 5,
   'an owner key lists only its own links');
ok(!grep({ $_->{code} eq "$P-a" } @{ $b->{links} }), 'deleted links are not listed');
($st, $b) = api('GET', '/links', 'limit=1000&tag=t130page', undef, $root);
is(scalar @{ $b->{links} }, 119, 'an admin key lists every owner\'s links');
($st, $b) = api('GET', '/links', undef, undef, $bob);
is(scalar @{ $b->{links} }, 50, 'limit defaults to 50');
($st, $b) = api('GET', '/links', 'limit=1000&tag=nosuchtag', undef, $bob);
is_deeply($b, { links => [], next_cursor => undef }, 'nothing found: an empty page');


# --- candidate codes from nginx (p_codes) ---------------------------------------------

# which items need a code: objects without "code" whose url is a string
is(join(' ', map { join ':', @$_ } @{ sql_rows(
       q{SELECT idx, url FROM shortlink.api_code_urls('/links/bulk',
           '[{"url":"https://e.com/0"},{"url":"https://e.com/1","code":"x"},
             "no",{"url":7},{"url":"https://e.com/4,\"q\""}]')}) }),
   '0:https://e.com/0 4:https://e.com/4,"q"', 'api_code_urls: bulk items without code');
is(join(' ', map { join ':', @$_ } @{ sql_rows(
       q{SELECT idx, url FROM shortlink.api_code_urls('/links', '{"url":"https://e.com/"}')}) }),
   '0:https://e.com/', 'api_code_urls: one link');
is(scalar @{ sql_rows(q~SELECT * FROM shortlink.api_code_urls('/links', '{"url":')~) }, 0,
   'api_code_urls: malformed JSON, no row');
is(scalar @{ sql_rows(q{SELECT * FROM shortlink.api_code_urls('/links/x', '{"url":"https://e.com/"}')}) },
   0, 'api_code_urls: another route, no row');

sql("INSERT INTO shortlink.links (code, url) VALUES ('${P}cand1', 'https://e.com/')");
($st, $b) = api_codes('POST', '/links', undef, { url => 'https://example.com/c' }, $alice,
                      { attempts => 3, items => { 0 => [ "${P}cand1", "${P}cand2" ] } });
is("$st $b->{code}", "201 ${P}cand2", 'candidates: a taken one is skipped, the next is used');
my $before = fingerprint();
($st, $b) = api_codes('POST', '/links', undef, { url => 'https://example.com/c' }, $alice,
                      { attempts => 4, items => { 0 => [ "${P}cand1", "${P}cand2" ] } });
is($st, 503, 'candidates all taken: 503');
like($b->{detail}, qr/^4 generated codes of length 7 were all taken/,
     'candidates all taken: the detail counts nginx\'s attempts');
is(fingerprint(), $before, 'candidates all taken: nothing written');
($st, $b) = api_codes('POST', '/links', undef, { url => 'https://example.com/c' }, $alice,
                      { attempts => 2, items => {} });
is($st, 503, 'no candidate for the item (all refused by the bloom filter): 503');
($st, $b) = api_codes('POST', '/links', undef, { url => 'https://example.com/c', code => "${P}own" },
                      $alice, { attempts => 2, items => { 0 => [ "${P}cand3" ] } });
is("$st $b->{code}", "201 ${P}own", 'candidates: a chosen code wins');
($st, $b) = api_codes('POST', '/links/bulk', undef,
                      [ { url => 'https://example.com/0' }, { url => 'https://example.com/1' },
                        { url => 'https://example.com/2' } ], $alice,
                      { attempts => 1, items => { 0 => [ "${P}cand4" ], 2 => [ "${P}cand5" ] } });
is_deeply([ map { $_->{status} == 201 ? $_->{link}{code} : $_->{status} } @{ $b->{results} } ],
          [ "${P}cand4", 503, "${P}cand5" ], 'bulk candidates: per item index');
($st, $b) = api_codes('POST', '/links', undef, { url => 'https://example.com/c' }, $alice,
                      { attempts => 2, items => { 0 => [ "bad code", "bulk", "${P}cand6" ] } });
is("$st $b->{code}", "201 ${P}cand6", 'candidates: malformed ones and "bulk" are skipped');


# --- routes from shortlink.api_routes (013) --------------------------------------

sql(q{
    CREATE FUNCTION shortlink.t130_echo(p_method text, p_match text[], p_params jsonb,
                                        p_body text, p_owner text, p_admin boolean,
                                        p_base_url text)
    RETURNS shortlink.api_result LANGUAGE plpgsql AS $f$
    BEGIN
        IF p_match[1] = 'boom' THEN
            INSERT INTO shortlink.links (code, url, owner)
                 VALUES ('t130boom', 'https://example.com/', 't130-alice');
            RAISE EXCEPTION 'boom';
        END IF;
        RETURN ROW(200, jsonb_build_object('method', p_method, 'match', to_jsonb(p_match),
                                           'params', p_params, 'body', p_body,
                                           'owner', p_owner, 'admin', p_admin,
                                           'base', p_base_url))::shortlink.api_result;
    END;
    $f$;
    INSERT INTO shortlink.api_routes (pattern, methods, handler)
         VALUES ('^/t130/([a-z]+)(/x)?$', '{"GET": ["a"], "PUT": []}',
                 'shortlink.t130_echo');
});

($st, $b) = api('GET', '/t130/abc', 'a=1', undef, $alice);
is($json->encode([ 0 + $st, $b ]),
   $json->encode([ 200, { method => 'GET', match => [ 'abc', undef ], params => { a => '1' },
                          body => undef, owner => "$P-alice", admin => JSON::PP::false,
                          base => $BASE } ]),
   'table route: the handler gets method, captures, parameters, owner and base URL');
($st, $b) = api('HEAD', '/t130/abc/x', undef, undef, $root);
is("$st $b->{method} $b->{match}[1] " . ($b->{admin} ? 1 : 0), '200 GET /x 1',
   'table route: HEAD is GET, an admin key says so');
($st, $b) = api('PUT', '/t130/abc', undef, 'body', $alice);
is("$st $b->{method} $b->{body}", '200 PUT body', 'table route: PUT with its body');
my $np = refused(405, 'table route: a method it does not allow', 'DELETE', '/t130/abc',
                undef, undef, $alice);
is($np->{allow}, 'GET, HEAD, PUT', 'table route: the 405 says what is allowed');
refused(400, 'table route: a query parameter it does not accept', 'PUT', '/t130/abc',
        'a=1', undef, $alice);
refused(404, 'table route: no pattern matches', 'GET', '/t130/ABC', undef, undef, $alice);
refused(401, 'table route: no key', 'GET', '/t130/abc', undef, undef, undef);
refused(500, 'table route: a failing handler', 'GET', '/t130/boom', undef, undef, $alice);
is(sql_value("SELECT count(*) FROM shortlink.links WHERE code = 't130boom'"), 0,
   'table route: what a failing handler wrote is rolled back');
eval { sql(q{INSERT INTO shortlink.api_routes (pattern, methods, handler)
                  VALUES ('^/t130-bad$', '{"FETCH": []}', 'shortlink.t130_echo')}) };
ok($@, 'api_routes refuses a method it does not know');
eval { sql(q{INSERT INTO shortlink.api_routes (pattern, methods, handler)
                  VALUES ('/t130-unanchored', '{"GET": []}', 'shortlink.t130_echo')}) };
ok($@, 'api_routes refuses a pattern that is not anchored');

sql(q{
    DELETE FROM shortlink.api_routes WHERE pattern LIKE '^/t130%';
    DROP FUNCTION shortlink.t130_echo(text, text[], jsonb, text, text, boolean, text);
});


# --- HEAD is GET ----------------------------------------------------------------------

($st, $b) = api('HEAD', "/links/${P}cand6", undef, undef, $alice);
is("$st $b->{code}", "200 ${P}cand6", 'HEAD /links/{code}: as GET');
($st, $b) = api('HEAD', '/links', 'limit=1', undef, $alice);
is($st, 200, 'HEAD /links: as GET');


# --- generated codes without nginx (psql): 10,000 ---------------------------------------

my %codes;
my $created = 0;
for my $call (1 .. 10) {
    ($st, $b) = api('POST', '/links/bulk', undef,
                    [ map { { url => "https://example.com/same-for-all" } } 1 .. 1000 ], $gen);
    $created += $b->{created} if $st == 200;
    $codes{ $_->{link}{code} }++ for grep { $_->{status} == 201 } @{ $b->{results} };
}
is($created, 10_000, '10 bulk calls of 1000 created 10,000 links');
is(scalar keys %codes, 10_000, '10,000 distinct generated codes');
is(scalar(grep { !/^[0-9A-Za-z]{7}$/ } keys %codes), 0, 'all 7 base62 characters');
is(sql_value("SELECT count(DISTINCT code) FROM shortlink.links WHERE owner = '$P-gen'"),
   10_000, 'and 10,000 rows in the table');


# --- cleanup ------------------------------------------------------------------------

cleanup();
is(links_count() . ' ' . sql_value("SELECT count(*) FROM shortlink.api_keys
                                     WHERE owner LIKE '$P-%'"),
   '0 0', 'nothing of this suite is left');

done_testing();
