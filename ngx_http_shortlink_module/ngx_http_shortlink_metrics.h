
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Counters for operators, in shared memory (all workers add to the same
 * ones), served in Prometheus's text format by "shortlink_metrics".
 */


#ifndef _NGX_HTTP_SHORTLINK_METRICS_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_SHORTLINK_M_OUTCOMES  5
#define NGX_HTTP_SHORTLINK_M_TIERS     9
#define NGX_HTTP_SHORTLINK_M_BUCKETS   11
#define NGX_HTTP_SHORTLINK_M_WORKERS   64


/*
 * What one worker holds, published by the worker itself every second into
 * the slot of its worker number (a respawned worker takes its
 * predecessor's slot; a worker shutting down stops publishing).
 */
typedef struct {
    ngx_atomic_t  pid;                  /* 0: slot unused */
    ngx_atomic_t  pg_open;
    ngx_atomic_t  pg_busy;
    ngx_atomic_t  bloom_codes;
    ngx_atomic_t  bloom_capacity;       /* 0: no filter built */
} ngx_http_shortlink_metrics_worker_t;


typedef struct {
    ngx_atomic_t  requests[NGX_HTTP_SHORTLINK_M_OUTCOMES]
                          [NGX_HTTP_SHORTLINK_M_TIERS];
    ngx_atomic_t  lookup_buckets[NGX_HTTP_SHORTLINK_M_BUCKETS];
    ngx_atomic_t  lookup_count;
    ngx_atomic_t  lookup_msec;
    ngx_atomic_t  pg_lookups;
    ngx_atomic_t  pg_errors;            /* counted by the backends */
    ngx_atomic_t  pg_timeouts;
    ngx_atomic_t  redis_errors;
    ngx_atomic_t  redis_timeouts;
    ngx_atomic_t  flush_batches;
    ngx_atomic_t  flush_failures;
    ngx_atomic_t  flush_lag_msec;
    ngx_atomic_t  clicks_rejected;      /* refused, filed by the flusher */
    ngx_atomic_t  clicks_discarded;     /* refused, could not be filed */
    ngx_atomic_t  code_collisions;
    ngx_http_shortlink_metrics_worker_t  workers[NGX_HTTP_SHORTLINK_M_WORKERS];
} ngx_http_shortlink_metrics_t;


/* m is NULL when the module is not in use */
#define ngx_http_shortlink_metric_add(m, field, n)                           \
    do {                                                                      \
        if (m) {                                                              \
            (void) ngx_atomic_fetch_add(&(m)->field, n);                      \
        }                                                                     \
    } while (0)


ngx_int_t ngx_http_shortlink_metrics_add_zone(ngx_conf_t *cf);
ngx_http_shortlink_metrics_t *ngx_http_shortlink_metrics_get(
    ngx_shm_zone_t *zone);
void ngx_http_shortlink_metrics_lookup(ngx_http_shortlink_metrics_t *m,
    ngx_msec_t ms);
ngx_int_t ngx_http_shortlink_metrics_log(ngx_http_request_t *r);
ngx_int_t ngx_http_shortlink_metrics_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_SHORTLINK_METRICS_H_INCLUDED_ */
