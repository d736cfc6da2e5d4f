
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Short codes: validation, extraction from the URI, and generation.  This
 * file must stay free of I/O and allocation so that it can be unit-tested
 * on its own.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <murmurhash.h>

#include "ngx_http_shortlink_code.h"


static const u_char  ngx_http_shortlink_code_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


/* 1 for [0-9A-Za-z_-], 0 for every other byte */
static const u_char  ngx_http_shortlink_code_chars[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,    /* - */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,    /* 0-9 */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,    /* A-O */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,    /* P-Z _ */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,    /* a-o */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,    /* p-z */
};


ngx_uint_t
ngx_http_shortlink_code_valid(u_char *code, size_t len)
{
    u_char  *p, *last;

    if (len == 0 || len > NGX_HTTP_SHORTLINK_CODE_MAX_LEN) {
        return 0;
    }

    last = code + len;

    for (p = code; p < last; p++) {
        if (!ngx_http_shortlink_code_chars[*p]) {
            return 0;
        }
    }

    return 1;
}


/*
 * The code is the URI's last path segment: "/Ab3" and "/go/Ab3" give "Ab3",
 * "/go/" gives an empty code.  The URI is nginx's decoded, normalised one,
 * so "%2F" and "/../" tricks have been resolved before we look.
 */

void
ngx_http_shortlink_code_from_uri(ngx_str_t *uri, ngx_str_t *code)
{
    u_char  *p, *last;

    last = uri->data + uri->len;

    for (p = last; p > uri->data; p--) {
        if (p[-1] == '/') {
            break;
        }
    }

    code->data = p;
    code->len = last - p;
}


/*
 * A candidate code: len (4..16) base62 digits of MurmurHash3 (x64, 128 bits)
 * of the URL, seeded with the salt.  The caller picks a new random salt
 * for every attempt, so shortening one URL twice gives two codes.  The
 * first 10 digits come from the hash's first 64 bits (62^10 < 2^64), the
 * rest from the second: 16 digits use 60 + 36 of the 128 bits, and every
 * digit is close to uniform (the remainder's bias is below 62 / 2^64).
 */

void
ngx_http_shortlink_code_generate(u_char *dst, size_t len, u_char *url,
    size_t url_len, uint32_t salt)
{
    size_t    i;
    uint64_t  h[2], v;

    lmmh_x64_128(url, (unsigned int) url_len, salt, h);

    v = h[0];

    for (i = 0; i < len; i++) {
        if (i == 10) {
            v = h[1];
        }

        dst[i] = ngx_http_shortlink_code_base62[v % 62];
        v /= 62;
    }
}
