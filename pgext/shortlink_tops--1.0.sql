-- shortlink_tops 1.0: see shortlink_tops.c; created by sql/021

\echo Use "CREATE EXTENSION shortlink_tops SCHEMA shortlink" to load this file. \quit

CREATE FUNCTION @extschema@.tops_agg_trans(internal, jsonb, text[])
RETURNS internal
LANGUAGE C CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tops_agg_trans';

CREATE FUNCTION @extschema@.tops_sum_trans(internal, jsonb)
RETURNS internal
LANGUAGE C CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tops_agg_trans';

CREATE FUNCTION @extschema@.tops_agg_final(internal)
RETURNS jsonb
LANGUAGE C CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tops_agg_final';

-- the sum of the maps and the counts of the attrs of the rows, one map
CREATE AGGREGATE @extschema@.tops_agg(jsonb, text[]) (
    SFUNC = @extschema@.tops_agg_trans,
    STYPE = internal,
    FINALFUNC = @extschema@.tops_agg_final
);

-- the sum of the maps of the rows
CREATE AGGREGATE @extschema@.tops_sum(jsonb) (
    SFUNC = @extschema@.tops_sum_trans,
    STYPE = internal,
    FINALFUNC = @extschema@.tops_agg_final
);

-- the sum of an array of maps
CREATE FUNCTION @extschema@.tops_total(jsonb[])
RETURNS jsonb
LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tops_total';

-- the counts of an attrs array (rows of 8 values)
CREATE FUNCTION @extschema@.tops_count(text[])
RETURNS jsonb
LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tops_count';

-- the sketch shortlink.hll_of() builds, while it has at most 320 distinct
-- values (explicit); NULL beyond (see shortlink_tops.c)
CREATE FUNCTION @extschema@.hll_explicit_of(bigint[])
RETURNS @extschema@.hll
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'hll_explicit_of';
