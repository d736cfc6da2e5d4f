
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The per-worker PostgreSQL pool: asynchronous libpq connections driven by
 * nginx's event loop, and the queries waiting for them.
 */


#ifndef _NGX_HTTP_SHORTLINK_PG_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <libpq-fe.h>


#define NGX_HTTP_SHORTLINK_PG_MAX_PARAMS  8

/* prepared on every connection: $1 = code */
#define NGX_HTTP_SHORTLINK_PG_LOOKUP      "shortlink_lookup"


typedef struct ngx_http_shortlink_pg_pool_s   ngx_http_shortlink_pg_pool_t;
typedef struct ngx_http_shortlink_pg_query_s  ngx_http_shortlink_pg_query_t;


/*
 * Called once per query, from an event handler, never from inside
 * ngx_http_shortlink_pg_query().  rc is NGX_OK with a result whose status is
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK, or NGX_ERROR: with the error
 * result for an SQL error, with res == NULL for a connection failure or a
 * timeout.  res is freed after the call.
 */
typedef void (*ngx_http_shortlink_pg_handler_pt)(void *data, PGresult *res,
    ngx_int_t rc);

/* a streamed query: called for every row (one-row PGRES_SINGLE_TUPLE) */
typedef void (*ngx_http_shortlink_pg_row_pt)(void *data, PGresult *res);

/* LISTEN: a notification's payload, and the subscription going up/down */
typedef void (*ngx_http_shortlink_pg_notify_pt)(void *data,
    ngx_str_t *payload);
typedef void (*ngx_http_shortlink_pg_listen_pt)(void *data, ngx_uint_t up);


typedef struct {
    ngx_str_t                         conninfo;
    ngx_uint_t                        size;
    ngx_msec_t                        connect_timeout;
    ngx_msec_t                        query_timeout;
    ngx_msec_t                        backoff_max;

    /* counters shared by all workers (metrics), NULL: not counted */
    ngx_atomic_t                     *errors;      /* failed, not timed out */
    ngx_atomic_t                     *timeouts;
} ngx_http_shortlink_pg_conf_t;


ngx_http_shortlink_pg_pool_t *ngx_http_shortlink_pg_pool_create(
    ngx_cycle_t *cycle, ngx_http_shortlink_pg_conf_t *conf);
void ngx_http_shortlink_pg_pool_destroy(ngx_http_shortlink_pg_pool_t *pool);

ngx_int_t ngx_http_shortlink_pg_query(ngx_http_shortlink_pg_pool_t *pool,
    const char *stmt, ngx_uint_t nparams, ngx_str_t *params,
    ngx_http_shortlink_pg_handler_pt handler, void *data,
    ngx_http_shortlink_pg_query_t **qp);
ngx_int_t ngx_http_shortlink_pg_exec(ngx_http_shortlink_pg_pool_t *pool,
    const char *sql, ngx_uint_t nparams, ngx_str_t *params,
    ngx_msec_t timeout, ngx_http_shortlink_pg_handler_pt handler,
    void *data, ngx_http_shortlink_pg_query_t **qp);
ngx_int_t ngx_http_shortlink_pg_stream(ngx_http_shortlink_pg_pool_t *pool,
    const char *sql, ngx_msec_t timeout, ngx_http_shortlink_pg_row_pt row,
    ngx_http_shortlink_pg_handler_pt handler, void *data);
void ngx_http_shortlink_pg_detach(ngx_http_shortlink_pg_query_t *q);
ngx_int_t ngx_http_shortlink_pg_listen(ngx_http_shortlink_pg_pool_t *pool,
    const char *channel, ngx_http_shortlink_pg_notify_pt notify,
    ngx_http_shortlink_pg_listen_pt state, void *data);
void ngx_http_shortlink_pg_stats(ngx_http_shortlink_pg_pool_t *pool,
    ngx_uint_t *open, ngx_uint_t *busy);
time_t ngx_http_shortlink_pg_retry_after(ngx_http_shortlink_pg_pool_t *pool);

char *ngx_http_shortlink_pg_check_conninfo(ngx_conf_t *cf, ngx_str_t *ci);


#endif /* _NGX_HTTP_SHORTLINK_PG_H_INCLUDED_ */
