
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Profile pages behind the zone: the lookup through Redis and PostgreSQL,
 * one per "@<username>" at a time in a worker (requests that want the same
 * profile meanwhile wait for it; a request that leaves is detached), the
 * stale page when both fail, and the invalidation by the notification
 * "@<username>:<version>".
 *
 * What is cached is the rendered page (ngx_http_shortlink_profile_render.c)
 * with a hole where each entry's link prefix goes: a hit costs a copy, no
 * escaping, whatever the page holds.  Pages are versioned like links (the
 * profile's version, which PostgreSQL bumps on any change of the profile,
 * of its entries or of their links): a late, older answer never replaces a
 * newer page, and a notification drops only older copies.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_profile.h"


#define NGX_HTTP_SHORTLINK_PROFILE_PAGE  1


struct ngx_http_shortlink_profile_lookup_s {
    ngx_str_node_t                    sn;         /* in profile_lookups */
    ngx_queue_t                       waiters;    /* ctx->queue */
    ngx_http_shortlink_main_conf_t   *smcf;
    ngx_http_shortlink_redis_cmd_t   *redis;      /* GET in flight */
    ngx_str_t                         stale;      /* usable if all fails */
    ngx_str_t                         value;      /* the answer */
    ngx_str_t                         tier;
    ngx_uint_t                        outcome;
    ngx_uint_t                        invalidated; /* changed meanwhile */
    time_t                            ttl;        /* of the first asker */
    ngx_msec_t                        start;
    u_char                            key[1
                                        + NGX_HTTP_SHORTLINK_PROFILE_NAME_MAX];
};


static ngx_http_shortlink_profile_lookup_t *
    ngx_http_shortlink_profile_lookup_create(
    ngx_http_shortlink_main_conf_t *smcf, ngx_str_t *key, ngx_str_t *stale);
static ngx_int_t ngx_http_shortlink_profile_redis(
    ngx_http_shortlink_profile_lookup_t *lk);
static void ngx_http_shortlink_profile_redis_done(void *data, ngx_int_t rc,
    ngx_str_t *value);
static ngx_int_t ngx_http_shortlink_profile_pg(
    ngx_http_shortlink_profile_lookup_t *lk);
static void ngx_http_shortlink_profile_pg_done(void *data, PGresult *res,
    ngx_int_t rc);
static void ngx_http_shortlink_profile_put(
    ngx_http_shortlink_main_conf_t *smcf, ngx_str_t *key, ngx_str_t *value,
    ngx_http_shortlink_profile_t *page, ngx_uint_t redis);
static ngx_int_t ngx_http_shortlink_profile_failed(
    ngx_http_shortlink_profile_lookup_t *lk);
static void ngx_http_shortlink_profile_finish(
    ngx_http_shortlink_profile_lookup_t *lk);
static ngx_int_t ngx_http_shortlink_profile_answer(
    ngx_http_shortlink_profile_lookup_t *lk, ngx_http_request_t *r,
    ngx_http_shortlink_profile_ctx_t *ctx);
static void ngx_http_shortlink_profile_free(
    ngx_http_shortlink_profile_lookup_t *lk);
static void ngx_http_shortlink_profile_cleanup(void *data);


/*
 * One row per entry shown, in order (one row with a NULL code for a
 * profile without any); shortlink.profile_page() decides what is shown.
 */

static const char  ngx_http_shortlink_profile_sql[] =
    "SELECT p.profile_id, p.version, p.display_name, p.bio, p.avatar_url, "
    "p.theme, p.next_change_epoch, e.v->>'code', e.v->>'title' "
    "FROM shortlink.profile_page($1) p "
    "LEFT JOIN LATERAL jsonb_array_elements(p.entries) "
    "WITH ORDINALITY AS e(v, n) ON true "
    "ORDER BY e.n";


ngx_int_t
ngx_http_shortlink_profile_lookup(ngx_http_request_t *r,
    ngx_http_shortlink_profile_ctx_t *ctx, ngx_str_t *stale)
{
    uint32_t                              hash;
    ngx_int_t                             rc;
    ngx_str_node_t                       *sn;
    ngx_http_cleanup_t                   *cln;
    ngx_http_shortlink_worker_t          *worker;
    ngx_http_shortlink_loc_conf_t        *slcf;
    ngx_http_shortlink_main_conf_t       *smcf;
    ngx_http_shortlink_profile_lookup_t  *lk;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);
    worker = smcf->worker;

    if (worker == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_shortlink_profile_cleanup;
    cln->data = ctx;

    hash = ngx_crc32_short(ctx->base.code.data, ctx->base.code.len);
    sn = ngx_str_rbtree_lookup(&worker->profile_lookups, &ctx->base.code,
                               hash);

    if (sn) {
        lk = (ngx_http_shortlink_profile_lookup_t *) sn;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "shortlink: \"%V\" joins a lookup under way",
                       &ctx->base.code);

    } else {
        lk = ngx_http_shortlink_profile_lookup_create(smcf, &ctx->base.code,
                                                      stale);
        if (lk == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);
        lk->ttl = slcf->profile.ttl;

        rc = ngx_http_shortlink_profile_redis(lk);

        if (rc == NGX_OK) {
            /* finished at once: this request is the only one */
            rc = ngx_http_shortlink_profile_answer(lk, r, ctx);
            ngx_http_shortlink_profile_free(lk);
            return rc;
        }

        if (rc == NGX_ERROR) {
            ngx_http_shortlink_profile_free(lk);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        lk->sn.node.key = hash;
        ngx_rbtree_insert(&worker->profile_lookups, &lk->sn.node);
    }

    ngx_queue_insert_tail(&lk->waiters, &ctx->base.queue);
    ctx->lookup = lk;

    if (r == r->main) {
        r->read_event_handler = ngx_http_test_reading;
    }

    r->main->count++;

    return NGX_DONE;
}


/*
 * PostgreSQL said "@<username>:<version>": the profile, one of its entries
 * or one of their links changed (or it was created, renamed or deleted).
 */

void
ngx_http_shortlink_profile_invalidate(ngx_http_shortlink_main_conf_t *smcf,
    ngx_str_t *payload)
{
    u_char          *colon, *p;
    int64_t          version;
    ngx_str_t        key;
    ngx_str_node_t  *sn;

    key = *payload;
    version = INT64_MAX;

    colon = ngx_strlchr(payload->data, payload->data + payload->len, ':');

    if (colon) {
        key.len = colon - payload->data;
        version = ngx_atoof(colon + 1,
                            payload->data + payload->len - colon - 1);
        if (version == NGX_ERROR) {
            version = INT64_MAX;
        }
    }

    if (key.len < 2 || key.len > 1 + NGX_HTTP_SHORTLINK_PROFILE_NAME_MAX
        || key.data[0] != '@')
    {
        return;
    }

    for (p = key.data + 1; p < key.data + key.len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '_' || *p == '.'))
        {
            return;
        }
    }

    sn = ngx_str_rbtree_lookup(&smcf->worker->profile_lookups, &key,
                               ngx_crc32_short(key.data, key.len));
    if (sn) {
        ((ngx_http_shortlink_profile_lookup_t *) sn)->invalidated = 1;
    }

    if (smcf->worker->bloom) {
        ngx_http_shortlink_bloom_add(smcf->worker->bloom, &key);
    }

    if (smcf->zone) {
        ngx_http_shortlink_cache_invalidate(smcf->zone, &key, version);
    }

    if (smcf->worker->redis) {
        ngx_http_shortlink_redis_invalidate(smcf->worker->redis, &key,
                                            version, smcf->redis_ttl);
    }
}


/* the worker exits: no request is answered any more */

void
ngx_http_shortlink_profile_destroy(ngx_http_shortlink_worker_t *worker)
{
    ngx_queue_t                          *q;
    ngx_rbtree_t                         *tree;
    ngx_rbtree_node_t                    *node;
    ngx_http_shortlink_profile_ctx_t     *ctx;
    ngx_http_shortlink_profile_lookup_t  *lk;

    tree = &worker->profile_lookups;

    while (tree->root != tree->sentinel) {
        node = ngx_rbtree_min(tree->root, tree->sentinel);
        lk = (ngx_http_shortlink_profile_lookup_t *) node;

        while (!ngx_queue_empty(&lk->waiters)) {
            q = ngx_queue_head(&lk->waiters);
            ngx_queue_remove(q);
            ctx = ngx_queue_data(q, ngx_http_shortlink_profile_ctx_t,
                                 base.queue);
            ctx->lookup = NULL;
        }

        if (lk->redis) {
            ngx_http_shortlink_redis_detach(lk->redis);
            lk->redis = NULL;
        }

        ngx_rbtree_delete(tree, node);
        ngx_http_shortlink_profile_free(lk);
    }
}


static ngx_http_shortlink_profile_lookup_t *
ngx_http_shortlink_profile_lookup_create(ngx_http_shortlink_main_conf_t *smcf,
    ngx_str_t *key, ngx_str_t *stale)
{
    size_t                                len;
    ngx_http_shortlink_profile_lookup_t  *lk;

    len = sizeof(ngx_http_shortlink_profile_lookup_t)
          + (stale ? stale->len : 0);

    lk = ngx_alloc(len, ngx_cycle->log);
    if (lk == NULL) {
        return NULL;
    }

    ngx_memzero(lk, sizeof(ngx_http_shortlink_profile_lookup_t));

    ngx_memcpy(lk->key, key->data, key->len);
    lk->sn.str.data = lk->key;
    lk->sn.str.len = key->len;

    ngx_queue_init(&lk->waiters);
    lk->smcf = smcf;
    lk->start = ngx_current_msec;

    if (stale) {
        lk->stale.data = (u_char *) (lk + 1);
        lk->stale.len = stale->len;
        ngx_memcpy(lk->stale.data, stale->data, stale->len);
    }

    return lk;
}


/* NGX_AGAIN: asked Redis; NGX_OK: the outcome is set; NGX_ERROR */

static ngx_int_t
ngx_http_shortlink_profile_redis(ngx_http_shortlink_profile_lookup_t *lk)
{
    ngx_int_t  rc;

    if (lk->smcf->worker->redis == NULL) {
        return ngx_http_shortlink_profile_pg(lk);
    }

    rc = ngx_http_shortlink_redis_get(lk->smcf->worker->redis, &lk->sn.str,
                                      ngx_http_shortlink_profile_redis_done,
                                      lk, &lk->redis);

    if (rc == NGX_OK) {
        return NGX_AGAIN;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_http_shortlink_profile_pg(lk);
}


static void
ngx_http_shortlink_profile_redis_done(void *data, ngx_int_t rc,
    ngx_str_t *value)
{
    ngx_http_shortlink_profile_lookup_t  *lk = data;

    ngx_http_shortlink_profile_t  page;

    lk->redis = NULL;

    if (rc == NGX_OK) {

        rc = ngx_http_shortlink_profile_decode(value, &page);

        if (rc == NGX_OK && !ngx_http_shortlink_profile_valid(&page)) {
            rc = NGX_ERROR;
        }

        if (rc == NGX_OK && page.fresh_until > ngx_time()) {

            lk->value.data = ngx_alloc(value->len, ngx_cycle->log);

            if (lk->value.data == NULL) {
                lk->outcome = NGX_HTTP_SHORTLINK_UNAVAILABLE;
                ngx_str_set(&lk->tier, "error");
                ngx_http_shortlink_profile_finish(lk);
                return;
            }

            lk->value.len = value->len;
            ngx_memcpy(lk->value.data, value->data, value->len);

            if (!lk->invalidated) {
                ngx_http_shortlink_profile_put(lk->smcf, &lk->sn.str,
                                               &lk->value, &page, 0);
            }

            lk->outcome = NGX_HTTP_SHORTLINK_PROFILE_PAGE;
            ngx_str_set(&lk->tier, "redis");
            ngx_http_shortlink_profile_finish(lk);
            return;
        }

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "shortlink: malformed Redis value for \"%V\" "
                          "ignored", &lk->sn.str);
        }

        /* a tombstone, or a page due for a refresh: PostgreSQL knows */
    }

    rc = ngx_http_shortlink_profile_pg(lk);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        lk->outcome = NGX_HTTP_SHORTLINK_UNAVAILABLE;
        ngx_str_set(&lk->tier, "error");
    }

    ngx_http_shortlink_profile_finish(lk);
}


/* NGX_AGAIN: asked PostgreSQL; NGX_OK: the outcome is set; NGX_ERROR */

static ngx_int_t
ngx_http_shortlink_profile_pg(ngx_http_shortlink_profile_lookup_t *lk)
{
    ngx_int_t                        rc;
    ngx_str_t                        username;
    ngx_http_shortlink_pg_query_t   *q;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = lk->smcf;

    username.data = lk->sn.str.data + 1;
    username.len = lk->sn.str.len - 1;

    rc = ngx_http_shortlink_pg_exec(smcf->worker->pg,
                                    ngx_http_shortlink_profile_sql,
                                    1, &username, smcf->pg.query_timeout,
                                    ngx_http_shortlink_profile_pg_done, lk,
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

    return ngx_http_shortlink_profile_failed(lk);
}


static void
ngx_http_shortlink_profile_pg_done(void *data, PGresult *res, ngx_int_t rc)
{
    ngx_http_shortlink_profile_lookup_t  *lk = data;

    ngx_http_shortlink_profile_t     page;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = lk->smcf;

    if (rc != NGX_OK) {
        (void) ngx_http_shortlink_profile_failed(lk);
        ngx_http_shortlink_profile_finish(lk);
        return;
    }

    ngx_str_set(&lk->tier, "pg");

    if (PQntuples(res) == 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "shortlink: profile \"%V\" not found", &lk->sn.str);

        if (smcf->zone && !lk->invalidated) {
            ngx_http_shortlink_cache_put(smcf->zone, &lk->sn.str, NULL);
        }

        lk->outcome = NGX_HTTP_SHORTLINK_NOT_FOUND;
        ngx_http_shortlink_profile_finish(lk);
        return;
    }

    rc = ngx_http_shortlink_profile_render(res, lk->ttl, &lk->value);

    if (rc == NGX_OK) {
        rc = ngx_http_shortlink_profile_decode(&lk->value, &page);
    }

    if (rc != NGX_OK) {
        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "shortlink: profile \"%V\" could not be rendered "
                          "from its row, refused", &lk->sn.str);
        }

        if (lk->value.data) {
            ngx_free(lk->value.data);
            ngx_str_null(&lk->value);
        }

        lk->outcome = (rc == NGX_DECLINED) ? NGX_HTTP_SHORTLINK_NOT_FOUND
                                           : NGX_HTTP_SHORTLINK_UNAVAILABLE;
        ngx_http_shortlink_profile_finish(lk);
        return;
    }

    if (!lk->invalidated) {
        ngx_http_shortlink_profile_put(smcf, &lk->sn.str, &lk->value, &page,
                                       1);
    }

    lk->outcome = NGX_HTTP_SHORTLINK_PROFILE_PAGE;
    ngx_http_shortlink_profile_finish(lk);
}


/* a page into the zone, and into Redis for the other nodes */

static void
ngx_http_shortlink_profile_put(ngx_http_shortlink_main_conf_t *smcf,
    ngx_str_t *key, ngx_str_t *value, ngx_http_shortlink_profile_t *page,
    ngx_uint_t redis)
{
    time_t                     ttl;
    ngx_http_shortlink_link_t  entry;

    if (smcf->zone && value->len <= NGX_HTTP_SHORTLINK_PROFILE_MAX_LEN) {
        ngx_memzero(&entry, sizeof(ngx_http_shortlink_link_t));
        entry.url = *value;
        entry.status = NGX_HTTP_OK;
        entry.version = page->version;

        ngx_http_shortlink_cache_put(smcf->zone, key, &entry);
    }

    if (!redis || smcf->worker->redis == NULL) {
        return;
    }

    ttl = ngx_min(smcf->redis_ttl, page->fresh_until - ngx_time());

    ngx_http_shortlink_redis_set(smcf->worker->redis, key, page->version,
                                 value, ttl);
}


/* every backend failed: a stale page if there is one, else 503 */

static ngx_int_t
ngx_http_shortlink_profile_failed(ngx_http_shortlink_profile_lookup_t *lk)
{
    if (lk->stale.len) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "shortlink: backends unavailable, \"%V\" served "
                      "from an expired cache entry", &lk->sn.str);

        lk->outcome = NGX_HTTP_SHORTLINK_PROFILE_PAGE;
        ngx_str_set(&lk->tier, "stale");
        return NGX_OK;
    }

    lk->outcome = NGX_HTTP_SHORTLINK_UNAVAILABLE;
    ngx_str_set(&lk->tier, "error");

    return NGX_OK;
}


static void
ngx_http_shortlink_profile_finish(ngx_http_shortlink_profile_lookup_t *lk)
{
    ngx_int_t                          rc;
    ngx_queue_t                       *q;
    ngx_connection_t                  *c;
    ngx_http_request_t                *r;
    ngx_http_shortlink_profile_ctx_t  *ctx;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "shortlink: lookup \"%V\" answered by %V",
                   &lk->sn.str, &lk->tier);

    ngx_rbtree_delete(&lk->smcf->worker->profile_lookups, &lk->sn.node);

    ngx_http_shortlink_metrics_lookup(
        ngx_http_shortlink_metrics_get(lk->smcf->metrics),
        ngx_current_msec - lk->start);

    while (!ngx_queue_empty(&lk->waiters)) {
        q = ngx_queue_head(&lk->waiters);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_shortlink_profile_ctx_t, base.queue);
        ctx->lookup = NULL;

        r = ctx->base.request;
        c = r->connection;

        rc = ngx_http_shortlink_profile_answer(lk, r, ctx);

        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }

    ngx_http_shortlink_profile_free(lk);
}


static ngx_int_t
ngx_http_shortlink_profile_answer(ngx_http_shortlink_profile_lookup_t *lk,
    ngx_http_request_t *r, ngx_http_shortlink_profile_ctx_t *ctx)
{
    ngx_str_t                     *value;
    ngx_http_shortlink_profile_t   page;

    ctx->base.tier = lk->tier;

    switch (lk->outcome) {

    case NGX_HTTP_SHORTLINK_PROFILE_PAGE:
        value = lk->value.len ? &lk->value : &lk->stale;

        if (ngx_http_shortlink_profile_decode(value, &page) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* the page is copied before the lookup is freed */
        return ngx_http_shortlink_profile_send(r, &page);

    case NGX_HTTP_SHORTLINK_NOT_FOUND:
        return ngx_http_shortlink_profile_status(r, NGX_HTTP_NOT_FOUND);

    default:
        return ngx_http_shortlink_profile_status(r,
                                                NGX_HTTP_SERVICE_UNAVAILABLE);
    }
}


static void
ngx_http_shortlink_profile_free(ngx_http_shortlink_profile_lookup_t *lk)
{
    if (lk->value.data) {
        ngx_free(lk->value.data);
    }

    ngx_free(lk);
}


static void
ngx_http_shortlink_profile_cleanup(void *data)
{
    ngx_http_shortlink_profile_ctx_t  *ctx = data;

    if (ctx->lookup) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ctx->base.request->connection->log,
                       0, "shortlink: request gone, lookup detached");

        ngx_queue_remove(&ctx->base.queue);
        ctx->lookup = NULL;
    }
}
