
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The source marker: a visit to /{code}?_sls=<source> (a QR code's scan,
 * a profile page's link) is recorded with the click field source=<source>,
 * and "_sls" never travels on to the target.  <source> is 1-16 of [a-z];
 * any other value is ignored (still stripped), never an error.  The first
 * valid one counts.  Without "_sls" in the query nothing is allocated and
 * the query string is left as it is.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_source.h"


#define NGX_HTTP_SHORTLINK_SOURCE_MAX  16


static ngx_uint_t ngx_http_shortlink_source_is_marker(u_char *p,
    u_char *end);


ngx_int_t
ngx_http_shortlink_source(ngx_http_request_t *r, ngx_str_t *args,
    ngx_str_t *source)
{
    u_char      *p, *last, *amp, *v, *d;
    ngx_uint_t   found;

    *args = r->args;
    ngx_str_null(source);

    if (r->args.len < sizeof("_sls") - 1) {
        return NGX_OK;
    }

    p = r->args.data;
    last = p + r->args.len;
    found = 0;

    /* first pass, no allocation: is there a marker at all? */

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if (ngx_http_shortlink_source_is_marker(p, amp)) {
            found = 1;

            v = p + sizeof("_sls") - 1;

            if (source->len == 0 && v < amp && *v == '=') {
                v++;

                if (amp - v >= 1 && amp - v <= NGX_HTTP_SHORTLINK_SOURCE_MAX) {
                    for (d = v; d < amp && *d >= 'a' && *d <= 'z'; d++) {
                        /* void */
                    }

                    if (d == amp) {
                        source->data = v;
                        source->len = amp - v;
                    }
                }
            }
        }

        p = amp + 1;
    }

    if (!found) {
        return NGX_OK;
    }

    /* second pass: the query string without any "_sls" parameter */

    args->data = ngx_pnalloc(r->pool, r->args.len);
    if (args->data == NULL) {
        return NGX_ERROR;
    }

    d = args->data;
    p = r->args.data;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if (!ngx_http_shortlink_source_is_marker(p, amp) && amp > p) {
            if (d != args->data) {
                *d++ = '&';
            }

            d = ngx_cpymem(d, p, amp - p);
        }

        p = amp + 1;
    }

    args->len = d - args->data;

    return NGX_OK;
}


/* "_sls" or "_sls=..." between p and end */

static ngx_uint_t
ngx_http_shortlink_source_is_marker(u_char *p, u_char *end)
{
    if (end - p < (ssize_t) (sizeof("_sls") - 1)
        || ngx_strncmp(p, "_sls", sizeof("_sls") - 1) != 0)
    {
        return 0;
    }

    p += sizeof("_sls") - 1;

    return p == end || *p == '=';
}
