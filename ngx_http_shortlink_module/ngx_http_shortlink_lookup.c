
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * What happens when neither the shared-memory zone nor the bloom filter
 * could answer: the walk through the slower tiers
 *
 *     Redis (L2) -> PostgreSQL (L3) -> stale L1 entry if both failed
 *
 * for one code, shared by every request of this worker that wants the same
 * code meanwhile (many concurrent misses cause one backend lookup), and the
 * invalidation of a code in every tier when PostgreSQL says it changed.
 *
 * A lookup belongs to the worker, not to a request: requests wait on it
 * and may leave at any time (their cleanup unlinks them); the lookup still
 * finishes and fills the caches.  The walk never answers a request from
 * inside a backend call: Redis and PostgreSQL always call back from an
 * event; only a synchronous outcome (PostgreSQL known down: stale or 503)
 * answers in place.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_code.h"


struct ngx_http_shortlink_lookup_s {
    ngx_str_node_t                    sn;         /* in worker->lookups */
    ngx_queue_t                       waiters;    /* ctx->queue */
    ngx_http_shortlink_main_conf_t   *smcf;
    ngx_http_shortlink_redis_cmd_t   *redis;      /* GET in flight */
    ngx_http_shortlink_link_t         stale;      /* usable if all fails */
    ngx_http_shortlink_link_t         link;       /* the answer */
    ngx_str_t                         tier;
    ngx_uint_t                        outcome;
    ngx_uint_t                        invalidated; /* changed meanwhile */
    ngx_msec_t                        start;
    u_char                            code[NGX_HTTP_SHORTLINK_CODE_MAX_LEN];
};


static ngx_http_shortlink_lookup_t *ngx_http_shortlink_lookup_create(
    ngx_http_shortlink_main_conf_t *smcf, ngx_str_t *code,
    ngx_http_shortlink_link_t *stale);
static ngx_int_t ngx_http_shortlink_lookup_redis(
    ngx_http_shortlink_lookup_t *lk);
static void ngx_http_shortlink_lookup_redis_done(void *data, ngx_int_t rc,
    ngx_str_t *value);
static ngx_int_t ngx_http_shortlink_lookup_pg(ngx_http_shortlink_lookup_t *lk);
static void ngx_http_shortlink_lookup_pg_done(void *data, PGresult *res,
    ngx_int_t rc);
static void ngx_http_shortlink_lookup_fill(
    ngx_http_shortlink_main_conf_t *smcf, ngx_str_t *code,
    ngx_http_shortlink_link_t *link);
static ngx_int_t ngx_http_shortlink_lookup_failed(
    ngx_http_shortlink_lookup_t *lk);
static ngx_int_t ngx_http_shortlink_lookup_found(
    ngx_http_shortlink_lookup_t *lk, ngx_http_shortlink_link_t *link,
    const char *tier);
static void ngx_http_shortlink_lookup_finish(ngx_http_shortlink_lookup_t *lk);
static ngx_int_t ngx_http_shortlink_lookup_answer(
    ngx_http_shortlink_lookup_t *lk, ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx);
static void ngx_http_shortlink_lookup_free(ngx_http_shortlink_lookup_t *lk);
static void ngx_http_shortlink_lookup_cleanup(void *data);


/*
 * Returns NGX_DONE when the request waits (for this lookup or for one
 * already under way), or the outcome's response when the walk could
 * finish at once.
 */

ngx_int_t
ngx_http_shortlink_lookup(ngx_http_request_t *r, ngx_http_shortlink_ctx_t *ctx,
    ngx_http_shortlink_link_t *stale)
{
    uint32_t                         hash;
    ngx_int_t                        rc;
    ngx_str_node_t                  *sn;
    ngx_http_cleanup_t              *cln;
    ngx_http_shortlink_lookup_t     *lk;
    ngx_http_shortlink_worker_t     *worker;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);
    worker = smcf->worker;

    if (worker == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_shortlink_lookup_cleanup;
    cln->data = ctx;

    hash = ngx_crc32_short(ctx->code.data, ctx->code.len);
    sn = ngx_str_rbtree_lookup(&worker->lookups, &ctx->code, hash);

    if (sn) {
        lk = (ngx_http_shortlink_lookup_t *) sn;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "shortlink: \"%V\" joins a lookup under way",
                       &ctx->code);

    } else {
        lk = ngx_http_shortlink_lookup_create(smcf, &ctx->code, stale);
        if (lk == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_shortlink_lookup_redis(lk);

        if (rc == NGX_OK) {
            /* finished at once: this request is the only one */
            rc = ngx_http_shortlink_lookup_answer(lk, r, ctx);
            ngx_http_shortlink_lookup_free(lk);
            return rc;
        }

        if (rc == NGX_ERROR) {
            ngx_http_shortlink_lookup_free(lk);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* NGX_AGAIN: a backend was asked */

        lk->sn.node.key = hash;
        ngx_rbtree_insert(&worker->lookups, &lk->sn.node);
    }

    ngx_queue_insert_tail(&lk->waiters, &ctx->queue);
    ctx->lookup = lk;

    /* notice a client that leaves while we wait: it finalizes with 499 */
    if (r == r->main) {
        r->read_event_handler = ngx_http_test_reading;
    }

    r->main->count++;

    return NGX_DONE;
}


/*
 * PostgreSQL said this code changed (or appeared): whatever any tier holds
 * for it is dropped, and the bloom filter learns it.
 */

void
ngx_http_shortlink_lookup_invalidate(ngx_http_shortlink_main_conf_t *smcf,
    ngx_str_t *payload)
{
    u_char          *colon;
    int64_t          version;
    ngx_str_t        name, *code;
    ngx_str_node_t  *sn;

    /* "<code>:<version>"; a bare code drops every cached copy */

    if (payload->len && payload->data[0] == '@') {
        /* "@<username>:<version>": a profile page */
        ngx_http_shortlink_profile_invalidate(smcf, payload);
        return;
    }

    name = *payload;
    version = INT64_MAX;

    colon = ngx_strlchr(payload->data, payload->data + payload->len, ':');

    if (colon) {
        name.len = colon - payload->data;
        version = ngx_atoof(colon + 1,
                            payload->data + payload->len - colon - 1);
        if (version == NGX_ERROR) {
            version = INT64_MAX;
        }
    }

    code = &name;

    if (!ngx_http_shortlink_code_valid(code->data, code->len)) {
        return;
    }

    /*
     * A lookup under way may carry the old answer: its waiters get it,
     * but it must not go back into the caches after this.
     */

    sn = ngx_str_rbtree_lookup(&smcf->worker->lookups, code,
                               ngx_crc32_short(code->data, code->len));
    if (sn) {
        ((ngx_http_shortlink_lookup_t *) sn)->invalidated = 1;
    }

    if (smcf->worker->bloom) {
        ngx_http_shortlink_bloom_add(smcf->worker->bloom, code);
    }

    if (smcf->zone) {
        ngx_http_shortlink_cache_invalidate(smcf->zone, code, version);
    }

    if (smcf->worker->redis) {
        ngx_http_shortlink_redis_invalidate(smcf->worker->redis, code,
                                            version, smcf->redis_ttl);
    }
}


/*
 * A link from a result row: url, redirect status and expiry (Unix time or
 * NULL) in columns col to col + 2, its version in vcol, forward_query in
 * vcol + 1, and, if the row has those columns, the encoded redirect rules
 * (NULL or empty: none) in vcol + 2 and whether the link has a password in
 * vcol + 3.  NGX_ERROR when it breaks a link's rules.
 */

ngx_int_t
ngx_http_shortlink_lookup_row(PGresult *res, int col, int vcol,
    ngx_http_shortlink_link_t *link)
{
    ngx_int_t  n;

    if (PQnfields(res) <= ngx_max(col + 2, vcol + 1)) {
        return NGX_ERROR;
    }

    link->url.data = (u_char *) PQgetvalue(res, 0, col);
    link->url.len = PQgetlength(res, 0, col);

    n = ngx_atoi((u_char *) PQgetvalue(res, 0, col + 1),
                 PQgetlength(res, 0, col + 1));
    link->status = (n == NGX_ERROR) ? 0 : (ngx_uint_t) n;

    link->expires = PQgetisnull(res, 0, col + 2)
                    ? 0 : ngx_atotm((u_char *) PQgetvalue(res, 0, col + 2),
                                    PQgetlength(res, 0, col + 2));

    link->version = PQgetisnull(res, 0, vcol)
                    ? 0 : ngx_atoof((u_char *) PQgetvalue(res, 0, vcol),
                                    PQgetlength(res, 0, vcol));

    /* forward_query, a boolean in text form, follows the version */
    link->forward = PQgetvalue(res, 0, vcol + 1)[0] == 't';

    ngx_str_null(&link->rules);
    link->password = 0;

    if (PQnfields(res) > vcol + 3 && !PQgetisnull(res, 0, vcol + 3)) {
        link->password = PQgetvalue(res, 0, vcol + 3)[0] == 't';
    }

    if (PQnfields(res) > vcol + 2 && !PQgetisnull(res, 0, vcol + 2)) {
        link->rules.len = PQgetlength(res, 0, vcol + 2);

        if (link->rules.len) {
            link->rules.data = (u_char *) PQgetvalue(res, 0, vcol + 2);
        }
    }

    if (link->version < 0) {
        link->version = 0;
    }

    if (!ngx_http_shortlink_link_valid(link) || link->expires == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a link just created: into every tier, so its first visit is a hit */

void
ngx_http_shortlink_lookup_warm(ngx_http_shortlink_main_conf_t *smcf,
    ngx_str_t *code, ngx_http_shortlink_link_t *link)
{
    if (!ngx_http_shortlink_code_valid(code->data, code->len)) {
        return;
    }

    if (smcf->worker->bloom) {
        ngx_http_shortlink_bloom_add(smcf->worker->bloom, code);
    }

    ngx_http_shortlink_lookup_fill(smcf, code, link);
}


/* the worker exits: no request is answered any more */

void
ngx_http_shortlink_lookup_destroy(ngx_http_shortlink_worker_t *worker)
{
    ngx_queue_t                  *q;
    ngx_rbtree_node_t            *node;
    ngx_http_shortlink_ctx_t     *ctx;
    ngx_http_shortlink_lookup_t  *lk;

    while (worker->lookups.root != worker->lookups.sentinel) {
        node = ngx_rbtree_min(worker->lookups.root, worker->lookups.sentinel);
        lk = (ngx_http_shortlink_lookup_t *) node;

        while (!ngx_queue_empty(&lk->waiters)) {
            q = ngx_queue_head(&lk->waiters);
            ngx_queue_remove(q);
            ctx = ngx_queue_data(q, ngx_http_shortlink_ctx_t, queue);
            ctx->lookup = NULL;
        }

        if (lk->redis) {
            ngx_http_shortlink_redis_detach(lk->redis);
            lk->redis = NULL;
        }

        ngx_rbtree_delete(&worker->lookups, node);
        ngx_http_shortlink_lookup_free(lk);
    }
}


static ngx_http_shortlink_lookup_t *
ngx_http_shortlink_lookup_create(ngx_http_shortlink_main_conf_t *smcf,
    ngx_str_t *code, ngx_http_shortlink_link_t *stale)
{
    size_t                        len;
    ngx_http_shortlink_lookup_t  *lk;

    len = sizeof(ngx_http_shortlink_lookup_t)
          + (stale ? ngx_http_shortlink_link_data_len(stale) : 0);

    lk = ngx_alloc(len, ngx_cycle->log);
    if (lk == NULL) {
        return NULL;
    }

    ngx_memzero(lk, sizeof(ngx_http_shortlink_lookup_t));

    ngx_memcpy(lk->code, code->data, code->len);
    lk->sn.str.data = lk->code;
    lk->sn.str.len = code->len;

    ngx_queue_init(&lk->waiters);
    lk->smcf = smcf;
    lk->start = ngx_current_msec;

    if (stale) {
        lk->stale = *stale;
        (void) ngx_http_shortlink_link_move(&lk->stale, (u_char *) (lk + 1));
    }

    return lk;
}


/* NGX_AGAIN: asked Redis; otherwise the next steps' result */

static ngx_int_t
ngx_http_shortlink_lookup_redis(ngx_http_shortlink_lookup_t *lk)
{
    ngx_int_t  rc;

    if (lk->smcf->worker->redis == NULL) {
        return ngx_http_shortlink_lookup_pg(lk);
    }

    rc = ngx_http_shortlink_redis_get(lk->smcf->worker->redis, &lk->sn.str,
                                      ngx_http_shortlink_lookup_redis_done,
                                      lk, &lk->redis);

    if (rc == NGX_OK) {
        return NGX_AGAIN;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* NGX_DECLINED: Redis is down, go on without it */

    return ngx_http_shortlink_lookup_pg(lk);
}


static void
ngx_http_shortlink_lookup_redis_done(void *data, ngx_int_t rc,
    ngx_str_t *value)
{
    ngx_http_shortlink_lookup_t  *lk = data;

    ngx_http_shortlink_link_t  link;

    lk->redis = NULL;

    if (rc == NGX_OK) {

        rc = ngx_http_shortlink_link_decode(value, &link);

        if (rc == NGX_OK) {
            if (!ngx_http_shortlink_link_expired(&link, ngx_time())) {
                if (lk->smcf->zone && !lk->invalidated) {
                    ngx_http_shortlink_cache_put(lk->smcf->zone, &lk->sn.str,
                                                 &link);
                }

                rc = ngx_http_shortlink_lookup_found(lk, &link, "redis");
                goto done;
            }

        } else if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "shortlink: malformed Redis value for \"%V\" "
                          "ignored", &lk->sn.str);
        }

        /* NGX_DECLINED: a tombstone, the link changed: PostgreSQL knows */
    }

    /* not in Redis, or Redis failed: PostgreSQL */

    rc = ngx_http_shortlink_lookup_pg(lk);

done:

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        lk->outcome = NGX_HTTP_SHORTLINK_UNAVAILABLE;
        ngx_str_set(&lk->tier, "error");
    }

    ngx_http_shortlink_lookup_finish(lk);
}


/* NGX_AGAIN: asked PostgreSQL; otherwise the outcome is set */

static ngx_int_t
ngx_http_shortlink_lookup_pg(ngx_http_shortlink_lookup_t *lk)
{
    ngx_int_t                        rc;
    ngx_http_shortlink_pg_query_t   *q;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = lk->smcf;

    rc = ngx_http_shortlink_pg_query(smcf->worker->pg,
                                     NGX_HTTP_SHORTLINK_PG_LOOKUP,
                                     1, &lk->sn.str,
                                     ngx_http_shortlink_lookup_pg_done, lk,
                                     &q);

    if (rc == NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "shortlink: looking up \"%V\" in PostgreSQL",
                       &lk->sn.str);

        ngx_http_shortlink_metric_add(
            ngx_http_shortlink_metrics_get(smcf->metrics), pg_lookups, 1);

        return NGX_AGAIN;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_http_shortlink_lookup_failed(lk);
}


static void
ngx_http_shortlink_lookup_pg_done(void *data, PGresult *res, ngx_int_t rc)
{
    ngx_http_shortlink_lookup_t  *lk = data;

    ngx_http_shortlink_link_t        link;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = lk->smcf;

    if (rc != NGX_OK) {
        (void) ngx_http_shortlink_lookup_failed(lk);
        ngx_http_shortlink_lookup_finish(lk);
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "shortlink: \"%V\" not found", &lk->sn.str);

        if (smcf->zone && !lk->invalidated) {
            ngx_http_shortlink_cache_put(smcf->zone, &lk->sn.str, NULL);
        }

        lk->outcome = NGX_HTTP_SHORTLINK_NOT_FOUND;
        ngx_str_set(&lk->tier, "pg");
        ngx_http_shortlink_lookup_finish(lk);
        return;
    }

    /* the database checks all this; a row written around its rules is not
     * served, and not cached */

    if (ngx_http_shortlink_lookup_row(res, 0, 3, &link) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "shortlink: link \"%V\" has an invalid target or "
                      "status, refused", &lk->sn.str);

        lk->outcome = NGX_HTTP_SHORTLINK_NOT_FOUND;
        ngx_str_set(&lk->tier, "pg");
        ngx_http_shortlink_lookup_finish(lk);
        return;
    }

    if (!lk->invalidated) {
        ngx_http_shortlink_lookup_fill(smcf, &lk->sn.str, &link);
    }

    (void) ngx_http_shortlink_lookup_found(lk, &link, "pg");

    ngx_http_shortlink_lookup_finish(lk);
}


/* a link PostgreSQL gave: into the zone, and into Redis for other nodes */

static void
ngx_http_shortlink_lookup_fill(ngx_http_shortlink_main_conf_t *smcf,
    ngx_str_t *code, ngx_http_shortlink_link_t *link)
{
    time_t     ttl;
    ngx_str_t  value;
    u_char     buf[NGX_HTTP_SHORTLINK_URL_MAX_LEN
                   + NGX_HTTP_SHORTLINK_RULES_MAX_LEN + 64];

    if (smcf->zone) {
        ngx_http_shortlink_cache_put(smcf->zone, code, link);
    }

    if (smcf->worker->redis == NULL) {
        return;
    }

    ttl = smcf->redis_ttl;

    if (link->expires) {
        ttl = ngx_min(ttl, link->expires - ngx_time());

        if (ttl <= 0) {
            return;
        }
    }

    if (ngx_http_shortlink_link_encoded_len(link) > sizeof(buf)) {
        return;
    }

    value.data = buf;
    value.len = ngx_http_shortlink_link_encode(buf, link) - buf;

    ngx_http_shortlink_redis_set(smcf->worker->redis, code, link->version,
                                 &value, ttl);
}


/* every backend failed: an expired L1 entry if there is one, else 503 */

static ngx_int_t
ngx_http_shortlink_lookup_failed(ngx_http_shortlink_lookup_t *lk)
{
    if (lk->stale.url.len) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "shortlink: backends unavailable, \"%V\" served "
                      "from an expired cache entry", &lk->sn.str);

        lk->link = lk->stale;
        lk->outcome = NGX_HTTP_SHORTLINK_REDIRECT;
        ngx_str_set(&lk->tier, "stale");
        return NGX_OK;
    }

    lk->outcome = NGX_HTTP_SHORTLINK_UNAVAILABLE;
    ngx_str_set(&lk->tier, "error");

    return NGX_OK;
}


/* link points into a backend's reply: keep a copy for the waiters */

static ngx_int_t
ngx_http_shortlink_lookup_found(ngx_http_shortlink_lookup_t *lk,
    ngx_http_shortlink_link_t *link, const char *tier)
{
    u_char  *p;

    lk->link = *link;

    p = ngx_alloc(ngx_http_shortlink_link_data_len(link), ngx_cycle->log);

    if (p == NULL) {
        lk->link.url.data = NULL;
        lk->link.url.len = 0;
        ngx_str_null(&lk->link.rules);
        lk->outcome = NGX_HTTP_SHORTLINK_UNAVAILABLE;
        ngx_str_set(&lk->tier, "error");
        return NGX_ERROR;
    }

    (void) ngx_http_shortlink_link_move(&lk->link, p);

    lk->outcome = NGX_HTTP_SHORTLINK_REDIRECT;
    lk->tier.data = (u_char *) tier;
    lk->tier.len = ngx_strlen(tier);

    return NGX_OK;
}


/* answer every request still waiting, then forget the lookup */

static void
ngx_http_shortlink_lookup_finish(ngx_http_shortlink_lookup_t *lk)
{
    ngx_int_t                  rc;
    ngx_queue_t               *q;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_shortlink_ctx_t  *ctx;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "shortlink: lookup \"%V\" answered by %V",
                   &lk->sn.str, &lk->tier);

    ngx_rbtree_delete(&lk->smcf->worker->lookups, &lk->sn.node);

    ngx_http_shortlink_metrics_lookup(
        ngx_http_shortlink_metrics_get(lk->smcf->metrics),
        ngx_current_msec - lk->start);

    while (!ngx_queue_empty(&lk->waiters)) {
        q = ngx_queue_head(&lk->waiters);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_shortlink_ctx_t, queue);
        ctx->lookup = NULL;

        r = ctx->request;
        c = r->connection;

        rc = ngx_http_shortlink_lookup_answer(lk, r, ctx);

        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }

    ngx_http_shortlink_lookup_free(lk);
}


static ngx_int_t
ngx_http_shortlink_lookup_answer(ngx_http_shortlink_lookup_t *lk,
    ngx_http_request_t *r, ngx_http_shortlink_ctx_t *ctx)
{
    u_char  *p;

    ctx->tier = lk->tier;

    if (lk->outcome == NGX_HTTP_SHORTLINK_REDIRECT) {
        ctx->link = lk->link;
        p = ngx_pnalloc(r->pool, ngx_http_shortlink_link_data_len(&lk->link));

        if (p == NULL) {
            ngx_str_null(&ctx->link.url);
            ngx_str_null(&ctx->link.rules);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_http_shortlink_link_move(&ctx->link, p);
    }

    return ngx_http_shortlink_respond(r, ctx, lk->outcome);
}


static void
ngx_http_shortlink_lookup_free(ngx_http_shortlink_lookup_t *lk)
{
    if (lk->link.url.data && lk->link.url.data != lk->stale.url.data) {
        ngx_free(lk->link.url.data);
    }

    ngx_free(lk);
}


/* the request goes away: the lookup goes on without it */

static void
ngx_http_shortlink_lookup_cleanup(void *data)
{
    ngx_http_shortlink_ctx_t  *ctx = data;

    if (ctx->lookup) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                       "shortlink: request gone, lookup detached");

        ngx_queue_remove(&ctx->queue);
        ctx->lookup = NULL;
    }
}
