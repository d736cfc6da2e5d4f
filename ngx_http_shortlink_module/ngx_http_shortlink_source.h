
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The "_sls" source marker of a redirect's query string.
 */


#ifndef _NGX_HTTP_SHORTLINK_SOURCE_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_SOURCE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * args: the request's query string without "_sls" parameters (r->args
 * itself when there are none); source: the first valid marker's value
 * (pointing into r->args), empty when there is none.  NGX_ERROR only when
 * an allocation fails.
 */
ngx_int_t ngx_http_shortlink_source(ngx_http_request_t *r, ngx_str_t *args,
    ngx_str_t *source);


#endif /* _NGX_HTTP_SHORTLINK_SOURCE_H_INCLUDED_ */
