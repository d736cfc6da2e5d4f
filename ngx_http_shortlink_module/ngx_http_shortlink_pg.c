
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The per-worker PostgreSQL pool.  This is the only code that touches a
 * libpq connection: it connects with PQconnectStartParams/PQconnectPoll,
 * prepares the lookup, sends queries with PQsendQueryPrepared, flushes with
 * PQflush and reads with PQconsumeInput/PQgetResult, all driven by nginx
 * events on the libpq socket.  It must never call a blocking libpq function.
 *
 * libpq owns its socket: we wrap the fd in an ngx_connection_t to get
 * events, and on close we let PQfinish() close the fd and only give the
 * connection object back to nginx.  Events are level-triggered, so nothing
 * libpq leaves in the kernel buffer can stall a connection.
 *
 * A query is owned by the pool, not by the request that asked for it: a
 * request that goes away detaches itself (data = NULL) and an in-flight
 * query is still read to its end, so the connection stays usable.
 *
 * Besides the pool, each worker may keep one more connection that only
 * LISTENs (cache invalidation and the bloom filter); it reconnects by
 * itself, and tells its owner whenever the subscription goes up or down.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_shortlink_pg.h"


#define NGX_HTTP_SHORTLINK_PG_FREE         0
#define NGX_HTTP_SHORTLINK_PG_CONNECTING   1
#define NGX_HTTP_SHORTLINK_PG_PREPARING    2
#define NGX_HTTP_SHORTLINK_PG_IDLE         3
#define NGX_HTTP_SHORTLINK_PG_BUSY         4

#define NGX_HTTP_SHORTLINK_PG_BACKOFF_MIN  100

#define NGX_HTTP_SHORTLINK_PG_DECLINED                                        \
    ((ngx_http_shortlink_pg_query_t *) -1)


typedef struct {
    ngx_http_shortlink_pg_pool_t     *pool;
    PGconn                           *conn;
    ngx_connection_t                 *c;
    ngx_http_shortlink_pg_query_t    *query;
    ngx_event_t                       timer;       /* connect and prepare */
    ngx_uint_t                        state;
    unsigned                          prepared:1;
    unsigned                          delivered:1;
    unsigned                          listener:1;
} ngx_http_shortlink_pg_conn_t;


struct ngx_http_shortlink_pg_pool_s {
    ngx_http_shortlink_pg_conf_t     *conf;
    ngx_http_shortlink_pg_conn_t     *conns;
    ngx_queue_t                       waiting;
    ngx_event_t                       dispatch;
    ngx_log_t                        *log;
    ngx_msec_t                        retry_at;
    ngx_uint_t                        failures;

    ngx_http_shortlink_pg_conn_t      listener;
    ngx_event_t                       listen_retry;
    ngx_uint_t                        listen_failures;
    const char                       *channel;
    ngx_http_shortlink_pg_notify_pt   notify;
    ngx_http_shortlink_pg_listen_pt   listen_state;
    void                             *listen_data;
    unsigned                          destroying:1;
};


struct ngx_http_shortlink_pg_query_s {
    ngx_queue_t                       queue;       /* in pool->waiting */
    ngx_event_t                       timer;       /* the whole query */
    ngx_http_shortlink_pg_pool_t     *pool;
    ngx_http_shortlink_pg_conn_t     *pgc;         /* NULL while waiting */
    ngx_http_shortlink_pg_handler_pt  handler;
    ngx_http_shortlink_pg_row_pt      row;         /* streamed query */
    void                             *data;        /* NULL once detached */
    const char                       *stmt;        /* prepared, or */
    const char                       *sql;         /* plain SQL */
    int                               nparams;
    const char                       *values[NGX_HTTP_SHORTLINK_PG_MAX_PARAMS];
    unsigned                          timed_out:1;
};


static void ngx_http_shortlink_pg_dispatch_handler(ngx_event_t *ev);
static void ngx_http_shortlink_pg_dispatch(ngx_http_shortlink_pg_pool_t *pool);
static ngx_uint_t ngx_http_shortlink_pg_alive(
    ngx_http_shortlink_pg_pool_t *pool);
static ngx_uint_t ngx_http_shortlink_pg_in_backoff(
    ngx_http_shortlink_pg_pool_t *pool);
static void ngx_http_shortlink_pg_backoff(ngx_http_shortlink_pg_pool_t *pool);
static ngx_msec_t ngx_http_shortlink_pg_delay(ngx_uint_t failures,
    ngx_msec_t max);
static void ngx_http_shortlink_pg_listen_retry(ngx_event_t *ev);
static ngx_http_shortlink_pg_query_t *ngx_http_shortlink_pg_query_alloc(
    ngx_http_shortlink_pg_pool_t *pool, size_t extra, ngx_msec_t timeout);
static ngx_http_shortlink_pg_query_t *ngx_http_shortlink_pg_query_params(
    ngx_http_shortlink_pg_pool_t *pool, ngx_uint_t nparams,
    ngx_str_t *params, ngx_msec_t timeout);
static void ngx_http_shortlink_pg_fail_waiting(
    ngx_http_shortlink_pg_pool_t *pool);

static void ngx_http_shortlink_pg_connect(ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_connect_poll(
    ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_connect_timeout(ngx_event_t *ev);
static void ngx_http_shortlink_pg_prepare(ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_send(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_http_shortlink_pg_query_t *q);
static void ngx_http_shortlink_pg_results(ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_done(ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_close(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_uint_t failed);
static void ngx_http_shortlink_pg_listener_closed(
    ngx_http_shortlink_pg_pool_t *pool, ngx_uint_t failed);
static void ngx_http_shortlink_pg_notifies(ngx_http_shortlink_pg_conn_t *pgc);

static ngx_int_t ngx_http_shortlink_pg_wrap(ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_unwrap(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_uint_t closed);
static ngx_int_t ngx_http_shortlink_pg_events(
    ngx_http_shortlink_pg_conn_t *pgc, ngx_uint_t rd, ngx_uint_t wr);
static ngx_int_t ngx_http_shortlink_pg_flush(
    ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_read_handler(ngx_event_t *rev);
static void ngx_http_shortlink_pg_write_handler(ngx_event_t *wev);

static void ngx_http_shortlink_pg_query_timeout(ngx_event_t *ev);
static void ngx_http_shortlink_pg_deliver(ngx_http_shortlink_pg_query_t *q,
    PGresult *res, ngx_int_t rc);
static void ngx_http_shortlink_pg_finish(ngx_http_shortlink_pg_query_t *q);
static ngx_uint_t ngx_http_shortlink_pg_data_error(PGresult *res);

static void ngx_http_shortlink_pg_notice(void *arg, const char *message);
static size_t ngx_http_shortlink_pg_msglen(const char *message);


static const char  ngx_http_shortlink_pg_lookup_sql[] =
    "SELECT url, redirect_status, expires_epoch, version, forward_query"
    " FROM shortlink.resolve($1)";


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
        pgc->timer.handler = ngx_http_shortlink_pg_connect_timeout;
        pgc->timer.data = pgc;
        pgc->timer.log = cycle->log;
    }

    pool->listener.listener = 1;

    pool->listen_retry.handler = ngx_http_shortlink_pg_listen_retry;
    pool->listen_retry.data = pool;
    pool->listen_retry.log = cycle->log;
    pool->listen_retry.cancelable = 1;

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

    if (pool->listen_retry.timer_set) {
        ngx_del_timer(&pool->listen_retry);
    }

    if (pool->listener.state != NGX_HTTP_SHORTLINK_PG_FREE) {
        ngx_http_shortlink_pg_close(&pool->listener, 0);
    }

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
 * One more connection that only LISTENs on channel.  state(data, 1) when
 * the subscription is confirmed, state(data, 0) whenever it is lost
 * (notifications may have been missed); it reconnects with backoff.
 */

ngx_int_t
ngx_http_shortlink_pg_listen(ngx_http_shortlink_pg_pool_t *pool,
    const char *channel, ngx_http_shortlink_pg_notify_pt notify,
    ngx_http_shortlink_pg_listen_pt state, void *data)
{
    pool->channel = channel;
    pool->notify = notify;
    pool->listen_state = state;
    pool->listen_data = data;

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


/*
 * Configuration time: refuse a conninfo libpq cannot parse, and one that
 * would make libpq resolve a host name (getaddrinfo() blocks the worker,
 * on every connect and reconnect).
 */

char *
ngx_http_shortlink_pg_check_conninfo(ngx_conf_t *cf, ngx_str_t *ci)
{
    char              *err;
    u_char            *p, *last, *comma;
    ngx_str_t          host;
    ngx_addr_t         addr;
    PQconninfoOption  *opts, *o;

    err = NULL;

    opts = PQconninfoParse((const char *) ci->data, &err);

    if (opts == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid PostgreSQL conninfo \"%V\": %*s", ci,
                           err ? ngx_http_shortlink_pg_msglen(err) : 0,
                           err ? err : "");
        if (err) {
            PQfreemem(err);
        }

        return NGX_CONF_ERROR;
    }

    ngx_str_null(&host);

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL || o->val[0] == '\0') {
            continue;
        }

        if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            /* addresses given: host names are only used for checks */
            ngx_str_null(&host);
            break;
        }

        if (ngx_strcmp(o->keyword, "service") == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "PostgreSQL conninfo \"%V\": \"service\" is "
                               "not supported, name the host and database",
                               ci);
            PQconninfoFree(opts);
            return NGX_CONF_ERROR;
        }

        if (ngx_strcmp(o->keyword, "host") == 0) {
            host.data = ngx_pstrdup(cf->pool,
                                    &(ngx_str_t) { ngx_strlen(o->val),
                                                   (u_char *) o->val });
            if (host.data == NULL) {
                PQconninfoFree(opts);
                return NGX_CONF_ERROR;
            }

            host.len = ngx_strlen(o->val);
        }
    }

    PQconninfoFree(opts);

    /* host=a,b,c: each an address or a Unix socket directory */

    p = host.data;
    last = host.data + host.len;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (comma > p && *p != '/' && *p != '@'
            && ngx_parse_addr(cf->pool, &addr, p, comma - p) != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "PostgreSQL conninfo \"%V\" names host "
                               "\"%*s\": libpq would resolve it blocking the "
                               "worker; use an address, or add hostaddr=",
                               ci, (size_t) (comma - p), p);
            return NGX_CONF_ERROR;
        }

        p = comma + 1;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_shortlink_pg_dispatch_handler(ngx_event_t *ev)
{
    ngx_http_shortlink_pg_dispatch(ev->data);
}


static void
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

static void
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


static ngx_msec_t
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


static void
ngx_http_shortlink_pg_connect(ngx_http_shortlink_pg_conn_t *pgc)
{
    ngx_http_shortlink_pg_pool_t  *pool;
    const char                    *keys[3], *values[3];

    pool = pgc->pool;

    keys[0] = "dbname";
    values[0] = (const char *) pool->conf->conninfo.data;
    keys[1] = "fallback_application_name";
    values[1] = "nginx-shortlink";
    keys[2] = NULL;
    values[2] = NULL;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "shortlink pg: connecting");

    /* expand_dbname = 1: the conninfo string is parsed as such */
    pgc->conn = PQconnectStartParams(keys, values, 1);

    if (pgc->conn == NULL) {
        ngx_log_error(NGX_LOG_ALERT, pool->log, 0,
                      "shortlink: PQconnectStartParams() failed: no memory");
        ngx_http_shortlink_pg_backoff(pool);
        return;
    }

    pgc->state = NGX_HTTP_SHORTLINK_PG_CONNECTING;
    pgc->prepared = 0;

    if (PQstatus(pgc->conn) == CONNECTION_BAD) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "shortlink: could not connect to PostgreSQL: %*s",
                      ngx_http_shortlink_pg_msglen(PQerrorMessage(pgc->conn)),
                      PQerrorMessage(pgc->conn));
        ngx_http_shortlink_pg_close(pgc, 1);
        return;
    }

    if (PQsetnonblocking(pgc->conn, 1) == -1
        || ngx_http_shortlink_pg_wrap(pgc) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "shortlink: could not set up PostgreSQL connection");
        ngx_http_shortlink_pg_close(pgc, 1);
        return;
    }

    PQsetNoticeProcessor(pgc->conn, ngx_http_shortlink_pg_notice, pool->log);

    ngx_add_timer(&pgc->timer, pool->conf->connect_timeout);

    /* libpq: start as if PQconnectPoll() had returned PGRES_POLLING_WRITING */

    if (ngx_http_shortlink_pg_events(pgc, 0, 1) != NGX_OK) {
        ngx_http_shortlink_pg_close(pgc, 1);
    }
}


static void
ngx_http_shortlink_pg_connect_poll(ngx_http_shortlink_pg_conn_t *pgc)
{
    ngx_int_t                   rc;
    const char                 *msg;
    PostgresPollingStatusType   status;

    /*
     * libpq may close the socket and open another one inside
     * PQconnectPoll() (next host, SSL or GSS fallback), often under the
     * same fd number, which epoll would then silently forget.  So while
     * connecting, nothing stays registered across a poll: the events are
     * removed while the fd is surely still open, and the socket libpq
     * has afterwards is registered anew.
     */

    ngx_http_shortlink_pg_unwrap(pgc, 0);

    status = PQconnectPoll(pgc->conn);

    if (status != PGRES_POLLING_FAILED
        && ngx_http_shortlink_pg_wrap(pgc) != NGX_OK)
    {
        ngx_http_shortlink_pg_close(pgc, 1);
        return;
    }

    switch (status) {

    case PGRES_POLLING_READING:
        rc = ngx_http_shortlink_pg_events(pgc, 1, 0);
        break;

    case PGRES_POLLING_WRITING:
        rc = ngx_http_shortlink_pg_events(pgc, 0, 1);
        break;

    case PGRES_POLLING_OK:
        ngx_http_shortlink_pg_prepare(pgc);
        return;

    default: /* PGRES_POLLING_FAILED */
        msg = PQerrorMessage(pgc->conn);
        ngx_log_error(NGX_LOG_ERR, pgc->pool->log, 0,
                      "shortlink: could not connect to PostgreSQL: %*s",
                      ngx_http_shortlink_pg_msglen(msg), msg);
        ngx_http_shortlink_pg_close(pgc, 1);
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_shortlink_pg_close(pgc, 1);
    }
}


static void
ngx_http_shortlink_pg_connect_timeout(ngx_event_t *ev)
{
    ngx_http_shortlink_pg_conn_t  *pgc;

    pgc = ev->data;

    if (pgc->pool->conf->timeouts) {
        (void) ngx_atomic_fetch_add(pgc->pool->conf->timeouts, 1);
    }

    ngx_log_error(NGX_LOG_ERR, pgc->pool->log, NGX_ETIMEDOUT,
                  "shortlink: PostgreSQL %s timed out after %M ms",
                  pgc->state == NGX_HTTP_SHORTLINK_PG_CONNECTING
                  ? "connect" : "prepare",
                  pgc->pool->conf->connect_timeout);

    ngx_http_shortlink_pg_close(pgc, 1);
}


static void
ngx_http_shortlink_pg_prepare(ngx_http_shortlink_pg_conn_t *pgc)
{
    int          sent;
    char         sql[128];
    const char  *msg;

    pgc->state = NGX_HTTP_SHORTLINK_PG_PREPARING;

    if (pgc->listener) {
        *ngx_snprintf((u_char *) sql, sizeof(sql) - 1, "LISTEN %s",
                      pgc->pool->channel) = '\0';
        sent = PQsendQuery(pgc->conn, sql);

    } else {
        sent = PQsendPrepare(pgc->conn, NGX_HTTP_SHORTLINK_PG_LOOKUP,
                             ngx_http_shortlink_pg_lookup_sql, 1, NULL);
    }

    if (!sent || ngx_http_shortlink_pg_flush(pgc) != NGX_OK)
    {
        msg = PQerrorMessage(pgc->conn);
        ngx_log_error(NGX_LOG_ERR, pgc->pool->log, 0,
                      "shortlink: could not prepare lookup: %*s",
                      ngx_http_shortlink_pg_msglen(msg), msg);
        ngx_http_shortlink_pg_close(pgc, 1);
    }
}


static void
ngx_http_shortlink_pg_send(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_http_shortlink_pg_query_t *q)
{
    int          sent;
    const char  *msg;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pgc->pool->log, 0,
                   "shortlink pg: sending \"%s\" on connection *%uA",
                   q->stmt ? q->stmt : q->sql, pgc->c->number);

    pgc->query = q;
    pgc->delivered = 0;
    pgc->state = NGX_HTTP_SHORTLINK_PG_BUSY;
    pgc->c->idle = 0;
    q->pgc = pgc;

    if (q->sql) {
        sent = PQsendQueryParams(pgc->conn, q->sql, q->nparams, NULL,
                                 q->values, NULL, NULL, 0)
               && (q->row == NULL || PQsetSingleRowMode(pgc->conn));

    } else {
        sent = PQsendQueryPrepared(pgc->conn, q->stmt, q->nparams, q->values,
                                   NULL, NULL, 0);
    }

    if (!sent || ngx_http_shortlink_pg_flush(pgc) != NGX_OK)
    {
        msg = PQerrorMessage(pgc->conn);
        ngx_log_error(NGX_LOG_ERR, pgc->pool->log, 0,
                      "shortlink: could not send query: %*s",
                      ngx_http_shortlink_pg_msglen(msg), msg);
        ngx_http_shortlink_pg_close(pgc, 1);
    }
}


static void
ngx_http_shortlink_pg_results(ngx_http_shortlink_pg_conn_t *pgc)
{
    const char      *msg;
    PGresult        *res;
    ngx_uint_t       level;
    ExecStatusType   status;

    while (!PQisBusy(pgc->conn)) {

        res = PQgetResult(pgc->conn);

        if (res == NULL) {
            ngx_http_shortlink_pg_done(pgc);
            return;
        }

        status = PQresultStatus(res);

        if (status == PGRES_SINGLE_TUPLE) {
            if (pgc->query->data && !pgc->delivered) {
                pgc->query->row(pgc->query->data, res);
            }

            PQclear(res);
            continue;
        }

        if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
            msg = PQresultErrorMessage(res);
            level = ngx_http_shortlink_pg_data_error(res) ? NGX_LOG_WARN
                                                          : NGX_LOG_ERR;
            ngx_log_error(level, pgc->pool->log, 0,
                          "shortlink: PostgreSQL %s failed: %*s",
                          pgc->state == NGX_HTTP_SHORTLINK_PG_PREPARING
                          ? "prepare" : "query",
                          ngx_http_shortlink_pg_msglen(msg), msg);
        }

        if (pgc->state == NGX_HTTP_SHORTLINK_PG_PREPARING) {
            pgc->prepared = (status == PGRES_COMMAND_OK);

        } else if (!pgc->delivered) {
            pgc->delivered = 1;

            if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
                ngx_http_shortlink_pg_deliver(pgc->query, res, NGX_OK);

            } else {
                ngx_http_shortlink_pg_deliver(pgc->query, res, NGX_ERROR);
            }
        }

        PQclear(res);
    }
}


/* all results of the current command are in: the connection is free */

static void
ngx_http_shortlink_pg_done(ngx_http_shortlink_pg_conn_t *pgc)
{
    ngx_http_shortlink_pg_pool_t   *pool;
    ngx_http_shortlink_pg_query_t  *q;

    pool = pgc->pool;

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

        if (pgc->listener) {
            pool->listen_failures = 0;
            pgc->state = NGX_HTTP_SHORTLINK_PG_IDLE;
            pgc->c->idle = 1;

            ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                          "shortlink: listening on \"%s\"", pool->channel);

            if (ngx_http_shortlink_pg_events(pgc, 1, 0) != NGX_OK) {
                ngx_http_shortlink_pg_close(pgc, 1);
                return;
            }

            pool->listen_state(pool->listen_data, 1);

            /* notifications that came with LISTEN's own reply */
            ngx_http_shortlink_pg_notifies(pgc);
            return;
        }

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
 * failed: the connection broke or timed out (back off before the next
 * attempt); otherwise a deliberate close (shutdown).  Any query on it gets
 * an error.  PQfinish() closes the socket; nginx only gets its connection
 * object back.
 */

static void
ngx_http_shortlink_pg_close(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_uint_t failed)
{
    ngx_http_shortlink_pg_pool_t   *pool;
    ngx_http_shortlink_pg_query_t  *q;

    pool = pgc->pool;
    q = pgc->query;
    pgc->query = NULL;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "shortlink pg: closing connection, failed:%ui", failed);

    if (pgc->timer.timer_set) {
        ngx_del_timer(&pgc->timer);
    }

    if (pgc->conn) {
        PQfinish(pgc->conn);
        pgc->conn = NULL;
    }

    ngx_http_shortlink_pg_unwrap(pgc, 1);

    if (pgc->listener) {
        pgc->state = NGX_HTTP_SHORTLINK_PG_FREE;
        ngx_http_shortlink_pg_listener_closed(pool, failed);
        return;
    }

    pgc->state = NGX_HTTP_SHORTLINK_PG_FREE;

    if (failed) {
        ngx_http_shortlink_pg_backoff(pool);
    }

    if (q) {
        q->pgc = NULL;
        ngx_http_shortlink_pg_deliver(q, NULL, NGX_ERROR);
        ngx_http_shortlink_pg_finish(q);
    }

    if (!ngx_queue_empty(&pool->waiting)) {
        ngx_post_event(&pool->dispatch, &ngx_posted_events);
    }
}


/* the subscription is gone: say so, and come back unless exiting */

static void
ngx_http_shortlink_pg_listener_closed(ngx_http_shortlink_pg_pool_t *pool,
    ngx_uint_t failed)
{
    ngx_msec_t  delay;

    pool->listen_state(pool->listen_data, 0);

    if (pool->destroying || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    delay = ngx_http_shortlink_pg_delay(failed ? ++pool->listen_failures : 1,
                                        pool->conf->backoff_max);

    ngx_add_timer(&pool->listen_retry, delay);
}


static ngx_int_t
ngx_http_shortlink_pg_wrap(ngx_http_shortlink_pg_conn_t *pgc)
{
    int                socket;
    ngx_connection_t  *c;

    socket = PQsocket(pgc->conn);

    if (socket == -1) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(socket, pgc->pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pgc;
    c->read->handler = ngx_http_shortlink_pg_read_handler;
    c->write->handler = ngx_http_shortlink_pg_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    pgc->c = c;

    return NGX_OK;
}


/*
 * The socket itself is libpq's.  closed: libpq closed it already (epoll
 * forgot it with the fd); otherwise it is still open and its events are
 * removed for real.
 */

static void
ngx_http_shortlink_pg_unwrap(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_uint_t closed)
{
    ngx_uint_t         flags;
    ngx_connection_t  *c;

    c = pgc->c;

    if (c == NULL) {
        return;
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    flags = closed ? NGX_CLOSE_EVENT : 0;

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    c->read->closed = 1;
    c->write->closed = 1;

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;
    pgc->c = NULL;
}


/* arm exactly the wanted events, level-triggered */

static ngx_int_t
ngx_http_shortlink_pg_events(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_uint_t rd, ngx_uint_t wr)
{
    ngx_connection_t  *c;

    c = pgc->c;

    if (rd && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!rd && c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (wr && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!wr && c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* PQflush() until libpq has nothing left; wait for writability if needed */

static ngx_int_t
ngx_http_shortlink_pg_flush(ngx_http_shortlink_pg_conn_t *pgc)
{
    int  rc;

    rc = PQflush(pgc->conn);

    if (rc == -1) {
        return NGX_ERROR;
    }

    return ngx_http_shortlink_pg_events(pgc, 1, rc == 1);
}


static void
ngx_http_shortlink_pg_read_handler(ngx_event_t *rev)
{
    const char                    *msg;
    ngx_connection_t              *c;
    ngx_http_shortlink_pg_conn_t  *pgc;

    c = rev->data;
    pgc = c->data;

    if (pgc->state == NGX_HTTP_SHORTLINK_PG_CONNECTING) {
        ngx_http_shortlink_pg_connect_poll(pgc);
        return;
    }

    if (c->close) {
        /* an idle connection and the worker is shutting down */
        ngx_http_shortlink_pg_close(pgc, 0);
        return;
    }

    if (!PQconsumeInput(pgc->conn)) {
        msg = PQerrorMessage(pgc->conn);
        ngx_log_error(NGX_LOG_ERR, pgc->pool->log, 0,
                      "shortlink: PostgreSQL connection lost: %*s",
                      ngx_http_shortlink_pg_msglen(msg), msg);
        ngx_http_shortlink_pg_close(pgc, 1);
        return;
    }

    if (pgc->state == NGX_HTTP_SHORTLINK_PG_IDLE) {
        /* nothing was asked: notifications, or notices libpq handles */
        if (pgc->listener) {
            ngx_http_shortlink_pg_notifies(pgc);
        }

        return;
    }

    if (ngx_http_shortlink_pg_flush(pgc) != NGX_OK) {
        ngx_http_shortlink_pg_close(pgc, 1);
        return;
    }

    ngx_http_shortlink_pg_results(pgc);
}


static void
ngx_http_shortlink_pg_write_handler(ngx_event_t *wev)
{
    ngx_connection_t              *c;
    ngx_http_shortlink_pg_conn_t  *pgc;

    c = wev->data;
    pgc = c->data;

    if (pgc->state == NGX_HTTP_SHORTLINK_PG_CONNECTING) {
        ngx_http_shortlink_pg_connect_poll(pgc);
        return;
    }

    if (ngx_http_shortlink_pg_flush(pgc) != NGX_OK) {
        ngx_http_shortlink_pg_close(pgc, 1);
    }
}


static void
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


/*
 * A query took longer than query_timeout in all (waiting for a connection
 * included).  A connection stuck on a query cannot be cancelled without
 * blocking (PQcancel), so it is closed and reopened later.
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
                      q->pool->conf->query_timeout);

        ngx_queue_remove(&q->queue);
        ngx_http_shortlink_pg_deliver(q, NULL, NGX_ERROR);
        ngx_http_shortlink_pg_finish(q);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, q->pool->log, NGX_ETIMEDOUT,
                  "shortlink: PostgreSQL query timed out after %M ms",
                  q->pool->conf->query_timeout);

    /* a slow query is no outage: no backoff, the next request may retry */
    ngx_http_shortlink_pg_close(q->pgc, 0);
}


static void
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

        } else if (conf->errors && !ngx_http_shortlink_pg_data_error(res)) {
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


static void
ngx_http_shortlink_pg_finish(ngx_http_shortlink_pg_query_t *q)
{
    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    ngx_free(q);
}


static void
ngx_http_shortlink_pg_notice(void *arg, const char *message)
{
    ngx_log_t  *log = arg;

    ngx_log_error(NGX_LOG_NOTICE, log, 0, "shortlink: PostgreSQL: %*s",
                  ngx_http_shortlink_pg_msglen(message), message);
}


/* libpq's messages end in a newline that the error log does not want */

static size_t
ngx_http_shortlink_pg_msglen(const char *message)
{
    size_t  len;

    len = ngx_strlen(message);

    while (len && (message[len - 1] == '\n' || message[len - 1] == ' ')) {
        len--;
    }

    return len;
}


/*
 * An SQL error about the data sent (SQLSTATE class 22 or 23): the
 * caller's to handle, no sign of a backend in trouble.
 */

static ngx_uint_t
ngx_http_shortlink_pg_data_error(PGresult *res)
{
    char  *state;

    if (res == NULL) {
        return 0;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return state != NULL
           && state[0] == '2' && (state[1] == '2' || state[1] == '3');
}
