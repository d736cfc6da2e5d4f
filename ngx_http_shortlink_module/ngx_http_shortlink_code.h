
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Short codes: what a code may look like and where it is found in a URI.
 * Pure functions, no I/O, no allocation.
 */


#ifndef _NGX_HTTP_SHORTLINK_CODE_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_CODE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* the same rule as the links_code_format constraint in sql/001_links.sql */
#define NGX_HTTP_SHORTLINK_CODE_MAX_LEN  64

/* generated codes: 4 to 16 base62 digits */
#define NGX_HTTP_SHORTLINK_CODE_GEN_MIN  4
#define NGX_HTTP_SHORTLINK_CODE_GEN_MAX  16


ngx_uint_t ngx_http_shortlink_code_valid(u_char *code, size_t len);
void ngx_http_shortlink_code_from_uri(ngx_str_t *uri, ngx_str_t *code);
void ngx_http_shortlink_code_generate(u_char *dst, size_t len, u_char *url,
    size_t url_len, uint32_t salt);


#endif /* _NGX_HTTP_SHORTLINK_CODE_H_INCLUDED_ */
