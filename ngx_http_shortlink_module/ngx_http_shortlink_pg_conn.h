
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Inside the PostgreSQL pool: a connection, the pool and a query, shared
 * by the pool (ngx_http_shortlink_pg.c), the connections' life and events
 * (ngx_http_shortlink_pg_conn.c), the LISTEN connection
 * (ngx_http_shortlink_pg_listen.c) and the connection parameters
 * (ngx_http_shortlink_pg_conninfo.c).  Nothing outside these files.
 */


#ifndef _NGX_HTTP_SHORTLINK_PG_CONN_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_PG_CONN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_shortlink_pg.h"


#define NGX_HTTP_SHORTLINK_PG_FREE         0
#define NGX_HTTP_SHORTLINK_PG_CONNECTING   1
#define NGX_HTTP_SHORTLINK_PG_PREPARING    2
#define NGX_HTTP_SHORTLINK_PG_IDLE         3
#define NGX_HTTP_SHORTLINK_PG_BUSY         4

/* where a pipelined query is: set_config()'s result, the query's, Sync */
#define NGX_HTTP_SHORTLINK_PG_STEP_SET     0
#define NGX_HTTP_SHORTLINK_PG_STEP_QUERY   1
#define NGX_HTTP_SHORTLINK_PG_STEP_SYNC    2

#define NGX_HTTP_SHORTLINK_PG_BACKOFF_MIN  100

/* SQLSTATE 57014: the statement was cancelled (our statement_timeout) */
#define NGX_HTTP_SHORTLINK_PG_CANCELED     "57014"


typedef struct {
    ngx_http_shortlink_pg_pool_t     *pool;
    PGconn                           *conn;
    ngx_connection_t                 *c;
    ngx_http_shortlink_pg_query_t    *query;
    ngx_event_t                       timer;       /* connect, prepare,
                                                      LISTEN check */
    ngx_uint_t                        state;
    ngx_uint_t                        step;
    unsigned                          prepared:1;
    unsigned                          delivered:1;
    unsigned                          listener:1;
    unsigned                          pipeline:1;
} ngx_http_shortlink_pg_conn_t;


struct ngx_http_shortlink_pg_pool_s {
    ngx_http_shortlink_pg_conf_t     *conf;
    ngx_http_shortlink_pg_conn_t     *conns;
    ngx_queue_t                       waiting;
    ngx_event_t                       dispatch;
    ngx_log_t                        *log;
    ngx_msec_t                        retry_at;
    ngx_uint_t                        failures;

    /* PQconnectStartParams()'s, built for this worker */
    const char                      **keys;
    const char                      **values;

    ngx_http_shortlink_pg_conn_t      listener;
    ngx_event_t                       listen_retry;
    ngx_event_t                       listen_check;
    ngx_uint_t                        listen_failures;
    const char                       *channel;
    char                             *listen_sql;
    ngx_http_shortlink_pg_notify_pt   notify;
    ngx_http_shortlink_pg_listen_pt   listen_state;
    void                             *listen_data;
    unsigned                          destroying:1;
};


struct ngx_http_shortlink_pg_query_s {
    ngx_queue_t                       queue;       /* in pool->waiting */
    ngx_event_t                       timer;       /* the whole query */
    ngx_msec_t                        timeout;
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
    unsigned                          data_error:1;
};


/* ngx_http_shortlink_pg.c */
void ngx_http_shortlink_pg_dispatch(ngx_http_shortlink_pg_pool_t *pool);
void ngx_http_shortlink_pg_backoff(ngx_http_shortlink_pg_pool_t *pool);
ngx_msec_t ngx_http_shortlink_pg_delay(ngx_uint_t failures, ngx_msec_t max);
void ngx_http_shortlink_pg_results(ngx_http_shortlink_pg_conn_t *pgc);
void ngx_http_shortlink_pg_deliver(ngx_http_shortlink_pg_query_t *q,
    PGresult *res, ngx_int_t rc);
void ngx_http_shortlink_pg_finish(ngx_http_shortlink_pg_query_t *q);
size_t ngx_http_shortlink_pg_msglen(const char *message);

/* ngx_http_shortlink_pg_conn.c */
void ngx_http_shortlink_pg_connect(ngx_http_shortlink_pg_conn_t *pgc);
void ngx_http_shortlink_pg_send(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_http_shortlink_pg_query_t *q);
void ngx_http_shortlink_pg_close(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_uint_t failed);
ngx_int_t ngx_http_shortlink_pg_events(ngx_http_shortlink_pg_conn_t *pgc,
    ngx_uint_t rd, ngx_uint_t wr);
ngx_int_t ngx_http_shortlink_pg_flush(ngx_http_shortlink_pg_conn_t *pgc);
void ngx_http_shortlink_pg_conn_timeout(ngx_event_t *ev);
ngx_msec_t ngx_http_shortlink_pg_statement_timeout(ngx_msec_t left);

/* ngx_http_shortlink_pg_listen.c */
void ngx_http_shortlink_pg_listen_ready(ngx_http_shortlink_pg_conn_t *pgc);
void ngx_http_shortlink_pg_listen_answered(
    ngx_http_shortlink_pg_conn_t *pgc);
void ngx_http_shortlink_pg_listen_dead(ngx_http_shortlink_pg_conn_t *pgc);
void ngx_http_shortlink_pg_listener_closed(ngx_http_shortlink_pg_pool_t *pool,
    ngx_uint_t failed);
void ngx_http_shortlink_pg_notifies(ngx_http_shortlink_pg_conn_t *pgc);
void ngx_http_shortlink_pg_listen_stop(ngx_http_shortlink_pg_pool_t *pool);

/* ngx_http_shortlink_pg_conninfo.c */
ngx_int_t ngx_http_shortlink_pg_params(ngx_http_shortlink_pg_pool_t *pool,
    ngx_pool_t *p);


#endif /* _NGX_HTTP_SHORTLINK_PG_CONN_H_INCLUDED_ */
