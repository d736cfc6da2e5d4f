
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Links: validity of a target and the Redis value format
 *
 *     "<status> <expires> <forward> <url>"   e.g. "302 0 0 https://x.org/"
 *
 * where expires is the link's expires_at as a Unix time, 0 for never, and
 * forward is 1 when the visitor's query string goes to the target.
 * Every value read back is validated as strictly as a database row: Redis
 * is a cache anyone on the network segment might write to.  Pure functions:
 * no I/O, no allocation.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_link.h"


/* the links_url_* and links_redirect_status constraints, checked again */

ngx_uint_t
ngx_http_shortlink_link_valid(ngx_http_shortlink_link_t *link)
{
    u_char  *p, *last;

    switch (link->status) {
    case 301:
    case 302:
    case 307:
    case 308:
        break;
    default:
        return 0;
    }

    if (link->url.len > NGX_HTTP_SHORTLINK_URL_MAX_LEN) {
        return 0;
    }

    if (!(link->url.len > 7
          && ngx_strncasecmp(link->url.data, (u_char *) "http://", 7) == 0)
        && !(link->url.len > 8
             && ngx_strncasecmp(link->url.data, (u_char *) "https://", 8)
                == 0))
    {
        return 0;
    }

    last = link->url.data + link->url.len;

    for (p = link->url.data; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


ngx_uint_t
ngx_http_shortlink_link_expired(ngx_http_shortlink_link_t *link, time_t now)
{
    return link->expires != 0 && link->expires <= now;
}


size_t
ngx_http_shortlink_link_encoded_len(ngx_http_shortlink_link_t *link)
{
    return sizeof("302 ") - 1 + NGX_TIME_T_LEN + sizeof(" 0 ") - 1
           + link->url.len;
}


u_char *
ngx_http_shortlink_link_encode(u_char *p, ngx_http_shortlink_link_t *link)
{
    return ngx_sprintf(p, "%ui %T %ui %V", link->status, link->expires,
                       link->forward ? 1 : 0, &link->url);
}


/* link->url points into value; NGX_ERROR for anything malformed */

ngx_int_t
ngx_http_shortlink_link_decode(ngx_str_t *value,
    ngx_http_shortlink_link_t *link)
{
    u_char     *p, *last, *sp;
    ngx_int_t   n;

    p = value->data;
    last = p + value->len;

    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL) {
        return NGX_ERROR;
    }

    n = ngx_atoi(p, sp - p);
    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    link->status = (ngx_uint_t) n;

    p = sp + 1;

    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL) {
        return NGX_ERROR;
    }

    link->expires = ngx_atotm(p, sp - p);
    if (link->expires == NGX_ERROR) {
        return NGX_ERROR;
    }

    p = sp + 1;

    if (last - p < 2 || (p[0] != '0' && p[0] != '1') || p[1] != ' ') {
        return NGX_ERROR;
    }

    link->forward = (p[0] == '1');
    sp = p + 1;

    link->url.data = sp + 1;
    link->url.len = last - link->url.data;
    link->version = 0;

    if (!ngx_http_shortlink_link_valid(link)) {
        return NGX_ERROR;
    }

    return NGX_OK;
}
