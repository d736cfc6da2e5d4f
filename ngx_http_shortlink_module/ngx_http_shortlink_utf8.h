
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Strict UTF-8 (RFC 3629): the one check for every byte string a request
 * hands to PostgreSQL or shared memory.
 */


#ifndef _NGX_HTTP_SHORTLINK_UTF8_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_UTF8_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_SHORTLINK_UTF8_INVALID  0xffffffff


uint32_t ngx_http_shortlink_utf8_next(u_char **p, u_char *last);
ngx_uint_t ngx_http_shortlink_utf8_valid(u_char *p, size_t len);
size_t ngx_http_shortlink_utf8_clean(u_char *dst, u_char *src, size_t len,
    size_t max);


#endif /* _NGX_HTTP_SHORTLINK_UTF8_H_INCLUDED_ */
