
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The language of a click: the first tag of Accept-Language.
 */


#ifndef _NGX_HTTP_SHORTLINK_LANG_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_LANG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* the longest tag kept (RFC 5646 section 4.4.1 suggests 35) */
#define NGX_HTTP_SHORTLINK_LANG_MAX  35


size_t ngx_http_shortlink_lang_first(u_char *dst, u_char *src, size_t len);


#endif /* _NGX_HTTP_SHORTLINK_LANG_H_INCLUDED_ */
