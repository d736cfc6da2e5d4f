
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The click flusher.  Every worker runs a cancelable timer; the worker
 * that holds the queue's lease copies a batch, sends it to PostgreSQL as
 * one call of shortlink.record_clicks() (text arrays, one round trip), and
 * removes it from the queue only once PostgreSQL has committed it.  A
 * failed batch stays where it is and is retried with backoff; a batch sent
 * twice (a lost reply, a killed worker) inserts nothing twice, because the
 * event ids are unique.
 *
 * batch= bounds the clicks of one call (one statement, one transaction);
 * with parallel=N (N > 1) the flusher takes up to N times that from the
 * queue, splits it into up to N sub-batches by a hash of the code and
 * sends them at once on as many connections of the pool, so PostgreSQL
 * works on them on several cores.  All clicks of a link are in one
 * sub-batch: a batch appends one hourly row per link and hour, not one per
 * sub-batch, and a link whose clicks PostgreSQL refuses holds back only
 * its own sub-batch.  The batch leaves the queue only when every sub-batch
 * committed; if one fails the whole batch stays and is sent again later,
 * and the sub-batches that did commit then insert nothing (idempotency).
 *
 * On graceful shutdown ("nginx -s quit", or the old workers of a reload) a
 * last flush is attempted within flush timeout=; what could not be written
 * is reported.  After a reload the new workers find the queue where the old
 * ones left it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_click.h"
#include "ngx_http_shortlink_queue.h"
#include "ngx_http_shortlink_flush.h"


#define NGX_HTTP_SHORTLINK_FLUSH_COLUMNS      8
#define NGX_HTTP_SHORTLINK_FLUSH_BACKOFF_MAX  30000

/* a batch is split only into sub-batches of at least this many clicks */
#define NGX_HTTP_SHORTLINK_FLUSH_PART_MIN     500


typedef struct {
    ngx_http_shortlink_flush_t        *flush;
    ngx_uint_t                         count;      /* clicks in it */
    size_t                             len;        /* their framed bytes */
} ngx_http_shortlink_flush_part_t;


struct ngx_http_shortlink_flush_s {
    ngx_http_shortlink_main_conf_t    *smcf;
    ngx_log_t                         *log;
    ngx_event_t                        timer;      /* next flush */
    ngx_event_t                        deadline;   /* last flush at exit */
    ngx_connection_t                  *watcher;    /* notices the exit */
    ngx_http_shortlink_queue_batch_t   batch;
    ngx_http_shortlink_flush_part_t   *parts;      /* flush.parallel */
    u_char                            *part;       /* click -> its part */
    ngx_uint_t                         max;        /* batch * parallel */
    ngx_uint_t                         nparts;     /* of this batch */
    ngx_uint_t                         pending;    /* parts in flight */
    ngx_int_t                          rc;         /* NGX_ERROR: one failed */
    ngx_uint_t                         failures;
    time_t                             error_logged;
    unsigned                           busy:1;
    unsigned                           exiting:1;
};


static void ngx_http_shortlink_flush_handler(ngx_event_t *ev);
static void ngx_http_shortlink_flush_split(ngx_http_shortlink_flush_t *f);
static ngx_int_t ngx_http_shortlink_flush_send(
    ngx_http_shortlink_flush_t *f);
static void ngx_http_shortlink_flush_part_done(void *data, PGresult *res,
    ngx_int_t rc);
static void ngx_http_shortlink_flush_done(ngx_http_shortlink_flush_t *f,
    ngx_int_t rc);
static ngx_msec_t ngx_http_shortlink_flush_age(
    ngx_http_shortlink_flush_t *f);
static void ngx_http_shortlink_flush_idle(ngx_http_shortlink_flush_t *f);
static void ngx_http_shortlink_flush_next(ngx_http_shortlink_flush_t *f,
    ngx_msec_t delay);
static ngx_int_t ngx_http_shortlink_flush_params(
    ngx_http_shortlink_flush_t *f, ngx_uint_t k, ngx_str_t *params);
static u_char *ngx_http_shortlink_flush_quote(u_char *p, u_char *s,
    size_t len);
static void ngx_http_shortlink_flush_exit(ngx_event_t *ev);
static void ngx_http_shortlink_flush_deadline(ngx_event_t *ev);


static const char  ngx_http_shortlink_flush_sql[] =
    "SELECT shortlink.record_clicks($1::uuid[], $2::bigint[], $3::text[],"
    " $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])";


ngx_http_shortlink_flush_t *
ngx_http_shortlink_flush_create(ngx_cycle_t *cycle,
    ngx_http_shortlink_main_conf_t *smcf)
{
    ngx_uint_t                   k;
    ngx_connection_t            *c;
    ngx_http_shortlink_flush_t  *f;

    f = ngx_pcalloc(cycle->pool, sizeof(ngx_http_shortlink_flush_t));
    if (f == NULL) {
        return NULL;
    }

    f->smcf = smcf;
    f->log = cycle->log;
    f->max = smcf->flush.batch * smcf->flush.parallel;

    f->parts = ngx_pcalloc(cycle->pool, smcf->flush.parallel
                                   * sizeof(ngx_http_shortlink_flush_part_t));
    if (f->parts == NULL) {
        return NULL;
    }

    for (k = 0; k < smcf->flush.parallel; k++) {
        f->parts[k].flush = f;
    }

    if (smcf->flush.parallel > 1) {
        f->part = ngx_palloc(cycle->pool, f->max);
        if (f->part == NULL) {
            return NULL;
        }
    }

    f->timer.handler = ngx_http_shortlink_flush_handler;
    f->timer.data = f;
    f->timer.log = cycle->log;
    f->timer.cancelable = 1;

    f->deadline.handler = ngx_http_shortlink_flush_deadline;
    f->deadline.data = f;
    f->deadline.log = cycle->log;

    /*
     * An idle connection without a socket: graceful shutdown calls the
     * read handler of idle connections, which is our cue for a last flush
     * (the flush timer is cancelable, so it would not be waited for).
     */

    c = ngx_get_connection(0, cycle->log);
    if (c == NULL) {
        return NULL;
    }

    c->fd = (ngx_socket_t) -2;
    c->idle = 1;
    c->data = f;
    c->read->handler = ngx_http_shortlink_flush_exit;
    c->read->log = cycle->log;
    c->write->log = cycle->log;

    f->watcher = c;

    ngx_add_timer(&f->timer, smcf->flush.interval);

    return f;
}


/* the worker exits: say what is left */

void
ngx_http_shortlink_flush_destroy(ngx_http_shortlink_flush_t *f)
{
    ngx_http_shortlink_queue_stats_t  st;

    if (f->timer.timer_set) {
        ngx_del_timer(&f->timer);
    }

    if (f->deadline.timer_set) {
        ngx_del_timer(&f->deadline);
    }

    if (f->watcher) {
        ngx_free_connection(f->watcher);
        f->watcher->fd = (ngx_socket_t) -1;
        f->watcher = NULL;
    }

    if (f->batch.data) {
        ngx_free(f->batch.data);
        f->batch.data = NULL;
    }

    ngx_http_shortlink_queue_release(f->smcf->queue);

    ngx_http_shortlink_queue_stats(f->smcf->queue, &st);

    if (st.queued && (f->exiting || ngx_process == NGX_PROCESS_SINGLE)) {
        ngx_log_error(NGX_LOG_WARN, f->log, 0,
                      "shortlink: %uL clicks not written to PostgreSQL at "
                      "exit; they stay queued while nginx keeps the zone "
                      "(a reload) and are lost when it stops",
                      st.queued);
    }
}


static void
ngx_http_shortlink_flush_handler(ngx_event_t *ev)
{
    ngx_int_t                        rc;
    ngx_http_shortlink_flush_t      *f;
    ngx_http_shortlink_main_conf_t  *smcf;

    f = ev->data;
    smcf = f->smcf;

    if (f->busy || smcf->worker == NULL) {
        return;
    }

    /* one flusher at a time; the lease outlives a flush that hangs */

    if (ngx_http_shortlink_queue_lease(smcf->queue,
                                       smcf->flush.timeout + 1000)
        != NGX_OK)
    {
        ngx_http_shortlink_flush_idle(f);
        return;
    }

    rc = ngx_http_shortlink_queue_peek(smcf->queue, f->max, &f->batch,
                                       f->log);

    if (rc == NGX_DECLINED) {
        /* nothing queued */
        ngx_http_shortlink_queue_release(smcf->queue);
        ngx_http_shortlink_flush_idle(f);
        return;
    }

    if (rc == NGX_OK) {
        ngx_http_shortlink_flush_split(f);
        rc = ngx_http_shortlink_flush_send(f);
    }

    if (rc != NGX_OK && f->pending == 0) {
        /* no memory, or PostgreSQL known to be down: later */
        ngx_http_shortlink_flush_done(f, NGX_ERROR);
        return;
    }

    /*
     * On an error after some sub-batches were sent, the batch fails as a
     * whole once those answered (f->rc is NGX_ERROR already).
     */

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "shortlink flush: sending %ui clicks in %ui parts",
                   f->batch.count, f->pending);

    f->busy = 1;
}


/*
 * How many sub-batches the batch becomes, and which click goes into
 * which: by a hash of the code, so that all clicks of one code are in one
 * sub-batch.  Enough sub-batches for about batch= clicks each (more when
 * a few codes have most clicks), as many as parallel= allows down to 500
 * clicks each; small batches are not split.
 */

static void
ngx_http_shortlink_flush_split(ngx_http_shortlink_flush_t *f)
{
    u_char                      *pos, *next, *rec;
    size_t                       len;
    ngx_uint_t                   i, k, n, need;
    ngx_http_shortlink_click_t  *click;

    n = ngx_min(f->smcf->flush.parallel,
                f->batch.count / NGX_HTTP_SHORTLINK_FLUSH_PART_MIN);

    /* the batch holds at most f->max clicks: need <= parallel */
    need = (f->batch.count + f->smcf->flush.batch - 1) / f->smcf->flush.batch;

    if (n < need) {
        n = need;
    }

    if (n < 2) {
        f->nparts = 1;
        f->parts[0].count = f->batch.count;
        f->parts[0].len = f->batch.len;
        return;
    }

    f->nparts = n;

    for (k = 0; k < n; k++) {
        f->parts[k].count = 0;
        f->parts[k].len = 0;
    }

    i = 0;
    pos = f->batch.data;

    while ((next = ngx_http_shortlink_queue_next(&f->batch, pos, &rec, &len))
           != NULL)
    {
        click = (ngx_http_shortlink_click_t *) rec;

        k = ngx_murmur_hash2(rec + sizeof(ngx_http_shortlink_click_t),
                             click->code_len) % n;

        f->part[i++] = (u_char) k;
        f->parts[k].count++;
        f->parts[k].len += next - pos;

        pos = next;
    }
}


/* every non-empty sub-batch as one call of record_clicks() */

static ngx_int_t
ngx_http_shortlink_flush_send(ngx_http_shortlink_flush_t *f)
{
    ngx_int_t                        rc;
    ngx_str_t                        params[NGX_HTTP_SHORTLINK_FLUSH_COLUMNS];
    ngx_uint_t                       k;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = f->smcf;

    f->pending = 0;
    f->rc = NGX_OK;

    for (k = 0; k < f->nparts; k++) {

        if (f->parts[k].count == 0) {
            continue;
        }

        rc = ngx_http_shortlink_flush_params(f, k, params);

        if (rc == NGX_OK) {
            rc = ngx_http_shortlink_pg_exec(smcf->worker->pg,
                                            ngx_http_shortlink_flush_sql,
                                            NGX_HTTP_SHORTLINK_FLUSH_COLUMNS,
                                            params, smcf->flush.timeout,
                                            ngx_http_shortlink_flush_part_done,
                                            &f->parts[k], NULL);

            /* the parameters were copied */
            ngx_free(params[0].data);
        }

        if (rc != NGX_OK) {
            f->rc = NGX_ERROR;
            return NGX_ERROR;
        }

        f->pending++;
    }

    return NGX_OK;
}


/* PostgreSQL answered a sub-batch (or could not be asked) */

static void
ngx_http_shortlink_flush_part_done(void *data, PGresult *res, ngx_int_t rc)
{
    ngx_http_shortlink_flush_part_t  *part = data;

    ngx_http_shortlink_flush_t  *f;

    f = part->flush;

    if (rc != NGX_OK) {
        f->rc = NGX_ERROR;
    }

    if (f->pending == 0 || --f->pending) {
        /* others are still in flight */
        return;
    }

    ngx_http_shortlink_flush_done(f, f->rc);
}


/* every sub-batch answered (or the batch could not be sent) */

static void
ngx_http_shortlink_flush_done(ngx_http_shortlink_flush_t *f, ngx_int_t rc)
{
    ngx_uint_t                       full;
    ngx_msec_t                       delay;
    ngx_http_shortlink_metrics_t    *m;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = f->smcf;
    f->busy = 0;

    if (f->batch.data == NULL) {
        /* the worker is exiting and freed it already */
        return;
    }

    m = ngx_http_shortlink_metrics_get(smcf->metrics);

    if (rc == NGX_OK) {
        ngx_http_shortlink_queue_commit(smcf->queue, &f->batch);

        if (m) {
            (void) ngx_atomic_fetch_add(&m->flush_batches, 1);
            m->flush_lag_msec = ngx_http_shortlink_flush_age(f);
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                       "shortlink flush: %ui clicks committed, the oldest "
                       "after %M ms", f->batch.count,
                       ngx_http_shortlink_flush_age(f));

        if (f->failures) {
            ngx_log_error(NGX_LOG_NOTICE, f->log, 0,
                          "shortlink: clicks are written again");
        }

        f->failures = 0;
        full = (f->batch.count == f->max);
        delay = full ? 1 : smcf->flush.interval;

    } else {
        f->failures++;

        ngx_http_shortlink_metric_add(m, flush_failures, 1);

        if (f->error_logged != ngx_time()) {
            f->error_logged = ngx_time();
            ngx_log_error(NGX_LOG_ERR, f->log, 0,
                          "shortlink: %ui clicks could not be written to "
                          "PostgreSQL, kept in the queue and retried",
                          f->batch.count);
        }

        full = 0;
        delay = ngx_min(smcf->flush.interval
                        << ngx_min(f->failures - 1, 5),
                        NGX_HTTP_SHORTLINK_FLUSH_BACKOFF_MAX);
    }

    ngx_free(f->batch.data);
    ngx_memzero(&f->batch, sizeof(ngx_http_shortlink_queue_batch_t));

    if (f->exiting) {
        if (rc != NGX_OK || !full) {
            /* last flush done (or impossible): let the worker go */
            if (f->deadline.timer_set) {
                ngx_del_timer(&f->deadline);
            }

            ngx_http_shortlink_queue_release(smcf->queue);
            return;
        }

        delay = 1;

    } else if (!full) {
        ngx_http_shortlink_queue_release(smcf->queue);
    }

    ngx_http_shortlink_flush_next(f, delay);
}


/* how long the batch's first click waited for its commit */

static ngx_msec_t
ngx_http_shortlink_flush_age(ngx_http_shortlink_flush_t *f)
{
    u_char                      *rec;
    size_t                       len;
    ngx_time_t                  *tp;
    ngx_http_shortlink_click_t  *click;

    if (ngx_http_shortlink_queue_next(&f->batch, f->batch.data, &rec, &len)
        == NULL)
    {
        return 0;
    }

    click = (ngx_http_shortlink_click_t *) rec;
    tp = ngx_timeofday();

    return (ngx_msec_t) ((int64_t) tp->sec * 1000 + tp->msec - click->msec);
}


/* nothing to do now: wait an interval, or let an exiting worker go */

static void
ngx_http_shortlink_flush_idle(ngx_http_shortlink_flush_t *f)
{
    if (f->exiting) {
        if (f->deadline.timer_set) {
            ngx_del_timer(&f->deadline);
        }

        return;
    }

    ngx_http_shortlink_flush_next(f, f->smcf->flush.interval);
}


static void
ngx_http_shortlink_flush_next(ngx_http_shortlink_flush_t *f,
    ngx_msec_t delay)
{
    if (f->timer.timer_set) {
        ngx_del_timer(&f->timer);
    }

    ngx_add_timer(&f->timer, delay);
}


/*
 * The batch as eight PostgreSQL array literals, one per parameter of
 * shortlink.record_clicks(), in its order: event ids, times, codes, IPs,
 * user agents, referers, visitor ids, extra fields.  All eight live in
 * one allocation, freed by the caller through params[0].data.
 */

static ngx_int_t
ngx_http_shortlink_flush_params(ngx_http_shortlink_flush_t *f, ngx_uint_t k,
    ngx_str_t *params)
{
    u_char                            *p, *pos, *rec, *data, *buf, *fld;
    u_char                            *col[NGX_HTTP_SHORTLINK_FLUSH_COLUMNS];
    size_t                             len, size, flen;
    ngx_uint_t                         i, j, n, idx, count;
    ngx_http_shortlink_click_t        *click;
    ngx_http_shortlink_click_field_t  *field;

    /* the worst case: every byte escaped, plus quotes and separators */

    count = f->parts[k].count;

    size = NGX_HTTP_SHORTLINK_FLUSH_COLUMNS * 2
           + count * (NGX_HTTP_SHORTLINK_FLUSH_COLUMNS * 8
                      + sizeof("00000000-0000-0000-0000-000000000000")
                      + NGX_INT64_LEN)
           + f->parts[k].len * 4
           + count * (f->smcf->fields_overhead + 4);

    buf = ngx_alloc(size, f->log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    /* each column gets its share of the buffer, bounded by size */

    p = buf;

    for (i = 0; i < NGX_HTTP_SHORTLINK_FLUSH_COLUMNS; i++) {
        col[i] = p;
        params[i].data = p;
        *p++ = '{';

        n = 0;
        idx = 0;
        pos = f->batch.data;

        while ((pos = ngx_http_shortlink_queue_next(&f->batch, pos, &rec,
                                                    &len))
               != NULL)
        {
            if (f->nparts > 1 && f->part[idx++] != k) {
                /* another sub-batch's click */
                continue;
            }

            click = (ngx_http_shortlink_click_t *) rec;
            data = rec + sizeof(ngx_http_shortlink_click_t);

            if (n++) {
                *p++ = ',';
            }

            switch (i) {

            case 0: /* event id as a uuid: 8-4-4-4-12 hex digits */
                p = ngx_hex_dump(p, click->event_id, 4);
                *p++ = '-';
                p = ngx_hex_dump(p, click->event_id + 4, 2);
                *p++ = '-';
                p = ngx_hex_dump(p, click->event_id + 6, 2);
                *p++ = '-';
                p = ngx_hex_dump(p, click->event_id + 8, 2);
                *p++ = '-';
                p = ngx_hex_dump(p, click->event_id + 10, 6);
                break;

            case 1: /* Unix time in milliseconds */
                p = ngx_sprintf(p, "%L", click->msec);
                break;

            case 2: /* code */
                p = ngx_http_shortlink_flush_quote(p, data, click->code_len);
                break;

            case 3: /* ip */
                data += click->code_len;
                p = ngx_http_shortlink_flush_quote(p, data, click->ip_len);
                break;

            case 4: /* user agent */
                data += click->code_len + click->ip_len + click->visitor_len;
                p = ngx_http_shortlink_flush_quote(p, data, click->ua_len);
                break;

            case 5: /* referer */
                data += click->code_len + click->ip_len + click->visitor_len
                        + click->ua_len;
                p = ngx_http_shortlink_flush_quote(p, data,
                                                   click->referer_len);
                break;

            case 6: /* visitor id */
                data += click->code_len + click->ip_len;
                p = ngx_http_shortlink_flush_quote(p, data,
                                                   click->visitor_len);
                break;

            default: /* extra fields, as a JSON object inside a string */
                data += click->code_len + click->ip_len + click->visitor_len
                        + click->ua_len + click->referer_len;

                if (click->nfields == 0 || f->smcf->fields == NULL) {
                    p = ngx_cpymem(p, "NULL", 4);
                    break;
                }

                field = f->smcf->fields->elts;
                *p++ = '"';
                *p++ = '{';

                for (j = 0; j < click->nfields
                            && j < f->smcf->fields->nelts; j++)
                {
                    flen = *(uint16_t *) data;
                    fld = data + 2;
                    data += 2 + flen;

                    if (j) {
                        *p++ = ',';
                    }

                    /* "name":"value", escaped for JSON, then for the array */
                    p = ngx_cpymem(p, "\\\"", 2);
                    p = ngx_cpymem(p, field[j].name.data, field[j].name.len);
                    p = ngx_cpymem(p, "\\\":\\\"", 5);

                    for ( /* void */ ; flen; flen--, fld++) {
                        if (*fld == '"' || *fld == '\\') {
                            /* \" or \\ in JSON, each backslash doubled */
                            *p++ = '\\';
                            *p++ = '\\';
                            *p++ = '\\';
                        }

                        *p++ = *fld;
                    }

                    p = ngx_cpymem(p, "\\\"", 2);
                }

                *p++ = '}';
                *p++ = '"';
            }
        }

        *p++ = '}';
        params[i].len = p - col[i];
    }

    if ((size_t) (p - buf) > size) {
        ngx_log_error(NGX_LOG_ALERT, f->log, 0,
                      "shortlink: click batch overflowed its buffer");
        ngx_free(buf);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* an array element: NULL when empty, else quoted with " and \ escaped */

static u_char *
ngx_http_shortlink_flush_quote(u_char *p, u_char *s, size_t len)
{
    if (len == 0) {
        return ngx_cpymem(p, "NULL", 4);
    }

    *p++ = '"';

    while (len--) {
        if (*s == '"' || *s == '\\') {
            *p++ = '\\';
        }

        *p++ = *s++;
    }

    *p++ = '"';

    return p;
}


/* graceful shutdown begins: one last flush, bounded by flush timeout= */

static void
ngx_http_shortlink_flush_exit(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_shortlink_flush_t  *f;

    c = ev->data;
    f = c->data;

    if (!c->close) {
        return;
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
    f->watcher = NULL;

    f->exiting = 1;

    /* non-cancelable: the worker waits for it */
    ngx_add_timer(&f->deadline, f->smcf->flush.timeout);

    if (!f->busy) {
        ngx_http_shortlink_flush_next(f, 1);
    }
}


static void
ngx_http_shortlink_flush_deadline(ngx_event_t *ev)
{
    ngx_http_shortlink_flush_t  *f = ev->data;

    ngx_log_error(NGX_LOG_WARN, f->log, 0,
                  "shortlink: last click flush did not finish in time");

    if (f->timer.timer_set) {
        ngx_del_timer(&f->timer);
    }
}
