# The shortlink_tops extension (pgext/, sql/021, 025) on its own, without
# nginx: counting attrs arrays (rows of 8 values, lists in the order of
# shortlink.stats_lists()), adding up top-list maps, the aggregate over
# both, NULLs, large counts, and what it refuses; and hll_explicit_of,
# byte for byte against the hll extension's own aggregate.  The figures of the
# statistics built on it are checked against a ground truth by t/114.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use ShortlinkTest;

my $json = JSON::PP->new->utf8->canonical;

sub j { return $json->decode(sql_value($_[0])) }

sub refused {
    my ($q) = @_;
    my $ok = eval { sql_value($q); 1 };
    return $ok ? '' : $@;
}

is(sql_value('SELECT shortlink.stats_lists()'),
   '{referrers,browsers,os,devices,countries,languages,networks,sources}',
   'the lists, in the order the extension counts them');

# two clicks, one row of 8 values each
my $attrs = q{ARRAY[['a.example', 'Chrome', 'Linux', 'desktop', 'DE', 'de', NULL, 'qr'],
                    ['a.example', 'Firefox', 'Linux', 'desktop', NULL, 'de', 'AS1', NULL]]};
is_deeply(j("SELECT shortlink.tops_count($attrs)"),
          { referrers => { 'a.example' => 2 }, browsers => { Chrome => 1, Firefox => 1 },
            os => { Linux => 2 }, devices => { desktop => 2 }, countries => { DE => 1 },
            languages => { de => 2 }, networks => { AS1 => 1 }, sources => { qr => 1 } },
          'tops_count: each value counted in its list, NULLs left out');
is_deeply(j("SELECT shortlink.tops_count(ARRAY['r', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                               'r', NULL, NULL, NULL, NULL, NULL, NULL, NULL])"),
          { referrers => { r => 2 } }, 'a flat array of rows of 8 too; lists without values left out');
is(sql_value('SELECT shortlink.tops_count(NULL)'), '{}', 'NULL: {}');
is(sql_value("SELECT shortlink.tops_count('{}'::text[])"), '{}', 'empty: {}');
is_deeply(j(q{SELECT shortlink.stats_count_attrs(
                   ARRAY[['x', 'y', NULL, NULL, NULL, NULL, NULL, NULL]])}),
          { referrers => { x => 1 }, browsers => { y => 1 } },
          'stats_count_attrs of 014 counts with the extension');

like(refused(q{SELECT shortlink.tops_count(ARRAY['a', 'b', 'c'])}),
     qr/rows of 8 values/, 'attrs not in rows of 8: refused');
like(refused(q{SELECT shortlink.tops_count(ARRAY[['a', 'b', 'c'], ['d', 'e', 'f']])}),
     qr/rows of 8 values/, 'rows of 3: refused');

# adding maps up
my $m1 = q{'{"browsers": {"Chrome": 3, "Edge": 1}, "countries": {"DE": 2}}'::jsonb};
my $m2 = q{'{"browsers": {"Chrome": 4}, "sources": {"qr": 5}}'::jsonb};
is_deeply(j("SELECT shortlink.tops_total(ARRAY[$m1, NULL, $m2, '{}'])"),
          { browsers => { Chrome => 7, Edge => 1 }, countries => { DE => 2 },
            sources => { qr => 5 } },
          'tops_total: the sum of the maps, NULL and {} add nothing');
is(sql_value('SELECT shortlink.tops_total(NULL)'), '{}', 'tops_total(NULL): {}');
is_deeply(j(q{SELECT shortlink.tops_total(ARRAY['{"os": {"Linux": 3000000000}}'::jsonb,
                                                 '{"os": {"Linux": 3000000000}}'::jsonb])}),
          { os => { Linux => 6000000000 } }, 'counts beyond 32 bits');
like(refused(q{SELECT shortlink.tops_total(ARRAY['{"colours": {"red": 1}}'::jsonb])}),
     qr/unknown top list "colours"/, 'a list that is not ours: refused');
like(refused(q{SELECT shortlink.tops_total(ARRAY['{"os": {"Linux": "many"}}'::jsonb])}),
     qr/objects of counts/, 'a count that is not a number: refused');
like(refused(q{SELECT shortlink.tops_total(ARRAY['{"os": 3}'::jsonb])}),
     qr/objects of counts/, 'a list that is not an object: refused');
like(refused(q{SELECT shortlink.tops_total(ARRAY['[1, 2]'::jsonb])}),
     qr/must be an object/, 'a map that is not an object: refused');

# the aggregates: maps and attrs of rows, grouped
is_deeply(j("SELECT jsonb_object_agg(g, t) FROM (
                 SELECT g, shortlink.tops_agg(m, a) AS t
                   FROM (VALUES (1, $m1, NULL::text[]),
                                (1, NULL, $attrs),
                                (2, $m2, NULL),
                                (2, NULL, NULL)) v(g, m, a)
                  GROUP BY g) x"),
          { 1 => { referrers => { 'a.example' => 2 },
                   browsers => { Chrome => 4, Edge => 1, Firefox => 1 },
                   os => { Linux => 2 }, devices => { desktop => 2 },
                   countries => { DE => 3 }, languages => { de => 2 },
                   networks => { AS1 => 1 }, sources => { qr => 1 } },
            2 => { browsers => { Chrome => 4 }, sources => { qr => 5 } } },
          'tops_agg: per group the maps added and the attrs counted');
is(sql_value('SELECT shortlink.tops_agg(NULL::jsonb, NULL::text[]) FROM generate_series(1, 0)'),
   '{}', 'tops_agg of no rows: {}');
is_deeply(j("SELECT shortlink.stats_tops_sum(m) FROM (VALUES ($m1), ($m2), (NULL)) v(m)"),
          { browsers => { Chrome => 7, Edge => 1 }, countries => { DE => 2 },
            sources => { qr => 5 } }, 'stats_tops_sum of 014 adds up in C too');

# many distinct values: the table grows
is(sql_value("SELECT count(*) FROM jsonb_object_keys((
                  SELECT shortlink.tops_count(array_agg(
                             ARRAY['ref' || i, NULL, NULL, NULL, NULL, NULL, NULL, NULL]))
                    FROM generate_series(1, 5000) i)->'referrers')"),
   5000, '5,000 distinct values, each counted');
is(sql_value("SELECT shortlink.tops_count(array_agg(
                  ARRAY['r' || (i % 7), NULL, NULL, NULL, NULL, NULL, NULL, NULL]))->'referrers'->>'r3'
                FROM generate_series(1, 7000) i"),
   1000, '7,000 values of 7 kinds: 1,000 each');


# hll_explicit_of (sql/025): the same bytes as the hll extension's
# aggregate for every sketch of up to 320 distinct values, NULL beyond
my $agg = q{(SELECT coalesce(shortlink.hll_add_agg(shortlink.hll_hash_bigint(h), 12, 5, -1, 1),
                             shortlink.hll_empty(12, 5, -1, 1))
               FROM unnest(a) h)};
my $arrays = q{
    WITH s AS (SELECT n, ARRAY(SELECT hashtextextended('v' || n || '-' || (i % n), 0)
                                 FROM generate_series(1, n + n / 3) i) AS a
                 FROM unnest(ARRAY[1, 2, 3, 5, 17, 50, 199, 200, 319, 320, 321, 322,
                                   500, 2000, 5000]) n
               UNION ALL SELECT 0, '{}'::bigint[]
               UNION ALL SELECT -1, ARRAY[1, NULL, 2, 1]::bigint[]
               UNION ALL SELECT -2, ARRAY[-9223372036854775808, 9223372036854775807, 0,
                                          -1]::bigint[])};
is(sql_value("$arrays
              SELECT coalesce(string_agg(n::text, ',' ORDER BY n), 'none')
                FROM s WHERE shortlink.hll_of(a)::text <> ${agg}::text"),
   'none', 'hll_of: the same sketch as the extension\'s aggregate, whatever the size');
is(sql_value("$arrays
              SELECT string_agg(n::text, ',' ORDER BY n)
                FROM s WHERE shortlink.hll_explicit_of(a) IS NOT NULL"),
   '-2,-1,0,1,2,3,5,17,50,199,200,319,320',
   'written by hll_explicit_of up to 320 distinct values (the rest: the aggregate)');
is(sql_value("$arrays
              SELECT string_agg(n || ':' || shortlink.hll_cardinality(shortlink.hll_of(a)),
                                ' ' ORDER BY n)
                FROM s WHERE n BETWEEN 0 AND 320"),
   '0:0 1:1 2:2 3:3 5:5 17:17 50:50 199:199 200:200 319:319 320:320',
   'explicit sketches count exactly');
is(sql_value("SELECT shortlink.hll_explicit_of(NULL) IS NULL
                 AND shortlink.hll_of(NULL)::text = shortlink.hll_empty(12, 5, -1, 1)::text"),
   't', 'NULL: no sketch, and hll_of(NULL) is the empty one as before');
is(sql_value("SELECT shortlink.hll_cardinality(shortlink.hll_union(
                  shortlink.hll_of(ARRAY[1, 2, 3]::bigint[]),
                  shortlink.hll_of(ARRAY[3, 4]::bigint[])))"),
   4, 'the extension reads and unions them');

done_testing();
