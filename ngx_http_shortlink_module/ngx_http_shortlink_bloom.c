
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The per-worker bloom filter of existing codes, built with libbloom.
 *
 * It is trusted only while it cannot be missing a code:
 *
 *   - it is built from PostgreSQL (streamed row by row, never blocking)
 *     only after this worker's LISTEN connection is subscribed, so a link
 *     created during the build is added by its notification;
 *   - every notification (a link inserted or changed, by the module or by
 *     anyone in psql) adds its code at once;
 *   - when the subscription is lost, notifications may be missed: the
 *     filter is bypassed until the connection is back and a new build has
 *     finished.
 *
 * A new link therefore reaches every worker's filter as fast as PostgreSQL
 * delivers its notification (milliseconds on one host).  Deleted links are
 * not removed from a bloom filter; a rebuild every "rebuild=" lets them age
 * out.  This file never trusts a filter it is not sure of: a false "absent"
 * would refuse a link that exists.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <bloom.h>

#include "ngx_http_shortlink_bloom.h"


/* how long one build may take, and the wait before retrying a failed one */
#define NGX_HTTP_SHORTLINK_BLOOM_BUILD_TIMEOUT  120000
#define NGX_HTTP_SHORTLINK_BLOOM_RETRY          1000


struct ngx_http_shortlink_bloom_s {
    ngx_http_shortlink_bloom_conf_t  *conf;
    ngx_http_shortlink_pg_pool_t     *pg;
    ngx_log_t                        *log;

    struct bloom                      current;
    struct bloom                      next;      /* being built */
    ngx_uint_t                        count;     /* rows in next */
    ngx_uint_t                        codes;     /* in current */
    ngx_uint_t                        generation;
    ngx_uint_t                        build_generation;

    ngx_event_t                       timer;     /* rebuild or retry */

    unsigned                          trusted:1;
    unsigned                          listening:1;
    unsigned                          building:1;
};


static void ngx_http_shortlink_bloom_build(ngx_http_shortlink_bloom_t *b);
static void ngx_http_shortlink_bloom_row(void *data, PGresult *res);
static void ngx_http_shortlink_bloom_built(void *data, PGresult *res,
    ngx_int_t rc);
static void ngx_http_shortlink_bloom_timer(ngx_event_t *ev);
static void ngx_http_shortlink_bloom_schedule(ngx_http_shortlink_bloom_t *b,
    ngx_msec_t delay);


/* codes, and "@<username>" of every profile (see ..._profile.c) */
static const char  ngx_http_shortlink_bloom_sql[] =
    "SELECT code FROM shortlink.links WHERE deleted_at IS NULL "
    "UNION ALL SELECT '@' || u FROM shortlink.profile_usernames() u";


ngx_http_shortlink_bloom_t *
ngx_http_shortlink_bloom_create(ngx_cycle_t *cycle,
    ngx_http_shortlink_bloom_conf_t *conf, ngx_http_shortlink_pg_pool_t *pg)
{
    ngx_http_shortlink_bloom_t  *b;

    b = ngx_pcalloc(cycle->pool, sizeof(ngx_http_shortlink_bloom_t));
    if (b == NULL) {
        return NULL;
    }

    b->conf = conf;
    b->pg = pg;
    b->log = cycle->log;

    b->timer.handler = ngx_http_shortlink_bloom_timer;
    b->timer.data = b;
    b->timer.log = cycle->log;
    b->timer.cancelable = 1;

    return b;
}


void
ngx_http_shortlink_bloom_destroy(ngx_http_shortlink_bloom_t *b)
{
    if (b->timer.timer_set) {
        ngx_del_timer(&b->timer);
    }

    /* a build still streaming is dropped by the pool, which is gone too */

    if (b->current.ready) {
        bloom_free(&b->current);
    }

    if (b->next.ready) {
        bloom_free(&b->next);
    }

    b->trusted = 0;
}


/* 1 only when the code is certainly not a link */

ngx_uint_t
ngx_http_shortlink_bloom_absent(ngx_http_shortlink_bloom_t *b,
    ngx_str_t *code)
{
    if (!b->trusted) {
        return 0;
    }

    return bloom_check(&b->current, code->data, (int) code->len) == 0;
}


/* 1: the code may exist (a trusted filter has it); 0: free, or unknown */

ngx_uint_t
ngx_http_shortlink_bloom_present(ngx_http_shortlink_bloom_t *b,
    ngx_str_t *code)
{
    return b->trusted && !ngx_http_shortlink_bloom_absent(b, code);
}


void
ngx_http_shortlink_bloom_add(ngx_http_shortlink_bloom_t *b, ngx_str_t *code)
{
    /* bloom_add() is 0 when the code was not in the filter yet */

    if (b->current.ready
        && bloom_add(&b->current, code->data, (int) code->len) == 0)
    {
        b->codes++;
    }

    if (b->building && b->next.ready
        && bloom_add(&b->next, code->data, (int) code->len) == 0)
    {
        b->count++;
    }
}


/* codes in the filter in use (0 while none is built), and its capacity */

void
ngx_http_shortlink_bloom_stats(ngx_http_shortlink_bloom_t *b,
    ngx_uint_t *codes, ngx_uint_t *capacity)
{
    *codes = b->current.ready ? b->codes : 0;
    *capacity = b->current.ready ? b->conf->capacity : 0;
}


/* the LISTEN connection's state: up starts a build, down stops trusting */

void
ngx_http_shortlink_bloom_listening(ngx_http_shortlink_bloom_t *b,
    ngx_uint_t up)
{
    b->generation++;

    if (!up) {
        if (b->trusted) {
            ngx_log_error(NGX_LOG_WARN, b->log, 0,
                          "shortlink: bloom filter bypassed until "
                          "notifications are received again");
        }

        b->trusted = 0;
        b->listening = 0;
        return;
    }

    b->listening = 1;

    if (!b->building) {
        ngx_http_shortlink_bloom_build(b);
    }
}


static void
ngx_http_shortlink_bloom_build(ngx_http_shortlink_bloom_t *b)
{
    ngx_int_t  rc;

    if (b->next.ready) {
        bloom_free(&b->next);
    }

    ngx_memzero(&b->next, sizeof(struct bloom));

    if (bloom_init(&b->next, (int) b->conf->capacity, b->conf->error) != 0) {
        ngx_log_error(NGX_LOG_ALERT, b->log, 0,
                      "shortlink: bloom_init(%ui, %.3f) failed",
                      b->conf->capacity, b->conf->error);
        return;
    }

    rc = ngx_http_shortlink_pg_stream(b->pg, ngx_http_shortlink_bloom_sql,
                                      NGX_HTTP_SHORTLINK_BLOOM_BUILD_TIMEOUT,
                                      ngx_http_shortlink_bloom_row,
                                      ngx_http_shortlink_bloom_built, b);

    if (rc != NGX_OK) {
        bloom_free(&b->next);
        ngx_http_shortlink_bloom_schedule(b, NGX_HTTP_SHORTLINK_BLOOM_RETRY);
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, b->log, 0,
                   "shortlink bloom: build started");

    b->count = 0;
    b->building = 1;
    b->build_generation = b->generation;
}


static void
ngx_http_shortlink_bloom_row(void *data, PGresult *res)
{
    ngx_http_shortlink_bloom_t  *b = data;

    (void) bloom_add(&b->next, PQgetvalue(res, 0, 0),
                     PQgetlength(res, 0, 0));
    b->count++;
}


static void
ngx_http_shortlink_bloom_built(void *data, PGresult *res, ngx_int_t rc)
{
    ngx_http_shortlink_bloom_t  *b = data;

    b->building = 0;

    if (rc != NGX_OK || b->build_generation != b->generation) {
        /* failed, or notifications may have been missed meanwhile */
        bloom_free(&b->next);

        if (b->listening) {
            ngx_http_shortlink_bloom_schedule(b,
                                              NGX_HTTP_SHORTLINK_BLOOM_RETRY);
        }

        return;
    }

    if (b->current.ready) {
        bloom_free(&b->current);
    }

    b->current = b->next;
    ngx_memzero(&b->next, sizeof(struct bloom));
    b->codes = b->count;
    b->trusted = 1;

    ngx_log_error(NGX_LOG_INFO, b->log, 0,
                  "shortlink: bloom filter built: %ui codes, %d bytes",
                  b->count, b->current.bytes);

    if (b->count > b->conf->capacity) {
        ngx_log_error(NGX_LOG_WARN, b->log, 0,
                      "shortlink: %ui codes exceed the bloom filter's "
                      "capacity of %ui: more unknown codes will reach "
                      "PostgreSQL; raise \"capacity=\"",
                      b->count, b->conf->capacity);
    }

    ngx_http_shortlink_bloom_schedule(b, b->conf->rebuild);
}


static void
ngx_http_shortlink_bloom_timer(ngx_event_t *ev)
{
    ngx_http_shortlink_bloom_t  *b = ev->data;

    if (b->listening && !b->building) {
        ngx_http_shortlink_bloom_build(b);
    }
}


static void
ngx_http_shortlink_bloom_schedule(ngx_http_shortlink_bloom_t *b,
    ngx_msec_t delay)
{
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(&b->timer, delay);
}
