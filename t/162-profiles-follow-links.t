# Profile pages follow what 017 and 018 added to links (sql/019): an entry
# whose link a target-policy deny rule blocks (links.blocked_by, a 410 at
# the redirect) or whose link reached max_visits (links.exhausted_at) leaves
# profile_page(), and the change bumps the profile's version (so nginx
# drops its cached page), exactly as disabling the link does; lifting the
# block brings the entry back.  Without nginx, as a psql writer.
#
# Everything this suite writes belongs to owner "t162-owner" or has a code
# or username starting with "t162" and is removed at the start and the end.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use ShortlinkTest;

my $O = 't162-owner';

sub cleanup {
    sql(qq{
        DELETE FROM shortlink.profiles WHERE owner = '$O' OR username LIKE 't162%';
        DELETE FROM shortlink.policy_rules WHERE owner = '$O';
        DELETE FROM shortlink.links WHERE owner = '$O' OR code LIKE 't162%';
        DELETE FROM shortlink.groups WHERE owner = '$O';
    });
}

sub entries {
    return sql_value(q{SELECT string_agg(e ->> 'code', ' ' ORDER BY o)
                         FROM shortlink.profile_page('t162page') p,
                              jsonb_array_elements(p.entries) WITH ORDINALITY x(e, o)})
           // '';
}

sub version {
    return sql_value(q{SELECT version FROM shortlink.profiles
                        WHERE username = 't162page'});
}

cleanup();

sql(qq{
    INSERT INTO shortlink.links (code, url, owner) VALUES
        ('t162a', 'https://a.t162-blocked.example/', '$O'),
        ('t162b', 'https://b.t162-ok.example/', '$O'),
        ('t162c', 'https://c.t162-ok.example/', '$O');
    INSERT INTO shortlink.profiles (username, owner, display_name)
         VALUES ('t162page', '$O', 'Follows its links');
    INSERT INTO shortlink.profile_entries (profile_id, position, link_code, title)
         SELECT id, n, 't162' || c, 'Entry ' || c
           FROM shortlink.profiles,
                (VALUES (0, 'a'), (1, 'b'), (2, 'c')) v(n, c)
          WHERE username = 't162page';
});

is(entries(), 't162a t162b t162c', 'three followable links: three entries');

# a deny rule of the owner covers t162a: its link answers 410, its entry goes
my $v = version();
sql(qq{INSERT INTO shortlink.policy_rules (owner, kind, host)
            VALUES ('$O', 'deny', '*.t162-blocked.example')});
is(sql_value(q{SELECT blocked_by IS NOT NULL FROM shortlink.links WHERE code = 't162a'}),
   't', 'the deny rule blocks t162a');
is(sql_value(q{SELECT redirect_status FROM shortlink.resolve('t162a')}), 410,
   'resolve() answers 410 for it');
is(entries(), 't162b t162c', 'a blocked link leaves the page');
cmp_ok(version(), '>', $v, 'and the profile\'s version moved (cached pages drop)');

# the rule goes: the link redirects again and comes back on the page
$v = version();
sql(qq{DELETE FROM shortlink.policy_rules WHERE owner = '$O'});
is(sql_value(q{SELECT redirect_status FROM shortlink.resolve('t162a')}), 302,
   'without the rule t162a redirects again');
is(entries(), 't162a t162b t162c', 'and is back on the page');
cmp_ok(version(), '>', $v, 'the profile\'s version moved again');

# max_visits reached: exhausted_at is set (as link_visits_check does when
# the clicks reach the limit), the entry goes
sql(q{UPDATE shortlink.links SET max_visits = 5 WHERE code = 't162b'});
is(entries(), 't162a t162b t162c', 'a limit not reached yet changes nothing');
$v = version();
sql(q{UPDATE shortlink.links SET exhausted_at = now() WHERE code = 't162b'});
is(entries(), 't162a t162c', 'an exhausted link leaves the page');
cmp_ok(version(), '>', $v, 'and the profile\'s version moved');

$v = version();
sql(q{UPDATE shortlink.links SET exhausted_at = NULL WHERE code = 't162b'});
is(entries(), 't162a t162b t162c', 'no longer exhausted: back on the page');
cmp_ok(version(), '>', $v, 'the profile\'s version moved again');

# a change that is none of these (the title) leaves the version alone
$v = version();
sql(q{UPDATE shortlink.links SET title = 'renamed' WHERE code = 't162c'});
is(version(), $v, 'a title change does not touch the profile');

cleanup();
is(sql_value(qq{SELECT count(*) FROM shortlink.links WHERE owner = '$O'}), 0,
   'nothing of this suite is left');

done_testing();
