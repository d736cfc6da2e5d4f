
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The per-worker PostgreSQL pool: the queries waiting for a connection,
 * handing them to connections, reading their answers and giving them to
 * whoever asked, backoff while PostgreSQL is down.  A connection's own
 * life (connect, send, events, close) is in ngx_http_shortlink_pg_conn.c,
 * the LISTEN connection in ngx_http_shortlink_pg_listen.c, the connection
 * parameters in ngx_http_shortlink_pg_conninfo.c.
 *
 * A query is owned by the pool, not by the request that asked for it: a
 * request that goes away detaches itself (data = NULL) and an in-flight
 * query is still read to its end, so the connection stays usable.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_shortlink_pg_conn.h"


#define NGX_HTTP_SHORTLINK_PG_DECLINED                                        \
    ((ngx_http_shortlink_pg_query_t *) -1)


static void ngx_http_shortlink_pg_dispatch_handler(ngx_event_t *ev);
static ngx_uint_t ngx_http_shortlink_pg_alive(
    ngx_http_shortlink_pg_pool_t *pool);
static ngx_uint_t ngx_http_shortlink_pg_in_backoff(
    ngx_http_shortlink_pg_pool_t *pool);
static ngx_http_shortlink_pg_query_t *ngx_http_shortlink_pg_query_alloc(
    ngx_http_shortlink_pg_pool_t *pool, size_t extra, ngx_msec_t timeout);
static ngx_http_shortlink_pg_query_t *ngx_http_shortlink_pg_query_params(
    ngx_http_shortlink_pg_pool_t *pool, ngx_uint_t nparams,
    ngx_str_t *params, ngx_msec_t timeout);
static void ngx_http_shortlink_pg_fail_waiting(
    ngx_http_shortlink_pg_pool_t *pool);
static void ngx_http_shortlink_pg_result(ngx_http_shortlink_pg_conn_t *pgc,
    PGresult *res);
static void ngx_http_shortlink_pg_refused(ngx_http_shortlink_pg_query_t *q,
    PGresult *res);
static void ngx_http_shortlink_pg_done(ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_query_timeout(ngx_event_t *ev);


ngx_http_shortlink_pg_pool_t *
ngx_http_shortlink_pg_pool_create(ngx_cycle_t *cycle,
    ngx_http_shortlink_pg_conf_t *conf)
{
    size_t                         size;
    ngx_uint_t                     i;
    ngx_http_shortlink_pg_conn_t  *pgc;
    ngx_http_shortlink_pg_pool_t  *pool;

    pool = ngx_pcalloc(cycle->pool, sizeof(ngx_http_shortlink_pg_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    size = conf->size * sizeof(ngx_http_shortlink_pg_conn_t);

    pool->conns = ngx_pcalloc(cycle->pool, size);
    if (pool->conns == NULL) {
        return NULL;
    }

    pool->conf = conf;
    pool->log = cycle->log;
    pool->retry_at = ngx_current_msec;
    ngx_queue_init(&pool->waiting);

    pool->dispatch.handler = ngx_http_shortlink_pg_dispatch_handler;
    pool->dispatch.data = pool;
    pool->dispatch.log = cycle->log;

    for (i = 0; i <= conf->size; i++) {
        pgc = (i < conf->size) ? &pool->conns[i] : &pool->listener;
        pgc->pool = pool;
        pgc->timer.handler = ngx_http_shortlink_pg_conn_timeout;
        pgc->timer.data = pgc;
        pgc->timer.log = cycle->log;
    }

    pool->listener.listener = 1;

    /* the LISTEN connection's timers do not hold up a worker's exit */
    pool->listener.timer.cancelable = 1;

    if (ngx_http_shortlink_pg_params(pool, cycle->pool) != NGX_OK) {
        return NULL;
    }

    return pool;
}


/*
 * Called when the worker exits: every query is detached first, so no
 * request is touched while the process is going away.
 */

void
ngx_http_shortlink_pg_pool_destroy(ngx_http_shortlink_pg_pool_t *pool)
{
    ngx_uint_t                      i;
    ngx_queue_t                    *qn;
    ngx_http_shortlink_pg_query_t  *q;

    pool->destroying = 1;

    if (pool->dispatch.posted) {
        ngx_delete_posted_event(&pool->dispatch);
    }

    ngx_http_shortlink_pg_listen_stop(pool);

    while (!ngx_queue_empty(&pool->waiting)) {
        qn = ngx_queue_head(&pool->waiting);
        ngx_queue_remove(qn);
        q = ngx_queue_data(qn, ngx_http_shortlink_pg_query_t, queue);
        q->data = NULL;
        ngx_http_shortlink_pg_finish(q);
    }

    for (i = 0; i < pool->conf->size; i++) {
        if (pool->conns[i].query) {
            pool->conns[i].query->data = NULL;
        }

        if (pool->conns[i].state != NGX_HTTP_SHORTLINK_PG_FREE) {
            ngx_http_shortlink_pg_close(&pool->conns[i], 0);
        }
    }
}


/*
 * Queues a query and returns at once: NGX_OK (the handler will be called
 * later, from an event), NGX_DECLINED (PostgreSQL is known to be down and
 * the pool is backing off: answer "unavailable" now), or NGX_ERROR.
 */

ngx_int_t
ngx_http_shortlink_pg_query(ngx_http_shortlink_pg_pool_t *pool,
    const char *stmt, ngx_uint_t nparams, ngx_str_t *params,
    ngx_http_shortlink_pg_handler_pt handler, void *data,
    ngx_http_shortlink_pg_query_t **qp)
{
    ngx_http_shortlink_pg_query_t  *q;

    q = ngx_http_shortlink_pg_query_params(pool, nparams, params,
                                           pool->conf->query_timeout);
    if (q == NULL || q == NGX_HTTP_SHORTLINK_PG_DECLINED) {
        return q ? NGX_DECLINED : NGX_ERROR;
    }

    q->stmt = stmt;
    q->handler = handler;
    q->data = data;

    *qp = q;

    return NGX_OK;
}


/* plain SQL with text parameters, e.g. the click flush */

ngx_int_t
ngx_http_shortlink_pg_exec(ngx_http_shortlink_pg_pool_t *pool,
    const char *sql, ngx_uint_t nparams, ngx_str_t *params,
    ngx_msec_t timeout, ngx_http_shortlink_pg_handler_pt handler,
    void *data, ngx_http_shortlink_pg_query_t **qp)
{
    ngx_http_shortlink_pg_query_t  *q;

    q = ngx_http_shortlink_pg_query_params(pool, nparams, params, timeout);
    if (q == NULL || q == NGX_HTTP_SHORTLINK_PG_DECLINED) {
        return q ? NGX_DECLINED : NGX_ERROR;
    }

    q->sql = sql;
    q->handler = handler;
    q->data = data;

    if (qp) {
        *qp = q;
    }

    return NGX_OK;
}


/*
 * A queued query with its parameters copied (NUL-terminated, as libpq
 * wants them); NGX_HTTP_SHORTLINK_PG_DECLINED while PostgreSQL is known to
 * be down.
 */

static ngx_http_shortlink_pg_query_t *
ngx_http_shortlink_pg_query_params(ngx_http_shortlink_pg_pool_t *pool,
    ngx_uint_t nparams, ngx_str_t *params, ngx_msec_t timeout)
{
    u_char                         *p;
    size_t                          len;
    ngx_uint_t                      i;
    ngx_http_shortlink_pg_query_t  *q;

    if (nparams > NGX_HTTP_SHORTLINK_PG_MAX_PARAMS) {
        return NULL;
    }

    if (!ngx_http_shortlink_pg_alive(pool)
        && ngx_http_shortlink_pg_in_backoff(pool))
    {
        return NGX_HTTP_SHORTLINK_PG_DECLINED;
    }

    len = 0;

    for (i = 0; i < nparams; i++) {
        len += params[i].len + 1;
    }

    q = ngx_http_shortlink_pg_query_alloc(pool, len, timeout);
    if (q == NULL) {
        return NULL;
    }

    p = (u_char *) (q + 1);

    for (i = 0; i < nparams; i++) {
        q->values[i] = (const char *) p;
        p = ngx_cpymem(p, params[i].data, params[i].len);
        *p++ = '\0';
    }

    q->nparams = (int) nparams;

    return q;
}


/*
 * A query whose rows are handed over one at a time as they arrive (libpq's
 * single-row mode), for results too large to hold: the bloom filter build.
 */

ngx_int_t
ngx_http_shortlink_pg_stream(ngx_http_shortlink_pg_pool_t *pool,
    const char *sql, ngx_msec_t timeout, ngx_http_shortlink_pg_row_pt row,
    ngx_http_shortlink_pg_handler_pt handler, void *data)
{
    ngx_http_shortlink_pg_query_t  *q;

    q = ngx_http_shortlink_pg_query_params(pool, 0, NULL, timeout);
    if (q == NULL || q == NGX_HTTP_SHORTLINK_PG_DECLINED) {
        return q ? NGX_DECLINED : NGX_ERROR;
    }

    q->sql = sql;
    q->row = row;
    q->handler = handler;
    q->data = data;

    /* a long background read must not hold up a worker's exit */
    q->timer.cancelable = 1;

    return NGX_OK;
}


/* a zeroed query with room for extra bytes, queued with its timer armed */

static ngx_http_shortlink_pg_query_t *
ngx_http_shortlink_pg_query_alloc(ngx_http_shortlink_pg_pool_t *pool,
    size_t extra, ngx_msec_t timeout)
{
    ngx_http_shortlink_pg_query_t  *q;

    q = ngx_alloc(sizeof(ngx_http_shortlink_pg_query_t) + extra, pool->log);
    if (q == NULL) {
        return NULL;
    }

    ngx_memzero(q, sizeof(ngx_http_shortlink_pg_query_t));

    q->pool = pool;
    q->timeout = timeout;

    q->timer.handler = ngx_http_shortlink_pg_query_timeout;
    q->timer.data = q;
    q->timer.log = pool->log;

    ngx_add_timer(&q->timer, timeout);

    ngx_queue_insert_tail(&pool->waiting, &q->queue);

    /* handlers are never called from inside the function that queues */
    ngx_post_event(&pool->dispatch, &ngx_posted_events);

    return q;
}


/*
 * The asker goes away.  A waiting query is dropped; an in-flight one stays
 * until its results are drained, and its handler is not called.
 */

void
ngx_http_shortlink_pg_detach(ngx_http_shortlink_pg_query_t *q)
{
    q->data = NULL;

    if (q->pgc == NULL) {
        ngx_queue_remove(&q->queue);
        ngx_http_shortlink_pg_finish(q);
    }
}


/* the pool's connections: open (connected), busy (running a query) */

void
ngx_http_shortlink_pg_stats(ngx_http_shortlink_pg_pool_t *pool,
    ngx_uint_t *open, ngx_uint_t *busy)
{
    ngx_uint_t  i;

    *open = 0;
    *busy = 0;

    for (i = 0; i < pool->conf->size; i++) {
        switch (pool->conns[i].state) {
        case NGX_HTTP_SHORTLINK_PG_BUSY:
            (*busy)++;
            /* fall through */
        case NGX_HTTP_SHORTLINK_PG_IDLE:
        case NGX_HTTP_SHORTLINK_PG_PREPARING:
            (*open)++;
            break;
        }
    }
}


time_t
ngx_http_shortlink_pg_retry_after(ngx_http_shortlink_pg_pool_t *pool)
{
    ngx_msec_int_t  left;

    left = (ngx_msec_int_t) (pool->retry_at - ngx_current_msec);

    if (left <= 0) {
        return 1;
    }

    return (time_t) ((left + 999) / 1000);
}




static void
ngx_http_shortlink_pg_dispatch_handler(ngx_event_t *ev)
{
    ngx_http_shortlink_pg_dispatch(ev->data);
}


void
ngx_http_shortlink_pg_dispatch(ngx_http_shortlink_pg_pool_t *pool)
{
    ngx_uint_t                      i, connecting;
    ngx_queue_t                    *qn;
    ngx_http_shortlink_pg_conn_t   *pgc, *idle, *free;
    ngx_http_shortlink_pg_query_t  *q;

    for ( ;; ) {

        if (ngx_queue_empty(&pool->waiting)) {
            return;
        }

        idle = NULL;
        free = NULL;
        connecting = 0;

        for (i = 0; i < pool->conf->size; i++) {
            pgc = &pool->conns[i];

            switch (pgc->state) {

            case NGX_HTTP_SHORTLINK_PG_IDLE:
                idle = pgc;
                break;

            case NGX_HTTP_SHORTLINK_PG_FREE:
                free = pgc;
                break;

            case NGX_HTTP_SHORTLINK_PG_CONNECTING:
            case NGX_HTTP_SHORTLINK_PG_PREPARING:
                connecting++;
                break;
            }

            if (idle) {
                break;
            }
        }

        if (idle == NULL) {
            break;
        }

        qn = ngx_queue_head(&pool->waiting);
        ngx_queue_remove(qn);
        q = ngx_queue_data(qn, ngx_http_shortlink_pg_query_t, queue);

        ngx_http_shortlink_pg_send(idle, q);
    }

    /* queries wait and no connection is idle: grow the pool by one */

    /* (an exiting worker may still connect: its last click flush) */

    if (connecting == 0 && free && !ngx_http_shortlink_pg_in_backoff(pool)) {
        ngx_http_shortlink_pg_connect(free);
    }

    if (!ngx_http_shortlink_pg_alive(pool)) {
        ngx_http_shortlink_pg_fail_waiting(pool);
    }
}


static ngx_uint_t
ngx_http_shortlink_pg_alive(ngx_http_shortlink_pg_pool_t *pool)
{
    ngx_uint_t  i;

    for (i = 0; i < pool->conf->size; i++) {
        if (pool->conns[i].state != NGX_HTTP_SHORTLINK_PG_FREE) {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_http_shortlink_pg_in_backoff(ngx_http_shortlink_pg_pool_t *pool)
{
    return (ngx_msec_int_t) (pool->retry_at - ngx_current_msec) > 0;
}


/* exponential backoff with jitter: 100ms, 200ms, ... up to backoff= */

void
ngx_http_shortlink_pg_backoff(ngx_http_shortlink_pg_pool_t *pool)
{
    ngx_msec_t  delay;

    delay = ngx_http_shortlink_pg_delay(++pool->failures,
                                        pool->conf->backoff_max);

    pool->retry_at = ngx_current_msec + delay;

    ngx_log_error(NGX_LOG_WARN, pool->log, 0,
                  "shortlink: PostgreSQL unavailable, next connection "
                  "attempt in %M ms", delay);
}


ngx_msec_t
ngx_http_shortlink_pg_delay(ngx_uint_t failures, ngx_msec_t max)
{
    ngx_msec_t  delay;

    delay = (ngx_msec_t) NGX_HTTP_SHORTLINK_PG_BACKOFF_MIN
            << ngx_min(failures - 1, 10);

    if (delay > max) {
        delay = max;
    }

    return delay / 2 + (ngx_msec_t) ngx_random() % (delay / 2 + 1);
}


static void
ngx_http_shortlink_pg_fail_waiting(ngx_http_shortlink_pg_pool_t *pool)
{
    ngx_queue_t                    *qn;
    ngx_http_shortlink_pg_query_t  *q;

    while (!ngx_queue_empty(&pool->waiting)) {
        qn = ngx_queue_head(&pool->waiting);
        ngx_queue_remove(qn);
        q = ngx_queue_data(qn, ngx_http_shortlink_pg_query_t, queue);

        ngx_http_shortlink_pg_deliver(q, NULL, NGX_ERROR);
        ngx_http_shortlink_pg_finish(q);
    }
}



/*
 * Reads what has arrived.  A pipelined query (see
 * ngx_http_shortlink_pg_conn.c) answers set_config()'s result, NULL, the
 * query's results, NULL, then PGRES_PIPELINE_SYNC; anything else ends in
 * one NULL.
 */

void
ngx_http_shortlink_pg_results(ngx_http_shortlink_pg_conn_t *pgc)
{
    const char  *msg;
    PGresult    *res;

    while (!PQisBusy(pgc->conn)) {

        res = PQgetResult(pgc->conn);

        if (res == NULL) {

            if (!pgc->pipeline) {
                ngx_http_shortlink_pg_done(pgc);
                return;
            }

            if (pgc->step == NGX_HTTP_SHORTLINK_PG_STEP_SYNC) {
                /* nothing more will come: the connection broke */
                msg = PQerrorMessage(pgc->conn);
                ngx_log_error(NGX_LOG_ERR, pgc->pool->log, 0,
                              "shortlink: PostgreSQL connection lost: %*s",
                              ngx_http_shortlink_pg_msglen(msg), msg);
                ngx_http_shortlink_pg_close(pgc, 1);
                return;
            }

            if (pgc->step == NGX_HTTP_SHORTLINK_PG_STEP_QUERY) {
                pgc->step = NGX_HTTP_SHORTLINK_PG_STEP_SYNC;
                continue;
            }

            pgc->step = NGX_HTTP_SHORTLINK_PG_STEP_QUERY;

            /* in a pipeline, single-row mode is asked for when the
             * query's own results are next */

            if (pgc->query->row && !PQsetSingleRowMode(pgc->conn)) {
                ngx_log_error(NGX_LOG_ALERT, pgc->pool->log, 0,
                              "shortlink: PQsetSingleRowMode() failed");
                ngx_http_shortlink_pg_close(pgc, 1);
                return;
            }

            continue;
        }

        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            PQclear(res);

            if (!PQexitPipelineMode(pgc->conn)) {
                msg = PQerrorMessage(pgc->conn);
                ngx_log_error(NGX_LOG_ALERT, pgc->pool->log, 0,
                              "shortlink: PQexitPipelineMode() failed: %*s",
                              ngx_http_shortlink_pg_msglen(msg), msg);
                ngx_http_shortlink_pg_close(pgc, 1);
                return;
            }

            pgc->pipeline = 0;
            ngx_http_shortlink_pg_done(pgc);
            return;
        }

        ngx_http_shortlink_pg_result(pgc, res);
        PQclear(res);
    }
}


/* one result, freed by the caller */

static void
ngx_http_shortlink_pg_result(ngx_http_shortlink_pg_conn_t *pgc,
    PGresult *res)
{
    const char                     *msg;
    ExecStatusType                  status;
    ngx_http_shortlink_pg_query_t  *q;

    status = PQresultStatus(res);
    q = pgc->query;

    if (pgc->step == NGX_HTTP_SHORTLINK_PG_STEP_SET) {
        if (status != PGRES_TUPLES_OK) {
            msg = PQresultErrorMessage(res);
            ngx_log_error(NGX_LOG_ERR, pgc->pool->log, 0,
                          "shortlink: PostgreSQL refused statement_timeout: "
                          "%*s", ngx_http_shortlink_pg_msglen(msg), msg);
        }

        return;
    }

    if (status == PGRES_SINGLE_TUPLE) {
        if (q && q->data && !pgc->delivered) {
            q->row(q->data, res);
        }

        return;
    }

    if (q == NULL) {
        /* preparing the lookup, LISTEN, or the LISTEN connection's check */

        if (status != PGRES_COMMAND_OK) {
            msg = PQresultErrorMessage(res);
            ngx_log_error(NGX_LOG_ERR, pgc->pool->log, 0,
                          "shortlink: PostgreSQL %s failed: %*s",
                          pgc->state == NGX_HTTP_SHORTLINK_PG_PREPARING
                          ? "prepare" : "LISTEN",
                          ngx_http_shortlink_pg_msglen(msg), msg);
        }

        pgc->prepared = (status == PGRES_COMMAND_OK);
        return;
    }

    if (pgc->delivered) {
        return;
    }

    pgc->delivered = 1;

    switch (status) {

    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
        ngx_http_shortlink_pg_deliver(q, res, NGX_OK);
        break;

    case PGRES_FATAL_ERROR:
        ngx_http_shortlink_pg_refused(q, res);
        ngx_http_shortlink_pg_deliver(q, res, NGX_ERROR);
        break;

    default:
        /* PGRES_PIPELINE_ABORTED: set_config() failed, logged above */
        ngx_log_error(NGX_LOG_ERR, pgc->pool->log, 0,
                      "shortlink: PostgreSQL query failed: %s",
                      PQresStatus(status));
        ngx_http_shortlink_pg_deliver(q, NULL, NGX_ERROR);
        break;
    }
}


/*
 * PostgreSQL refused a statement.  Its own statement_timeout is a
 * timeout; bad data (SQLSTATE class 22) and a broken constraint (23) are
 * the caller's to handle, so only a warning, and no backend error counted.
 */

static void
ngx_http_shortlink_pg_refused(ngx_http_shortlink_pg_query_t *q,
    PGresult *res)
{
    const char  *sqlstate, *msg;

    sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    msg = PQresultErrorMessage(res);

    if (sqlstate == NULL) {
        sqlstate = "";
    }

    if (ngx_strcmp(sqlstate, NGX_HTTP_SHORTLINK_PG_CANCELED) == 0) {
        q->timed_out = 1;

        ngx_log_error(NGX_LOG_ERR, q->pool->log, 0,
                      "shortlink: PostgreSQL query timed out after %M ms, "
                      "cancelled by PostgreSQL: %*s", q->timeout,
                      ngx_http_shortlink_pg_msglen(msg), msg);
        return;
    }

    if (ngx_strncmp(sqlstate, "22", 2) == 0
        || ngx_strncmp(sqlstate, "23", 2) == 0)
    {
        q->data_error = 1;

        ngx_log_error(NGX_LOG_WARN, q->pool->log, 0,
                      "shortlink: PostgreSQL query failed (SQLSTATE %s): %*s",
                      sqlstate, ngx_http_shortlink_pg_msglen(msg), msg);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, q->pool->log, 0,
                  "shortlink: PostgreSQL query failed (SQLSTATE %s): %*s",
                  sqlstate, ngx_http_shortlink_pg_msglen(msg), msg);
}


/* all results of the current command are in: the connection is free */

static void
ngx_http_shortlink_pg_done(ngx_http_shortlink_pg_conn_t *pgc)
{
    ngx_http_shortlink_pg_pool_t   *pool;
    ngx_http_shortlink_pg_query_t  *q;

    pool = pgc->pool;

    if (pgc->listener) {

        if (!pgc->prepared) {
            ngx_http_shortlink_pg_close(pgc, 1);
            return;
        }

        if (pgc->state == NGX_HTTP_SHORTLINK_PG_PREPARING) {
            ngx_http_shortlink_pg_listen_ready(pgc);

        } else {
            ngx_http_shortlink_pg_listen_answered(pgc);
        }

        return;
    }

    if (pgc->state == NGX_HTTP_SHORTLINK_PG_PREPARING) {

        if (!pgc->prepared) {
            ngx_http_shortlink_pg_close(pgc, 1);
            return;
        }

        if (pgc->timer.timer_set) {
            ngx_del_timer(&pgc->timer);
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "shortlink pg: connection *%uA ready",
                       pgc->c->number);

        pool->failures = 0;

    } else {
        q = pgc->query;
        pgc->query = NULL;
        q->pgc = NULL;

        if (!pgc->delivered) {
            ngx_http_shortlink_pg_deliver(q, NULL, NGX_ERROR);
        }

        ngx_http_shortlink_pg_finish(q);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "shortlink pg: connection *%uA idle", pgc->c->number);
    }

    pgc->state = NGX_HTTP_SHORTLINK_PG_IDLE;
    pgc->c->idle = 1;

    if (ngx_http_shortlink_pg_events(pgc, 1, 0) != NGX_OK) {
        ngx_http_shortlink_pg_close(pgc, 1);
    }

    ngx_http_shortlink_pg_dispatch(pool);
}


/*
 * A query took longer than its timeout in all (waiting for a connection
 * included) and PostgreSQL did not cancel it first: the network or the
 * server is slow.  A running statement cannot be cancelled without
 * blocking (PQcancel), so the connection is closed and reopened later;
 * PostgreSQL's statement_timeout ends the statement on its side.
 */

static void
ngx_http_shortlink_pg_query_timeout(ngx_event_t *ev)
{
    ngx_http_shortlink_pg_query_t  *q;

    q = ev->data;
    q->timed_out = 1;

    if (q->pgc == NULL) {
        ngx_log_error(NGX_LOG_ERR, q->pool->log, NGX_ETIMEDOUT,
                      "shortlink: no PostgreSQL connection within %M ms",
                      q->timeout);

        ngx_queue_remove(&q->queue);
        ngx_http_shortlink_pg_deliver(q, NULL, NGX_ERROR);
        ngx_http_shortlink_pg_finish(q);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, q->pool->log, NGX_ETIMEDOUT,
                  "shortlink: PostgreSQL query timed out after %M ms",
                  q->timeout);

    /* a slow query is no outage: no backoff, the next request may retry */
    ngx_http_shortlink_pg_close(q->pgc, 0);
}


void
ngx_http_shortlink_pg_deliver(ngx_http_shortlink_pg_query_t *q,
    PGresult *res, ngx_int_t rc)
{
    void                          *data;
    ngx_http_shortlink_pg_conf_t  *conf;

    if (rc == NGX_ERROR) {
        conf = q->pool->conf;

        if (q->timed_out) {
            if (conf->timeouts) {
                (void) ngx_atomic_fetch_add(conf->timeouts, 1);
            }

        } else if (!q->data_error && conf->errors) {
            (void) ngx_atomic_fetch_add(conf->errors, 1);
        }
    }

    data = q->data;

    if (data == NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, q->pool->log, 0,
                       "shortlink pg: result for a detached query dropped");
        return;
    }

    q->data = NULL;
    q->handler(data, res, rc);
}


void
ngx_http_shortlink_pg_finish(ngx_http_shortlink_pg_query_t *q)
{
    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    ngx_free(q);
}


/* libpq's messages end in a newline that the error log does not want */

size_t
ngx_http_shortlink_pg_msglen(const char *message)
{
    size_t  len;

    len = ngx_strlen(message);

    while (len && (message[len - 1] == '\n' || message[len - 1] == ' ')) {
        len--;
    }

    return len;
}
