
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The click queue: one ring of variable-length records in a shared-memory
 * zone.  Any worker appends at the tail (a memcpy under the zone's mutex:
 * never I/O, never a wait); the one worker holding the flush lease copies a
 * batch from the head and removes it only after PostgreSQL committed it.
 * A flusher that dies mid-flush leaves its batch in place: the next lease
 * holder sends it again, and PostgreSQL's unique event ids make that
 * harmless.  A flusher that only stalled (stopped, swapped out) past its
 * lease finds on waking that the queue moved on: its commit is fenced by
 * the lease and the head's generation and changes nothing.
 *
 * Nothing read from the ring is trusted: every offset and length is
 * checked against the ring and every record against its format before it
 * is used; a ring found broken is emptied (its clicks counted as dropped)
 * rather than read out of bounds.
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
    (NGX_HTTP_SHORTLINK_QUEUE_FRAME + ngx_align((size_t) (len), 8))


typedef struct {
    size_t                         size;      /* bytes in data[] */
    size_t                         head;      /* first record */
    size_t                         tail;      /* where the next one goes */
    size_t                         used;      /* bytes between them */
    uint64_t                       count;
    uint64_t                       generation;  /* +1 whenever head moves */
    uint64_t                       enqueued;
    uint64_t                       flushed;
    uint64_t                       dropped;
    ngx_pid_t                      lease_owner;
    ngx_msec_t                     lease_until;
    ngx_uint_t                     failures;  /* flushes failed in a row */
    ngx_msec_t                     retry_at;  /* no flush before, if any */
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
static ngx_uint_t ngx_http_shortlink_queue_sane(
    ngx_http_shortlink_queue_sh_t *sh);
static uint64_t ngx_http_shortlink_queue_reset(
    ngx_http_shortlink_queue_sh_t *sh);
static void ngx_http_shortlink_queue_broken(ngx_shm_zone_t *zone,
    ngx_log_t *log, uint64_t lost);
static ngx_int_t ngx_http_shortlink_queue_walk(u_char *data, size_t size,
    size_t *pos, size_t *bytes, size_t *len);


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
    uint64_t                         dropped, lost;
    ngx_uint_t                       log;
    ngx_http_shortlink_queue_sh_t   *sh;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;
    sh = ctx->sh;

    if (len > NGX_HTTP_SHORTLINK_QUEUE_RECORD_MAX) {
        /* never made by click.c; a reader would take it for a broken ring */
        return NGX_DECLINED;
    }

    frame = ngx_http_shortlink_queue_frame(len);
    lost = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (!ngx_http_shortlink_queue_sane(sh)) {
        lost = ngx_http_shortlink_queue_reset(sh);
    }

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

    if (lost) {
        ngx_http_shortlink_queue_broken(zone, ngx_cycle->log, lost);
    }

    return NGX_OK;

full:

    dropped = ++sh->dropped;
    log = (sh->drop_logged != ngx_time());
    sh->drop_logged = ngx_time();

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (lost) {
        ngx_http_shortlink_queue_broken(zone, ngx_cycle->log, lost);
    }

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


/* the counters agree with each other and with the ring; under the mutex */

static ngx_uint_t
ngx_http_shortlink_queue_sane(ngx_http_shortlink_queue_sh_t *sh)
{
    return sh->head <= sh->size
           && sh->tail <= sh->size
           && (sh->head & 7) == 0
           && (sh->tail & 7) == 0
           && sh->used <= sh->size
           && sh->count <= sh->used / NGX_HTTP_SHORTLINK_QUEUE_FRAME
           && (sh->count != 0 || sh->used == 0);
}


/*
 * Empties a ring that cannot be read any more: its clicks are counted as
 * dropped, and the generation moves on, so that no batch copied from it
 * can be committed.  Under the mutex; returns the clicks lost.
 */

static uint64_t
ngx_http_shortlink_queue_reset(ngx_http_shortlink_queue_sh_t *sh)
{
    uint64_t  lost;

    /* a count that went wild must not make the drop counter wild too */
    lost = ngx_min(sh->count, sh->size / NGX_HTTP_SHORTLINK_QUEUE_FRAME);

    sh->dropped += lost;
    sh->count = 0;
    sh->head = 0;
    sh->tail = 0;
    sh->used = 0;
    sh->generation++;

    return lost;
}


static void
ngx_http_shortlink_queue_broken(ngx_shm_zone_t *zone, ngx_log_t *log,
    uint64_t lost)
{
    ngx_log_error(NGX_LOG_ALERT, log, 0,
                  "shortlink: click queue \"%V\" found broken and emptied, "
                  "%uL clicks dropped", &zone->shm.name, lost);
}


/*
 * The flush lease: NGX_OK if this process holds it now (taken, renewed,
 * or taken over from an owner that let it expire), NGX_BUSY otherwise.
 * With backoff, NGX_AGAIN while the flushes that failed last (in any
 * worker) ask to wait; *wait says how long.
 */

ngx_int_t
ngx_http_shortlink_queue_lease(ngx_shm_zone_t *zone, ngx_msec_t duration,
    ngx_uint_t backoff, ngx_msec_t *wait)
{
    ngx_int_t                        rc;
    ngx_pid_t                        old;
    ngx_msec_t                       now;
    ngx_http_shortlink_queue_sh_t   *sh;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;
    sh = ctx->sh;
    now = ngx_current_msec;
    old = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (backoff && sh->failures
        && (ngx_msec_int_t) (sh->retry_at - now) > 0)
    {
        *wait = sh->retry_at - now;
        rc = NGX_AGAIN;

    } else if (sh->lease_owner == 0
               || sh->lease_owner == ngx_pid
               || (ngx_msec_int_t) (now - sh->lease_until) >= 0)
    {
        if (sh->lease_owner != ngx_pid) {
            old = sh->lease_owner;
        }

        sh->lease_owner = ngx_pid;
        sh->lease_until = now + duration;
        rc = NGX_OK;

    } else {
        rc = NGX_BUSY;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (old) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "shortlink: flush lease of process %P expired, "
                      "taken over", old);
    }

    return rc;
}


/*
 * Extends the lease while a flush goes on: NGX_OK if it is still ours,
 * NGX_DECLINED if another process took it (it is never taken back).
 */

ngx_int_t
ngx_http_shortlink_queue_renew(ngx_shm_zone_t *zone, ngx_msec_t duration)
{
    ngx_int_t                        rc;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->lease_owner == ngx_pid) {
        ctx->sh->lease_until = ngx_current_msec + duration;
        rc = NGX_OK;

    } else {
        rc = NGX_DECLINED;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/* only the owner lets go: a late one never frees a lease taken over */

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
 * A flush failed (PostgreSQL down, slow, or refusing): the next one, by
 * whichever worker, waits delay doubled for every failure in a row, up to
 * max.  Kept in the zone, so that N workers make one attempt per wait,
 * not N.  Returns the failures in a row.
 */

ngx_uint_t
ngx_http_shortlink_queue_failed(ngx_shm_zone_t *zone, ngx_msec_t delay,
    ngx_msec_t max)
{
    ngx_uint_t                       n;
    ngx_http_shortlink_queue_sh_t   *sh;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;
    sh = ctx->sh;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ++sh->failures;
    sh->retry_at = ngx_current_msec
                   + ngx_min(delay << ngx_min(n - 1, 5), max);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return n;
}


/* a batch committed: returns the failures in a row that this ends */

ngx_uint_t
ngx_http_shortlink_queue_succeeded(ngx_shm_zone_t *zone)
{
    ngx_uint_t                       n;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ctx->sh->failures;
    ctx->sh->failures = 0;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return n;
}


/*
 * Copies up to max records from the head into memory of our own; the
 * lease holder only.  NGX_OK with a batch, NGX_DECLINED when the queue is
 * empty, NGX_BUSY when the lease is not ours (any more), NGX_ERROR when
 * out of memory.
 *
 * The copy is made without the mutex, which every redirect's push takes:
 * only the head, count, used bytes and generation are read under it.
 * That is safe because the records between head and head + used do not
 * change while the head stays where it is: pushers write only the free
 * part of the ring (from the tail up to the head), and only a commit or a
 * reset moves the head, each moving the generation on.  A commit needs
 * the lease; this process holds it, and only a lease that expired can be
 * taken from it.  So if, under the mutex again after the copy, the lease
 * is still ours and the generation unchanged, nobody moved the head while
 * we copied, and the copy is what the ring holds.
 *
 * If this process stalled while copying (stopped, swapped out) long
 * enough for its lease to expire, another worker may have taken the
 * lease, committed the same clicks, and pushers may have overwritten
 * what we were reading: then the lease is not ours or the generation
 * moved, and the copy is dropped unread.  What it read meanwhile cannot
 * hurt: every offset and length is checked against the ring and the
 * bytes walked against the used ones before anything is copied, so a torn
 * read costs a wasted copy, never a read out of bounds or an endless
 * loop.  A record that fails its checks while the copy is confirmed is a
 * broken ring: the records before it make the batch, and with none before
 * it the ring is emptied, its clicks counted as dropped.
 */

ngx_int_t
ngx_http_shortlink_queue_peek(ngx_shm_zone_t *zone, ngx_uint_t max,
    ngx_http_shortlink_queue_batch_t *batch,
    ngx_http_shortlink_queue_valid_pt valid, ngx_log_t *log)
{
    u_char                          *data, *buf;
    size_t                           head, used, size, pos, bytes, len, frame;
    size_t                           total, off;
    uint64_t                         gen, lost;
    ngx_uint_t                       i, n, broken, ours;
    ngx_http_shortlink_queue_sh_t   *sh;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;
    sh = ctx->sh;
    lost = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->lease_owner != ngx_pid) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_BUSY;
    }

    if (!ngx_http_shortlink_queue_sane(sh)) {
        lost = ngx_http_shortlink_queue_reset(sh);
    }

    if (sh->count == 0) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        if (lost) {
            ngx_http_shortlink_queue_broken(zone, log, lost);
        }

        return NGX_DECLINED;
    }

    head = sh->head;
    used = sh->used;
    gen = sh->generation;
    n = (ngx_uint_t) ngx_min((uint64_t) max, sh->count);
    size = sh->size;
    data = sh->data;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    /* first pass: how many bytes */

    pos = head;
    bytes = 0;
    total = 0;
    broken = 0;

    for (i = 0; i < n; i++) {
        if (ngx_http_shortlink_queue_walk(data, size, &pos, &bytes, &len)
            != NGX_OK)
        {
            broken = 1;
            break;
        }

        frame = ngx_http_shortlink_queue_frame(len);

        if (bytes > used || frame > used - bytes) {
            broken = 1;
            break;
        }

        bytes += frame;
        total += frame;
        pos += frame;
    }

    n = i;
    buf = NULL;

    if (n) {
        buf = ngx_alloc(total, log);
        if (buf == NULL) {
            return NGX_ERROR;
        }
    }

    /* second pass: copy, and check every record in the copy */

    pos = head;
    bytes = 0;
    off = 0;

    for (i = 0; i < n; i++) {
        if (ngx_http_shortlink_queue_walk(data, size, &pos, &bytes, &len)
            != NGX_OK)
        {
            broken = 1;
            break;
        }

        frame = ngx_http_shortlink_queue_frame(len);

        if (bytes > used || frame > used - bytes || frame > total - off) {
            broken = 1;
            break;
        }

        ngx_memcpy(buf + off, data + pos, frame);

        /* from here on only the copy is read */

        if (*(uint32_t *) (buf + off) != len
            || valid(buf + off + NGX_HTTP_SHORTLINK_QUEUE_FRAME, len)
               != NGX_OK)
        {
            broken = 1;
            break;
        }

        bytes += frame;
        off += frame;
        pos += frame;
    }

    n = i;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ours = (sh->lease_owner == ngx_pid && sh->generation == gen);

    if (ours && n == 0) {
        /* broken at the head: nothing in it can be trusted */
        lost = ngx_http_shortlink_queue_reset(sh);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (!ours) {
        if (buf) {
            ngx_free(buf);
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "shortlink: flush lease lost while copying a batch, "
                      "the copy is dropped");
        return NGX_BUSY;
    }

    if (n == 0) {
        ngx_http_shortlink_queue_broken(zone, log, lost);
        return NGX_DECLINED;
    }

    if (broken) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "shortlink queue: broken after %ui records at %uz",
                       n, pos);
    }

    batch->data = buf;
    batch->len = off;
    batch->count = n;
    batch->start = head;
    batch->end = pos;
    batch->bytes = bytes;
    batch->generation = gen;

    return NGX_OK;
}


/*
 * The record at *pos, or at the start if the ring wraps there (the bytes
 * skipped are added to *bytes), checked against the ring: its offset and
 * length, or NGX_ERROR.  Reads shared memory without the mutex: every
 * word is read once and checked before it is used.
 */

static ngx_int_t
ngx_http_shortlink_queue_walk(u_char *data, size_t size, size_t *pos,
    size_t *bytes, size_t *len)
{
    size_t    p;
    uint32_t  rlen;

    p = *pos;

    if (p > size || size < NGX_HTTP_SHORTLINK_QUEUE_FRAME) {
        return NGX_ERROR;
    }

    if (size - p < NGX_HTTP_SHORTLINK_QUEUE_FRAME
        || *(volatile uint32_t *) (data + p) == NGX_HTTP_SHORTLINK_QUEUE_WRAP)
    {
        *bytes += size - p;
        p = 0;
    }

    rlen = *(volatile uint32_t *) (data + p);

    if (rlen > NGX_HTTP_SHORTLINK_QUEUE_RECORD_MAX
        || ngx_http_shortlink_queue_frame(rlen) > size - p)
    {
        return NGX_ERROR;
    }

    *pos = p;
    *len = rlen;

    return NGX_OK;
}


/*
 * PostgreSQL committed the batch: it leaves the queue, if it is still at
 * the head.  NGX_DECLINED (and nothing changes) when this process lost the
 * lease or the head moved since the batch was copied: another worker took
 * over and committed it, or the ring was emptied.
 */

ngx_int_t
ngx_http_shortlink_queue_commit(ngx_shm_zone_t *zone,
    ngx_http_shortlink_queue_batch_t *batch, ngx_log_t *log)
{
    ngx_pid_t                        owner;
    ngx_http_shortlink_queue_sh_t   *sh;
    ngx_http_shortlink_queue_ctx_t  *ctx;

    ctx = zone->data;
    sh = ctx->sh;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->lease_owner != ngx_pid
        || sh->generation != batch->generation
        || sh->head != batch->start
        || sh->count < batch->count
        || sh->used < batch->bytes)
    {
        owner = sh->lease_owner;
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "shortlink: late commit of %ui clicks ignored: the "
                      "queue moved on meanwhile (flush lease held by %P)",
                      batch->count, owner);
        return NGX_DECLINED;
    }

    sh->head = batch->end;
    sh->count -= batch->count;
    sh->used = (sh->count == 0) ? 0 : sh->used - batch->bytes;
    sh->flushed += batch->count;
    sh->generation++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/* the next record of a batch (checked by peek, and against the batch) */

u_char *
ngx_http_shortlink_queue_next(ngx_http_shortlink_queue_batch_t *batch,
    u_char *pos, u_char **rec, size_t *len)
{
    size_t    left;
    uint32_t  rlen;

    if (pos < batch->data || pos >= batch->data + batch->len) {
        return NULL;
    }

    left = batch->data + batch->len - pos;

    if (left < NGX_HTTP_SHORTLINK_QUEUE_FRAME) {
        return NULL;
    }

    rlen = *(uint32_t *) pos;

    if (rlen > NGX_HTTP_SHORTLINK_QUEUE_RECORD_MAX
        || ngx_http_shortlink_queue_frame(rlen) > left)
    {
        return NULL;
    }

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
