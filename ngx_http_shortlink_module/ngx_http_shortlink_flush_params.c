
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The flusher's calls as PostgreSQL parameters: a batch of click records
 * as the arrays of shortlink.record_clicks(), and a refused click as the
 * JSON object of shortlink.reject_click(), its text made acceptable to
 * PostgreSQL whatever the record holds.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_click.h"
#include "ngx_http_shortlink_queue.h"
#include "ngx_http_shortlink_flush.h"
#include "ngx_http_shortlink_utf8.h"


/* array punctuation of a click, beyond its bytes (each at most 4 once
 * escaped): 8 elements' quotes and commas, a uuid, a time, the extra
 * object's braces and each field's quotes, colon and comma */
#define NGX_HTTP_SHORTLINK_FLUSH_CLICK_OVERHEAD                              \
    (NGX_HTTP_SHORTLINK_FLUSH_COLUMNS * 8 + 40 + NGX_INT64_LEN + 8           \
     + NGX_HTTP_SHORTLINK_CLICK_FIELDS_MAX * 12)

/* a record's length, from its frame in the batch */
#define ngx_http_shortlink_flush_reclen(rec)                                  \
    ((size_t) *(uint32_t *) ((rec) - NGX_HTTP_SHORTLINK_QUEUE_FRAME))


static u_char *ngx_http_shortlink_flush_quote(u_char *p, u_char *s,
    size_t len);
static u_char *ngx_http_shortlink_flush_text(u_char *p, u_char *s,
    size_t len, ngx_uint_t json);


/*
 * n records (checked by ngx_http_shortlink_click_parse(), as the queue
 * does) as eight PostgreSQL array literals, one per parameter of
 * shortlink.record_clicks(), in its order: event ids, times, codes, IPs,
 * user agents, referers, visitor ids, extra fields.  All eight live in one
 * allocation, freed by the caller through params[0].data.  The extra
 * fields go by the names in the record.
 */

ngx_int_t
ngx_http_shortlink_flush_params(u_char **recs, ngx_uint_t n,
    ngx_str_t *params, ngx_log_t *log)
{
    u_char                            *p, *fld, *buf;
    u_char                            *col[NGX_HTTP_SHORTLINK_FLUSH_COLUMNS];
    size_t                             size, bytes;
    ngx_str_t                          name, value;
    ngx_uint_t                         i, k, idx;
    ngx_http_shortlink_click_t        *click;
    ngx_http_shortlink_click_parts_t   parts;

    /* the worst case: every byte escaped, plus quotes and separators */

    bytes = 0;

    for (idx = 0; idx < n; idx++) {
        bytes += ngx_http_shortlink_flush_reclen(recs[idx]);
    }

    size = NGX_HTTP_SHORTLINK_FLUSH_COLUMNS * 2
           + n * NGX_HTTP_SHORTLINK_FLUSH_CLICK_OVERHEAD
           + bytes * 4;

    buf = ngx_alloc(size, log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    /* each column gets its share of the buffer, bounded by size */

    p = buf;

    for (i = 0; i < NGX_HTTP_SHORTLINK_FLUSH_COLUMNS; i++) {
        col[i] = p;
        params[i].data = p;
        *p++ = '{';

        for (idx = 0; idx < n; idx++) {

            /* checked by the queue: cannot fail */
            (void) ngx_http_shortlink_click_parse(recs[idx],
                       ngx_http_shortlink_flush_reclen(recs[idx]), &parts);

            click = parts.click;

            if (idx) {
                *p++ = ',';
            }

            switch (i) {

            case 0: /* event id as a uuid: 8-4-4-4-12 hex digits */
                p = ngx_hex_dump(p, click->event_id, 4);
                *p++ = '-';
                p = ngx_hex_dump(p, click->event_id + 4, 2);
                *p++ = '-';
                p = ngx_hex_dump(p, click->event_id + 6, 2);
                *p++ = '-';
                p = ngx_hex_dump(p, click->event_id + 8, 2);
                *p++ = '-';
                p = ngx_hex_dump(p, click->event_id + 10, 6);
                break;

            case 1: /* Unix time in milliseconds */
                p = ngx_sprintf(p, "%L", click->msec);
                break;

            case 2:
                p = ngx_http_shortlink_flush_quote(p, parts.code.data,
                                                   parts.code.len);
                break;

            case 3:
                p = ngx_http_shortlink_flush_quote(p, parts.ip.data,
                                                   parts.ip.len);
                break;

            case 4:
                p = ngx_http_shortlink_flush_quote(p, parts.ua.data,
                                                   parts.ua.len);
                break;

            case 5:
                p = ngx_http_shortlink_flush_quote(p, parts.referer.data,
                                                   parts.referer.len);
                break;

            case 6:
                p = ngx_http_shortlink_flush_quote(p, parts.visitor.data,
                                                   parts.visitor.len);
                break;

            default: /* extra fields, as a JSON object inside a string */

                if (parts.nfields == 0) {
                    p = ngx_cpymem(p, "NULL", 4);
                    break;
                }

                *p++ = '"';
                *p++ = '{';

                fld = parts.fields;

                for (k = 0; k < parts.nfields; k++) {
                    fld = ngx_http_shortlink_click_next_field(fld, &name,
                                                              &value);

                    if (k) {
                        *p++ = ',';
                    }

                    /* "name":"value", escaped for JSON, then for the array */
                    p = ngx_cpymem(p, "\\\"", 2);
                    p = ngx_http_shortlink_flush_text(p, name.data, name.len,
                                                      2);
                    p = ngx_cpymem(p, "\\\":\\\"", 5);
                    p = ngx_http_shortlink_flush_text(p, value.data,
                                                      value.len, 2);
                    p = ngx_cpymem(p, "\\\"", 2);
                }

                *p++ = '}';
                *p++ = '"';
            }
        }

        *p++ = '}';
        params[i].len = p - col[i];
    }

    if ((size_t) (p - buf) > size) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "shortlink: click batch overflowed its buffer");
        ngx_free(buf);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * One refused click for shortlink.reject_click(): the click as a JSON
 * object ($1) and the reason ($2, "SQLSTATE xxxxx: message").  Every text
 * is made acceptable to PostgreSQL whatever the record holds: a byte that
 * is not part of valid UTF-8, a control character or a backslash becomes
 * \xNN.  Both live in one allocation, freed through params[0].data.
 */

ngx_int_t
ngx_http_shortlink_flush_reject_params(u_char *rec, u_char *state,
    u_char *msg, ngx_str_t *params, ngx_log_t *log)
{
    u_char                            *p, *buf, *fld;
    size_t                             len, size, slen, mlen;
    ngx_str_t                          name, value;
    ngx_uint_t                         j;
    ngx_http_shortlink_click_t        *click;
    ngx_http_shortlink_click_parts_t   parts;

    len = ngx_http_shortlink_flush_reclen(rec);

    (void) ngx_http_shortlink_click_parse(rec, len, &parts);
    click = parts.click;

    slen = state ? ngx_strlen(state) : 0;
    mlen = msg ? ngx_strlen(msg) : 0;

    /* 5 bytes at most for a byte of text (\\xNN), 6 for a byte of msg */

    size = 256 + NGX_HTTP_SHORTLINK_CLICK_FIELDS_MAX * 16 + len * 5
           + sizeof("SQLSTATE : ") + (slen + mlen) * 4;

    buf = ngx_alloc(size, log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;
    params[0].data = p;

    p = ngx_cpymem(p, "{\"event_id\":\"", 13);
    p = ngx_hex_dump(p, click->event_id, 4);
    *p++ = '-';
    p = ngx_hex_dump(p, click->event_id + 4, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, click->event_id + 6, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, click->event_id + 8, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, click->event_id + 10, 6);

    p = ngx_sprintf(p, "\",\"clicked_ms\":%L,\"code\":\"", click->msec);
    p = ngx_http_shortlink_flush_text(p, parts.code.data, parts.code.len, 1);
    p = ngx_cpymem(p, "\",\"ip\":\"", 8);
    p = ngx_http_shortlink_flush_text(p, parts.ip.data, parts.ip.len, 1);
    p = ngx_cpymem(p, "\",\"user_agent\":\"", 16);
    p = ngx_http_shortlink_flush_text(p, parts.ua.data, parts.ua.len, 1);
    p = ngx_cpymem(p, "\",\"referer\":\"", 13);
    p = ngx_http_shortlink_flush_text(p, parts.referer.data,
                                      parts.referer.len, 1);
    p = ngx_cpymem(p, "\",\"visitor_id\":\"", 16);
    p = ngx_http_shortlink_flush_text(p, parts.visitor.data,
                                      parts.visitor.len, 1);
    p = ngx_cpymem(p, "\",\"extra\":{", 11);

    fld = parts.fields;

    for (j = 0; j < parts.nfields; j++) {
        fld = ngx_http_shortlink_click_next_field(fld, &name, &value);

        if (j) {
            *p++ = ',';
        }

        *p++ = '"';
        p = ngx_http_shortlink_flush_text(p, name.data, name.len, 1);
        p = ngx_cpymem(p, "\":\"", 3);
        p = ngx_http_shortlink_flush_text(p, value.data, value.len, 1);
        *p++ = '"';
    }

    p = ngx_cpymem(p, "}}", 2);
    params[0].len = p - params[0].data;

    params[1].data = p;
    p = ngx_cpymem(p, "SQLSTATE ", 9);
    p = ngx_http_shortlink_flush_text(p, state, slen, 0);
    p = ngx_cpymem(p, ": ", 2);
    p = ngx_http_shortlink_flush_text(p, msg, mlen, 0);
    params[1].len = p - params[1].data;

    if ((size_t) (p - buf) > size) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "shortlink: refused click overflowed its buffer");
        ngx_free(buf);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* an array element: NULL when empty, else quoted with " and \ escaped */

static u_char *
ngx_http_shortlink_flush_quote(u_char *p, u_char *s, size_t len)
{
    if (len == 0) {
        return ngx_cpymem(p, "NULL", 4);
    }

    *p++ = '"';

    while (len--) {
        if (*s == '"' || *s == '\\') {
            *p++ = '\\';
        }

        *p++ = *s++;
    }

    *p++ = '"';

    return p;
}


/*
 * Text as it is when json is 2: inside a JSON string inside an array
 * element, " and \ escaped for both (bytes PostgreSQL refuses are left for
 * it to refuse: the batch is halved).  Otherwise made acceptable: valid
 * UTF-8 without control characters as it is, anything else (and \) as
 * \xNN; with json 1, escaped for a JSON string.
 */

static u_char *
ngx_http_shortlink_flush_text(u_char *p, u_char *s, size_t len,
    ngx_uint_t json)
{
    u_char    *last, *next;
    uint32_t   ch;

    static u_char  hex[] = "0123456789abcdef";

    last = s + len;

    while (s < last) {

        if (json == 2) {
            if (*s == '"' || *s == '\\') {
                /* \" or \\ in JSON, each backslash doubled */
                *p++ = '\\';
                *p++ = '\\';
                *p++ = '\\';
            }

            *p++ = *s++;
            continue;
        }

        next = s;
        ch = ngx_http_shortlink_utf8_next(&next, last);

        if (ch == NGX_HTTP_SHORTLINK_UTF8_INVALID
            || ch < 0x20 || (ch >= 0x7f && ch < 0xa0) || ch == '\\')
        {
            /* \xNN, its backslash escaped in JSON */
            *p++ = '\\';

            if (json) {
                *p++ = '\\';
            }

            *p++ = 'x';
            *p++ = hex[*s >> 4];
            *p++ = hex[*s & 0xf];
            s++;
            continue;
        }

        if (json && *s == '"') {
            *p++ = '\\';
        }

        while (s < next) {
            *p++ = *s++;
        }
    }

    return p;
}
