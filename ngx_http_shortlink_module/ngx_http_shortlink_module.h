
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Types shared by the module's files: configuration at each level and the
 * per-request context.  Nothing here holds state of its own.
 */


#ifndef _NGX_HTTP_SHORTLINK_MODULE_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_pg.h"


typedef struct {
    ngx_http_shortlink_pg_conf_t     pg;
    ngx_http_shortlink_pg_pool_t    *pg_pool;    /* per worker */
    ngx_flag_t                       used;       /* a location has shortlink */
} ngx_http_shortlink_main_conf_t;


typedef struct {
    ngx_flag_t                       enable;
    ngx_http_complex_value_t        *code;       /* NULL: last URI segment */
} ngx_http_shortlink_loc_conf_t;


typedef struct {
    ngx_http_request_t              *request;
    ngx_str_t                        code;
    ngx_str_t                        url;
    ngx_uint_t                       status;
    ngx_http_shortlink_pg_query_t   *query;      /* while suspended */
} ngx_http_shortlink_ctx_t;


ngx_int_t ngx_http_shortlink_handler(ngx_http_request_t *r);


extern ngx_module_t  ngx_http_shortlink_module;


#endif /* _NGX_HTTP_SHORTLINK_MODULE_H_INCLUDED_ */
