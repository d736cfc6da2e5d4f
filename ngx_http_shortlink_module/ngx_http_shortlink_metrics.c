
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Metrics: counters in a small shared-memory zone of their own (created
 * with the module's first "shortlink", kept across reloads), added to with
 * atomic increments only, so counting never takes a lock on the redirect
 * path.  Requests are counted once, in the log phase, by outcome and by
 * the tier that answered; gauges (queue, zone) are read when scraped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_queue.h"
#include "ngx_http_shortlink_metrics.h"


#define NGX_HTTP_SHORTLINK_METRICS_BODY  16384


static ngx_int_t ngx_http_shortlink_metrics_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static void ngx_http_shortlink_metrics_publish(ngx_event_t *ev);
static void ngx_http_shortlink_metrics_put(
    ngx_http_shortlink_main_conf_t *smcf);
static ngx_uint_t ngx_http_shortlink_metrics_outcome(ngx_uint_t status);
static ngx_uint_t ngx_http_shortlink_metrics_tier(ngx_str_t *tier);


static ngx_str_t  ngx_http_shortlink_metrics_outcomes[] = {
    ngx_string("redirect"),
    ngx_string("not_found"),
    ngx_string("unavailable"),
    ngx_string("method_not_allowed"),
    ngx_string("other")
};


/* "invalid": refused before any tier, "none": no code at all */
static ngx_str_t  ngx_http_shortlink_metrics_tiers[] = {
    ngx_string("shm"),
    ngx_string("negative"),
    ngx_string("bloom"),
    ngx_string("redis"),
    ngx_string("pg"),
    ngx_string("stale"),
    ngx_string("error"),
    ngx_string("invalid"),
    ngx_string("none")
};


/* lookup duration buckets, in milliseconds */
static ngx_msec_t  ngx_http_shortlink_metrics_le[] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500
};


static ngx_str_t  ngx_http_shortlink_metrics_zone =
    ngx_string("shortlink_metrics");


ngx_int_t
ngx_http_shortlink_metrics_add_zone(ngx_conf_t *cf)
{
    ngx_shm_zone_t                  *shm_zone;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_shortlink_module);

    if (smcf->metrics) {
        return NGX_OK;
    }

    shm_zone = ngx_http_shortlink_zone_add(cf,
                                        &ngx_http_shortlink_metrics_zone,
                                        8 * ngx_pagesize,
                                        ngx_http_shortlink_metrics_init_zone,
                                        smcf);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    smcf->metrics = shm_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_shortlink_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data || shm_zone->shm.exists) {
        /* reused on reload: the counters go on */
        return NGX_OK;
    }

    shpool->data = ngx_slab_calloc(shpool,
                                   sizeof(ngx_http_shortlink_metrics_t));
    if (shpool->data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_http_shortlink_metrics_t *
ngx_http_shortlink_metrics_get(ngx_shm_zone_t *zone)
{
    if (zone == NULL) {
        return NULL;
    }

    return ((ngx_slab_pool_t *) zone->shm.addr)->data;
}


/* a worker's gauges: published now, then every second */

void
ngx_http_shortlink_metrics_start(ngx_http_shortlink_main_conf_t *smcf,
    ngx_cycle_t *cycle)
{
    ngx_event_t  *ev;

    if (smcf->metrics == NULL || ngx_worker >= NGX_HTTP_SHORTLINK_M_WORKERS) {
        return;
    }

    ev = &smcf->worker->publish;
    ev->handler = ngx_http_shortlink_metrics_publish;
    ev->data = smcf;
    ev->log = cycle->log;
    ev->cancelable = 1;

    ngx_http_shortlink_metrics_publish(ev);
}


/* the worker leaves: its slot is emptied unless a successor has it */

void
ngx_http_shortlink_metrics_stop(ngx_http_shortlink_main_conf_t *smcf)
{
    ngx_http_shortlink_metrics_t         *m;
    ngx_http_shortlink_metrics_worker_t  *w;

    if (smcf->worker->publish.timer_set) {
        ngx_del_timer(&smcf->worker->publish);
    }

    m = ngx_http_shortlink_metrics_get(smcf->metrics);

    if (m == NULL || ngx_worker >= NGX_HTTP_SHORTLINK_M_WORKERS) {
        return;
    }

    w = &m->workers[ngx_worker];

    if (w->pid == (ngx_atomic_uint_t) ngx_pid) {
        w->pg_open = 0;
        w->pg_busy = 0;
        w->bloom_codes = 0;
        w->bloom_capacity = 0;
        w->pid = 0;
    }
}


static void
ngx_http_shortlink_metrics_publish(ngx_event_t *ev)
{
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ev->data;

    /* a worker shutting down leaves the slot to its successor */
    if (smcf->worker == NULL || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_http_shortlink_metrics_put(smcf);

    ngx_add_timer(ev, 1000);
}


/* this worker's gauges into its slot */

static void
ngx_http_shortlink_metrics_put(ngx_http_shortlink_main_conf_t *smcf)
{
    ngx_uint_t                            open, busy, codes, capacity;
    ngx_http_shortlink_metrics_t         *m;
    ngx_http_shortlink_metrics_worker_t  *w;

    m = ngx_http_shortlink_metrics_get(smcf->metrics);

    if (m == NULL || ngx_worker >= NGX_HTTP_SHORTLINK_M_WORKERS) {
        return;
    }

    w = &m->workers[ngx_worker];

    ngx_http_shortlink_pg_stats(smcf->worker->pg, &open, &busy);

    codes = 0;
    capacity = 0;

    if (smcf->worker->bloom) {
        ngx_http_shortlink_bloom_stats(smcf->worker->bloom, &codes,
                                       &capacity);
    }

    w->pid = (ngx_atomic_uint_t) ngx_pid;
    w->pg_open = open;
    w->pg_busy = busy;
    w->bloom_codes = codes;
    w->bloom_capacity = capacity;
}


void
ngx_http_shortlink_metrics_lookup(ngx_http_shortlink_metrics_t *m,
    ngx_msec_t ms)
{
    ngx_uint_t  i;

    if (m == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_SHORTLINK_M_BUCKETS; i++) {
        if (ms <= ngx_http_shortlink_metrics_le[i]) {
            (void) ngx_atomic_fetch_add(&m->lookup_buckets[i], 1);
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&m->lookup_count, 1);
    (void) ngx_atomic_fetch_add(&m->lookup_msec, ms);
}


/* log phase: every request a "shortlink" location answered, once */

ngx_int_t
ngx_http_shortlink_metrics_log(ngx_http_request_t *r)
{
    ngx_uint_t                       outcome, tier;
    ngx_http_shortlink_ctx_t        *ctx;
    ngx_http_shortlink_loc_conf_t   *slcf;
    ngx_http_shortlink_main_conf_t  *smcf;
    ngx_http_shortlink_metrics_t    *m;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);

    if (!slcf->enable) {
        return NGX_OK;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);
    m = ngx_http_shortlink_metrics_get(smcf->metrics);

    if (m == NULL) {
        return NGX_OK;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_shortlink_module);

    outcome = ngx_http_shortlink_metrics_outcome(r->headers_out.status);

    if (ctx == NULL) {
        tier = NGX_HTTP_SHORTLINK_M_TIERS - 1;              /* none */

    } else if (ctx->tier.len == 0) {
        tier = NGX_HTTP_SHORTLINK_M_TIERS - 2;              /* invalid */

    } else {
        tier = ngx_http_shortlink_metrics_tier(&ctx->tier);
    }

    (void) ngx_atomic_fetch_add(&m->requests[outcome][tier], 1);

    return NGX_OK;
}


static ngx_uint_t
ngx_http_shortlink_metrics_outcome(ngx_uint_t status)
{
    switch (status) {
    case NGX_HTTP_MOVED_PERMANENTLY:
    case NGX_HTTP_MOVED_TEMPORARILY:
    case NGX_HTTP_TEMPORARY_REDIRECT:
    case NGX_HTTP_PERMANENT_REDIRECT:
        return 0;
    case NGX_HTTP_NOT_FOUND:
        return 1;
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return 2;
    case NGX_HTTP_NOT_ALLOWED:
        return 3;
    default:
        return 4;
    }
}


static ngx_uint_t
ngx_http_shortlink_metrics_tier(ngx_str_t *tier)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_SHORTLINK_M_TIERS - 2; i++) {
        if (tier->len == ngx_http_shortlink_metrics_tiers[i].len
            && ngx_strncmp(tier->data, ngx_http_shortlink_metrics_tiers[i].data,
                           tier->len) == 0)
        {
            return i;
        }
    }

    return NGX_HTTP_SHORTLINK_M_TIERS - 1;
}


/* GET: the Prometheus text exposition format, version 0.0.4 */

ngx_int_t
ngx_http_shortlink_metrics_handler(ngx_http_request_t *r)
{
    u_char                            *p, *last;
    ngx_int_t                          rc;
    ngx_buf_t                         *b;
    ngx_uint_t                         i, j, open, busy;
    ngx_atomic_uint_t                  n, cumulative;
    ngx_chain_t                        out;
    ngx_slab_pool_t                   *shpool;
    ngx_http_shortlink_metrics_t      *m;
    ngx_http_shortlink_main_conf_t    *smcf;
    ngx_http_shortlink_queue_stats_t   qs;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);
    m = ngx_http_shortlink_metrics_get(smcf->metrics);

    if (m == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    /* the answering worker's own gauges are current, others' <= 1 s old */
    if (smcf->worker && smcf->worker->publish.timer_set) {
        ngx_http_shortlink_metrics_put(smcf);
    }

    b = ngx_create_temp_buf(r->pool, NGX_HTTP_SHORTLINK_METRICS_BODY);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;
    last = b->end;

    p = ngx_slprintf(p, last,
            "# HELP shortlink_requests_total Requests answered by shortlink "
            "locations, by outcome and by the tier that answered.\n"
            "# TYPE shortlink_requests_total counter\n");

    for (i = 0; i < NGX_HTTP_SHORTLINK_M_OUTCOMES; i++) {
        for (j = 0; j < NGX_HTTP_SHORTLINK_M_TIERS; j++) {
            n = m->requests[i][j];

            if (n == 0 && !(i == 0 && j == 0)) {
                continue;
            }

            p = ngx_slprintf(p, last,
                    "shortlink_requests_total{outcome=\"%V\",tier=\"%V\"} "
                    "%uA\n", &ngx_http_shortlink_metrics_outcomes[i],
                    &ngx_http_shortlink_metrics_tiers[j], n);
        }
    }

    p = ngx_slprintf(p, last,
            "# HELP shortlink_lookup_duration_seconds Time from a cache miss "
            "to the answer of Redis or PostgreSQL, per lookup.\n"
            "# TYPE shortlink_lookup_duration_seconds histogram\n");

    cumulative = 0;

    for (i = 0; i < NGX_HTTP_SHORTLINK_M_BUCKETS; i++) {
        cumulative += m->lookup_buckets[i];
        p = ngx_slprintf(p, last,
                "shortlink_lookup_duration_seconds_bucket{le=\"%ui.%03ui\"} "
                "%uA\n", ngx_http_shortlink_metrics_le[i] / 1000,
                ngx_http_shortlink_metrics_le[i] % 1000, cumulative);
    }

    p = ngx_slprintf(p, last,
            "shortlink_lookup_duration_seconds_bucket{le=\"+Inf\"} %uA\n"
            "shortlink_lookup_duration_seconds_sum %uA.%03uA\n"
            "shortlink_lookup_duration_seconds_count %uA\n",
            m->lookup_count, m->lookup_msec / 1000, m->lookup_msec % 1000,
            m->lookup_count);

    p = ngx_slprintf(p, last,
            "# HELP shortlink_postgresql_lookups_total Lookups sent to "
            "PostgreSQL.\n"
            "# TYPE shortlink_postgresql_lookups_total counter\n"
            "shortlink_postgresql_lookups_total %uA\n"
            "# HELP shortlink_backend_errors_total Queries (PostgreSQL) "
            "and commands (Redis) that failed other than by a timeout: "
            "connection lost or refused, error answered.\n"
            "# TYPE shortlink_backend_errors_total counter\n"
            "shortlink_backend_errors_total{backend=\"postgresql\"} %uA\n"
            "shortlink_backend_errors_total{backend=\"redis\"} %uA\n"
            "# HELP shortlink_backend_timeouts_total Connection attempts, "
            "queries (PostgreSQL) and GETs (Redis) not answered within "
            "their timeout.\n"
            "# TYPE shortlink_backend_timeouts_total counter\n"
            "shortlink_backend_timeouts_total{backend=\"postgresql\"} %uA\n"
            "shortlink_backend_timeouts_total{backend=\"redis\"} %uA\n",
            m->pg_lookups, m->pg_errors, m->redis_errors, m->pg_timeouts,
            m->redis_timeouts);

    open = 0;
    busy = 0;

    for (i = 0; i < NGX_HTTP_SHORTLINK_M_WORKERS; i++) {
        if (m->workers[i].pid) {
            open += m->workers[i].pg_open;
            busy += m->workers[i].pg_busy;
        }
    }

    p = ngx_slprintf(p, last,
            "# HELP shortlink_postgresql_connections PostgreSQL pool "
            "connections of all workers: open, and busy with a query "
            "(published by each worker every second).\n"
            "# TYPE shortlink_postgresql_connections gauge\n"
            "shortlink_postgresql_connections{state=\"open\"} %ui\n"
            "shortlink_postgresql_connections{state=\"busy\"} %ui\n"
            "# HELP shortlink_code_collisions_total Generated candidate "
            "codes the bloom filter said may be taken (each costs an "
            "attempt).\n"
            "# TYPE shortlink_code_collisions_total counter\n"
            "shortlink_code_collisions_total %uA\n",
            open, busy, m->code_collisions);

    if (smcf->bloom.capacity) {
        p = ngx_slprintf(p, last,
                "# HELP shortlink_bloom_codes Codes in each worker's bloom "
                "filter (absent until its first build).\n"
                "# TYPE shortlink_bloom_codes gauge\n");

        for (i = 0; i < NGX_HTTP_SHORTLINK_M_WORKERS; i++) {
            if (m->workers[i].pid && m->workers[i].bloom_capacity) {
                p = ngx_slprintf(p, last,
                                 "shortlink_bloom_codes{worker=\"%ui\"} "
                                 "%uA\n", i, m->workers[i].bloom_codes);
            }
        }

        p = ngx_slprintf(p, last,
                "# HELP shortlink_bloom_fill_ratio Codes in each worker's "
                "bloom filter over its capacity; above 1 the false "
                "positive rate exceeds the configured error.\n"
                "# TYPE shortlink_bloom_fill_ratio gauge\n");

        for (i = 0; i < NGX_HTTP_SHORTLINK_M_WORKERS; i++) {
            if (m->workers[i].pid && m->workers[i].bloom_capacity) {
                n = m->workers[i].bloom_codes * 10000
                    / m->workers[i].bloom_capacity;
                p = ngx_slprintf(p, last,
                                 "shortlink_bloom_fill_ratio{worker=\"%ui\"} "
                                 "%uA.%04uA\n", i, n / 10000, n % 10000);
            }
        }
    }

    if (smcf->queue) {
        ngx_http_shortlink_queue_stats(smcf->queue, &qs);

        p = ngx_slprintf(p, last,
                "# HELP shortlink_clicks_total Clicks by what happened to "
                "them.\n"
                "# TYPE shortlink_clicks_total counter\n"
                "shortlink_clicks_total{state=\"enqueued\"} %uL\n"
                "shortlink_clicks_total{state=\"flushed\"} %uL\n"
                "shortlink_clicks_total{state=\"dropped\"} %uL\n"
                "shortlink_clicks_total{state=\"rejected\"} %uA\n"
                "shortlink_clicks_total{state=\"discarded\"} %uA\n"
                "# HELP shortlink_click_queue_clicks Clicks waiting in the "
                "queue.\n"
                "# TYPE shortlink_click_queue_clicks gauge\n"
                "shortlink_click_queue_clicks %uL\n"
                "# HELP shortlink_click_queue_bytes The click queue's size "
                "and the bytes in use.\n"
                "# TYPE shortlink_click_queue_bytes gauge\n"
                "shortlink_click_queue_bytes{state=\"used\"} %uz\n"
                "shortlink_click_queue_bytes{state=\"size\"} %uz\n"
                "# HELP shortlink_flush_batches_total Click batches sent to "
                "PostgreSQL, and those that failed.\n"
                "# TYPE shortlink_flush_batches_total counter\n"
                "shortlink_flush_batches_total{result=\"committed\"} %uA\n"
                "shortlink_flush_batches_total{result=\"failed\"} %uA\n"
                "# HELP shortlink_flush_lag_seconds Age of the oldest click "
                "of the last committed batch when it was committed.\n"
                "# TYPE shortlink_flush_lag_seconds gauge\n"
                "shortlink_flush_lag_seconds %uA.%03uA\n",
                qs.enqueued, qs.flushed, qs.dropped, m->clicks_rejected,
                m->clicks_discarded, qs.queued, qs.used,
                qs.size, m->flush_batches, m->flush_failures,
                m->flush_lag_msec / 1000, m->flush_lag_msec % 1000);
    }

    if (smcf->zone) {
        shpool = (ngx_slab_pool_t *) smcf->zone->shm.addr;

        p = ngx_slprintf(p, last,
                "# HELP shortlink_cache_zone_bytes The shared-memory "
                "cache's size and its free pages.\n"
                "# TYPE shortlink_cache_zone_bytes gauge\n"
                "shortlink_cache_zone_bytes{state=\"size\"} %uz\n"
                "shortlink_cache_zone_bytes{state=\"free\"} %uz\n",
                smcf->zone->shm.size, shpool->pfree * ngx_pagesize);
    }

    if (p == last) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "shortlink: metrics did not fit in %d bytes",
                      NGX_HTTP_SHORTLINK_METRICS_BODY);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
