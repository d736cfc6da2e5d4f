-- 025_hll_explicit.sql: hll_of() writes small sketches itself.
--
-- hll_of() (010) turns the hashes a batch appended into a sketch with the
-- hll extension's aggregate, whose state is a 128 kB multiset zeroed on
-- every call: 10-20 us for a (link, hour) of a few clicks, twice per pair
-- and merge (visitors and addresses), and readers call it for every row
-- not merged yet.  While a sketch holds at most 320 distinct values the
-- extension stores it as the sorted list of those values (explicit);
-- shortlink_tops' hll_explicit_of() writes that format directly (same
-- bytes: t/116), and the aggregate is left for larger sets.

CREATE OR REPLACE FUNCTION shortlink.hll_of(p_hashes bigint[])
RETURNS shortlink.hll
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(
               shortlink.hll_explicit_of(p_hashes),
               (SELECT coalesce(shortlink.hll_add_agg(shortlink.hll_hash_bigint(h),
                                                      12, 5, -1, 1),
                                shortlink.hll_empty(12, 5, -1, 1))
                  FROM unnest(p_hashes) h))
$$;

COMMENT ON FUNCTION shortlink.hll_of(bigint[]) IS
    'The sketch (log2m 12, regwidth 5) of hashes as stored in '
    'link_hourly_clicks.visitor_hashes and ip_hashes; empty for NULL '
    '(explicit sketches written by hll_explicit_of, larger ones by the '
    'extension''s aggregate)';
