
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
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK, or NGX_ERROR:
 *
 *   res != NULL: PostgreSQL refused the statement (PGRES_FATAL_ERROR);
 *       PQresultErrorField(res, PG_DIAG_SQLSTATE) says why.  Class 22
 *       (data exception) and 23 (integrity constraint) are logged at
 *       "warn" and not counted as backend errors: what to do with the
 *       data is the caller's business.  57014 (cancelled by the
 *       statement_timeout the pool sets) is counted and logged as a
 *       timeout; the statement did not commit.
 *   res == NULL: no answer (connection failure, nginx-side timeout,
 *       PostgreSQL unreachable); a write may or may not have committed.
 *
 * res is freed after the call: the handler must not keep it.
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
    ngx_msec_t                        listen_check;   /* LISTEN liveness */
    ngx_msec_t                        listen_check_timeout;

    /* parsed from conninfo at configuration time, NUL-terminated */
    ngx_array_t                      *given;          /* of ngx_keyval_t */

    /* the workers' user and home directory, looked up by the master */
    u_char                           *user;
    u_char                           *home;

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

char *ngx_http_shortlink_pg_conninfo(ngx_conf_t *cf,
    ngx_http_shortlink_pg_conf_t *conf, ngx_str_t *ci);
ngx_int_t ngx_http_shortlink_pg_init_module(ngx_cycle_t *cycle,
    ngx_http_shortlink_pg_conf_t *conf);


#endif /* _NGX_HTTP_SHORTLINK_PG_H_INCLUDED_ */
