
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The click flusher: a timer in every worker, one flush at a time across
 * workers, batches written to PostgreSQL.
 */


#ifndef _NGX_HTTP_SHORTLINK_FLUSH_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_FLUSH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct ngx_http_shortlink_flush_s  ngx_http_shortlink_flush_t;


typedef struct {
    ngx_msec_t                    interval;
    ngx_uint_t                    batch;
    ngx_msec_t                    timeout;
    ngx_uint_t                    parallel;  /* sub-batches sent at once */
} ngx_http_shortlink_flush_conf_t;


/* parallel= at most; each sub-batch takes a connection of the pool */
#define NGX_HTTP_SHORTLINK_FLUSH_PARALLEL_MAX  16

/* the parameters of shortlink.record_clicks() */
#define NGX_HTTP_SHORTLINK_FLUSH_COLUMNS       8


ngx_int_t ngx_http_shortlink_flush_params(u_char **recs, ngx_uint_t n,
    ngx_str_t *params, ngx_log_t *log);
ngx_int_t ngx_http_shortlink_flush_reject_params(u_char *rec, u_char *state,
    u_char *msg, ngx_str_t *params, ngx_log_t *log);


#endif /* _NGX_HTTP_SHORTLINK_FLUSH_H_INCLUDED_ */
