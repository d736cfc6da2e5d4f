# openapi.json is kept true: every documented path and method is requested
# through nginx and must answer with its documented success status.

use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ShortlinkTest;
use JSON::PP ();

sql(q{DELETE FROM shortlink.links WHERE owner = 't131' OR code = 'oa1'});
$ENV{TEST_NGINX_API_KEY} = sql_value("SELECT shortlink.create_api_key('t131')");
sql(q{INSERT INTO shortlink.links (code, url, owner)
      VALUES ('oa1', 'https://example.com/oa1', 't131')});

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

# the link's delete goes last: the other operations need the link
my $last = sub { $_[0][0] eq 'delete' && $_[0][1] eq '/links/{code}' };
for my $op (sort { $last->($a) <=> $last->($b) } @ops) {
    my ($method, $path, $ok) = @$op;
    (my $uri = $path) =~ s/\{code\}/oa1/;
    my $req = uc($method) . " /_api$uri";
    $req .= "\n" . $body{"$method $path"} if $body{"$method $path"};
    push @requests, $req;
    push @codes, $ok;
}

no_shuffle();
no_root_location();
run_tests();

sql(q{DELETE FROM shortlink.links WHERE owner = 't131' OR code = 'oa1'});

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
