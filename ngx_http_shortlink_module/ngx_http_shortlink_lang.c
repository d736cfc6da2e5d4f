
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The first language tag of an Accept-Language value, by position: a
 * click's language is what the browser lists first, its q-value is not
 * looked at ("de;q=0.1, fr" gives "de").  A pure function of the bytes.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_lang.h"


/*
 * Writes the first tag of the list in src (len bytes, any bytes at all)
 * to dst, lower-cased, and returns its length; 0 if there is none or it
 * is not of BCP 47's shape: [a-z]{1,8}(-[a-z0-9]{1,8})*, at most
 * NGX_HTTP_SHORTLINK_LANG_MAX bytes.  "*" is not a language.  Empty list
 * elements and whitespace before the first tag are skipped (RFC 9110
 * section 5.6.1); the tag ends at ',', ';' or whitespace.  dst has room
 * for NGX_HTTP_SHORTLINK_LANG_MAX bytes.  Reads at most
 * NGX_HTTP_SHORTLINK_LANG_MAX + 1 bytes past the leading separators.
 */

size_t
ngx_http_shortlink_lang_first(u_char *dst, u_char *src, size_t len)
{
    u_char      c, *p, *last;
    size_t      n;
    ngx_uint_t  sub, first;

    p = src;
    last = src + len;

    while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
        p++;
    }

    n = 0;
    sub = 0;        /* length of the current subtag */
    first = 1;      /* in the primary subtag: letters only */

    for ( /* void */ ; p < last; p++) {
        c = *p;

        if (c == ',' || c == ';' || c == ' ' || c == '\t') {
            break;
        }

        if (n == NGX_HTTP_SHORTLINK_LANG_MAX) {
            return 0;
        }

        if (c == '-') {
            if (sub == 0) {
                return 0;
            }

            first = 0;
            sub = 0;
            dst[n++] = c;
            continue;
        }

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;

        } else if (!(c >= 'a' && c <= 'z')
                   && !(c >= '0' && c <= '9' && !first))
        {
            return 0;
        }

        if (++sub > 8) {
            return 0;
        }

        dst[n++] = c;
    }

    if (sub == 0) {
        /* empty, or ends with '-' */
        return 0;
    }

    return n;
}
