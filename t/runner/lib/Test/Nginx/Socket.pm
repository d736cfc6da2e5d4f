package Test::Nginx::Socket;

# Test::Nginx::Socket - the project's Test::Nginx runner.
#
# A clean-room implementation of the documented interface of upstream
# Test::Nginx::Socket (openresty/test-nginx v0.33): a Test::Base subclass,
# so suites use it exactly like upstream:
#
#     use Test::Nginx::Socket 'no_plan';      # or: plan tests => ...;
#     repeat_each(2);
#     run_tests();
#     __DATA__
#     === TEST 1: ...
#
# All of the logic lives in Test::Nginx::Util (plain Perl, no source
# filters); this package only provides the Test::Base glue and exports.
# No upstream code was copied.  See t/runner/README.md.

use Test::Base -Base;
use Test::Nginx::Util;

our $VERSION = $Test::Nginx::Util::VERSION;

our @EXPORT = (@Test::Nginx::Util::EXPORT, qw(plan));

1;
