
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Redirect rules as a link carries them: PostgreSQL encodes a link's rules
 * (shortlink.link_rules_encode() of sql/018_link_rules.sql), and the zone
 * and Redis keep that text as it is:
 *
 *     rules = 1*16( LF rule )                   at most 16384 bytes
 *     rule  = *( cond SP ) "t=" url             at least one cond
 *     cond  = "d=" ( "ios" / "android" / "desktop" )   device
 *           / "l=" language-tag                 Accept-Language, q > 0
 *           / "c=" 1*32( ALPHA / DIGIT / "_" / "-" )  the country variable
 *           / "q=" name "=" value               a query parameter
 *           / "f=" epoch                        from (inclusive)
 *           / "u=" epoch                        until (exclusive)
 *
 * e.g. "\nd=ios t=https://apps.apple.com/x\nl=de c=AT t=https://x.at/".
 * The first rule whose conditions all hold picks its url; rules are
 * numbered from 0 in their order.  Nothing here holds a space or a LF but
 * the separators (the database's constraints, checked again in
 * rules_valid() for every value read from Redis).  Pure functions: no I/O,
 * no allocation, so a link without rules costs nothing and one with rules
 * a scan of its text.  Only macros and inline functions of ngx_core are
 * used, so that t/unit/rules_test.c can build this file alone.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_link.h"
#include "ngx_http_shortlink_rules.h"


static ngx_uint_t ngx_http_shortlink_rules_has(u_char *p, size_t len,
    const char *s);
static ngx_uint_t ngx_http_shortlink_rules_url_valid(u_char *p, size_t len);
static ngx_uint_t ngx_http_shortlink_rules_lang_valid(u_char *p, size_t len);
static ngx_uint_t ngx_http_shortlink_rules_chars(u_char *p, size_t len,
    const char *extra);
static ngx_int_t ngx_http_shortlink_rules_cond(u_char *p, size_t len,
    ngx_http_shortlink_rules_input_t *in, ngx_int_t *device,
    ngx_str_t *country, ngx_int_t *have_country);
static ngx_int_t ngx_http_shortlink_rules_q(u_char *p, u_char *last);
static time_t ngx_http_shortlink_rules_time(u_char *p, size_t len);
static ngx_int_t ngx_http_shortlink_rules_casecmp(u_char *a, u_char *b,
    size_t n);


ngx_int_t
ngx_http_shortlink_rules_valid(ngx_str_t *rules)
{
    u_char      *p, *last, *eol, *sp, *v, *eq;
    size_t       vlen;
    ngx_uint_t   n, conds, target;

    if (rules->len == 0 || rules->len > NGX_HTTP_SHORTLINK_RULES_MAX_LEN
        || rules->data[0] != LF)
    {
        return NGX_ERROR;
    }

    p = rules->data;
    last = p + rules->len;

    for (n = 0; p < last; n++) {

        if (n == NGX_HTTP_SHORTLINK_RULES_MAX) {
            return NGX_ERROR;
        }

        p++;                                        /* the LF */

        eol = ngx_strlchr(p, last, LF);
        if (eol == NULL) {
            eol = last;
        }

        conds = 0;
        target = 0;

        while (p < eol) {

            if (target) {
                return NGX_ERROR;                   /* the url comes last */
            }

            sp = ngx_strlchr(p, eol, ' ');
            if (sp == NULL) {
                sp = eol;
            }

            if (sp - p < 2 || p[1] != '=') {
                return NGX_ERROR;
            }

            v = p + 2;
            vlen = sp - v;

            switch (p[0]) {

            case 't':
                if (!ngx_http_shortlink_rules_url_valid(v, vlen)) {
                    return NGX_ERROR;
                }

                target = 1;
                break;

            case 'd':
                if (!((vlen == 3 && ngx_strncmp(v, "ios", 3) == 0)
                      || (vlen == 7 && ngx_strncmp(v, "android", 7) == 0)
                      || (vlen == 7 && ngx_strncmp(v, "desktop", 7) == 0)))
                {
                    return NGX_ERROR;
                }

                break;

            case 'l':
                if (!ngx_http_shortlink_rules_lang_valid(v, vlen)) {
                    return NGX_ERROR;
                }

                break;

            case 'c':
                if (vlen == 0 || vlen > 32
                    || !ngx_http_shortlink_rules_chars(v, vlen, "_-"))
                {
                    return NGX_ERROR;
                }

                break;

            case 'q':
                eq = ngx_strlchr(v, sp, '=');

                if (eq == NULL || eq == v || eq - v > 64 || sp - eq - 1 > 256
                    || !ngx_http_shortlink_rules_chars(v, eq - v, "_.-")
                    || !ngx_http_shortlink_rules_chars(eq + 1, sp - eq - 1,
                                                       "_.~-"))
                {
                    return NGX_ERROR;
                }

                break;

            case 'f':
            case 'u':
                if (ngx_http_shortlink_rules_time(v, vlen) == NGX_ERROR) {
                    return NGX_ERROR;
                }

                break;

            default:
                return NGX_ERROR;
            }

            if (!target) {
                conds++;
            }

            p = (sp == eol) ? eol : sp + 1;
        }

        if (!target || conds == 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The index of the first rule that holds, its url in target; NGX_DECLINED
 * when none does (the link's own url applies), NGX_ERROR when the country
 * variable could not be evaluated.
 */

ngx_int_t
ngx_http_shortlink_rules_match(ngx_str_t *rules,
    ngx_http_shortlink_rules_input_t *in, ngx_str_t *target)
{
    u_char     *p, *last, *eol, *sp;
    ngx_int_t   n, rc, device, have_country;
    ngx_str_t   country;

    device = -1;
    have_country = 0;
    ngx_str_null(&country);

    p = rules->data;
    last = p + rules->len;

    for (n = 0; p < last; n++) {

        p++;                                        /* the LF */

        eol = ngx_strlchr(p, last, LF);
        if (eol == NULL) {
            eol = last;
        }

        rc = NGX_OK;

        while (p < eol) {
            sp = ngx_strlchr(p, eol, ' ');
            if (sp == NULL) {
                sp = eol;
            }

            if (sp - p >= 2 && p[0] == 't') {
                target->data = p + 2;
                target->len = sp - p - 2;
                return n;
            }

            rc = ngx_http_shortlink_rules_cond(p, sp - p, in, &device,
                                               &country, &have_country);
            if (rc != NGX_OK) {
                break;
            }

            p = (sp == eol) ? eol : sp + 1;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        p = eol;
    }

    return NGX_DECLINED;
}


/* NGX_OK: the condition holds; NGX_DECLINED: it does not */

static ngx_int_t
ngx_http_shortlink_rules_cond(u_char *p, size_t len,
    ngx_http_shortlink_rules_input_t *in, ngx_int_t *device,
    ngx_str_t *country, ngx_int_t *have_country)
{
    u_char     *eq;
    time_t      t;
    ngx_str_t   v, name, value;

    if (len < 2) {
        return NGX_DECLINED;
    }

    v.data = p + 2;
    v.len = len - 2;

    switch (p[0]) {

    case 'd':
        if (*device < 0) {
            *device = ngx_http_shortlink_rules_device(in->user_agent.data,
                                                      in->user_agent.len);
        }

        switch (*device) {
        case NGX_HTTP_SHORTLINK_DEVICE_IOS:
            return (v.len == 3 && ngx_strncmp(v.data, "ios", 3) == 0)
                   ? NGX_OK : NGX_DECLINED;
        case NGX_HTTP_SHORTLINK_DEVICE_ANDROID:
            return (v.len == 7 && ngx_strncmp(v.data, "android", 7) == 0)
                   ? NGX_OK : NGX_DECLINED;
        case NGX_HTTP_SHORTLINK_DEVICE_DESKTOP:
            return (v.len == 7 && ngx_strncmp(v.data, "desktop", 7) == 0)
                   ? NGX_OK : NGX_DECLINED;
        default:
            return NGX_DECLINED;
        }

    case 'l':
        return ngx_http_shortlink_rules_language(&in->accept_language, &v)
               ? NGX_OK : NGX_DECLINED;

    case 'c':
        if (!*have_country) {
            if (in->country == NULL) {
                return NGX_DECLINED;
            }

            if (in->country(in->data, country) != NGX_OK) {
                return NGX_ERROR;
            }

            *have_country = 1;
        }

        return (country->len == v.len
                && ngx_http_shortlink_rules_casecmp(country->data, v.data,
                                                    v.len) == 0)
               ? NGX_OK : NGX_DECLINED;

    case 'q':
        eq = ngx_strlchr(v.data, v.data + v.len, '=');
        if (eq == NULL) {
            return NGX_DECLINED;
        }

        name.data = v.data;
        name.len = eq - v.data;
        value.data = eq + 1;
        value.len = v.data + v.len - value.data;

        return ngx_http_shortlink_rules_query(&in->args, &name, &value)
               ? NGX_OK : NGX_DECLINED;

    case 'f':
    case 'u':
        t = ngx_http_shortlink_rules_time(v.data, v.len);
        if (t == NGX_ERROR) {
            return NGX_DECLINED;
        }

        if (p[0] == 'f') {
            return (in->now >= t) ? NGX_OK : NGX_DECLINED;
        }

        return (in->now < t) ? NGX_OK : NGX_DECLINED;

    default:
        return NGX_DECLINED;
    }
}


/*
 * The device class of a User-Agent, first match wins: ios (iPhone, iPad,
 * iPod), android (Android), desktop (Windows, Macintosh, X11, CrOS or
 * Linux, without "Mobi", so Windows Phone is none), else none: no device
 * rule matches an empty or unknown agent.  These are the words
 * shortlink.ua_device() of sql/003_clicks.sql looks for.
 */

ngx_uint_t
ngx_http_shortlink_rules_device(u_char *ua, size_t len)
{
    if (ngx_http_shortlink_rules_has(ua, len, "iPhone")
        || ngx_http_shortlink_rules_has(ua, len, "iPad")
        || ngx_http_shortlink_rules_has(ua, len, "iPod"))
    {
        return NGX_HTTP_SHORTLINK_DEVICE_IOS;
    }

    if (ngx_http_shortlink_rules_has(ua, len, "Android")) {
        return NGX_HTTP_SHORTLINK_DEVICE_ANDROID;
    }

    if (ngx_http_shortlink_rules_has(ua, len, "Mobi")) {
        return NGX_HTTP_SHORTLINK_DEVICE_NONE;
    }

    if (ngx_http_shortlink_rules_has(ua, len, "Windows")
        || ngx_http_shortlink_rules_has(ua, len, "Macintosh")
        || ngx_http_shortlink_rules_has(ua, len, "X11")
        || ngx_http_shortlink_rules_has(ua, len, "CrOS")
        || ngx_http_shortlink_rules_has(ua, len, "Linux"))
    {
        return NGX_HTTP_SHORTLINK_DEVICE_DESKTOP;
    }

    return NGX_HTTP_SHORTLINK_DEVICE_NONE;
}


/*
 * Whether Accept-Language (RFC 9110, 12.5.4) names the wanted language
 * with q > 0: a range equal to it, or one of its sub-tags ("de" is
 * wanted by "de-AT"), case-insensitively.  "*" wants no particular
 * language and matches nothing; an entry with a malformed q is ignored.
 */

ngx_uint_t
ngx_http_shortlink_rules_language(ngx_str_t *accept, ngx_str_t *wanted)
{
    u_char  *p, *last, *end, *tag, *tag_end, *semi;

    if (wanted->len == 0) {
        return 0;
    }

    p = accept->data;
    last = p + accept->len;

    while (p < last) {

        end = ngx_strlchr(p, last, ',');
        if (end == NULL) {
            end = last;
        }

        tag = p;
        while (tag < end && (*tag == ' ' || *tag == '\t')) {
            tag++;
        }

        semi = ngx_strlchr(tag, end, ';');

        tag_end = semi ? semi : end;
        while (tag_end > tag && (tag_end[-1] == ' ' || tag_end[-1] == '\t')) {
            tag_end--;
        }

        if ((size_t) (tag_end - tag) >= wanted->len
            && ngx_http_shortlink_rules_casecmp(tag, wanted->data,
                                                wanted->len) == 0
            && ((size_t) (tag_end - tag) == wanted->len
                || tag[wanted->len] == '-')
            && (semi == NULL || ngx_http_shortlink_rules_q(semi, end) == 1))
        {
            return 1;
        }

        p = end + 1;
    }

    return 0;
}


/*
 * The parameters after a language range: 1 for q > 0 (or no q), 0 for
 * q = 0, -1 for a malformed weight (RFC 9110, 12.4.2: "0" [ "." 0*3DIGIT ]
 * or "1" [ "." 0*3("0") ]).
 */

static ngx_int_t
ngx_http_shortlink_rules_q(u_char *p, u_char *last)
{
    u_char      *q;
    ngx_uint_t   n, nonzero;

    /* ";" OWS "q=" */

    p++;
    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (last - p < 3 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=') {
        return -1;
    }

    p += 2;

    q = last;
    while (q > p && (q[-1] == ' ' || q[-1] == '\t')) {
        q--;
    }

    if (p[0] != '0' && p[0] != '1') {
        return -1;
    }

    nonzero = (p[0] == '1');

    if (p + 1 == q) {
        return nonzero;
    }

    if (p[1] != '.' || q - p > 5) {
        return -1;
    }

    for (n = 2; p + n < q; n++) {
        if (p[n] < '0' || p[n] > '9' || (p[0] == '1' && p[n] != '0')) {
            return -1;
        }

        if (p[n] != '0') {
            nonzero = 1;
        }
    }

    return nonzero;
}


/* whether the query string has name=value (exact bytes, as sent) */

ngx_uint_t
ngx_http_shortlink_rules_query(ngx_str_t *args, ngx_str_t *name,
    ngx_str_t *value)
{
    u_char  *p, *last, *end, *eq;
    size_t   vlen;

    p = args->data;
    last = p + args->len;

    while (p < last) {
        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        eq = ngx_strlchr(p, end, '=');

        if ((size_t) ((eq ? eq : end) - p) == name->len
            && ngx_strncmp(p, name->data, name->len) == 0)
        {
            vlen = eq ? (size_t) (end - eq - 1) : 0;

            if (vlen == value->len
                && (vlen == 0 || ngx_strncmp(eq + 1, value->data, vlen) == 0))
            {
                return 1;
            }
        }

        p = end + 1;
    }

    return 0;
}


static ngx_uint_t
ngx_http_shortlink_rules_has(u_char *p, size_t len, const char *s)
{
    size_t   n;
    u_char  *last;

    n = ngx_strlen(s);

    if (len < n) {
        return 0;
    }

    for (last = p + len - n; p <= last; p++) {
        if (*p == (u_char) s[0] && ngx_strncmp(p, s, n) == 0) {
            return 1;
        }
    }

    return 0;
}


/* as links.url: http(s)://host..., printable ASCII, at most 8 KiB */

static ngx_uint_t
ngx_http_shortlink_rules_url_valid(u_char *p, size_t len)
{
    u_char  *last;

    if (len > NGX_HTTP_SHORTLINK_URL_MAX_LEN) {
        return 0;
    }

    if (!(len > 7
          && ngx_http_shortlink_rules_casecmp(p, (u_char *) "http://", 7)
             == 0)
        && !(len > 8
             && ngx_http_shortlink_rules_casecmp(p, (u_char *) "https://", 8)
                == 0))
    {
        return 0;
    }

    for (last = p + len; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


/* 1*8ALPHA *( "-" 1*8alphanum ) */

static ngx_uint_t
ngx_http_shortlink_rules_lang_valid(u_char *p, size_t len)
{
    u_char      *last;
    ngx_uint_t   n, first;

    if (len == 0 || len > 35) {
        return 0;
    }

    n = 0;
    first = 1;

    for (last = p + len; p < last; p++) {

        if (*p == '-') {
            if (n == 0) {
                return 0;
            }

            n = 0;
            first = 0;
            continue;
        }

        if (++n > 8) {
            return 0;
        }

        if (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')
            || (!first && *p >= '0' && *p <= '9'))
        {
            continue;
        }

        return 0;
    }

    return n > 0;
}


static ngx_uint_t
ngx_http_shortlink_rules_chars(u_char *p, size_t len, const char *extra)
{
    u_char  *last;

    for (last = p + len; p < last; p++) {
        if ((*p >= '0' && *p <= '9') || ((*p | 0x20) >= 'a'
                                         && (*p | 0x20) <= 'z')
            || (*p != '\0' && ngx_strlchr((u_char *) extra,
                                          (u_char *) extra
                                          + ngx_strlen(extra), *p)))
        {
            continue;
        }

        return 0;
    }

    return 1;
}


/* 1-12 digits as a Unix time, NGX_ERROR for anything else */

static time_t
ngx_http_shortlink_rules_time(u_char *p, size_t len)
{
    time_t   t;
    u_char  *last;

    if (len == 0 || len > 12) {
        return NGX_ERROR;
    }

    t = 0;

    for (last = p + len; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        t = t * 10 + (*p - '0');
    }

    return t;
}


/* 0 when n bytes are equal ignoring ASCII case */

static ngx_int_t
ngx_http_shortlink_rules_casecmp(u_char *a, u_char *b, size_t n)
{
    for ( /* void */ ; n; n--, a++, b++) {
        if (ngx_tolower(*a) != ngx_tolower(*b)) {
            return 1;
        }
    }

    return 0;
}
