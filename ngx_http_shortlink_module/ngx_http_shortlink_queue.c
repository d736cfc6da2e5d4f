
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The click queue: one ring of variable-length records in a shared-memory
 * zone.  Any worker appends at the tail (a memcpy under the zone's mutex:
 * never I/O, never a wait); the one worker holding the flush lease copies a
 * batch from the head and removes it only after PostgreSQL committed it.
 * A flusher that dies mid-flush leaves its batch in place: the next lease
 * holder sends it again, and PostgreSQL's unique event ids make that
 * harmless.
 *
 * The lease is an owner pid and an expiry time, never a worker slot: old
 * and new workers coexist during a reload, and a lease whose owner died
 * simply expires.
 *
 * The zone is reused on reload when its name and size stay the same, so
 * queued clicks survive "nginx -s reload".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_queue.h"


#define NGX_HTTP_SHORTLINK_QUEUE_WRAP    0xffffffff

#define ngx_http_shortlink_queue_frame(len)                                   \
    (NGX_HTTP_SHORTLINK_QUEUE_FRAME + ngx_align((len), 8))


typedef struct {
    size_t                         size;      /* bytes in data[] */
    size_t                         head;      /* first record */
    size_t                         tail;      /* where the next one goes */
    size_t                         used;      /* bytes between them */
    uint64_t                       count;
    uint64_t                       enqueued;
    uint64_t                       flushed;
    uint64_t                       dropped;
    ngx_pid_t                      lease_owner;
    ngx_msec_t                     lease_until;
    time_t                         drop_logged;
    u_char                        *data;
} ngx_http_shortlink_queue_sh_t;


typedef struct {
    ngx_http_shortlink_queue_sh_t *sh;
    ngx_slab_pool_t               *shpool;
} ngx_http_shortlink_queue_ctx_t;


static ngx_int_t ngx_http_shortlink_queue_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_shortlink_queue_put(ngx_http_shortlink_queue_sh_t *sh,
    size_t at, u_char *rec, size_t len);
static size_t ngx_http_shortlink_queue_record(
    ngx_http_shortlink_queue_sh_t *sh, size_t pos, size_t *frame);


ngx_shm_zone_t *
ngx_http_shortlink_queue_add(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_shortlink_queue_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    return ngx_http_shortlink_zone_add(cf, name, size,
                                       ngx_http_shortlink_queue_init_zone,
                                       ctx);
}


static ngx_int_t
ngx_http_shortlink_queue_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_shortlink_queue_ctx_t  *octx = data;

    size_t                           size;
    ngx_http_shortlink_queue_ctx_t  *ctx;

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

    ctx->sh = ngx_slab_alloc(ctx->shpool,
                             sizeof(ngx_http_shortlink_queue_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(ctx->sh, sizeof(ngx_http_shortlink_queue_sh_t));
    ctx->shpool->data = ctx->sh;

    /* the ring takes whatever the slab allocator can give in one piece */

    ctx->shpool->log_nomem = 0;

    for (size = shm_zone->shm.size - shm_zone->shm.size / 16;
         size >= 8 * ngx_pagesize;
         size -= ngx_pagesize)
    {
        ctx->sh->data = ngx_slab_alloc(ctx->shpool, size);

        if (ctx->sh->data) {
            ctx->sh->size = size;
            return NGX_OK;
        }
    }

    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "click queue zone \"%V\" is too small",
                  &shm_zone->shm.name);

    return NGX_ERROR;
}


/* NGX_OK, or NGX_DECLINED when full: the click is counted as dropped */

ngx_int_t
ngx_http_shortlink_queue_push(ngx_shm_zone_t *zone, u_char *rec, size_t len)
{
    size_t                           frame, at;
    uint64_t                         dropped;
    ngx_uint_t                       log;
    ngx_http_shortlink_queue_sh_t   *sh;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;
    sh = ctx->sh;
    frame = ngx_http_shortlink_queue_frame(len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->count == 0) {
        sh->head = 0;
        sh->tail = 0;
        sh->used = 0;
    }

    if (sh->tail >= sh->head && sh->count) {
        /* free: tail..end, then 0..head */

        if (sh->size - sh->tail >= frame) {
            at = sh->tail;

        } else if (sh->head > frame) {
            if (sh->size - sh->tail >= NGX_HTTP_SHORTLINK_QUEUE_FRAME) {
                *(uint32_t *) (sh->data + sh->tail) =
                                               NGX_HTTP_SHORTLINK_QUEUE_WRAP;
            }

            sh->used += sh->size - sh->tail;
            at = 0;

        } else {
            goto full;
        }

    } else if (sh->count == 0) {
        if (sh->size < frame) {
            goto full;
        }

        at = 0;

    } else {
        /* wrapped: free is tail..head, kept strictly apart */

        if (sh->head - sh->tail > frame) {
            at = sh->tail;

        } else {
            goto full;
        }
    }

    ngx_http_shortlink_queue_put(sh, at, rec, len);

    sh->tail = at + frame;
    sh->used += frame;
    sh->count++;
    sh->enqueued++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;

full:

    dropped = ++sh->dropped;
    log = (sh->drop_logged != ngx_time());
    sh->drop_logged = ngx_time();

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (log) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "shortlink: click queue \"%V\" is full, click dropped "
                      "(%uL dropped since start)", &zone->shm.name, dropped);
    }

    return NGX_DECLINED;
}


static void
ngx_http_shortlink_queue_put(ngx_http_shortlink_queue_sh_t *sh, size_t at,
    u_char *rec, size_t len)
{
    u_char  *p;

    p = sh->data + at;

    *(uint32_t *) p = (uint32_t) len;
    *(uint32_t *) (p + 4) = 0;

    ngx_memcpy(p + NGX_HTTP_SHORTLINK_QUEUE_FRAME, rec, len);
}


/*
 * The flush lease: NGX_OK if this process holds it now (taken, renewed,
 * or taken over from an owner that let it expire), NGX_BUSY otherwise.
 */

ngx_int_t
ngx_http_shortlink_queue_lease(ngx_shm_zone_t *zone, ngx_msec_t duration)
{
    ngx_int_t                        rc;
    ngx_msec_t                       now;
    ngx_http_shortlink_queue_sh_t   *sh;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;
    sh = ctx->sh;
    now = ngx_current_msec;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->lease_owner == 0
        || sh->lease_owner == ngx_pid
        || (ngx_msec_int_t) (now - sh->lease_until) >= 0)
    {
        if (sh->lease_owner && sh->lease_owner != ngx_pid) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "shortlink: flush lease of process %P expired, "
                          "taken over", sh->lease_owner);
        }

        sh->lease_owner = ngx_pid;
        sh->lease_until = now + duration;
        rc = NGX_OK;

    } else {
        rc = NGX_BUSY;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


void
ngx_http_shortlink_queue_release(ngx_shm_zone_t *zone)
{
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->lease_owner == ngx_pid) {
        ctx->sh->lease_owner = 0;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * Copies up to max records from the head into memory of our own (the ring
 * may move on meanwhile); NGX_DECLINED when the queue is empty.
 */

ngx_int_t
ngx_http_shortlink_queue_peek(ngx_shm_zone_t *zone, ngx_uint_t max,
    ngx_http_shortlink_queue_batch_t *batch, ngx_log_t *log)
{
    size_t                           pos, len, frame, total;
    ngx_uint_t                       n;
    ngx_http_shortlink_queue_sh_t   *sh;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;
    sh = ctx->sh;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->count == 0) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    /* first pass: how many bytes */

    pos = sh->head;
    total = 0;

    for (n = 0; n < max && n < sh->count; n++) {
        pos = ngx_http_shortlink_queue_record(sh, pos, &frame);
        total += frame;
        pos += frame;
    }

    batch->data = ngx_alloc(total, log);
    if (batch->data == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_ERROR;
    }

    /* second pass: copy */

    pos = sh->head;
    len = 0;

    for (n = 0; n < max && n < sh->count; n++) {
        pos = ngx_http_shortlink_queue_record(sh, pos, &frame);
        ngx_memcpy(batch->data + len, sh->data + pos, frame);
        len += frame;
        pos += frame;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    batch->len = len;
    batch->count = n;
    batch->end = pos;

    return NGX_OK;
}


/* the record at pos, or at the start if the ring wraps there */

static size_t
ngx_http_shortlink_queue_record(ngx_http_shortlink_queue_sh_t *sh,
    size_t pos, size_t *frame)
{
    if (sh->size - pos < NGX_HTTP_SHORTLINK_QUEUE_FRAME
        || *(uint32_t *) (sh->data + pos) == NGX_HTTP_SHORTLINK_QUEUE_WRAP)
    {
        pos = 0;
    }

    *frame = ngx_http_shortlink_queue_frame(*(uint32_t *) (sh->data + pos));

    return pos;
}


/* PostgreSQL committed the batch: it leaves the queue */

void
ngx_http_shortlink_queue_commit(ngx_shm_zone_t *zone,
    ngx_http_shortlink_queue_batch_t *batch)
{
    size_t                           freed;
    ngx_http_shortlink_queue_sh_t   *sh;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;
    sh = ctx->sh;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    freed = (batch->end > sh->head) ? batch->end - sh->head
                                    : sh->size - sh->head + batch->end;

    sh->head = batch->end;
    sh->count -= batch->count;
    sh->flushed += batch->count;
    sh->used = (sh->count == 0) ? 0 : sh->used - ngx_min(freed, sh->used);

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


u_char *
ngx_http_shortlink_queue_next(ngx_http_shortlink_queue_batch_t *batch,
    u_char *pos, u_char **rec, size_t *len)
{
    uint32_t  rlen;

    if (pos >= batch->data + batch->len) {
        return NULL;
    }

    rlen = *(uint32_t *) pos;

    *rec = pos + NGX_HTTP_SHORTLINK_QUEUE_FRAME;
    *len = rlen;

    return pos + ngx_http_shortlink_queue_frame(rlen);
}


void
ngx_http_shortlink_queue_stats(ngx_shm_zone_t *zone,
    ngx_http_shortlink_queue_stats_t *st)
{
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    st->queued = ctx->sh->count;
    st->enqueued = ctx->sh->enqueued;
    st->flushed = ctx->sh->flushed;
    st->dropped = ctx->sh->dropped;
    st->size = ctx->sh->size;
    st->used = ctx->sh->used;

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}
