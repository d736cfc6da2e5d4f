
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The click queue: a ring of click records in shared memory, filled by
 * every worker, drained by one flusher at a time.
 */


#ifndef _NGX_HTTP_SHORTLINK_QUEUE_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_QUEUE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Records are opaque to the queue.  In the ring and in a batch each is
 * framed as a 32-bit length, 4 bytes of padding, then the record, padded
 * to 8 bytes; ngx_http_shortlink_queue_next() walks a batch.
 */
#define NGX_HTTP_SHORTLINK_QUEUE_FRAME       8

/* no record is longer: a length above it is a broken ring */
#define NGX_HTTP_SHORTLINK_QUEUE_RECORD_MAX  65536


/* checks a record's own format: NGX_OK, or NGX_ERROR when broken */
typedef ngx_int_t (*ngx_http_shortlink_queue_valid_pt)(u_char *rec,
    size_t len);


/* a batch copied out of the queue, to be removed once committed */
typedef struct {
    u_char                       *data;      /* framed records */
    size_t                        len;
    ngx_uint_t                    count;
    size_t                        start;     /* ring offset of its head */
    size_t                        end;       /* ring offset after it */
    size_t                        bytes;     /* ring bytes, wrap included */
    uint64_t                      generation;  /* of the head it began at */
} ngx_http_shortlink_queue_batch_t;


typedef struct {
    uint64_t                      queued;
    uint64_t                      enqueued;
    uint64_t                      flushed;
    uint64_t                      dropped;
    size_t                        size;
    size_t                        used;
} ngx_http_shortlink_queue_stats_t;


ngx_shm_zone_t *ngx_http_shortlink_queue_add(ngx_conf_t *cf, ngx_str_t *name,
    size_t size);

ngx_int_t ngx_http_shortlink_queue_push(ngx_shm_zone_t *zone, u_char *rec,
    size_t len);

ngx_int_t ngx_http_shortlink_queue_lease(ngx_shm_zone_t *zone,
    ngx_msec_t duration, ngx_uint_t backoff, ngx_msec_t *wait);
ngx_int_t ngx_http_shortlink_queue_renew(ngx_shm_zone_t *zone,
    ngx_msec_t duration);
void ngx_http_shortlink_queue_release(ngx_shm_zone_t *zone);

ngx_uint_t ngx_http_shortlink_queue_failed(ngx_shm_zone_t *zone,
    ngx_msec_t delay, ngx_msec_t max);
ngx_uint_t ngx_http_shortlink_queue_succeeded(ngx_shm_zone_t *zone);

ngx_int_t ngx_http_shortlink_queue_peek(ngx_shm_zone_t *zone,
    ngx_uint_t max, ngx_http_shortlink_queue_batch_t *batch,
    ngx_http_shortlink_queue_valid_pt valid, ngx_log_t *log);
ngx_int_t ngx_http_shortlink_queue_commit(ngx_shm_zone_t *zone,
    ngx_http_shortlink_queue_batch_t *batch, ngx_log_t *log);

u_char *ngx_http_shortlink_queue_next(ngx_http_shortlink_queue_batch_t *batch,
    u_char *pos, u_char **rec, size_t *len);

void ngx_http_shortlink_queue_stats(ngx_shm_zone_t *zone,
    ngx_http_shortlink_queue_stats_t *st);


#endif /* _NGX_HTTP_SHORTLINK_QUEUE_H_INCLUDED_ */
