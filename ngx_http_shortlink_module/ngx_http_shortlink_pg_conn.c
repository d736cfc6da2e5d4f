
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * One connection of the PostgreSQL pool: connecting with
 * PQconnectStartParams/PQconnectPoll, preparing the lookup, sending a
 * query, closing, and the nginx events on libpq's socket.  It must never
 * call a blocking libpq function.
 *
 * libpq owns its socket: we wrap the fd in an ngx_connection_t to get
 * events, and on close we let PQfinish() close the fd and only give the
 * connection object back to nginx.  Events are level-triggered, so nothing
 * libpq leaves in the kernel buffer can stall a connection.
 *
 * statement_timeout.  nginx gives up on a query after its timeout and
 * closes the connection, but closing does not stop the statement: it runs
 * to its end and commits (an API create answered 503 had been made).  So
 * PostgreSQL is told the same deadline, slightly shorter (see
 * ngx_http_shortlink_pg_statement_timeout()), and cancels the statement
 * itself: nginx then gets SQLSTATE 57014, knows nothing was committed and
 * keeps the connection.  How, at one round trip per query:
 *
 *   - the lookup (the prepared statement, the hot path, a read) runs under
 *     the connection's own statement_timeout, set once in the startup
 *     packet (options=-c statement_timeout=..., from query_timeout): no
 *     statement is added to it;
 *   - every plain SQL query (API, click flush, health, bloom build) has a
 *     timeout of its own, and what is left of it when a connection takes
 *     it: it is sent in libpq's pipeline mode as
 *     "SELECT set_config('statement_timeout', $1, true)", the query and
 *     one Sync.  The two statements travel and are answered together (one
 *     round trip), run in one implicit transaction, and the setting is
 *     local to it: the connection is back to its own when the Sync
 *     arrives.
 *
 * A per-connection setting alone cannot serve calls whose timeouts differ
 * by 100 times; a SET per query outside a pipeline would cost a second
 * round trip; PQcancel() blocks, and closing the connection is all nginx
 * can do on its side.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_shortlink_pg_conn.h"


static void ngx_http_shortlink_pg_connect_poll(
    ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_prepare(ngx_http_shortlink_pg_conn_t *pgc);
static ngx_int_t ngx_http_shortlink_pg_wrap(ngx_http_shortlink_pg_conn_t *pgc);
static void ngx_http_shortlink_pg_unwrap(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_uint_t closed);
static void ngx_http_shortlink_pg_read_handler(ngx_event_t *rev);
static void ngx_http_shortlink_pg_write_handler(ngx_event_t *wev);
static void ngx_http_shortlink_pg_notice(void *arg, const char *message);


static const char  ngx_http_shortlink_pg_lookup_sql[] =
    "SELECT url, redirect_status, expires_epoch, version, forward_query,"
    " rules, password FROM shortlink.resolve($1)";

static const char  ngx_http_shortlink_pg_timeout_sql[] =
    "SELECT pg_catalog.set_config('statement_timeout', $1, true)";


void
ngx_http_shortlink_pg_connect(ngx_http_shortlink_pg_conn_t *pgc)
{
    ngx_http_shortlink_pg_pool_t  *pool;

    pool = pgc->pool;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "shortlink pg: connecting");

    /* every parameter given: see ngx_http_shortlink_pg_params() */
    pgc->conn = PQconnectStartParams(pool->keys, pool->values, 0);

    if (pgc->conn == NULL) {
        ngx_log_error(NGX_LOG_ALERT, pool->log, 0,
                      "shortlink: PQconnectStartParams() failed: no memory");
        ngx_http_shortlink_pg_backoff(pool);
        return;
    }

    pgc->state = NGX_HTTP_SHORTLINK_PG_CONNECTING;
    pgc->prepared = 0;
    pgc->pipeline = 0;

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


/* connecting, preparing, or the LISTEN connection's check took too long */

void
ngx_http_shortlink_pg_conn_timeout(ngx_event_t *ev)
{
    ngx_http_shortlink_pg_conn_t  *pgc;

    pgc = ev->data;

    if (pgc->state == NGX_HTTP_SHORTLINK_PG_BUSY) {
        ngx_http_shortlink_pg_listen_dead(pgc);
        return;
    }

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
    const char  *msg;

    pgc->state = NGX_HTTP_SHORTLINK_PG_PREPARING;
    pgc->step = NGX_HTTP_SHORTLINK_PG_STEP_QUERY;

    if (pgc->listener) {
        sent = PQsendQuery(pgc->conn, pgc->pool->listen_sql);

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


void
ngx_http_shortlink_pg_send(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_http_shortlink_pg_query_t *q)
{
    int              sent;
    u_char           timeout[NGX_INT_T_LEN + 1];
    const char      *msg, *set[1];
    ngx_msec_int_t   left;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pgc->pool->log, 0,
                   "shortlink pg: sending \"%s\" on connection *%uA",
                   q->stmt ? q->stmt : q->sql, pgc->c->number);

    pgc->query = q;
    pgc->delivered = 0;
    pgc->state = NGX_HTTP_SHORTLINK_PG_BUSY;
    pgc->c->idle = 0;
    q->pgc = pgc;

    if (q->stmt) {
        pgc->pipeline = 0;
        pgc->step = NGX_HTTP_SHORTLINK_PG_STEP_QUERY;

        sent = PQsendQueryPrepared(pgc->conn, q->stmt, q->nparams, q->values,
                                   NULL, NULL, 0);

    } else {
        /* what is left of the query's time, waiting included */
        left = (ngx_msec_int_t) (q->timer.timer.key - ngx_current_msec);

        *ngx_sprintf(timeout, "%M",
                     ngx_http_shortlink_pg_statement_timeout(
                         left > 0 ? (ngx_msec_t) left : 1)) = '\0';
        set[0] = (const char *) timeout;

        pgc->pipeline = 1;
        pgc->step = NGX_HTTP_SHORTLINK_PG_STEP_SET;

        sent = PQenterPipelineMode(pgc->conn)
               && PQsendQueryParams(pgc->conn,
                                    ngx_http_shortlink_pg_timeout_sql, 1,
                                    NULL, set, NULL, NULL, 0)
               && PQsendQueryParams(pgc->conn, q->sql, q->nparams, NULL,
                                    q->values, NULL, NULL, 0)
               && PQpipelineSync(pgc->conn);
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


/*
 * The statement_timeout PostgreSQL is given for a query nginx waits for
 * "left" ms: a little shorter (a tenth, at most 100 ms), so that in the
 * usual case PostgreSQL cancels it and says so before nginx gives up and
 * closes the connection; never 0, which would mean "no limit".
 */

ngx_msec_t
ngx_http_shortlink_pg_statement_timeout(ngx_msec_t left)
{
    ngx_msec_t  t;

    t = left - ngx_min(left / 10, 100);

    return t ? t : 1;
}


/*
 * failed: the connection broke or timed out (back off before the next
 * attempt); otherwise a deliberate close (shutdown, or a query nginx gave
 * up on).  Any query on it gets an error.  PQfinish() closes the socket;
 * nginx only gets its connection object back.
 */

void
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

    pgc->pipeline = 0;

    ngx_http_shortlink_pg_unwrap(pgc, 1);

    pgc->state = NGX_HTTP_SHORTLINK_PG_FREE;

    if (pgc->listener) {
        ngx_http_shortlink_pg_listener_closed(pool, failed);
        return;
    }

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

ngx_int_t
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

ngx_int_t
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

    if (pgc->state != NGX_HTTP_SHORTLINK_PG_IDLE) {

        if (ngx_http_shortlink_pg_flush(pgc) != NGX_OK) {
            ngx_http_shortlink_pg_close(pgc, 1);
            return;
        }

        ngx_http_shortlink_pg_results(pgc);
    }

    /* otherwise nothing was asked: notifications, or notices libpq handles */

    if (pgc->listener) {
        ngx_http_shortlink_pg_notifies(pgc);
    }
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
ngx_http_shortlink_pg_notice(void *arg, const char *message)
{
    ngx_log_t  *log = arg;

    ngx_log_error(NGX_LOG_NOTICE, log, 0, "shortlink: PostgreSQL: %*s",
                  ngx_http_shortlink_pg_msglen(message), message);
}
