
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * L1: one shared-memory zone for all workers, holding found links and
 * short-lived "no such code" entries.  An rbtree keyed by a CRC32 of the
 * code (ties broken by the code itself) finds an entry; a queue keeps them
 * in least-recently-used order, and the least recently used go first when
 * the zone is full.  An insert never fails a request: at worst the link is
 * simply not cached.
 *
 * Expired entries are not dropped at once: for stale_if_error after their
 * TTL they may still be served when every backend is down.  An entry never
 * outlives its link's own expires_at.  Each entry keeps the version of the
 * row it came from: a fresh entry is never replaced by an older answer, and
 * a notification drops only entries older than the version it announces.
 *
 * Everything runs under the slab pool's mutex, which the master releases
 * if a worker dies holding it.  Nothing here does I/O.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_cache.h"


/* how many times a full zone evicts before giving up on one insert */
#define NGX_HTTP_SHORTLINK_CACHE_EVICT_TRIES  64


typedef struct {
    u_char                             color;
    u_char                             negative;
    u_char                             code_len;
    u_char                             forward;
    u_char                             password;
    u_short                            status;
    u_short                            url_len;
    u_short                            rules_len;
    uint32_t                           epoch;        /* see cache_clear */
    ngx_queue_t                        queue;
    ngx_msec_t                         fresh_until;
    time_t                             link_expires;
    int64_t                            version;      /* of the row */
    u_char                             data[1];      /* code, url, rules */
} ngx_http_shortlink_cache_node_t;


typedef struct {
    ngx_rbtree_t                       rbtree;
    ngx_rbtree_node_t                  sentinel;
    ngx_queue_t                        queue;
    time_t                             nomem_logged;
    uint32_t                           epoch;        /* see cache_clear */
} ngx_http_shortlink_cache_sh_t;


typedef struct {
    ngx_http_shortlink_cache_sh_t     *sh;
    ngx_slab_pool_t                   *shpool;
    ngx_http_shortlink_cache_conf_t   *conf;
} ngx_http_shortlink_cache_ctx_t;


static ngx_int_t ngx_http_shortlink_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_shortlink_cache_note_resize(ngx_shm_zone_t *shm_zone);
static void ngx_http_shortlink_cache_rbtree_insert_value(
    ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
static ngx_http_shortlink_cache_node_t *ngx_http_shortlink_cache_lookup(
    ngx_http_shortlink_cache_ctx_t *ctx, ngx_str_t *code, uint32_t hash);
static ngx_uint_t ngx_http_shortlink_cache_expire(
    ngx_http_shortlink_cache_ctx_t *ctx, ngx_uint_t force,
    ngx_uint_t negative);
static ngx_uint_t ngx_http_shortlink_cache_useless(
    ngx_http_shortlink_cache_ctx_t *ctx, ngx_http_shortlink_cache_node_t *cn,
    ngx_msec_t now);
static void ngx_http_shortlink_cache_free(ngx_http_shortlink_cache_ctx_t *ctx,
    ngx_http_shortlink_cache_node_t *cn);


ngx_shm_zone_t *
ngx_http_shortlink_cache_add(ngx_conf_t *cf, ngx_str_t *name, size_t size,
    ngx_http_shortlink_cache_conf_t *conf)
{
    ngx_http_shortlink_cache_ctx_t  *ctx;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_shortlink_cache_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->conf = conf;

    return ngx_http_shortlink_zone_add(cf, name, size,
                                       ngx_http_shortlink_cache_init_zone,
                                       ctx);
}


/*
 * Same name and size on reload: nginx hands over the old mapping and the
 * entries stay.  A new size gets a new, empty segment.
 */

static ngx_int_t
ngx_http_shortlink_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_shortlink_cache_ctx_t  *octx = data;

    size_t                           len;
    ngx_http_shortlink_cache_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool,
                              sizeof(ngx_http_shortlink_cache_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_shortlink_cache_rbtree_insert_value);

    ngx_queue_init(&ctx->sh->queue);

    len = sizeof(" in shortlink zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in shortlink zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is normal: we evict instead of logging */
    ctx->shpool->log_nomem = 0;

    ngx_http_shortlink_cache_note_resize(shm_zone);

    return NGX_OK;
}


/* a reload that changed the size starts with an empty zone: say so */

static void
ngx_http_shortlink_cache_note_resize(ngx_shm_zone_t *shm_zone)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *old;

    if (ngx_cycle == NULL || ngx_cycle->shared_memory.part.elts == NULL) {
        return;
    }

    part = (ngx_list_part_t *) &ngx_cycle->shared_memory.part;
    old = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return;
            }

            part = part->next;
            old = part->elts;
            i = 0;
        }

        if (old[i].tag == shm_zone->tag
            && old[i].shm.name.len == shm_zone->shm.name.len
            && ngx_strncmp(old[i].shm.name.data, shm_zone->shm.name.data,
                           shm_zone->shm.name.len) == 0
            && old[i].shm.size != shm_zone->shm.size)
        {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "shortlink zone \"%V\" resized from %uz to %uz "
                          "bytes: it starts empty", &shm_zone->shm.name,
                          old[i].shm.size, shm_zone->shm.size);
            return;
        }
    }
}


static void
ngx_http_shortlink_cache_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                **p;
    ngx_http_shortlink_cache_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            cn = (ngx_http_shortlink_cache_node_t *) &node->color;
            cnt = (ngx_http_shortlink_cache_node_t *) &temp->color;

            p = (ngx_memn2cmp(cn->data, cnt->data, cn->code_len,
                              cnt->code_len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/*
 * HIT and STALE copy the link into pool (the entry may be evicted as soon
 * as the lock is released); a failed copy is reported as a miss.
 */

ngx_uint_t
ngx_http_shortlink_cache_get(ngx_shm_zone_t *zone, ngx_str_t *code,
    ngx_pool_t *pool, ngx_http_shortlink_link_t *link)
{
    uint32_t                          hash;
    ngx_msec_t                        now;
    ngx_uint_t                        rc;
    ngx_msec_int_t                    age;
    ngx_http_shortlink_cache_ctx_t   *ctx;
    ngx_http_shortlink_cache_node_t  *cn;

    ctx = zone->data;
    hash = ngx_crc32_short(code->data, code->len);
    now = ngx_current_msec;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_shortlink_cache_lookup(ctx, code, hash);

    if (cn == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_HTTP_SHORTLINK_CACHE_MISS;
    }

    if (cn->epoch != ctx->sh->epoch) {
        /* cached before notifications were missed */
        ngx_http_shortlink_cache_free(ctx, cn);
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_HTTP_SHORTLINK_CACHE_MISS;
    }

    age = (ngx_msec_int_t) (now - cn->fresh_until);

    if (cn->negative) {

        if (age < 0) {
            ngx_queue_remove(&cn->queue);
            ngx_queue_insert_head(&ctx->sh->queue, &cn->queue);
            rc = NGX_HTTP_SHORTLINK_CACHE_NEGATIVE;

        } else {
            ngx_http_shortlink_cache_free(ctx, cn);
            rc = NGX_HTTP_SHORTLINK_CACHE_MISS;
        }

        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return rc;
    }

    if (cn->link_expires && cn->link_expires <= ngx_time()) {
        /* the link itself expired: only the database may say more */
        ngx_http_shortlink_cache_free(ctx, cn);
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_HTTP_SHORTLINK_CACHE_MISS;
    }

    if (age < 0) {
        rc = NGX_HTTP_SHORTLINK_CACHE_HIT;

    } else if ((ngx_msec_t) age < ctx->conf->stale_if_error) {
        rc = NGX_HTTP_SHORTLINK_CACHE_STALE;

    } else {
        ngx_http_shortlink_cache_free(ctx, cn);
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_HTTP_SHORTLINK_CACHE_MISS;
    }

    /* one allocation: the url, and the rules behind it if there are any */

    link->url.data = ngx_pnalloc(pool, cn->url_len + cn->rules_len);
    if (link->url.data == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_HTTP_SHORTLINK_CACHE_MISS;
    }

    ngx_memcpy(link->url.data, cn->data + cn->code_len,
               cn->url_len + cn->rules_len);
    link->url.len = cn->url_len;

    if (cn->rules_len) {
        link->rules.data = link->url.data + cn->url_len;
        link->rules.len = cn->rules_len;

    } else {
        ngx_str_null(&link->rules);
    }

    link->status = cn->status;
    link->expires = cn->link_expires;
    link->version = cn->version;
    link->forward = cn->forward;
    link->password = cn->password;

    if (rc == NGX_HTTP_SHORTLINK_CACHE_HIT) {
        ngx_queue_remove(&cn->queue);
        ngx_queue_insert_head(&ctx->sh->queue, &cn->queue);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/* link == NULL caches "no such code" for negative_ttl */

void
ngx_http_shortlink_cache_put(ngx_shm_zone_t *zone, ngx_str_t *code,
    ngx_http_shortlink_link_t *link)
{
    size_t                            size;
    uint32_t                          hash;
    ngx_msec_t                        ttl, now;
    ngx_uint_t                        tries, max, log;
    ngx_rbtree_node_t                *node;
    ngx_http_shortlink_cache_ctx_t   *ctx;
    ngx_http_shortlink_cache_node_t  *cn;

    ctx = zone->data;
    now = ngx_current_msec;

    if (code->len > 255) {
        return;
    }

    if (link) {
        ttl = ctx->conf->ttl;

        if (link->expires) {
            if (link->expires <= ngx_time()) {
                return;
            }

            ttl = ngx_min(ttl, (ngx_msec_t) (link->expires - ngx_time())
                               * 1000);
        }

        if (link->rules.len > NGX_HTTP_SHORTLINK_RULES_MAX_LEN) {
            return;
        }

        size = code->len + link->url.len + link->rules.len;

    } else {
        ttl = ctx->conf->negative_ttl;
        size = code->len;
    }

    if (ttl == 0) {
        return;
    }

    size += offsetof(ngx_rbtree_node_t, color)
            + offsetof(ngx_http_shortlink_cache_node_t, data);

    hash = ngx_crc32_short(code->data, code->len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_shortlink_cache_lookup(ctx, code, hash);

    if (cn) {
        /* a late, older answer never replaces a fresh, newer entry */

        if (cn->version > (link ? link->version : 0)
            && cn->epoch == ctx->sh->epoch
            && (ngx_msec_int_t) (now - cn->fresh_until) < 0)
        {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return;
        }

        ngx_http_shortlink_cache_free(ctx, cn);
    }

    (void) ngx_http_shortlink_cache_expire(ctx, 0, 0);

    node = ngx_slab_alloc_locked(ctx->shpool, size);

    /*
     * Full: evict from the LRU tail.  An "absent" entry may only push out
     * other "absent" entries, so a flood of random codes cannot empty the
     * zone of real links.
     */

    /*
     * An entry over half a page needs whole free pages, which evicting
     * small entries rarely makes: try a few only, so that one long URL
     * cannot empty the zone of hot links.
     */

    max = (size > ngx_pagesize / 2) ? 4 : NGX_HTTP_SHORTLINK_CACHE_EVICT_TRIES;

    for (tries = 0; node == NULL && tries < max; tries++) {

        if (!ngx_http_shortlink_cache_expire(ctx, 1, link == NULL)) {
            break;
        }

        node = ngx_slab_alloc_locked(ctx->shpool, size);
    }

    if (node == NULL) {
        log = (link != NULL && ctx->sh->nomem_logged != ngx_time());
        ctx->sh->nomem_logged = ngx_time();

        ngx_shmtx_unlock(&ctx->shpool->mutex);

        if (log) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "shortlink zone \"%V\" cannot hold an entry of "
                          "%uz bytes: not cached", &zone->shm.name, size);
        }

        return;
    }

    node->key = hash;

    cn = (ngx_http_shortlink_cache_node_t *) &node->color;

    cn->negative = (link == NULL);
    cn->epoch = ctx->sh->epoch;
    cn->code_len = (u_char) code->len;
    cn->fresh_until = now + ttl;
    cn->version = link ? link->version : 0;
    cn->forward = (link && link->forward) ? 1 : 0;
    cn->password = (link && link->password) ? 1 : 0;
    ngx_memcpy(cn->data, code->data, code->len);

    if (link) {
        cn->status = (u_short) link->status;
        cn->url_len = (u_short) link->url.len;
        cn->rules_len = (u_short) link->rules.len;
        cn->link_expires = link->expires;
        ngx_memcpy(ngx_cpymem(cn->data + code->len, link->url.data,
                              link->url.len),
                   link->rules.data, link->rules.len);

    } else {
        cn->status = 0;
        cn->url_len = 0;
        cn->rules_len = 0;
        cn->link_expires = 0;
    }

    ngx_rbtree_insert(&ctx->sh->rbtree, node);
    ngx_queue_insert_head(&ctx->sh->queue, &cn->queue);

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* the row is now at version: copies older than that go */

void
ngx_http_shortlink_cache_invalidate(ngx_shm_zone_t *zone, ngx_str_t *code,
    int64_t version)
{
    ngx_http_shortlink_cache_ctx_t   *ctx;
    ngx_http_shortlink_cache_node_t  *cn;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    cn = ngx_http_shortlink_cache_lookup(ctx, code,
                                         ngx_crc32_short(code->data,
                                                         code->len));
    if (cn && cn->version < version) {
        ngx_http_shortlink_cache_free(ctx, cn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * Notifications may have been missed: nothing cached can be trusted.  O(1)
 * under the lock: entries of an older epoch are misses when looked up, and
 * freed as they reach the LRU tail.
 */

void
ngx_http_shortlink_cache_clear(ngx_shm_zone_t *zone)
{
    ngx_http_shortlink_cache_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    ctx->sh->epoch++;
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static ngx_http_shortlink_cache_node_t *
ngx_http_shortlink_cache_lookup(ngx_http_shortlink_cache_ctx_t *ctx,
    ngx_str_t *code, uint32_t hash)
{
    ngx_int_t                         rc;
    ngx_rbtree_node_t                *node, *sentinel;
    ngx_http_shortlink_cache_node_t  *cn;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        /* hash == node->key */

        cn = (ngx_http_shortlink_cache_node_t *) &node->color;

        rc = ngx_memn2cmp(code->data, cn->data, code->len, cn->code_len);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * force == 0: free up to two entries at the LRU tail that can no longer be
 * served even stale; force == 1: evict the least recently used entry (only
 * if it is an "absent" one when negative is set).  Returns whether an
 * entry was freed.
 */

static ngx_uint_t
ngx_http_shortlink_cache_expire(ngx_http_shortlink_cache_ctx_t *ctx,
    ngx_uint_t force, ngx_uint_t negative)
{
    ngx_uint_t                        n;
    ngx_msec_t                        now;
    ngx_queue_t                      *q;
    ngx_http_shortlink_cache_node_t  *cn;

    now = ngx_current_msec;

    for (n = 0; n < 2; n++) {

        if (ngx_queue_empty(&ctx->sh->queue)) {
            return n;
        }

        q = ngx_queue_last(&ctx->sh->queue);
        cn = ngx_queue_data(q, ngx_http_shortlink_cache_node_t, queue);

        if (force) {
            if (negative && !cn->negative
                && !ngx_http_shortlink_cache_useless(ctx, cn, now))
            {
                return 0;
            }

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                           "shortlink cache: evicted \"%*s\"",
                           (size_t) cn->code_len, cn->data);
            ngx_http_shortlink_cache_free(ctx, cn);
            return 1;
        }

        if (!ngx_http_shortlink_cache_useless(ctx, cn, now)) {
            return n;
        }

        ngx_http_shortlink_cache_free(ctx, cn);
    }

    return n;
}


static ngx_uint_t
ngx_http_shortlink_cache_useless(ngx_http_shortlink_cache_ctx_t *ctx,
    ngx_http_shortlink_cache_node_t *cn, ngx_msec_t now)
{
    ngx_msec_int_t  age;

    if (cn->epoch != ctx->sh->epoch) {
        return 1;
    }

    age = (ngx_msec_int_t) (now - cn->fresh_until);

    if (cn->negative) {
        return age >= 0;
    }

    if (cn->link_expires && cn->link_expires <= ngx_time()) {
        return 1;
    }

    return age >= 0 && (ngx_msec_t) age >= ctx->conf->stale_if_error;
}


static void
ngx_http_shortlink_cache_free(ngx_http_shortlink_cache_ctx_t *ctx,
    ngx_http_shortlink_cache_node_t *cn)
{
    ngx_rbtree_node_t  *node;

    node = (ngx_rbtree_node_t *)
               ((u_char *) cn - offsetof(ngx_rbtree_node_t, color));

    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&ctx->sh->rbtree, node);
    ngx_slab_free_locked(ctx->shpool, node);
}
