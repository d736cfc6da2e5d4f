
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Links: validity of a target and the Redis value format
 *
 *     "v<version> <status> <expires> <forward> <url><rules>"
 *                                         e.g. "v3 302 0 0 https://x.org/"
 *     "v<version> -"                      a tombstone: changed, ask again
 *
 * where version is the row's version (links.version), expires the link's
 * expires_at as a Unix time, 0 for never, and forward holds flags: 1 when
 * the visitor's query string goes to the target, plus 2 when the link has
 * a password (values before passwords existed have 0 or 1).  <rules> is
 * empty for a link without redirect rules (the format of every value
 * written before rules existed, so those still decode), else the rules'
 * encoding (ngx_http_shortlink_rules.c), which starts with a LF: a URL
 * never holds one.  Redis keeps a value only if no newer version is stored
 * (ngx_http_shortlink_redis.c), and a change leaves a tombstone of its
 * version, so a lookup that read the old row before the change cannot put
 * it back afterwards.
 * Every value read back is validated as strictly as a database row: Redis
 * is a cache anyone on the network segment might write to.  Pure functions:
 * no I/O, no allocation.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_link.h"
#include "ngx_http_shortlink_rules.h"


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
    case NGX_HTTP_SHORTLINK_GONE:
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

    if (link->rules.len
        && ngx_http_shortlink_rules_valid(&link->rules) != NGX_OK)
    {
        return 0;
    }

    return 1;
}


/* the bytes of a link's strings, for a copy: url, then rules */

size_t
ngx_http_shortlink_link_data_len(ngx_http_shortlink_link_t *link)
{
    return link->url.len + link->rules.len;
}


/*
 * Copies url and rules to buf (link_data_len() bytes) and points the link
 * there; returns the end of the copy.
 */

u_char *
ngx_http_shortlink_link_move(ngx_http_shortlink_link_t *link, u_char *buf)
{
    u_char  *p;

    p = ngx_cpymem(buf, link->url.data, link->url.len);
    link->url.data = buf;

    if (link->rules.len) {
        link->rules.data = ngx_cpymem(p, link->rules.data, link->rules.len);
        p = link->rules.data;
        link->rules.data -= link->rules.len;

    } else {
        link->rules.data = NULL;
    }

    return p;
}


ngx_uint_t
ngx_http_shortlink_link_expired(ngx_http_shortlink_link_t *link, time_t now)
{
    return link->expires != 0 && link->expires <= now;
}


size_t
ngx_http_shortlink_link_encoded_len(ngx_http_shortlink_link_t *link)
{
    return sizeof("v ") - 1 + NGX_INT64_LEN + sizeof("302 ") - 1
           + NGX_TIME_T_LEN + sizeof(" 0 ") - 1 + link->url.len
           + link->rules.len;
}


u_char *
ngx_http_shortlink_link_encode(u_char *p, ngx_http_shortlink_link_t *link)
{
    p = ngx_sprintf(p, "v%L %ui %T %ui %V", link->version, link->status,
                    link->expires,
                    (link->forward ? 1 : 0) + (link->password ? 2 : 0),
                    &link->url);

    return ngx_cpymem(p, link->rules.data, link->rules.len);
}


/*
 * link->url points into value.  NGX_DECLINED for a tombstone (link->version
 * is set), NGX_ERROR for anything malformed, values of an older format
 * included.
 */

ngx_int_t
ngx_http_shortlink_link_decode(ngx_str_t *value,
    ngx_http_shortlink_link_t *link)
{
    u_char     *p, *last, *sp;
    off_t       version;
    ngx_int_t   n;

    p = value->data;
    last = p + value->len;

    if (p == last || *p != 'v') {
        return NGX_ERROR;
    }

    p++;

    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL) {
        return NGX_ERROR;
    }

    version = ngx_atoof(p, sp - p);
    if (version == NGX_ERROR) {
        return NGX_ERROR;
    }

    link->version = (int64_t) version;

    p = sp + 1;

    if (last - p == 1 && *p == '-') {
        return NGX_DECLINED;
    }

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

    if (last - p < 2 || p[0] < '0' || p[0] > '3' || p[1] != ' ') {
        return NGX_ERROR;
    }

    link->forward = (p[0] - '0') & 1;
    link->password = ((p[0] - '0') & 2) ? 1 : 0;
    sp = p + 1;

    link->url.data = sp + 1;

    /* the rules, if any, start at the first LF */

    p = ngx_strlchr(link->url.data, last, LF);

    if (p) {
        link->url.len = p - link->url.data;
        link->rules.data = p;
        link->rules.len = last - p;

    } else {
        link->url.len = last - link->url.data;
        ngx_str_null(&link->rules);
    }

    if (!ngx_http_shortlink_link_valid(link)) {
        return NGX_ERROR;
    }

    return NGX_OK;
}
