
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The LISTEN connection: besides the pool, each worker may keep one more
 * connection that only LISTENs (cache invalidation and the bloom filter).
 * It reconnects by itself, and tells its owner whenever the subscription
 * goes up or down.
 *
 * A connection whose packets are dropped without a reset (a partition, a
 * NAT that forgot it, a dead host) looks exactly like a quiet one: nothing
 * arrives either way.  So every listen_check the connection is asked to
 * LISTEN again (a no-op for PostgreSQL, one round trip) and must answer
 * within listen_check_timeout; if it does not, it is treated exactly like
 * a lost one: closed, the owner told (bloom filter bypassed, zone cleared
 * once back), reconnected with backoff.  A dead subscription is thus
 * noticed within listen_check + listen_check_timeout.  TCP keepalives
 * (see ngx_http_shortlink_pg_conninfo.c) bound the same on idle pool
 * connections.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_shortlink_pg_conn.h"


static void ngx_http_shortlink_pg_listen_retry(ngx_event_t *ev);
static void ngx_http_shortlink_pg_listen_check(ngx_event_t *ev);


/*
 * One more connection that only LISTENs on channel.  state(data, 1) when
 * the subscription is confirmed, state(data, 0) whenever it is lost
 * (notifications may have been missed); it reconnects with backoff.
 */

ngx_int_t
ngx_http_shortlink_pg_listen(ngx_http_shortlink_pg_pool_t *pool,
    const char *channel, ngx_http_shortlink_pg_notify_pt notify,
    ngx_http_shortlink_pg_listen_pt state, void *data)
{
    size_t  len;

    len = sizeof("LISTEN ") - 1 + ngx_strlen(channel);

    pool->listen_sql = ngx_alloc(len + 1, pool->log);
    if (pool->listen_sql == NULL) {
        return NGX_ERROR;
    }

    *ngx_sprintf((u_char *) pool->listen_sql, "LISTEN %s", channel) = '\0';

    pool->channel = channel;
    pool->notify = notify;
    pool->listen_state = state;
    pool->listen_data = data;

    pool->listen_retry.handler = ngx_http_shortlink_pg_listen_retry;
    pool->listen_retry.data = pool;
    pool->listen_retry.log = pool->log;
    pool->listen_retry.cancelable = 1;

    pool->listen_check.handler = ngx_http_shortlink_pg_listen_check;
    pool->listen_check.data = pool;
    pool->listen_check.log = pool->log;
    pool->listen_check.cancelable = 1;

    /* connect from the event loop, not from init_process */
    ngx_add_timer(&pool->listen_retry, 1);

    return NGX_OK;
}


static void
ngx_http_shortlink_pg_listen_retry(ngx_event_t *ev)
{
    ngx_http_shortlink_pg_pool_t  *pool;

    pool = ev->data;

    if (pool->listener.state == NGX_HTTP_SHORTLINK_PG_FREE
        && !pool->destroying && !ngx_exiting && !ngx_quit && !ngx_terminate)
    {
        ngx_http_shortlink_pg_connect(&pool->listener);
    }
}


/* LISTEN answered on a new connection: subscribed */

void
ngx_http_shortlink_pg_listen_ready(ngx_http_shortlink_pg_conn_t *pgc)
{
    ngx_http_shortlink_pg_pool_t  *pool;

    pool = pgc->pool;

    if (pgc->timer.timer_set) {
        ngx_del_timer(&pgc->timer);
    }

    pool->listen_failures = 0;
    pgc->state = NGX_HTTP_SHORTLINK_PG_IDLE;
    pgc->c->idle = 1;

    ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                  "shortlink: listening on \"%s\"", pool->channel);

    if (ngx_http_shortlink_pg_events(pgc, 1, 0) != NGX_OK) {
        ngx_http_shortlink_pg_close(pgc, 1);
        return;
    }

    ngx_add_timer(&pool->listen_check, pool->conf->listen_check);

    pool->listen_state(pool->listen_data, 1);

    /* notifications that came with LISTEN's own reply */
    ngx_http_shortlink_pg_notifies(pgc);
}


/* time to ask the LISTEN connection whether it is still there */

static void
ngx_http_shortlink_pg_listen_check(ngx_event_t *ev)
{
    const char                    *msg;
    ngx_http_shortlink_pg_pool_t  *pool;
    ngx_http_shortlink_pg_conn_t  *pgc;

    pool = ev->data;
    pgc = &pool->listener;

    if (pgc->state != NGX_HTTP_SHORTLINK_PG_IDLE || pool->destroying) {
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "shortlink pg: checking the LISTEN connection");

    pgc->prepared = 0;
    pgc->pipeline = 0;
    pgc->step = NGX_HTTP_SHORTLINK_PG_STEP_QUERY;
    pgc->state = NGX_HTTP_SHORTLINK_PG_BUSY;

    /* still "idle" for nginx: a graceful shutdown closes it at once */

    if (!PQsendQuery(pgc->conn, pool->listen_sql)
        || ngx_http_shortlink_pg_flush(pgc) != NGX_OK)
    {
        msg = PQerrorMessage(pgc->conn);
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "shortlink: could not check the LISTEN connection: %*s",
                      ngx_http_shortlink_pg_msglen(msg), msg);
        ngx_http_shortlink_pg_close(pgc, 1);
        return;
    }

    ngx_add_timer(&pgc->timer, pool->conf->listen_check_timeout);
}


/* the check was answered: alive */

void
ngx_http_shortlink_pg_listen_answered(ngx_http_shortlink_pg_conn_t *pgc)
{
    ngx_http_shortlink_pg_pool_t  *pool;

    pool = pgc->pool;

    if (pgc->timer.timer_set) {
        ngx_del_timer(&pgc->timer);
    }

    pgc->state = NGX_HTTP_SHORTLINK_PG_IDLE;

    if (ngx_http_shortlink_pg_events(pgc, 1, 0) != NGX_OK) {
        ngx_http_shortlink_pg_close(pgc, 1);
        return;
    }

    ngx_add_timer(&pool->listen_check, pool->conf->listen_check);
}


/* the check was not answered in time: as good as lost */

void
ngx_http_shortlink_pg_listen_dead(ngx_http_shortlink_pg_conn_t *pgc)
{
    ngx_http_shortlink_pg_pool_t  *pool;

    pool = pgc->pool;

    if (pool->conf->timeouts) {
        (void) ngx_atomic_fetch_add(pool->conf->timeouts, 1);
    }

    ngx_log_error(NGX_LOG_ERR, pool->log, NGX_ETIMEDOUT,
                  "shortlink: PostgreSQL LISTEN connection did not answer "
                  "within %M ms, reconnecting",
                  pool->conf->listen_check_timeout);

    ngx_http_shortlink_pg_close(pgc, 1);
}


/* the subscription is gone: say so, and come back unless exiting */

void
ngx_http_shortlink_pg_listener_closed(ngx_http_shortlink_pg_pool_t *pool,
    ngx_uint_t failed)
{
    ngx_msec_t  delay;

    if (pool->listen_check.timer_set) {
        ngx_del_timer(&pool->listen_check);
    }

    pool->listen_state(pool->listen_data, 0);

    if (pool->destroying || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    delay = ngx_http_shortlink_pg_delay(failed ? ++pool->listen_failures : 1,
                                        pool->conf->backoff_max);

    ngx_add_timer(&pool->listen_retry, delay);
}


void
ngx_http_shortlink_pg_notifies(ngx_http_shortlink_pg_conn_t *pgc)
{
    PGnotify                      *n;
    ngx_str_t                      payload;
    ngx_http_shortlink_pg_pool_t  *pool;

    pool = pgc->pool;

    while (pgc->conn && (n = PQnotifies(pgc->conn)) != NULL) {
        payload.data = (u_char *) n->extra;
        payload.len = ngx_strlen(n->extra);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "shortlink pg: notification \"%V\"", &payload);

        pool->notify(pool->listen_data, &payload);

        PQfreemem(n);
    }
}


/* the worker exits */

void
ngx_http_shortlink_pg_listen_stop(ngx_http_shortlink_pg_pool_t *pool)
{
    if (pool->listen_retry.timer_set) {
        ngx_del_timer(&pool->listen_retry);
    }

    if (pool->listen_check.timer_set) {
        ngx_del_timer(&pool->listen_check);
    }

    if (pool->listener.state != NGX_HTTP_SHORTLINK_PG_FREE) {
        ngx_http_shortlink_pg_close(&pool->listener, 0);
    }

    if (pool->listen_sql) {
        ngx_free(pool->listen_sql);
        pool->listen_sql = NULL;
    }
}
