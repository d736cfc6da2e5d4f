
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Strict UTF-8, as RFC 3629 and Unicode's table of well-formed byte
 * sequences (Unicode 15, table 3-7) define it: no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF, continuation bytes
 * 0x80..0xBF only.  nginx's ngx_utf8_decode() is a decoder for text known
 * to be valid, not a validator: it takes a lead byte as a continuation
 * and 0xF8..0xFF as leads, and PostgreSQL refuses what it lets through.
 *
 * Pure functions, no allocation: t/unit/utf8_test.c tests them.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_utf8.h"


/*
 * One character at *p (p < last): its code point, and *p moved past it.
 * An ill-formed sequence gives NGX_HTTP_SHORTLINK_UTF8_INVALID, and *p
 * moves past its maximal subpart (the longest start of a well-formed
 * sequence, at least one byte), so that a cleaner puts one U+FFFD for it,
 * as Unicode recommends and as most decoders do.
 */

uint32_t
ngx_http_shortlink_utf8_next(u_char **p, u_char *last)
{
    u_char      c, lo, hi, *s;
    uint32_t    ch;
    ngx_uint_t  n;

    s = *p;
    c = *s++;

    if (c < 0x80) {
        *p = s;
        return c;
    }

    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        ch = c & 0x1f;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        ch = c & 0x0f;

        if (c == 0xe0) {
            lo = 0xa0;                 /* overlong below U+0800 */

        } else if (c == 0xed) {
            hi = 0x9f;                 /* surrogates */
        }

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        ch = c & 0x07;

        if (c == 0xf0) {
            lo = 0x90;                 /* overlong below U+10000 */

        } else if (c == 0xf4) {
            hi = 0x8f;                 /* above U+10FFFF */
        }

    } else {
        /* a continuation byte, 0xC0, 0xC1 or 0xF5..0xFF */
        *p = s;
        return NGX_HTTP_SHORTLINK_UTF8_INVALID;
    }

    while (n--) {
        if (s == last || *s < lo || *s > hi) {
            *p = s;
            return NGX_HTTP_SHORTLINK_UTF8_INVALID;
        }

        ch = (ch << 6) | (*s++ & 0x3f);
        lo = 0x80;
        hi = 0xbf;
    }

    *p = s;

    return ch;
}


/* 1 if all len bytes are well-formed UTF-8 without a NUL */

ngx_uint_t
ngx_http_shortlink_utf8_valid(u_char *p, size_t len)
{
    u_char  *last;

    last = p + len;

    while (p < last) {

        if (*p >= 0x80) {
            if (ngx_http_shortlink_utf8_next(&p, last)
                == NGX_HTTP_SHORTLINK_UTF8_INVALID)
            {
                return 0;
            }

            continue;
        }

        if (*p == '\0') {
            return 0;
        }

        p++;
    }

    return 1;
}


/*
 * At most max bytes of src into dst, as well-formed UTF-8 without control
 * characters: each ill-formed sequence becomes U+FFFD, each C0 or C1
 * control character and DEL a '?', and a character is never cut in two.
 * What a client sends is never refused, only cleaned: PostgreSQL must
 * never refuse a click because of it.  Returns the bytes written.
 */

size_t
ngx_http_shortlink_utf8_clean(u_char *dst, u_char *src, size_t len,
    size_t max)
{
    u_char    *p, *last, *start, *d, *end;
    size_t     n;
    uint32_t   ch;

    d = dst;
    end = dst + max;
    p = src;
    last = src + len;

    while (p < last) {
        start = p;

        if (*p < 0x80) {
            if (d == end) {
                break;
            }

            *d++ = (*p < 0x20 || *p == 0x7f) ? '?' : *p;
            p++;
            continue;
        }

        ch = ngx_http_shortlink_utf8_next(&p, last);

        if (ch == NGX_HTTP_SHORTLINK_UTF8_INVALID) {
            if (end - d < 3) {
                break;
            }

            /* U+FFFD REPLACEMENT CHARACTER */
            *d++ = 0xef;
            *d++ = 0xbf;
            *d++ = 0xbd;
            continue;
        }

        if (ch < 0xa0) {
            /* C1 control characters */
            if (d == end) {
                break;
            }

            *d++ = '?';
            continue;
        }

        n = p - start;

        if ((size_t) (end - d) < n) {
            break;
        }

        d = ngx_cpymem(d, start, n);
    }

    return d - dst;
}
