
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Short codes: validation and extraction from the URI.  This file must stay
 * free of I/O and allocation so that it can be unit-tested on its own.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_code.h"


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
