# The target policy judges every target of a link (sql/020): besides its
# url, its fallback_url and the url of each redirect rule.  A psql writer
# gets SQLSTATE SL422 naming the rule, the API a 422, and nothing is
# written; allowed targets pass.  Without nginx.
#
# Everything this suite writes belongs to owner "t175-owner" or has a code
# starting with "t175" and is removed at the start and the end.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use ShortlinkTest;

my $O = 't175-owner';
my $json = JSON::PP->new->utf8->canonical;

sub cleanup {
    sql(qq{
        DELETE FROM shortlink.policy_rules WHERE owner = '$O';
        DELETE FROM shortlink.links WHERE owner = '$O' OR code LIKE 't175%';
        DELETE FROM shortlink.groups WHERE owner = '$O';
        DELETE FROM shortlink.api_keys WHERE owner = '$O';
    });
}

# the error psql reports for a statement, or '' when it succeeds
sub refused {
    my ($stmt) = @_;
    eval { sql($stmt) };
    return $@ // '';
}

sub api {
    my ($method, $path, $body, $key) = @_;
    my $b = $body;
    $b =~ s/'/''/g;
    my $out = sql_value("SELECT status || '|' || coalesce(body::text, '') FROM "
                        . "shortlink.api('$method', '$path', NULL, '$b', '$key', "
                        . "'https://sho.rt')");
    my ($status, $text) = split /\|/, $out, 2;
    return ($status, length $text ? $json->decode($text) : undef);
}

sub row {
    return sql_value(q{SELECT coalesce(fallback_url, '-') || ' ' || rules::text
                         FROM shortlink.links WHERE code = 't175a'});
}

cleanup();

my $key = sql_value("SELECT shortlink.create_api_key('$O')");
sql(qq{INSERT INTO shortlink.policy_rules (owner, kind, host)
            VALUES ('$O', 'deny', '*.t175-evil.example')});

like(refused(qq{INSERT INTO shortlink.links (code, url, owner, fallback_url)
                VALUES ('t175x', 'https://ok.example/', '$O',
                        'https://www.t175-evil.example/')}),
     qr/t175-evil\.example/, 'insert: a refused fallback_url is refused, naming the rule');
like(refused(qq{INSERT INTO shortlink.links (code, url, owner, rules)
                VALUES ('t175y', 'https://ok.example/', '$O',
                        '[{"device": "ios", "url": "https://a.t175-evil.example/x"}]')}),
     qr/t175-evil\.example/, 'insert: a refused rule url is refused');
is(sql_value("SELECT count(*) FROM shortlink.links WHERE code IN ('t175x', 't175y')"), 0,
   'and neither link was written');

is(refused(qq{INSERT INTO shortlink.links (code, url, owner, fallback_url, rules)
              VALUES ('t175a', 'https://ok.example/', '$O', 'https://fine.example/',
                      '[{"device": "ios", "url": "https://apps.example/"}]')}),
   '', 'allowed fallback and rule targets pass');

like(refused(q{UPDATE shortlink.links SET fallback_url = 'https://x.t175-evil.example/'
                WHERE code = 't175a'}),
     qr/t175-evil\.example/, 'update: a refused fallback_url is refused');
like(refused(q{UPDATE shortlink.links
                  SET rules = '[{"device": "android", "url": "https://b.t175-evil.example/"}]'
                WHERE code = 't175a'}),
     qr/t175-evil\.example/, 'update: a refused rule url is refused');
is(row(), 'https://fine.example/ [{"url": "https://apps.example/", "device": "ios"}]',
   'the link is unchanged');

my ($st, $b) = api('PUT', '/links/t175a/rules',
                   '[{"device": "ios", "url": "https://c.t175-evil.example/"}]', $key);
is($st, 422, 'API: PUT rules with a refused url is a 422');
like($b->{detail} // '', qr/t175-evil\.example/, 'API: the problem names the rule');
($st, $b) = api('PUT', '/links/t175a/limits',
                '{"fallback_url": "https://y.t175-evil.example/gone"}', $key);
is($st, 422, 'API: PUT limits with a refused fallback_url is a 422');
is(row(), 'https://fine.example/ [{"url": "https://apps.example/", "device": "ios"}]',
   'the link is still unchanged');

($st, $b) = api('PUT', '/links/t175a/rules',
                '[{"device": "android", "url": "https://play.example/"}]', $key);
is($st, 200, 'API: an allowed rule url is accepted');

cleanup();
is(sql_value("SELECT count(*) FROM shortlink.links WHERE owner = '$O'"), 0,
   'nothing of this suite is left');

done_testing();
