# Link-in-bio profiles, database side (sql/015_profiles.sql), without nginx:
# the tables' constraints and triggers as any psql writer meets them, what
# profile_page() and profile_usernames() return to nginx, the notifications
# every kind of change sends (LISTEN in psql, payloads checked), and the
# /profiles API called through shortlink.api() as the module calls it --
# every route, owners and admin keys, hostile strings in every field
# (stored as sent or refused with 422, never a 500), and that an error
# answer writes nothing.
#
# Everything this suite writes belongs to owners "t160-..." or has a code
# starting with "t160" and is removed at the start and at the end; shared
# tables are never truncated.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use File::Temp qw(tempfile);
use lib 't/lib';
use ShortlinkTest;

my $P = 't160';
my $BASE = 'https://sho.rt';
my $json = JSON::PP->new->utf8->canonical;

sub q_ {
    my ($v) = @_;
    return 'NULL' unless defined $v;
    utf8::encode($v) if utf8::is_utf8($v);
    $v =~ s/'/''/g;
    return "'$v'";
}

sub cleanup {
    sql(qq{
        DELETE FROM shortlink.profiles WHERE owner LIKE '$P-%' OR username LIKE '$P%';
        DELETE FROM shortlink.links WHERE owner LIKE '$P-%' OR code LIKE '$P%';
        DELETE FROM shortlink.api_keys WHERE owner LIKE '$P-%';
    });
}

# one API call; returns (status, decoded body or undef)
sub api {
    my ($method, $path, $query, $body, $key) = @_;
    $body = $json->encode($body) if ref $body;
    my $out = sql_value(
        'SELECT status || \'|\' || coalesce(body::text, \'\') FROM shortlink.api('
        . join(', ', map { q_($_) } $method, $path, $query, $body, $key, $BASE)
        . ')');
    my ($status, $text) = split /\|/, $out, 2;
    return ($status, length $text ? $json->decode($text) : undef);
}

# everything the profiles API could write
sub fingerprint {
    return sql_value(q{
        SELECT md5(coalesce((SELECT string_agg(p::text, ',' ORDER BY id)
                               FROM shortlink.profiles p), '')
                   || coalesce((SELECT string_agg(e::text, ',' ORDER BY profile_id, position)
                                  FROM shortlink.profile_entries e), '')
                   || coalesce((SELECT string_agg(l::text, ',' ORDER BY code)
                                  FROM shortlink.links l), ''))
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

sub pointers {
    my ($body) = @_;
    return join ' ', sort map { $_->{pointer} } @{ $body->{errors} || [] };
}

# runs SQL in one psql session that LISTENs on shortlink_links; returns
# the payloads received, in order (psql prints them after each statement)
sub notified {
    my ($script) = @_;
    my ($fh, $file) = tempfile(UNLINK => 1);
    print $fh "LISTEN shortlink_links;\n$script\n";
    close $fh;
    my $dsn = $ENV{TEST_NGINX_PG_DSN} or die "TEST_NGINX_PG_DSN is not set\n";
    my $out = qx{psql -X -q -v ON_ERROR_STOP=1 -f '$file' '$dsn' 2>&1};
    die "psql failed: $out" if $?;
    return [ $out =~ /^Asynchronous notification "shortlink_links" with payload "([^"]*)"/mg ];
}

# only the profile payloads
sub profile_notes {
    return [ grep { /^@/ } @{ notified(@_) } ];
}

sub fails {
    my ($stmt, $like, $name) = @_;
    my $out = eval { sql($stmt); 'succeeded' } // $@;
    like($out, $like, $name);
}

sub version_of {
    my ($user) = @_;
    return sql_value("SELECT version FROM shortlink.profiles WHERE username = '$user'");
}

sub page {
    my ($user) = @_;
    my $row = sql_value('SELECT row_to_json(x) FROM shortlink.profile_page(' . q_($user) . ') x');
    return undef unless length $row;
    my $r = $json->decode($row);
    $r->{next} = $r->{next_change_epoch} // '';
    $r->{avatar_url} //= '';
    return $r;
}

sub codes_of {
    my ($page) = @_;
    return join ' ', map { $_->{code} } @{ $page->{entries} };
}

cleanup();

my $alice = sql_value("SELECT shortlink.create_api_key('$P-alice')");
my $bob   = sql_value("SELECT shortlink.create_api_key('$P-bob')");
my $root  = sql_value("SELECT shortlink.create_api_key('$P-root', true)");

sql(qq{
    INSERT INTO shortlink.links (code, url, owner) VALUES
        ('${P}a', 'https://example.com/a', '$P-alice'),
        ('${P}b', 'https://example.com/b', '$P-alice'),
        ('${P}c', 'https://example.com/c', '$P-alice'),
        ('${P}d', 'https://example.com/d', '$P-alice'),
        ('${P}x', 'https://example.com/x', '$P-bob'),
        ('${P}sql', 'https://example.com/sql', NULL);
});


# --- constraints, as a psql writer meets them -------------------------------------

my $ins = "INSERT INTO shortlink.profiles (username, owner, display_name, bio, avatar_url, theme)";
for my $bad ('', 'Upper', 'has space', 'dash-no', 'a' x 31, "x\ny", 'ümlaut', 'semi;') {
    my $u = q_($bad);
    fails("$ins VALUES ($u, '$P-alice', 'D', '', NULL, 'light')",
          qr/profiles_username_format/, "username " . $json->encode([$bad]) . " refused");
}
fails("$ins VALUES ('${P}ok', '$P-alice', '', '', NULL, 'light')",
      qr/profiles_display_name_format/, 'empty display name refused');
fails("$ins VALUES ('${P}ok', '$P-alice', '${\ ('d' x 101)}', '', NULL, 'light')",
      qr/profiles_display_name_format/, 'display name of 101 characters refused');
for my $c ("\t", "\n", "\x7f", "\x{85}", "\x{9f}", "\x1b") {
    my $lit = sprintf "E'a\\u%04x'", ord $c;
    fails("$ins VALUES ('${P}ok', '$P-alice', $lit, '', NULL, 'light')",
          qr/profiles_display_name_format/, sprintf('display name with U+%04X refused', ord $c));
}
fails("$ins VALUES ('${P}ok', '$P-alice', 'D', E'a\\rb', NULL, 'light')",
      qr/profiles_bio_format/, 'bio with a carriage return refused');
fails("$ins VALUES ('${P}ok', '$P-alice', 'D', E'a\\tb', NULL, 'light')",
      qr/profiles_bio_format/, 'bio with a tab refused');
fails("$ins VALUES ('${P}ok', '$P-alice', 'D', '${\ ('b' x 1001)}', NULL, 'light')",
      qr/profiles_bio_format/, 'bio of 1001 characters refused');
for my $url ('ftp://x.example/', 'https://', 'https://a.example/ b', "https://a.example/\xc3\xa9",
             'javascript:alert(1)', '//a.example/x', 'https://a.example/' . ('x' x 8200)) {
    fails("$ins VALUES ('${P}ok', '$P-alice', 'D', '', ${\ q_($url)}, 'light')",
          qr/profiles_avatar_url_format/, 'avatar URL ' . substr($url, 0, 30) . ' refused');
}
fails("$ins VALUES ('${P}ok', '$P-alice', 'D', '', NULL, 'neon')",
      qr/profiles_theme/, 'unknown theme refused');
fails("$ins VALUES ('${P}ok', E'a\\nb', 'D', '', NULL, 'light')",
      qr/profiles_owner_format/, 'owner with a line feed refused');

sql("$ins VALUES ('${P}ok', '$P-alice', 'D', E'line 1\\nline 2', 'https://img.example/a.png', 'dark')");
is(sql_value("SELECT bio FROM shortlink.profiles WHERE username = '${P}ok'"), "line 1\nline 2",
   'a bio with line feeds is stored');
my $ok_id = sql_value("SELECT id FROM shortlink.profiles WHERE username = '${P}ok'");

my $eins = "INSERT INTO shortlink.profile_entries (profile_id, position, link_code, title,
                                                   visible_from, visible_until)";
fails("$eins VALUES ($ok_id, 0, '${P}x', 'T', NULL, NULL)",
      qr/profile_entries_link_owner|another owner|does not belong/,
      'an entry with another owner\'s link refused');
fails("$eins VALUES ($ok_id, 0, '${P}sql', 'T', NULL, NULL)",
      qr/does not belong/, 'an entry with a link of no owner (created in SQL) refused');
fails("$eins VALUES ($ok_id, 0, '${P}nope', 'T', NULL, NULL)",
      qr/profile_entries_link_code_fkey/, 'an entry with an unknown link refused');
fails("$eins VALUES ($ok_id, 0, '${P}a', '', NULL, NULL)",
      qr/profile_entries_title_format/, 'empty title refused');
fails("$eins VALUES ($ok_id, 0, '${P}a', E'a\\nb', NULL, NULL)",
      qr/profile_entries_title_format/, 'title with a line feed refused');
fails("$eins VALUES ($ok_id, 0, '${P}a', '${\ ('t' x 201)}', NULL, NULL)",
      qr/profile_entries_title_format/, 'title of 201 characters refused');
fails("$eins VALUES ($ok_id, -1, '${P}a', 'T', NULL, NULL)",
      qr/profile_entries_position_range/, 'negative position refused');
fails("$eins VALUES ($ok_id, 0, '${P}a', 'T', '2030-01-02Z', '2030-01-01Z')",
      qr/profile_entries_schedule/, 'visible_until before visible_from refused');
fails("$eins VALUES ($ok_id, 0, '${P}a', 'T', '2030-01-01Z', '2030-01-01Z')",
      qr/profile_entries_schedule/, 'an empty schedule refused');
fails("$eins VALUES ($ok_id, 0, '${P}a', 'T', NULL, NULL), ($ok_id, 1, '${P}a', 'U', NULL, NULL)",
      qr/profile_entries_pkey/, 'a link twice on one profile refused');
fails("$eins VALUES ($ok_id, 0, '${P}a', 'T', NULL, NULL), ($ok_id, 0, '${P}b', 'U', NULL, NULL)",
      qr/profile_entries_position_key/, 'two entries at one position refused');

sql("$eins VALUES ($ok_id, 0, '${P}a', 'A', NULL, NULL), ($ok_id, 1, '${P}b', 'B', NULL, NULL)");
sql("UPDATE shortlink.profile_entries SET position = position + 1 WHERE profile_id = $ok_id");
is(sql_value("SELECT string_agg(link_code || '\@' || position, ' ' ORDER BY position)
                FROM shortlink.profile_entries WHERE profile_id = $ok_id"),
   "${P}a\@1 ${P}b\@2", 'positions shift in one UPDATE (the unique key is deferrable)');

fails("UPDATE shortlink.links SET owner = '$P-bob' WHERE code = '${P}a'",
      qr/cannot change owner/, 'a link on a profile cannot move to another owner');
fails("UPDATE shortlink.profiles SET owner = '$P-bob' WHERE id = $ok_id",
      qr/links of another owner/, 'a profile with entries cannot move to another owner');
sql("UPDATE shortlink.links SET title = 'still mine' WHERE code = '${P}a'");
pass('other changes to a listed link are allowed');

# more than 100 entries: 101 links of alice
sql(qq{
    INSERT INTO shortlink.links (code, url, owner)
    SELECT '${P}m' || i, 'https://example.com/m' || i, '$P-alice' FROM generate_series(1, 101) i;
    $ins VALUES ('${P}many', '$P-alice', 'Many', '', NULL, 'light');
});
my $many_id = sql_value("SELECT id FROM shortlink.profiles WHERE username = '${P}many'");
sql("INSERT INTO shortlink.profile_entries (profile_id, position, link_code, title)
     SELECT $many_id, i, '${P}m' || i, 'M' || i FROM generate_series(1, 100) i");
fails("INSERT INTO shortlink.profile_entries (profile_id, position, link_code, title)
       VALUES ($many_id, 101, '${P}m101', 'M101')",
      qr/profile_entries_limit|more than 100/, 'the 101st entry refused');
is(sql_value("SELECT count(*) FROM shortlink.profile_entries WHERE profile_id = $many_id"),
   100, '100 entries are allowed');

# the pseudo codes of profile views
fails("INSERT INTO shortlink.links (code, url) VALUES ('_p12', 'https://example.com/')",
      qr/links_code_not_profile/, 'a link cannot take the code _p12');
is(sql_value("SELECT convalidated FROM pg_constraint WHERE conname = 'links_code_not_profile'"),
   't', 'links_code_not_profile is validated');
sql("INSERT INTO shortlink.links (code, url, owner) VALUES ('${P}_p1', 'https://example.com/', '$P-bob')");
pass('codes that merely contain _p are allowed');


# --- profile_page and profile_usernames -------------------------------------------

my $pg = page("${P}ok");
is($pg->{profile_id}, $ok_id, 'profile_page: the id');
is($pg->{display_name} . '|' . $pg->{bio} . '|' . $pg->{avatar_url} . '|' . $pg->{theme},
   "D|line 1\nline 2|https://img.example/a.png|dark", 'profile_page: the fields');
is_deeply($pg->{entries}, [ { code => "${P}a", title => 'A' }, { code => "${P}b", title => 'B' } ],
          'profile_page: entries in position order, code and title');
is($pg->{next}, '', 'profile_page: no next change');
is($pg->{version}, version_of("${P}ok"), 'profile_page: the version');

sql(qq{
    INSERT INTO shortlink.profile_entries (profile_id, position, link_code, title, enabled,
                                           visible_from, visible_until) VALUES
        ($ok_id, 10, '${P}c', 'C later', true, now() + interval '1 hour', NULL),
        ($ok_id, 11, '${P}d', 'D over', true, now() - interval '2 hours', now() - interval '1 hour');
    UPDATE shortlink.profile_entries SET position = 0 WHERE link_code = '${P}b';
    UPDATE shortlink.profile_entries SET position = 5 WHERE link_code = '${P}a';
});
$pg = page("${P}ok");
is(codes_of($pg), "${P}b ${P}a", 'reordered; a future and a past schedule are not shown');
my $in_hour = sql_value("SELECT ceil(extract(epoch FROM visible_from))::bigint
                           FROM shortlink.profile_entries WHERE link_code = '${P}c'");
is($pg->{next}, $in_hour, 'next_change_epoch: the start of the future schedule');

sql("UPDATE shortlink.profile_entries SET visible_from = now() - interval '1 minute',
                                          visible_until = now() + interval '30 minutes'
      WHERE link_code = '${P}c'");
$pg = page("${P}ok");
is(codes_of($pg), "${P}b ${P}a ${P}c", 'an entry inside its schedule is shown');
is($pg->{next}, sql_value("SELECT ceil(extract(epoch FROM visible_until))::bigint
                             FROM shortlink.profile_entries WHERE link_code = '${P}c'"),
   'next_change_epoch: its end');

sql("UPDATE shortlink.links SET expires_at = now() + interval '10 minutes' WHERE code = '${P}b'");
$pg = page("${P}ok");
is($pg->{next}, sql_value("SELECT ceil(extract(epoch FROM expires_at))::bigint
                             FROM shortlink.links WHERE code = '${P}b'"),
   'next_change_epoch: a link expiring earlier');

sql("UPDATE shortlink.profile_entries SET enabled = false WHERE link_code = '${P}a'");
is(codes_of(page("${P}ok")), "${P}b ${P}c", 'a disabled entry is not shown');
sql("UPDATE shortlink.links SET enabled = false WHERE code = '${P}b'");
is(codes_of(page("${P}ok")), "${P}c", 'an entry of a disabled link is not shown');
sql("UPDATE shortlink.links SET enabled = true, expires_at = now() - interval '1 second'
      WHERE code = '${P}b'");
is(codes_of(page("${P}ok")), "${P}c", 'an entry of an expired link is not shown');
sql("UPDATE shortlink.links SET expires_at = NULL WHERE code = '${P}b';
     UPDATE shortlink.links SET deleted_at = now() WHERE code = '${P}c'");
is(codes_of(page("${P}ok")), "${P}b", 'an entry of a deleted link is not shown');
sql("UPDATE shortlink.links SET deleted_at = NULL WHERE code = '${P}c';
     UPDATE shortlink.profile_entries SET enabled = true WHERE link_code = '${P}a'");

is(page("${P}nobody"), undef, 'profile_page: no row for an unknown username');
is(page("x'; DROP TABLE shortlink.links; --"), undef, 'profile_page: no row for SQL in a name');
my %names = map { $_->[0] => 1 } @{ sql_rows("SELECT * FROM shortlink.profile_usernames()") };
ok($names{"${P}ok"} && $names{"${P}many"}, 'profile_usernames: the live profiles');
sql("UPDATE shortlink.profiles SET deleted_at = now() WHERE username = '${P}many'");
is(page("${P}many"), undef, 'profile_page: no row for a deleted profile');
%names = map { $_->[0] => 1 } @{ sql_rows("SELECT * FROM shortlink.profile_usernames()") };
ok(!$names{"${P}many"}, 'profile_usernames: not a deleted one');
fails("$ins VALUES ('${P}many', '$P-bob', 'Again', '', NULL, 'light')",
      qr/profiles_username_key/, 'the username of a deleted profile stays taken');


# --- notifications: "@<username>:<version>", one per profile per statement ---------

sql("$ins VALUES ('${P}n2', '$P-alice', 'N2', '', NULL, 'light')");
my $n2_id = sql_value("SELECT id FROM shortlink.profiles WHERE username = '${P}n2'");
my $v = version_of("${P}ok");
my $v2 = version_of("${P}n2");

is_deeply(profile_notes("$ins VALUES ('${P}n3', '$P-alice', 'N3', '', NULL, 'light');"),
          [ "\@${P}n3:1" ], 'insert: @name:1');
is_deeply(profile_notes("UPDATE shortlink.profiles SET bio = 'x' WHERE username = '${P}ok';"),
          [ "\@${P}ok:" . ($v + 1) ], 'profile update: the new version');
$v++;
is_deeply(profile_notes("UPDATE shortlink.profiles SET theme = theme WHERE username = '${P}ok';"),
          [ "\@${P}ok:" . ($v + 1) ], 'an update that changes nothing still announces');
$v++;
is_deeply(profile_notes("INSERT INTO shortlink.profile_entries (profile_id, position, link_code, title)
                         VALUES ($n2_id, 0, '${P}a', 'a'), ($n2_id, 1, '${P}b', 'b'),
                                ($n2_id, 2, '${P}c', 'c');"),
          [ "\@${P}n2:" . ($v2 + 1) ], 'three entries inserted in one statement: one notification');
$v2++;
is_deeply(profile_notes("UPDATE shortlink.profile_entries SET position = 2 - position
                          WHERE profile_id = $n2_id;"),
          [ "\@${P}n2:" . ($v2 + 1) ], 'entries reordered in one statement: one notification');
$v2++;
is_deeply([ sort @{ profile_notes("UPDATE shortlink.profile_entries SET title = 'A!'
                                          WHERE link_code = '${P}a';") } ],
          [ sort "\@${P}n2:" . ($v2 + 1), "\@${P}ok:" . ($v + 1) ],
          'entries of two profiles in one statement: one notification each');
$v++; $v2++;

for my $change ([ "url = 'https://example.com/a2'", 'url' ],
                [ 'enabled = false', 'enabled' ],
                [ 'enabled = true', 'enabled again' ],
                [ "expires_at = now() + interval '1 day'", 'expires_at' ],
                [ 'deleted_at = now()', 'deleted_at' ],
                [ 'deleted_at = NULL', 'undeleted' ]) {
    my $got = profile_notes("UPDATE shortlink.links SET $change->[0] WHERE code = '${P}a';");
    is_deeply([ sort @$got ], [ sort "\@${P}n2:" . ($v2 + 1), "\@${P}ok:" . ($v + 1) ],
              "link $change->[1] changed: every profile listing it, once");
    $v++; $v2++;
}
is_deeply(profile_notes("UPDATE shortlink.links SET title = 'not shown', tags = '{x}'
                          WHERE code = '${P}a';"),
          [], 'a change to a link the page does not show: no profile notification');
is_deeply([ sort @{ profile_notes("UPDATE shortlink.links SET enabled = false
                                    WHERE code IN ('${P}a', '${P}b', '${P}c');") } ],
          [ sort "\@${P}n2:" . ($v2 + 1), "\@${P}ok:" . ($v + 1) ],
          'three links of a profile in one statement: one notification per profile');
$v++; $v2++;
sql("UPDATE shortlink.links SET enabled = true WHERE code IN ('${P}a', '${P}b', '${P}c')");
$v++; $v2++;
my $got = notified("UPDATE shortlink.links SET code = '${P}a_new' WHERE code = '${P}a';");
is_deeply([ sort grep { /^@/ } @$got ], [ sort "\@${P}n2:" . ($v2 + 1), "\@${P}ok:" . ($v + 1) ],
          'a link renamed: every profile listing it, once');
ok((grep { /^${P}a:/ } @$got) && (grep { /^${P}a_new:/ } @$got),
   'and the link\'s own notifications still come');
$v++; $v2++;
is(sql_value("SELECT count(*) FROM shortlink.profile_entries WHERE link_code = '${P}a_new'"), 2,
   'the entries follow the new code');
is_deeply([ sort @{ profile_notes("DELETE FROM shortlink.profile_entries
                                    WHERE link_code = '${P}b';") } ],
          [ sort "\@${P}n2:" . ($v2 + 1), "\@${P}ok:" . ($v + 1) ],
          'entries deleted: one notification each');
$v++; $v2++;
is_deeply(profile_notes("BEGIN; UPDATE shortlink.profiles SET bio = 'never' WHERE id = $n2_id;
                         ROLLBACK;"),
          [], 'a rolled-back change: nothing');
is_deeply(profile_notes("UPDATE shortlink.profiles SET username = '${P}n2b' WHERE id = $n2_id;"),
          [ "\@${P}n2b:" . ($v2 + 1), "\@${P}n2:" . ($v2 + 1) ],
          'rename: the new name with the new version, the old one with version + 1');
$v2++;
is_deeply(profile_notes("UPDATE shortlink.profiles SET deleted_at = now() WHERE id = $n2_id;"),
          [ "\@${P}n2b:" . ($v2 + 1) ], 'soft delete: the new version');
$v2++;
is_deeply(profile_notes("DELETE FROM shortlink.profiles WHERE id = $n2_id;"),
          [ "\@${P}n2b:" . ($v2 + 1) ], 'hard delete (entries cascade): version + 1, once');
sql("INSERT INTO shortlink.links (code, url, owner) VALUES ('${P}gone', 'https://example.com/g', '$P-alice');
     INSERT INTO shortlink.profile_entries (profile_id, position, link_code, title)
     VALUES ($ok_id, 50, '${P}gone', 'gone')");
$v++;
is_deeply(profile_notes("DELETE FROM shortlink.links WHERE code = '${P}gone';"),
          [ "\@${P}ok:" . ($v + 1) ], 'a listed link hard-deleted: its entries go, one notification');
$v++;
is(version_of("${P}ok"), $v, 'the versions counted along are the table\'s');


# --- the API ----------------------------------------------------------------------

sql("UPDATE shortlink.links SET code = '${P}a' WHERE code = '${P}a_new'");

my ($st, $b) = api('POST', '/profiles', undef,
    { username => "${P}alice", display_name => 'Alice', bio => "Hi\nthere",
      avatar_url => 'https://img.example/alice.png', theme => 'contrast',
      entries => [ { code => "${P}b", title => 'Bee' },
                   { code => "${P}a", title => 'Ay', enabled => JSON::PP::false,
                     visible_from => '2030-01-01T01:00:00+01:00' } ] }, $alice);
is($st, 201, 'POST /profiles: 201');
delete @$b{qw(created_at updated_at)};
is_deeply($b, {
    username => "${P}alice", display_name => 'Alice', bio => "Hi\nthere",
    avatar_url => 'https://img.example/alice.png', theme => 'contrast', owner => "$P-alice",
    version => 2,
    entries => [
        { code => "${P}b", short_url => "$BASE/${P}b", title => 'Bee', enabled => JSON::PP::true,
          visible_from => undef, visible_until => undef },
        { code => "${P}a", short_url => "$BASE/${P}a", title => 'Ay', enabled => JSON::PP::false,
          visible_from => '2030-01-01T00:00:00Z', visible_until => undef } ],
}, 'the profile: every field, entries in order, times in UTC');

($st, $b) = api('POST', '/profiles', undef, { username => "${P}min", display_name => 'M' }, $alice);
is("$st $b->{bio} $b->{theme} " . scalar @{ $b->{entries} }, '201  light 0',
   'POST /profiles: bio, theme and entries default');

$b = refused(409, 'POST /profiles, username taken', 'POST', '/profiles', undef,
             { username => "${P}alice", display_name => 'Other' }, $bob);
is(pointers($b), '/username', '409 names /username');
refused(409, 'POST /profiles, username of a deleted profile', 'POST', '/profiles', undef,
        { username => "${P}many", display_name => 'Other' }, $alice);

$b = refused(422, 'POST /profiles, everything wrong', 'POST', '/profiles', undef,
    { username => 'Bad Name', display_name => '', bio => "a\rb", avatar_url => 'ftp://x',
      theme => 'neon', extra => 1,
      entries => [ { code => "${P}x", title => 'bob\'s' }, { code => "${P}zzz", title => 'none' },
                   { code => "${P}b" }, { code => "${P}c", title => 'c' },
                   { code => "${P}c", title => 'c again' }, 'str',
                   { code => "${P}d", title => 't', visible_from => '2030-01-02T00:00:00Z',
                     visible_until => '2030-01-01T00:00:00Z' },
                   { code => 'bad code!', title => 't', enabled => 'yes' } ] }, $alice);
is(pointers($b), join(' ', sort qw(/username /display_name /bio /avatar_url /theme /extra
                                    /entries/0/code /entries/1/code /entries/2/title
                                    /entries/4/code /entries/5 /entries/6/visible_until
                                    /entries/7/code /entries/7/enabled)),
   'every invalid field has its pointer');
$b = refused(422, 'POST /profiles, nothing given', 'POST', '/profiles', undef, {}, $alice);
is(pointers($b), '/display_name /username', 'username and display_name are required');
refused(400, 'POST /profiles, not JSON', 'POST', '/profiles', undef, '{"username":', $alice);
refused(400, 'POST /profiles, an array', 'POST', '/profiles', undef, '[]', $alice);
refused(400, 'POST /profiles, no body', 'POST', '/profiles', undef, undef, $alice);
refused(400, 'POST /profiles, NUL escape', 'POST', '/profiles', undef,
        '{"username":"x","display_name":"a\u0000b"}', $alice);
$b = refused(422, 'POST /profiles, 101 entries', 'POST', '/profiles', undef,
    { username => "${P}big", display_name => 'B',
      entries => [ map { { code => "${P}m$_", title => "m$_" } } 1 .. 101 ] }, $alice);
is(pointers($b), '/entries', '101 entries: the list is named');
refused(401, 'POST /profiles without a key', 'POST', '/profiles', undef,
        { username => "${P}nokey", display_name => 'N' }, undef);

# hostile strings: stored exactly as sent, or refused with 422
my @hostile = (
    q{'; DROP TABLE shortlink.profiles; --}, q{<script>alert("x")</script>},
    q{" onmouseover="alert(1)}, q{\\'\\"\\\\}, "\x{202e}\x{645}\x{631}\x{62d}\x{628}\x{627}",
    "\x{1f600}\x{1f469}\x{200d}\x{1f4bb}", "\x{2028}\x{2029}\x{feff}\x{200b}", '%00%0d%0a',
    '{{template}} ${x} $(id) `id`', "\x{fffd}\x{10ffff}", ' ', 'a' x 100,
);
my $i = 0;
for my $h (@hostile) {
    $i++;
    my $user = "${P}h$i";
    my ($s, $r) = api('POST', '/profiles', undef,
                      { username => $user, display_name => substr($h, 0, 100), bio => $h,
                        entries => [ { code => "${P}c", title => substr($h, 0, 200) } ] },
                      $alice);
    my $name = 'hostile ' . $json->encode([$h]);
    if ($s == 201) {
        # compared in SQL: psql's output drops some characters (U+10FFFF)
        my ($dn, $t) = (q_(substr($h, 0, 100)), q_(substr($h, 0, 200)));
        is(sql_value("SELECT p.display_name = $dn AND p.bio = ${\ q_($h)}
                             AND x.bio = p.bio AND x.display_name = p.display_name
                             AND x.entries -> 0 ->> 'title' = $t
                             AND (SELECT title FROM shortlink.profile_entries
                                   WHERE profile_id = p.id) = $t
                        FROM shortlink.profiles p, shortlink.profile_page('$user') x
                       WHERE p.username = '$user'"), 't',
           "$name: stored and read back as sent");
    } else {
        is($s, 422, "$name: refused with 422");
    }
    ($s, $r) = api('PATCH', "/profiles/$user", undef, { avatar_url => $h }, $alice);
    ok($s == 422 || ($s == 200 && $r->{avatar_url} eq $h), "$name as avatar_url: 200 or 422")
        or diag "$s";
    ($s, $r) = api('POST', '/profiles', undef, { username => $h, display_name => 'x' }, $alice);
    is($s, 422, "$name as username: 422");
    ($s, $r) = api('GET', '/profiles/' . $h, undef, undef, $alice);
    ok($s == 404 || $s == 400, "$name in the path: 404") or diag "$s";
    ($s, $r) = api('PATCH', "/profiles/$user", undef, { theme => $h }, $alice);
    is($s, 422, "$name as theme: 422");
    ($s, $r) = api('POST', "/profiles/$user/entries", undef, { code => $h, title => 't' }, $alice);
    is($s, 422, "$name as entry code: 422");
}

# GET, list, owners
($st, $b) = api('GET', "/profiles/${P}alice", undef, undef, $alice);
is("$st $b->{username} $b->{version}", "200 ${P}alice 2", 'GET /profiles/{username}');
refused(403, 'GET another owner\'s profile', 'GET', "/profiles/${P}alice", undef, undef, $bob);
($st, $b) = api('GET', "/profiles/${P}alice", undef, undef, $root);
is($st, 200, 'an admin key reads any profile');
refused(404, 'GET an unknown profile', 'GET', "/profiles/${P}nobody", undef, undef, $alice);
refused(404, 'GET a deleted profile', 'GET', "/profiles/${P}many", undef, undef, $alice);
refused(404, 'GET a username in capitals', 'GET', "/profiles/${P}ALICE", undef, undef, $alice);
refused(405, 'PUT /profiles/{username}', 'PUT', "/profiles/${P}alice", undef, {}, $alice);

($st, $b) = api('GET', '/profiles', 'limit=2', undef, $alice);
my @first = map { $_->{username} } @{ $b->{profiles} };
is(scalar @first, 2, 'GET /profiles?limit=2: two');
ok(defined $b->{next_cursor}, 'and a next_cursor');
my @all = @first;
my $cur = $b->{next_cursor};
while (defined $cur) {
    ($st, $b) = api('GET', '/profiles', "limit=2&cursor=$cur", undef, $alice);
    push @all, map { $_->{username} } @{ $b->{profiles} };
    $cur = $b->{next_cursor};
}
is_deeply(\@all, [ sort @all ], 'pages in username order');
is(scalar(grep { /^\Q${P}\E(alice|min|ok)$/ } @all), 3, 'the owner\'s live profiles are listed');
ok(!grep({ $_ eq "${P}many" } @all), 'not a deleted one');
($st, $b) = api('GET', '/profiles', undef, undef, $bob);
ok(!grep({ $_->{owner} ne "$P-bob" } @{ $b->{profiles} }), 'an owner key lists only its own');
refused(400, 'GET /profiles?limit=0', 'GET', '/profiles', 'limit=0', undef, $alice);
refused(400, 'GET /profiles?cursor=bad', 'GET', '/profiles', 'cursor=%27x', undef, $alice);
refused(400, 'GET /profiles?tag=x', 'GET', '/profiles', 'tag=x', undef, $alice);

# PATCH
($st, $b) = api('PATCH', "/profiles/${P}alice", undef,
                { display_name => 'Alice B.', bio => undef, avatar_url => undef, theme => 'dark' },
                $alice);
is("$st $b->{display_name}|$b->{bio}|" . ($b->{avatar_url} // 'null') . "|$b->{theme} $b->{version}",
   "200 Alice B.||null|dark 3", 'PATCH: fields changed, nulls clear bio and avatar');
$b = refused(422, 'PATCH username and entries', 'PATCH', "/profiles/${P}alice", undef,
             { username => 'x', entries => [] }, $alice);
is(pointers($b), '/entries /username', 'username and entries cannot be patched');
refused(400, 'PATCH {}', 'PATCH', "/profiles/${P}alice", undef, {}, $alice);
refused(403, 'PATCH another owner\'s', 'PATCH', "/profiles/${P}alice", undef,
        { theme => 'light' }, $bob);

# entries
($st, $b) = api('POST', "/profiles/${P}alice/entries", undef,
                { code => "${P}c", title => 'See', visible_until => '2031-01-01T00:00:00Z' }, $alice);
is("$st " . join(' ', map { $_->{code} } @{ $b->{entries} }), "201 ${P}b ${P}a ${P}c",
   'POST .../entries: appended');
$b = refused(409, 'POST a listed link again', 'POST', "/profiles/${P}alice/entries", undef,
             { code => "${P}c", title => 'again' }, $alice);
is(pointers($b), '/code', '409 names /code');
$b = refused(422, 'POST an entry of another owner\'s link', 'POST', "/profiles/${P}alice/entries",
             undef, { code => "${P}x", title => 'x' }, $alice);
is(pointers($b), '/code', '422 names /code (not /0/code)');
$b = refused(422, 'POST an entry with bad fields', 'POST', "/profiles/${P}alice/entries", undef,
             { code => "${P}d", title => "a\tb", enabled => 1, visible_from => 'tomorrow',
               shown => 1 }, $alice);
is(pointers($b), '/enabled /shown /title /visible_from', 'every bad field of the entry');
refused(403, 'POST an entry to another owner\'s profile', 'POST', "/profiles/${P}alice/entries",
        undef, { code => "${P}x", title => 'x' }, $bob);
refused(400, 'POST an entry that is an array', 'POST', "/profiles/${P}alice/entries", undef,
        [ { code => "${P}d", title => 'd' } ], $alice);
refused(405, 'GET .../entries', 'GET', "/profiles/${P}alice/entries", undef, undef, $alice);

($st, $b) = api('PUT', "/profiles/${P}alice/entries", undef,
                [ { code => "${P}d", title => 'Dee' }, { code => "${P}c", title => 'See' },
                  { code => "${P}b", title => 'Bee', enabled => JSON::PP::false } ], $alice);
is("$st " . join(' ', map { "$_->{code}:$_->{title}" } @{ $b->{entries} }),
   "200 ${P}d:Dee ${P}c:See ${P}b:Bee", 'PUT .../entries: replaced, reordered, one removed');
is(codes_of(page("${P}alice")), "${P}d ${P}c", 'and the page shows it');
$b = refused(422, 'PUT with a link twice', 'PUT', "/profiles/${P}alice/entries", undef,
             [ { code => "${P}d", title => 'd' }, { code => "${P}d", title => 'd' } ], $alice);
is(pointers($b), '/1/code', 'the second occurrence is named');
refused(400, 'PUT an object', 'PUT', "/profiles/${P}alice/entries", undef,
        { code => "${P}d" }, $alice);
refused(422, 'PUT 101 entries', 'PUT', "/profiles/${P}alice/entries", undef,
        [ map { { code => "${P}m$_", title => "m$_" } } 1 .. 101 ], $alice);
($st, $b) = api('PUT', "/profiles/${P}alice/entries", undef, [], $alice);
is("$st " . scalar @{ $b->{entries} }, '200 0', 'PUT []: no entries');
($st, $b) = api('PUT', "/profiles/${P}alice/entries", undef,
                [ map { { code => "${P}m$_", title => "m$_" } } 1 .. 100 ], $alice);
is("$st " . scalar @{ $b->{entries} }, '200 100', 'PUT 100 entries');
refused(409, 'POST the 101st entry', 'POST', "/profiles/${P}alice/entries", undef,
        { code => "${P}a", title => 'a' }, $alice);
api('PUT', "/profiles/${P}alice/entries", undef,
    [ { code => "${P}a", title => 'Ay' }, { code => "${P}b", title => 'Bee' } ], $alice);

# appends after the last position 9999: positions are closed up first
sql("UPDATE shortlink.profile_entries SET position = position + 9998
      WHERE profile_id = (SELECT id FROM shortlink.profiles WHERE username = '${P}alice')");
($st, $b) = api('POST', "/profiles/${P}alice/entries", undef, { code => "${P}c", title => 'C' },
                $alice);
is("$st " . join(' ', map { $_->{code} } @{ $b->{entries} }) . ' '
   . sql_value("SELECT string_agg(position::text, ' ' ORDER BY position)
                  FROM shortlink.profile_entries e JOIN shortlink.profiles p ON p.id = e.profile_id
                 WHERE p.username = '${P}alice'"),
   "201 ${P}a ${P}b ${P}c 0 1 2", 'an append after position 9999 renumbers from 0');
api('DELETE', "/profiles/${P}alice/entries/${P}c", undef, undef, $alice);

($st, $b) = api('PATCH', "/profiles/${P}alice/entries/${P}b", undef,
                { enabled => JSON::PP::false, title => 'B!',
                  visible_from => '2029-12-31T23:00:00-01:00' }, $alice);
is("$st $b->{entries}[1]{title} " . ($b->{entries}[1]{enabled} ? 1 : 0)
   . " $b->{entries}[1]{visible_from}", "200 B! 0 2030-01-01T00:00:00Z",
   'PATCH .../entries/{code}');
$b = refused(422, 'PATCH an entry: end before start', 'PATCH',
             "/profiles/${P}alice/entries/${P}b", undef,
             { visible_until => '2029-01-01T00:00:00Z' }, $alice);
is(pointers($b), '/visible_until', 'the schedule is checked against the stored start');
$b = refused(422, 'PATCH an entry\'s code', 'PATCH', "/profiles/${P}alice/entries/${P}b", undef,
             { code => "${P}c" }, $alice);
is(pointers($b), '/code', 'an entry\'s code cannot be patched');
refused(404, 'PATCH an entry not on the profile', 'PATCH', "/profiles/${P}alice/entries/${P}c",
        undef, { enabled => JSON::PP::true }, $alice);
($st, $b) = api('DELETE', "/profiles/${P}alice/entries/${P}a", undef, undef, $alice);
is("$st " . ($b // 'none'), '204 none', 'DELETE .../entries/{code}: 204');
is(sql_value("SELECT string_agg(link_code, ' ') FROM shortlink.profile_entries e
                JOIN shortlink.profiles p ON p.id = e.profile_id WHERE p.username = '${P}alice'"),
   "${P}b", 'only the other entry is left');
refused(404, 'DELETE it again', 'DELETE', "/profiles/${P}alice/entries/${P}a", undef, undef, $alice);
refused(403, 'DELETE another owner\'s entry', 'DELETE', "/profiles/${P}alice/entries/${P}b",
        undef, undef, $bob);

# API writes are announced like psql writes
my $va = version_of("${P}alice");
$got = profile_notes("SELECT status FROM shortlink.api('PATCH', '/profiles/${P}alice', NULL,
                      '{\"bio\":\"new\"}', '$alice', '$BASE');");
is_deeply($got, [ "\@${P}alice:" . ($va + 1) ], 'an API PATCH announces the new version');


# --- statistics from the rollups ---------------------------------------------------

my $alice_id = sql_value("SELECT id FROM shortlink.profiles WHERE username = '${P}alice'");
api('PUT', "/profiles/${P}alice/entries", undef,
    [ { code => "${P}a", title => 'Ay' }, { code => "${P}b", title => 'Bee' },
      { code => "${P}c", title => 'See' } ], $alice);
my @clicks = ((map { [ "_p$alice_id", '{"kind": "profile_view"}' ] } 1 .. 5),
              (map { [ "${P}a", '{"source": "profile"}' ] } 1 .. 3),
              [ "${P}b", '{"source": "profile"}' ],
              [ "${P}b", '{"source": "qr"}' ], [ "${P}b", '{}' ]);
my $t0 = 1767607200000;                     # 2026-01-05 10:00:00 UTC
my $n = 0;
# the event ids of the entries' clicks are the same in every run, so that a
# second run on the same database records them once (exactly-once)
sql('SELECT shortlink.record_clicks('
    . join(', ',
           'ARRAY[' . join(',', map { $n++; "md5('$P-click-$_->[0]-$n')::uuid" } @clicks) . ']',
           'ARRAY[' . join(',', map { $t0 + 60000 * $_ } 0 .. $#clicks) . ']::bigint[]',
           'ARRAY[' . join(',', map { q_($_->[0]) } @clicks) . ']',
           'ARRAY[' . join(',', map { "'192.0.2." . ($_ + 1) . "'" } 0 .. $#clicks) . ']',
           'ARRAY[' . join(',', map { "'Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0'" } @clicks) . ']',
           'ARRAY[' . join(',', map { "'https://sho.rt/\@${P}alice'" } @clicks) . ']',
           'ARRAY[' . join(',', map { "'v$_'" } 0 .. $#clicks) . ']',
           'ARRAY[' . join(',', map { q_($_->[1]) . '::jsonb' } @clicks) . ']')
    . ')');

($st, $b) = api('GET', "/profiles/${P}alice/stats", 'from=2026-01-05&to=2026-01-06', undef, $alice);
is($st, 200, 'GET .../stats: 200');
is_deeply($b, {
    username => "${P}alice", from => '2026-01-05T00:00:00Z',
    to => '2026-01-06T00:00:00Z', tz => 'UTC', views => 5, visitors => 5, clicks => 4,
    ctr => 0.8,
    entries => [ { code => "${P}a", title => 'Ay', clicks => 3, ctr => 0.6 },
                 { code => "${P}b", title => 'Bee', clicks => 1, ctr => 0.2 },
                 { code => "${P}c", title => 'See', clicks => 0, ctr => 0 } ],
}, 'views, clicks per entry from the page (not by QR or direct) and click-through rates');
my $before_merge = $b;

# the same figures once the appended rows are merged: from the daily tops
# for the whole day, from the hourly tops for a part of it
sql('DO $$ BEGIN WHILE shortlink.compact_hourly_clicks(5000) > 0 LOOP END LOOP; END $$');
($st, $b) = api('GET', "/profiles/${P}alice/stats", 'from=2026-01-05&to=2026-01-06', undef, $alice);
is_deeply($b, $before_merge, 'merged: the same figures from the daily rollups');
($st, $b) = api('GET', "/profiles/${P}alice/stats",
                'from=2026-01-05T09:00:00Z&to=2026-01-05T12:00:00Z', undef, $alice);
is(join(' ', $b->{views}, map { $_->{clicks} } @{ $b->{entries} }), '5 3 1 0',
   'merged: the same figures from the hourly rollups');
($st, $b) = api('GET', "/profiles/${P}alice/stats", 'from=2026-01-05&to=2026-01-06&tz=Asia/Tokyo',
                undef, $alice);
is("$st $b->{from} $b->{views}", '200 2026-01-05T00:00:00+09:00 5',
   'tz: dates are local midnight (10:00 UTC is in the Tokyo day)');
($st, $b) = api('GET', "/profiles/${P}alice/stats",
                'from=2026-01-05T11:00:00Z&to=2026-01-06T00:00:00Z', undef, $alice);
is("$st $b->{views} $b->{clicks} " . ($b->{ctr} // 'null'), '200 0 0 null',
   'a range without the clicks: zeros, ctr null');
refused(400, 'stats: unknown zone', 'GET', "/profiles/${P}alice/stats", 'tz=Mars%2FBase', undef, $alice);
refused(400, 'stats: POSIX zone', 'GET', "/profiles/${P}alice/stats", 'tz=XYZ%2B3', undef, $alice);
refused(400, 'stats: bad from', 'GET', "/profiles/${P}alice/stats", 'from=yesterday', undef, $alice);
refused(400, 'stats: to before from', 'GET', "/profiles/${P}alice/stats",
        'from=2026-01-06&to=2026-01-05', undef, $alice);
refused(400, 'stats: over 400 days', 'GET', "/profiles/${P}alice/stats",
        'from=2024-01-01&to=2026-01-05', undef, $alice);
refused(400, 'stats: unknown parameter', 'GET', "/profiles/${P}alice/stats", 'interval=day',
        undef, $alice);
refused(403, 'stats of another owner\'s profile', 'GET', "/profiles/${P}alice/stats", undef,
        undef, $bob);
($st, $b) = api('GET', "/profiles/${P}alice/stats", undef, undef, $root);
is($st, 200, 'an admin key reads any profile\'s stats');

# the links API refuses the pseudo codes with 422, not 500
$b = refused(422, 'POST /links with the code _p7', 'POST', '/links', undef,
             { url => 'https://example.com/', code => '_p7' }, $alice);
is(pointers($b), '/code', 'the code is named');

# DELETE
($st, $b) = api('DELETE', "/profiles/${P}alice", undef, undef, $alice);
is($st, 204, 'DELETE /profiles/{username}: 204');
is(page("${P}alice"), undef, 'the page is gone');
refused(404, 'DELETE it again', 'DELETE', "/profiles/${P}alice", undef, undef, $alice);


# --- cleanup ----------------------------------------------------------------------

cleanup();
is(sql_value("SELECT count(*) FROM shortlink.profiles WHERE owner LIKE '$P-%'"), 0,
   'nothing of this suite is left');

done_testing();
