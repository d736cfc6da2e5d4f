
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
 * A batch PostgreSQL refuses for its data (SQLSTATE class 22 or 23,
 * wherever it is raised: record_clicks() sets such clicks aside itself,
 * but not what fails before it runs, such as binding the arrays) is
 * halved in nginx, each half sent on its own, until the clicks refused
 * one by one are found; each goes to shortlink.clicks_rejected through
 * shortlink.reject_click() with its text made acceptable (any byte that is
 * not valid UTF-8 or is a control character becomes \xNN), and one that
 * cannot be filed either is counted as discarded and logged.  The rest of
 * the batch is written, in the same flush: no click holds the queue.  A
 * connection failure or a timeout keeps the whole batch for a retry.
 *
 * Retries back off in the queue's zone, shared by all workers: one
 * attempt per wait across workers, not one per worker.
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


#define NGX_HTTP_SHORTLINK_FLUSH_BACKOFF_MAX  30000

/* a batch is split only into sub-batches of at least this many clicks */
#define NGX_HTTP_SHORTLINK_FLUSH_PART_MIN     500

/* one call: a range of the batch's clicks, or one click to file */
typedef struct {
    ngx_http_shortlink_flush_t        *flush;
    ngx_uint_t                         lo;
    ngx_uint_t                         hi;
    unsigned                           reject:1;
} ngx_http_shortlink_flush_job_t;


struct ngx_http_shortlink_flush_s {
    ngx_http_shortlink_main_conf_t    *smcf;
    ngx_log_t                         *log;
    ngx_event_t                        timer;      /* next flush */
    ngx_event_t                        deadline;   /* last flush at exit */
    ngx_connection_t                  *watcher;    /* notices the exit */
    ngx_http_shortlink_queue_batch_t   batch;
    ngx_pool_t                        *pool;       /* of this batch */
    u_char                           **recs;       /* grouped by sub-batch */
    ngx_uint_t                        *bounds;     /* sub-batch k: recs */
    ngx_uint_t                         nparts;     /* [bounds[k], [k+1]) */
    ngx_uint_t                         max;        /* batch * parallel */
    ngx_uint_t                         pending;    /* calls in flight */
    ngx_int_t                          rc;         /* NGX_ERROR: one failed */
    time_t                             error_logged;
    time_t                             discard_logged;
    unsigned                           busy:1;
    unsigned                           lost:1;     /* the lease, meanwhile */
    unsigned                           exiting:1;
};


static void ngx_http_shortlink_flush_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_shortlink_flush_split(
    ngx_http_shortlink_flush_t *f);
static ngx_int_t ngx_http_shortlink_flush_send(ngx_http_shortlink_flush_t *f,
    ngx_uint_t lo, ngx_uint_t hi, ngx_uint_t reject, PGresult *res);
static void ngx_http_shortlink_flush_job_done(void *data, PGresult *res,
    ngx_int_t rc);
static ngx_uint_t ngx_http_shortlink_flush_refused(PGresult *res);
static void ngx_http_shortlink_flush_discard(ngx_http_shortlink_flush_t *f,
    ngx_http_shortlink_flush_job_t *job, PGresult *res);
static void ngx_http_shortlink_flush_done(ngx_http_shortlink_flush_t *f,
    ngx_int_t rc);
static ngx_msec_t ngx_http_shortlink_flush_age(
    ngx_http_shortlink_flush_t *f);
static void ngx_http_shortlink_flush_idle(ngx_http_shortlink_flush_t *f);
static void ngx_http_shortlink_flush_next(ngx_http_shortlink_flush_t *f,
    ngx_msec_t delay);
static void ngx_http_shortlink_flush_exit(ngx_event_t *ev);
static void ngx_http_shortlink_flush_deadline(ngx_event_t *ev);


static const char  ngx_http_shortlink_flush_sql[] =
    "SELECT shortlink.record_clicks($1::uuid[], $2::bigint[], $3::text[],"
    " $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])";

static const char  ngx_http_shortlink_flush_reject_sql[] =
    "SELECT shortlink.reject_click($1::jsonb, $2::text)";


ngx_http_shortlink_flush_t *
ngx_http_shortlink_flush_create(ngx_cycle_t *cycle,
    ngx_http_shortlink_main_conf_t *smcf)
{
    ngx_connection_t            *c;
    ngx_http_shortlink_flush_t  *f;

    f = ngx_pcalloc(cycle->pool, sizeof(ngx_http_shortlink_flush_t));
    if (f == NULL) {
        return NULL;
    }

    f->smcf = smcf;
    f->log = cycle->log;
    f->max = smcf->flush.batch * smcf->flush.parallel;

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

    /* calls in flight are detached by the pool's destruction, next */

    if (f->pool) {
        ngx_destroy_pool(f->pool);
        f->pool = NULL;
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
    ngx_uint_t                       k;
    ngx_msec_t                       wait;
    ngx_http_shortlink_flush_t      *f;
    ngx_http_shortlink_main_conf_t  *smcf;

    f = ev->data;
    smcf = f->smcf;

    if (f->busy || smcf->worker == NULL) {
        return;
    }

    /*
     * One flusher at a time; the lease outlives a call that hangs.  After
     * a failure, whichever worker comes first waits for the shared
     * backoff; a worker's last flush at exit does not.
     */

    rc = ngx_http_shortlink_queue_lease(smcf->queue,
                                        smcf->flush.timeout + 1000,
                                        !f->exiting, &wait);

    if (rc == NGX_AGAIN) {
        ngx_http_shortlink_flush_next(f, wait);
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_shortlink_flush_idle(f);
        return;
    }

    rc = ngx_http_shortlink_queue_peek(smcf->queue, f->max, &f->batch,
                                       ngx_http_shortlink_click_valid,
                                       f->log);

    if (rc != NGX_OK) {
        /* nothing queued, the lease lost while copying, or no memory */
        ngx_http_shortlink_queue_release(smcf->queue);
        ngx_http_shortlink_flush_idle(f);
        return;
    }

    f->pending = 0;
    f->rc = NGX_OK;
    f->lost = 0;
    f->busy = 1;

    rc = ngx_http_shortlink_flush_split(f);

    if (rc != NGX_OK) {
        /* no memory: later */
        ngx_http_shortlink_flush_done(f, NGX_ERROR);
        return;
    }

    /* every sub-batch is a range of f->recs: see split() */

    for (k = 0; k < f->nparts; k++) {
        if (f->bounds[k] == f->bounds[k + 1]) {
            continue;
        }

        rc = ngx_http_shortlink_flush_send(f, f->bounds[k], f->bounds[k + 1],
                                           0, NULL);

        if (rc != NGX_OK) {
            /* no memory, PostgreSQL known to be down, or the lease lost */
            f->rc = NGX_ERROR;
            break;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                   "shortlink flush: sending %ui clicks in %ui parts",
                   f->batch.count, f->pending);

    if (f->pending == 0) {
        ngx_http_shortlink_flush_done(f, f->lost ? NGX_DECLINED : NGX_ERROR);
    }
}


/*
 * The batch's records in f->recs, grouped into sub-batches: by a hash of
 * the code, so that all clicks of one code are in one sub-batch.  Enough
 * sub-batches for about batch= clicks each (more when a few codes have
 * most clicks), as many as parallel= allows down to 500 clicks each;
 * small batches are not split.  Sub-batch k is recs[bounds[k]] up to
 * recs[bounds[k + 1]], in queue order.
 */

static ngx_int_t
ngx_http_shortlink_flush_split(ngx_http_shortlink_flush_t *f)
{
    u_char                            *pos, *next, *rec, *part;
    size_t                             len;
    ngx_uint_t                         i, k, n, need, count;
    ngx_uint_t                        *at;
    ngx_http_shortlink_click_parts_t   parts;

    count = f->batch.count;

    n = ngx_min(f->smcf->flush.parallel,
                count / NGX_HTTP_SHORTLINK_FLUSH_PART_MIN);

    /* the batch holds at most f->max clicks: need <= parallel */
    need = (count + f->smcf->flush.batch - 1) / f->smcf->flush.batch;

    if (n < need) {
        n = need;
    }

    if (n < 1) {
        n = 1;
    }

    f->pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, f->log);
    if (f->pool == NULL) {
        return NGX_ERROR;
    }

    f->recs = ngx_palloc(f->pool, count * sizeof(u_char *));
    f->bounds = ngx_pcalloc(f->pool, (n + 1) * sizeof(ngx_uint_t));
    at = ngx_pcalloc(f->pool, (n + 1) * sizeof(ngx_uint_t));
    part = ngx_palloc(f->pool, count);

    if (f->recs == NULL || f->bounds == NULL || at == NULL || part == NULL) {
        return NGX_ERROR;
    }

    f->nparts = n;

    /* which sub-batch each click goes to, and how many each gets */

    i = 0;
    pos = f->batch.data;

    while (i < count
           && (next = ngx_http_shortlink_queue_next(&f->batch, pos, &rec,
                                                    &len))
              != NULL)
    {
        k = 0;

        if (n > 1
            && ngx_http_shortlink_click_parse(rec, len, &parts) == NGX_OK)
        {
            k = ngx_murmur_hash2(parts.code.data, parts.code.len) % n;
        }

        part[i] = (u_char) k;
        f->bounds[k + 1]++;
        f->recs[i++] = rec;

        pos = next;
    }

    if (i != count) {
        /* peek checked every record: never; but never commit unsent ones */
        ngx_log_error(NGX_LOG_ALERT, f->log, 0,
                      "shortlink: click batch holds %ui of its %ui records",
                      i, count);
        return NGX_ERROR;
    }

    for (k = 0; k < n; k++) {
        f->bounds[k + 1] += f->bounds[k];
        at[k] = f->bounds[k];
    }

    if (n > 1) {
        /* grouped, each group in queue order */

        pos = f->batch.data;

        for (i = 0; i < count; i++) {
            next = ngx_http_shortlink_queue_next(&f->batch, pos, &rec, &len);
            f->recs[at[part[i]]++] = rec;
            pos = next;
        }
    }

    return NGX_OK;
}


/*
 * One call: clicks lo..hi-1 of f->recs to record_clicks(), or (reject)
 * click lo to reject_click() with the reason in res.  NGX_OK when sent.
 */

static ngx_int_t
ngx_http_shortlink_flush_send(ngx_http_shortlink_flush_t *f, ngx_uint_t lo,
    ngx_uint_t hi, ngx_uint_t reject, PGresult *res)
{
    ngx_int_t                         rc;
    ngx_str_t                         params[NGX_HTTP_SHORTLINK_FLUSH_COLUMNS];
    ngx_http_shortlink_flush_job_t   *job;
    ngx_http_shortlink_main_conf_t   *smcf;

    smcf = f->smcf;

    /* a flush may take several rounds of calls: the lease must last */

    if (ngx_http_shortlink_queue_renew(smcf->queue, smcf->flush.timeout + 1000)
        != NGX_OK)
    {
        f->lost = 1;
        return NGX_DECLINED;
    }

    job = ngx_palloc(f->pool, sizeof(ngx_http_shortlink_flush_job_t));
    if (job == NULL) {
        return NGX_ERROR;
    }

    job->flush = f;
    job->lo = lo;
    job->hi = hi;
    job->reject = reject;

    if (reject) {
        rc = ngx_http_shortlink_flush_reject_params(f->recs[lo],
                 (u_char *) PQresultErrorField(res, PG_DIAG_SQLSTATE),
                 (u_char *) PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
                 params, f->log);
        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_shortlink_pg_exec(smcf->worker->pg,
                                        ngx_http_shortlink_flush_reject_sql,
                                        2, params, smcf->flush.timeout,
                                        ngx_http_shortlink_flush_job_done,
                                        job, NULL);

    } else {
        rc = ngx_http_shortlink_flush_params(f->recs + lo, hi - lo, params,
                                             f->log);
        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_shortlink_pg_exec(smcf->worker->pg,
                                        ngx_http_shortlink_flush_sql,
                                        NGX_HTTP_SHORTLINK_FLUSH_COLUMNS,
                                        params, smcf->flush.timeout,
                                        ngx_http_shortlink_flush_job_done,
                                        job, NULL);
    }

    /* the parameters were copied */
    ngx_free(params[0].data);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    f->pending++;

    return NGX_OK;
}


/*
 * PostgreSQL answered a call (or could not be asked).  A range refused for
 * its data is halved, each half sent again; a click refused alone is
 * filed; one that cannot be filed either is discarded.  Anything else
 * (res == NULL: no connection or a timeout; another SQL error) fails the
 * batch, which stays in the queue.
 */

static void
ngx_http_shortlink_flush_job_done(void *data, PGresult *res, ngx_int_t rc)
{
    ngx_http_shortlink_flush_job_t  *job = data;

    ngx_uint_t                       mid;
    ngx_http_shortlink_metrics_t    *m;
    ngx_http_shortlink_flush_t      *f;

    f = job->flush;

    if (f->pending) {
        f->pending--;
    }

    m = ngx_http_shortlink_metrics_get(f->smcf->metrics);

    if (rc == NGX_OK) {
        if (job->reject) {
            ngx_http_shortlink_metric_add(m, clicks_rejected, 1);
        }

    } else if (job->reject && res != NULL) {
        /* even filing it failed: PostgreSQL will never take this click */
        ngx_http_shortlink_flush_discard(f, job, res);

    } else if (!ngx_http_shortlink_flush_refused(res)) {
        f->rc = NGX_ERROR;

    } else if (f->rc == NGX_OK && !f->lost) {

        if (job->hi - job->lo == 1) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, f->log, 0,
                           "shortlink flush: click %ui refused, filing it",
                           job->lo);

            rc = ngx_http_shortlink_flush_send(f, job->lo, job->hi, 1, res);

        } else {
            mid = job->lo + (job->hi - job->lo) / 2;

            ngx_log_debug3(NGX_LOG_DEBUG_HTTP, f->log, 0,
                           "shortlink flush: clicks %ui-%ui refused, "
                           "halved at %ui", job->lo, job->hi, mid);

            rc = ngx_http_shortlink_flush_send(f, job->lo, mid, 0, NULL);

            if (rc == NGX_OK) {
                rc = ngx_http_shortlink_flush_send(f, mid, job->hi, 0, NULL);
            }
        }

        if (rc != NGX_OK) {
            f->rc = NGX_ERROR;
        }
    }

    if (f->pending) {
        /* others are still in flight */
        return;
    }

    ngx_http_shortlink_flush_done(f, f->lost ? NGX_DECLINED : f->rc);
}


/* an SQL error about the data: SQLSTATE class 22 or 23 */

static ngx_uint_t
ngx_http_shortlink_flush_refused(PGresult *res)
{
    char  *state;

    if (res == NULL) {
        return 0;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return state != NULL
           && state[0] == '2' && (state[1] == '2' || state[1] == '3');
}


static void
ngx_http_shortlink_flush_discard(ngx_http_shortlink_flush_t *f,
    ngx_http_shortlink_flush_job_t *job, PGresult *res)
{
    char                           *state, *msg;
    ngx_http_shortlink_metrics_t   *m;
    ngx_http_shortlink_click_t     *click;

    m = ngx_http_shortlink_metrics_get(f->smcf->metrics);
    ngx_http_shortlink_metric_add(m, clicks_discarded, 1);

    if (f->discard_logged == ngx_time()) {
        return;
    }

    f->discard_logged = ngx_time();

    click = (ngx_http_shortlink_click_t *) f->recs[job->lo];
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    ngx_log_error(NGX_LOG_WARN, f->log, 0,
                  "shortlink: a click PostgreSQL refused could not be filed "
                  "in shortlink.clicks_rejected either (SQLSTATE %s: %s), "
                  "discarded (event id %*xs...)",
                  state ? state : "none", msg ? msg : "no message",
                  (size_t) 8, click->event_id);
}


/* every call answered (or the batch could not be sent) */

static void
ngx_http_shortlink_flush_done(ngx_http_shortlink_flush_t *f, ngx_int_t rc)
{
    ngx_int_t                        crc;
    ngx_uint_t                       full, n;
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
    full = 0;
    delay = smcf->flush.interval;

    if (rc == NGX_ERROR
        && ngx_http_shortlink_queue_renew(smcf->queue,
                                          smcf->flush.timeout + 1000)
           != NGX_OK)
    {
        /* a late failure: the new owner's flushes decide on backoff */
        rc = NGX_DECLINED;
    }

    if (rc == NGX_OK) {
        crc = ngx_http_shortlink_queue_commit(smcf->queue, &f->batch, f->log);

        if (crc == NGX_OK) {
            if (m) {
                (void) ngx_atomic_fetch_add(&m->flush_batches, 1);
                m->flush_lag_msec = ngx_http_shortlink_flush_age(f);
            }

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, f->log, 0,
                           "shortlink flush: %ui clicks committed, the "
                           "oldest after %M ms", f->batch.count,
                           ngx_http_shortlink_flush_age(f));

            if (ngx_http_shortlink_queue_succeeded(smcf->queue)) {
                ngx_log_error(NGX_LOG_NOTICE, f->log, 0,
                              "shortlink: clicks are written again");
            }

            full = (f->batch.count == f->max);
            delay = full ? 1 : smcf->flush.interval;
        }

    } else if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_NOTICE, f->log, 0,
                      "shortlink: flush lease lost during a flush of %ui "
                      "clicks; the new owner sends them",
                      f->batch.count);

    } else {
        n = ngx_http_shortlink_queue_failed(smcf->queue, smcf->flush.interval,
                                      NGX_HTTP_SHORTLINK_FLUSH_BACKOFF_MAX);

        ngx_http_shortlink_metric_add(m, flush_failures, 1);

        if (f->error_logged != ngx_time()) {
            f->error_logged = ngx_time();
            ngx_log_error(NGX_LOG_ERR, f->log, 0,
                          "shortlink: %ui clicks could not be written to "
                          "PostgreSQL, kept in the queue and retried",
                          f->batch.count);
        }

        delay = ngx_min(smcf->flush.interval << ngx_min(n - 1, 5),
                        NGX_HTTP_SHORTLINK_FLUSH_BACKOFF_MAX);
    }

    ngx_free(f->batch.data);
    ngx_memzero(&f->batch, sizeof(ngx_http_shortlink_queue_batch_t));

    if (f->pool) {
        ngx_destroy_pool(f->pool);
        f->pool = NULL;
        f->recs = NULL;
        f->bounds = NULL;
    }

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
