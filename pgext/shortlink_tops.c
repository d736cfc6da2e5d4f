/*
 * shortlink_tops: the counting of the statistics' top lists, in C.
 *
 * A top-list map is the jsonb of link_hourly_clicks.tops (sql/014):
 *
 *     {"browsers": {"Chrome": 12, "Firefox": 3}, "countries": {...}, ...}
 *
 * and an attrs array is the text[] a batch appends per (link, hour): one
 * row of 8 values per click, the values of the lists in the order of
 * shortlink.stats_lists() (referrers, browsers, os, devices, countries,
 * languages, networks, sources), NULL for none.
 *
 * Counting them in SQL cost about 0.5 us per value (a row through the
 * executor per value, 8 values per click), and adding up maps expanded
 * every map into rows again; here a value costs one hash table probe.
 *
 *   tops_agg(tops jsonb, attrs text[])  aggregate: the sum of the maps and
 *                                        the counts of the attrs, a map
 *   tops_total(maps jsonb[])            the sum of maps
 *   tops_count(attrs text[])            the counts of attrs, a map
 *
 * All return {} for nothing; NULL arguments and elements count as empty.
 *
 * And one thing that is not counting but costs the merge as much:
 *
 *   hll_explicit_of(hashes bigint[])    the HyperLogLog sketch of the
 *                                        hashes, as shortlink.hll_of()
 *                                        builds it, while it is explicit
 *
 * hll_of() (sql/010) builds a sketch with the hll extension's aggregate,
 * whose state is a 128 kB multiset zeroed for every call: 10-20 us for a
 * (link, hour) of a few clicks, twice per pair and merge.  While a sketch
 * holds at most 320 distinct values (log2m 12, regwidth 5, expthresh
 * auto), the extension stores it as the sorted list of its values
 * ("explicit"), a format simple enough to write here: a 3-byte header and
 * the hashes as big-endian int64 in signed order.  The hashes are the
 * extension's own hll_hash_bigint(value, 0), called through fmgr.  Beyond
 * 320 distinct values it returns NULL and hll_of() uses the aggregate;
 * t/116 checks that both give the same bytes.
 */

#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "parser/parse_func.h"

PG_MODULE_MAGIC;


#define TOPS_LISTS  8

/* the order of shortlink.stats_lists() and of the values in attrs */
static const char *tops_list_names[TOPS_LISTS] = {
    "referrers", "browsers", "os", "devices",
    "countries", "languages", "networks", "sources"
};


typedef struct {
    char       *value;      /* NULL: a free slot */
    int32       len;
    int32       list;
    uint32      hash;
    int64       n;
} tops_entry_t;


typedef struct {
    MemoryContext   cxt;
    tops_entry_t   *slots;
    uint32          size;   /* a power of 2 */
    uint32          used;
} tops_table_t;


static tops_table_t *tops_table_create(MemoryContext cxt);
static void tops_table_add(tops_table_t *t, int list, const char *value,
    int32 len, int64 n);
static void tops_table_add_map(tops_table_t *t, Jsonb *jb);
static void tops_table_add_attrs(tops_table_t *t, ArrayType *a);
static Jsonb *tops_table_jsonb(tops_table_t *t);


static tops_table_t *
tops_table_create(MemoryContext cxt)
{
    tops_table_t  *t;

    t = MemoryContextAlloc(cxt, sizeof(tops_table_t));
    t->cxt = cxt;
    t->size = 64;
    t->used = 0;
    t->slots = MemoryContextAllocZero(cxt, t->size * sizeof(tops_entry_t));

    return t;
}


static void
tops_table_grow(tops_table_t *t)
{
    uint32         i, j, size, mask;
    tops_entry_t  *slots, *e;

    size = t->size * 2;
    mask = size - 1;
    slots = MemoryContextAllocHuge(t->cxt, (Size) size * sizeof(tops_entry_t));
    memset(slots, 0, (Size) size * sizeof(tops_entry_t));

    for (i = 0; i < t->size; i++) {
        e = &t->slots[i];
        if (e->value == NULL) {
            continue;
        }
        for (j = e->hash & mask; slots[j].value != NULL; j = (j + 1) & mask) {
            /* void */
        }
        slots[j] = *e;
    }

    pfree(t->slots);
    t->slots = slots;
    t->size = size;
}


static void
tops_table_add(tops_table_t *t, int list, const char *value, int32 len,
    int64 n)
{
    uint32         h, i, mask;
    tops_entry_t  *e;

    h = hash_bytes((const unsigned char *) value, len) ^ (uint32) list;
    mask = t->size - 1;

    for (i = h & mask; t->slots[i].value != NULL; i = (i + 1) & mask) {
        e = &t->slots[i];
        if (e->hash == h && e->list == list && e->len == len
            && memcmp(e->value, value, len) == 0)
        {
            e->n += n;
            return;
        }
    }

    e = &t->slots[i];
    e->value = MemoryContextAlloc(t->cxt, len + 1);
    memcpy(e->value, value, len);
    e->value[len] = '\0';
    e->len = len;
    e->list = list;
    e->hash = h;
    e->n = n;

    if (++t->used * 2 > t->size) {
        tops_table_grow(t);
    }
}


static int
tops_list_index(const char *name, int len)
{
    int  i;

    for (i = 0; i < TOPS_LISTS; i++) {
        if ((int) strlen(tops_list_names[i]) == len
            && memcmp(tops_list_names[i], name, len) == 0)
        {
            return i;
        }
    }

    return -1;
}


/*
 * a map: lists of the top level, values and counts one level down; a
 * list name that is not one of ours, or a count that is not a number,
 * is an error (the maps are written by the merge only)
 */
static void
tops_table_add_map(tops_table_t *t, Jsonb *jb)
{
    int                  depth, list;
    bool                 err;
    int64                n;
    JsonbValue           v, key;
    JsonbIterator       *it;
    JsonbIteratorToken   r;

    if (!JB_ROOT_IS_OBJECT(jb)) {
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("tops: a top-list map must be an object")));
    }

    depth = 0;
    list = -1;
    memset(&key, 0, sizeof(key));
    key.type = jbvNull;
    it = JsonbIteratorInit(&jb->root);

    while ((r = JsonbIteratorNext(&it, &v, false)) != WJB_DONE) {
        switch (r) {

        case WJB_BEGIN_OBJECT:
            depth++;
            if (depth == 2 && list < 0) {
                ereport(ERROR,
                        (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                         errmsg("tops: a top-list map must hold objects "
                                "under the list names")));
            }
            break;

        case WJB_END_OBJECT:
            depth--;
            list = depth == 1 ? -1 : list;
            break;

        case WJB_KEY:
            if (depth == 1) {
                list = tops_list_index(v.val.string.val, v.val.string.len);
                if (list < 0) {
                    ereport(ERROR,
                            (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                             errmsg("tops: unknown top list \"%.*s\"",
                                    v.val.string.len, v.val.string.val)));
                }

            } else {
                key = v;
            }
            break;

        case WJB_VALUE:
            if (depth != 2 || v.type != jbvNumeric
                || key.type != jbvString)
            {
                ereport(ERROR,
                        (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                         errmsg("tops: a top-list map must map list names "
                                "to objects of counts")));
            }
            /* nearly every count fits 32 bits: no function call then */
            err = false;
            n = numeric_int4_opt_error(v.val.numeric, &err);
            if (err) {
                n = DatumGetInt64(DirectFunctionCall1(numeric_int8,
                                      NumericGetDatum(v.val.numeric)));
            }
            tops_table_add(t, list, key.val.string.val, key.val.string.len,
                           n);
            break;

        default:
            ereport(ERROR,
                    (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                     errmsg("tops: a top-list map must map list names to "
                            "objects of counts")));
        }
    }
}


/* attrs: rows of 8 values, a two-dimensional array or a flat one */
static void
tops_table_add_attrs(tops_table_t *t, ArrayType *a)
{
    int      i, nelems;
    bool    *nulls;
    Datum   *elems;
    text    *v;

    if (ARR_ELEMTYPE(a) != TEXTOID) {
        ereport(ERROR,
                (errcode(ERRCODE_DATATYPE_MISMATCH),
                 errmsg("tops: attrs must be text[]")));
    }

    if (ARR_NDIM(a) == 0) {
        return;
    }

    if ((ARR_NDIM(a) == 2 && ARR_DIMS(a)[1] != TOPS_LISTS)
        || ARR_NDIM(a) > 2
        || ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a)) % TOPS_LISTS != 0)
    {
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("tops: attrs must hold rows of %d values",
                        TOPS_LISTS)));
    }

    deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT,
                      &elems, &nulls, &nelems);

    for (i = 0; i < nelems; i++) {
        if (nulls[i]) {
            continue;
        }
        v = DatumGetTextPP(elems[i]);
        tops_table_add(t, i % TOPS_LISTS, VARDATA_ANY(v),
                       VARSIZE_ANY_EXHDR(v), 1);
    }

    pfree(elems);
    pfree(nulls);
}


static Jsonb *
tops_table_jsonb(tops_table_t *t)
{
    int               list;
    uint32            i;
    JsonbValue        k, v, *res;
    tops_entry_t     *e;
    JsonbParseState  *st;
    bool              any[TOPS_LISTS];

    memset(any, 0, sizeof(any));
    for (i = 0; i < t->size; i++) {
        if (t->slots[i].value != NULL) {
            any[t->slots[i].list] = true;
        }
    }

    st = NULL;
    res = pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);

    for (list = 0; list < TOPS_LISTS; list++) {
        if (!any[list]) {
            continue;
        }

        k.type = jbvString;
        k.val.string.val = (char *) tops_list_names[list];
        k.val.string.len = strlen(tops_list_names[list]);
        (void) pushJsonbValue(&st, WJB_KEY, &k);
        (void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);

        for (i = 0; i < t->size; i++) {
            e = &t->slots[i];
            if (e->value == NULL || e->list != list) {
                continue;
            }
            k.type = jbvString;
            k.val.string.val = e->value;
            k.val.string.len = e->len;
            (void) pushJsonbValue(&st, WJB_KEY, &k);

            v.type = jbvNumeric;
            v.val.numeric = int64_to_numeric(e->n);
            (void) pushJsonbValue(&st, WJB_VALUE, &v);
        }

        (void) pushJsonbValue(&st, WJB_END_OBJECT, NULL);
    }

    res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);

    return JsonbValueToJsonb(res);
}


PG_FUNCTION_INFO_V1(tops_agg_trans);

/* tops_agg(jsonb, text[]) and tops_sum(jsonb): the transition */
Datum
tops_agg_trans(PG_FUNCTION_ARGS)
{
    MemoryContext   aggcxt;
    tops_table_t   *t;

    if (!AggCheckCallContext(fcinfo, &aggcxt)) {
        ereport(ERROR,
                (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                 errmsg("tops_agg_trans called in a non-aggregate "
                        "context")));
    }

    if (PG_ARGISNULL(0)) {
        t = tops_table_create(aggcxt);

    } else {
        t = (tops_table_t *) PG_GETARG_POINTER(0);
    }

    /* detoasted copies live in the call's context, the table in aggcxt */

    if (!PG_ARGISNULL(1)) {
        tops_table_add_map(t, PG_GETARG_JSONB_P(1));
    }

    if (PG_NARGS() > 2 && !PG_ARGISNULL(2)) {
        tops_table_add_attrs(t, PG_GETARG_ARRAYTYPE_P(2));
    }

    PG_RETURN_POINTER(t);
}


PG_FUNCTION_INFO_V1(tops_agg_final);

Datum
tops_agg_final(PG_FUNCTION_ARGS)
{
    tops_table_t  *t;
    tops_table_t   empty;
    tops_entry_t   none;

    if (PG_ARGISNULL(0)) {
        memset(&none, 0, sizeof(none));
        empty.cxt = CurrentMemoryContext;
        empty.slots = &none;
        empty.size = 1;
        empty.used = 0;
        t = &empty;

    } else {
        t = (tops_table_t *) PG_GETARG_POINTER(0);
    }

    PG_RETURN_JSONB_P(tops_table_jsonb(t));
}


PG_FUNCTION_INFO_V1(tops_total);

/* tops_total(jsonb[]): the sum of the maps */
Datum
tops_total(PG_FUNCTION_ARGS)
{
    int            i, nelems;
    bool          *nulls;
    Datum         *elems;
    ArrayType     *a;
    tops_table_t  *t;

    t = tops_table_create(CurrentMemoryContext);

    if (!PG_ARGISNULL(0)) {
        a = PG_GETARG_ARRAYTYPE_P(0);

        if (ARR_ELEMTYPE(a) != JSONBOID) {
            ereport(ERROR,
                    (errcode(ERRCODE_DATATYPE_MISMATCH),
                     errmsg("tops_total: the maps must be jsonb[]")));
        }

        deconstruct_array(a, JSONBOID, -1, false, TYPALIGN_INT,
                          &elems, &nulls, &nelems);

        for (i = 0; i < nelems; i++) {
            if (!nulls[i]) {
                tops_table_add_map(t, DatumGetJsonbP(elems[i]));
            }
        }
    }

    PG_RETURN_JSONB_P(tops_table_jsonb(t));
}


PG_FUNCTION_INFO_V1(tops_count);

/* tops_count(text[]): the counts of attrs */
Datum
tops_count(PG_FUNCTION_ARGS)
{
    tops_table_t  *t;

    t = tops_table_create(CurrentMemoryContext);

    if (!PG_ARGISNULL(0)) {
        tops_table_add_attrs(t, PG_GETARG_ARRAYTYPE_P(0));
    }

    PG_RETURN_JSONB_P(tops_table_jsonb(t));
}


/*
 * the explicit sketches of hll_of(): hll 1.0 storage, type EXPLICIT (2),
 * or EMPTY (1) for no values; regwidth 5 ((5 - 1) << 5), log2m 12; sparse
 * on (1 << 6), expthresh auto (63)
 */
#define HLL_EXPLICIT_MAX   320
#define HLL_HEADER_EMPTY   ((1 << 4) | 1)
#define HLL_HEADER_EXPL    ((1 << 4) | 2)
#define HLL_HEADER_PARAMS  (((5 - 1) << 5) | 12)
#define HLL_HEADER_CUTOFF  ((1 << 6) | 63)


static int
hll_value_cmp(const void *a, const void *b)
{
    int64  x = *(const int64 *) a;
    int64  y = *(const int64 *) b;

    return (x < y) ? -1 : (x > y) ? 1 : 0;
}


PG_FUNCTION_INFO_V1(hll_explicit_of);

Datum
hll_explicit_of(PG_FUNCTION_ARGS)
{
    int          i, j, n, nelems;
    bool        *nulls;
    Oid          argtypes[2];
    Datum       *elems;
    int64       *values;
    uint64       v;
    bytea       *res;
    uint8       *p;
    FmgrInfo    *hash;
    ArrayType   *a;
    char        *schema;

    if (PG_ARGISNULL(0)) {
        PG_RETURN_NULL();
    }

    a = PG_GETARG_ARRAYTYPE_P(0);

    if (ARR_ELEMTYPE(a) != INT8OID) {
        ereport(ERROR,
                (errcode(ERRCODE_DATATYPE_MISMATCH),
                 errmsg("hll_explicit_of: the hashes must be bigint[]")));
    }

    nelems = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));

    if (nelems > 8 * HLL_EXPLICIT_MAX) {
        /* not explicit, or not worth sorting to find out */
        PG_RETURN_NULL();
    }

    /* the extension's hll_hash_bigint(bigint, integer), in our schema */
    hash = fcinfo->flinfo->fn_extra;

    if (hash == NULL) {
        schema = get_namespace_name(get_func_namespace(
                                        fcinfo->flinfo->fn_oid));
        argtypes[0] = INT8OID;
        argtypes[1] = INT4OID;

        hash = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
        fmgr_info_cxt(LookupFuncName(list_make2(makeString(schema),
                                         makeString("hll_hash_bigint")),
                                     2, argtypes, false),
                      hash, fcinfo->flinfo->fn_mcxt);
        fcinfo->flinfo->fn_extra = hash;
    }

    deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
                      &elems, &nulls, &nelems);

    values = palloc(sizeof(int64) * (nelems > 0 ? nelems : 1));
    n = 0;

    for (i = 0; i < nelems; i++) {
        if (nulls[i]) {
            continue;
        }
        values[n++] = DatumGetInt64(FunctionCall2(hash, elems[i],
                                                  Int32GetDatum(0)));
    }

    qsort(values, n, sizeof(int64), hll_value_cmp);

    for (i = 0, j = 0; i < n; i++) {
        if (j == 0 || values[i] != values[j - 1]) {
            values[j++] = values[i];
        }
    }

    if (j > HLL_EXPLICIT_MAX) {
        PG_RETURN_NULL();
    }

    res = palloc(VARHDRSZ + 3 + 8 * j);
    SET_VARSIZE(res, VARHDRSZ + 3 + 8 * j);

    p = (uint8 *) VARDATA(res);
    *p++ = j == 0 ? HLL_HEADER_EMPTY : HLL_HEADER_EXPL;
    *p++ = HLL_HEADER_PARAMS;
    *p++ = HLL_HEADER_CUTOFF;

    for (i = 0; i < j; i++) {
        v = (uint64) values[i];
        *p++ = (uint8) (v >> 56);
        *p++ = (uint8) (v >> 48);
        *p++ = (uint8) (v >> 40);
        *p++ = (uint8) (v >> 32);
        *p++ = (uint8) (v >> 24);
        *p++ = (uint8) (v >> 16);
        *p++ = (uint8) (v >> 8);
        *p++ = (uint8) v;
    }

    PG_RETURN_BYTEA_P(res);
}
