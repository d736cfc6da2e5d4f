# openapi.json is kept true: every documented path and method is requested
# through nginx and must answer with its documented success status.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use JSON::PP ();

sql(q{DELETE FROM shortlink.profiles WHERE owner = 't131';
      DELETE FROM shortlink.links WHERE owner = 't131' OR code = 'oa1'});
# (sql/017: the default group goes once the owner has no links)
sql(q{DELETE FROM shortlink.groups WHERE owner = 't131';
      DELETE FROM shortlink.policy_rules WHERE owner = 't131';
      DELETE FROM shortlink.purged_codes WHERE code IN ('oa2', 'oa3')});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t131')");
sql(q{INSERT INTO shortlink.links (code, url, owner)
      VALUES ('oa1', 'https://example.com/oa1', 't131')});

# groups, policy rules, the recycle bin (sql/017): a group, a rule, and two
# deleted links, one to restore and one to purge
sql(q{INSERT INTO shortlink.links (code, url, owner, deleted_at) VALUES
          ('oa2', 'https://example.com/oa2', 't131', now()),
          ('oa3', 'https://example.com/oa3', 't131', now())});
my %id = (
    '{group}' => sql_value(q{INSERT INTO shortlink.groups (owner, name)
                             VALUES ('t131', 'documented') RETURNING id}),
    '{rule}'  => sql_value(q{INSERT INTO shortlink.policy_rules (owner, kind, host)
                             VALUES ('t131', 'deny', 'oa-t131.example') RETURNING id}),
);
my %code = ('post /trash/{code}/restore' => 'oa2', 'delete /trash/{code}' => 'oa3');

my $doc = do {
    open my $fh, '<', 'openapi.json' or die "openapi.json: $!";
    local $/;
    JSON::PP::decode_json(<$fh>);
};

# a body each writing operation accepts
my %body = (
    'post /links'          => '{"url": "https://example.com/openapi"}',
    'post /links/bulk'     => '[{"url": "https://example.com/openapi-bulk"}]',
    'patch /links/{code}'  => '{"title": "documented"}',
    'post /profiles'       => '{"username": "t131oa", "display_name": "OpenAPI"}',
    'patch /profiles/{username}' => '{"theme": "dark"}',
    'post /profiles/{username}/entries' => '{"code": "oa1", "title": "one"}',
    'put /profiles/{username}/entries' => '[{"code": "oa1", "title": "One"}]',
    'patch /profiles/{username}/entries/{code}' => '{"enabled": false}',
    'post /groups'         => '{"name": "openapi"}',
    'patch /groups/{group}' => '{"position": 0}',
    'post /policy/rules'   => '{"kind": "deny", "host": "oa-t131-post.example"}',
    'put /links/{code}/rules'  => '[{"device": "ios", "url": "https://example.com/ios"}]',
    'put /links/{code}/limits' => '{"fallback_url": "https://example.com/gone"}',
    'put /links/{code}/password' => '{"password": "documented"}',
);

our (@requests, @codes);

my @ops;
for my $path (sort keys %{ $doc->{paths} }) {
    for my $method (sort keys %{ $doc->{paths}{$path} }) {
        next if $method eq 'parameters';
        my ($ok) = sort grep { /^2\d\d$/ }
                   keys %{ $doc->{paths}{$path}{$method}{responses} };
        push @ops, [$method, $path, $ok];
    }
}

# the deletes go last, the longest path first (an entry before its
# profile), and DELETE /links/{code} last of all: the other operations need
# the link
sub op_rank {
    my ($op) = @_;
    return 0 if $op->[0] ne 'delete';
    return $op->[1] eq '/links/{code}' ? 2 : 1;
}
for my $op (sort { op_rank($a) <=> op_rank($b)
                   or ($a->[0] eq 'delete' && length $b->[1] <=> length $a->[1]) } @ops) {
    my ($method, $path, $ok) = @$op;
    (my $uri = $path) =~ s/\{code\}/$code{"$method $path"} \/\/ 'oa1'/e;
    $uri =~ s/\{username\}/t131oa/;
    $uri =~ s/(\{group\}|\{rule\})/$id{$1}/g;
    my $req = uc($method) . " /_api$uri";
    $req .= "\n" . $body{"$method $path"} if $body{"$method $path"};
    push @requests, $req;
    push @codes, $ok;
}

no_shuffle();
no_root_location();
run_tests();

sql(q{DELETE FROM shortlink.profiles WHERE owner = 't131';
      DELETE FROM shortlink.links WHERE owner = 't131' OR code = 'oa1'});

__DATA__

=== TEST 1: every documented operation answers with its documented success
--- http_config
    shortlink_postgres "$TEST_NGINX_PG_DSN";
--- config
    location /_api/ { shortlink_api; }
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_API_KEY}"
--- request eval: \@::requests
--- error_code eval: \@::codes
--- no_error_log
[error]
