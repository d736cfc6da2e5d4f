
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * QR codes of short links.  GET <api>/links/{code}/qr: PostgreSQL decides
 * whether the key may see the link and which text to encode
 * (shortlink.api_link_qr, sql/017).  With "shortlink_qr on", a public GET
 * /{code}/qr of a link that redirects (found through the same tiers as a
 * visit, no click recorded) encodes the URL it was asked under.  This file
 * encodes the text with libqrencode and writes the image.
 *
 *   svg: one path, a horizontal run of dark modules per subpath; the
 *        image is size x size pixels (it scales without loss).
 *   png: 1-bit greyscale, written here: signature, IHDR, one IDAT (zlib's
 *        compress2(), which nginx links already) and IEND, each with its
 *        CRC (zlib's crc32()).  libpng would add a dependency for ~60
 *        lines.  The image is the largest whole multiple of the module
 *        count (code plus a 4-module quiet zone) that fits in size, at
 *        least one pixel per module.
 *
 * The work is bounded: at most 1024 x 1024 pixels, about 130 KiB before
 * compression, for a text of less than 200 bytes.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <qrencode.h>
#include <zlib.h>

#include "ngx_http_shortlink_qr.h"
#include "ngx_http_shortlink_code.h"


#define NGX_HTTP_SHORTLINK_QR_QUIET     4
/* far below what a code holds at level M (2,331 bytes in 8-bit mode) */
#define NGX_HTTP_SHORTLINK_QR_TEXT_MAX  1024


static ngx_int_t ngx_http_shortlink_qr_svg(ngx_http_request_t *r,
    QRcode *qr, ngx_uint_t size, ngx_buf_t **bp);
static ngx_int_t ngx_http_shortlink_qr_png(ngx_http_request_t *r,
    QRcode *qr, ngx_uint_t size, ngx_buf_t **bp);
static u_char *ngx_http_shortlink_qr_chunk(u_char *p, const char *type,
    u_char *data, size_t len);
static u_char *ngx_http_shortlink_qr_be32(u_char *p, uint32_t n);
static void ngx_http_shortlink_qr_free(void *data);
static ngx_int_t ngx_http_shortlink_qr_params(ngx_http_request_t *r,
    ngx_str_t *format, ngx_uint_t *size);
static ngx_uint_t ngx_http_shortlink_qr_host_ok(ngx_str_t *host);


ngx_uint_t
ngx_http_shortlink_qr_uri(ngx_http_request_t *r, ngx_str_t *code)
{
    ngx_str_t  path;

    if (r->uri.len <= sizeof("/qr") - 1
        || ngx_strncmp(r->uri.data + r->uri.len - 3, "/qr", 3) != 0)
    {
        return 0;
    }

    path.data = r->uri.data;
    path.len = r->uri.len - 3;

    ngx_http_shortlink_code_from_uri(&path, code);

    return 1;
}


ngx_int_t
ngx_http_shortlink_qr_link(ngx_http_request_t *r)
{
    u_char      *p;
    ngx_str_t    text, format, *host;
    ngx_uint_t   size;

    if (ngx_http_shortlink_qr_params(r, &format, &size) != NGX_OK) {
        return NGX_HTTP_BAD_REQUEST;
    }

    /*
     * the Host as sent, with its port, when it is only what a host and
     * port may hold; else the server name nginx took from it
     */

    host = &r->headers_in.server;

    if (r->headers_in.host
        && ngx_http_shortlink_qr_host_ok(&r->headers_in.host->value))
    {
        host = &r->headers_in.host->value;

    } else if (!ngx_http_shortlink_qr_host_ok(host)) {
        return NGX_HTTP_BAD_REQUEST;
    }

    /* scheme://host + the URI without "/qr" + "?_sls=qr" */

    text.len = sizeof("https://") - 1 + host->len + r->uri.len - 3
               + sizeof("?_sls=qr") - 1;

    text.data = ngx_pnalloc(r->pool, text.len);
    if (text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        p = ngx_cpymem(text.data, "https://", sizeof("https://") - 1);

    } else
#endif
    {
        p = ngx_cpymem(text.data, "http://", sizeof("http://") - 1);
    }

    p = ngx_cpymem(p, host->data, host->len);
    p = ngx_cpymem(p, r->uri.data, r->uri.len - 3);
    p = ngx_cpymem(p, "?_sls=qr", sizeof("?_sls=qr") - 1);

    text.len = p - text.data;

    return ngx_http_shortlink_qr_send(r, &text, &format, size);
}


/* 1-255 of [A-Za-z0-9.:[]-] */

static ngx_uint_t
ngx_http_shortlink_qr_host_ok(ngx_str_t *host)
{
    u_char  c, *p, *last;

    if (host->len == 0 || host->len > 255) {
        return 0;
    }

    last = host->data + host->len;

    for (p = host->data; p < last; p++) {
        c = *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':'
              || c == '[' || c == ']'))
        {
            return 0;
        }
    }

    return 1;
}


/* ?format=svg|png (default svg) and ?size=64..1024 (default 256) */

static ngx_int_t
ngx_http_shortlink_qr_params(ngx_http_request_t *r, ngx_str_t *format,
    ngx_uint_t *size)
{
    ngx_int_t  n;
    ngx_str_t  value;

    ngx_str_set(format, "svg");
    *size = 256;

    if (ngx_http_arg(r, (u_char *) "format", 6, &value) == NGX_OK) {
        if (value.len == 3 && ngx_strncmp(value.data, "png", 3) == 0) {
            ngx_str_set(format, "png");

        } else if (!(value.len == 3
                     && ngx_strncmp(value.data, "svg", 3) == 0))
        {
            return NGX_DECLINED;
        }
    }

    if (ngx_http_arg(r, (u_char *) "size", 4, &value) == NGX_OK) {
        n = ngx_atoi(value.data, value.len);

        if (n < 64 || n > 1024) {
            return NGX_DECLINED;
        }

        *size = (ngx_uint_t) n;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_shortlink_qr_send(ngx_http_request_t *r, ngx_str_t *text,
    ngx_str_t *format, ngx_uint_t size)
{
    u_char              *s;
    QRcode              *qr;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_uint_t           png;
    ngx_chain_t          out;
    ngx_table_elt_t     *h;
    ngx_pool_cleanup_t  *cln;

    png = (format->len == 3 && ngx_strncmp(format->data, "png", 3) == 0);

    /* a long Host or path is the client's doing: 400, nothing logged */

    if (text->len > NGX_HTTP_SHORTLINK_QR_TEXT_MAX) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "shortlink: URL of %uz bytes too long for a QR code",
                      text->len);
        return NGX_HTTP_BAD_REQUEST;
    }

    if (size < 64 || size > 1024) {
        size = 256;
    }

    s = ngx_pnalloc(r->pool, text->len + 1);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(s, text->data, text->len);
    s[text->len] = '\0';

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    qr = QRcode_encodeString((char *) s, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (qr == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      "shortlink: QRcode_encodeString() failed");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_shortlink_qr_free;
    cln->data = qr;

    rc = png ? ngx_http_shortlink_qr_png(r, qr, size, &b)
             : ngx_http_shortlink_qr_svg(r, qr, size, &b);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    r->headers_out.status = NGX_HTTP_OK;

    if (png) {
        ngx_str_set(&r->headers_out.content_type, "image/png");

    } else {
        ngx_str_set(&r->headers_out.content_type, "image/svg+xml");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_shortlink_qr_svg(ngx_http_request_t *r, QRcode *qr,
    ngx_uint_t size, ngx_buf_t **bp)
{
    size_t       len;
    ngx_int_t    x, y, w, run;
    ngx_buf_t   *b;
    ngx_uint_t   n, runs;

    w = qr->width;
    n = w + 2 * NGX_HTTP_SHORTLINK_QR_QUIET;

    runs = 0;

    for (y = 0; y < w; y++) {
        for (x = 0; x < w; x++) {
            if ((qr->data[y * w + x] & 1)
                && (x == 0 || !(qr->data[y * w + x - 1] & 1)))
            {
                runs++;
            }
        }
    }

    len = sizeof("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\""
                 " height=\"\" viewBox=\"0 0  \""
                 " shape-rendering=\"crispEdges\">"
                 "<rect width=\"\" height=\"\" fill=\"#fff\"/>"
                 "<path fill=\"#000\" d=\"\"/></svg>\n") - 1
          + 6 * NGX_INT_T_LEN
          + runs * (sizeof("M h v1h-z") - 1 + 4 * NGX_INT_T_LEN);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_sprintf(b->last,
                          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                          "<svg xmlns=\"http://www.w3.org/2000/svg\""
                          " width=\"%ui\" height=\"%ui\""
                          " viewBox=\"0 0 %ui %ui\""
                          " shape-rendering=\"crispEdges\">"
                          "<rect width=\"%ui\" height=\"%ui\" fill=\"#fff\"/>"
                          "<path fill=\"#000\" d=\"",
                          size, size, n, n, n, n);

    for (y = 0; y < w; y++) {
        for (x = 0; x < w; x += run ? run : 1) {
            for (run = 0; x + run < w && (qr->data[y * w + x + run] & 1);
                 run++)
            {
                /* void */
            }

            if (run) {
                b->last = ngx_sprintf(b->last, "M%i %ih%iv1h-%iz",
                                      x + NGX_HTTP_SHORTLINK_QR_QUIET,
                                      y + NGX_HTTP_SHORTLINK_QR_QUIET,
                                      run, run);
            }
        }
    }

    b->last = ngx_cpymem(b->last, "\"/></svg>\n", sizeof("\"/></svg>\n") - 1);

    *bp = b;

    return NGX_OK;
}


static ngx_int_t
ngx_http_shortlink_qr_png(ngx_http_request_t *r, QRcode *qr,
    ngx_uint_t size, ngx_buf_t **bp)
{
    int          zrc;
    u_char      *raw, *row, *z, *p;
    uLongf       zlen;
    ngx_int_t    w, x, y, mx, my, last;
    ngx_buf_t   *b;
    ngx_uint_t   n, scale, pix, stride, i;
    u_char       ihdr[13];

    w = qr->width;
    n = w + 2 * NGX_HTTP_SHORTLINK_QR_QUIET;
    scale = size / n;

    if (scale == 0) {
        scale = 1;
    }

    pix = n * scale;
    stride = 1 + (pix + 7) / 8;

    /*
     * each module row once (white is 1, filter type 0 in front), then
     * copied scale times: the quiet zone rows are all white
     */

    raw = ngx_palloc(r->pool, stride * pix);
    if (raw == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        row = raw + i * scale * stride;

        ngx_memset(row, 0xff, stride);
        row[0] = 0;

        my = (ngx_int_t) i - NGX_HTTP_SHORTLINK_QR_QUIET;

        for (mx = 0; my >= 0 && my < w && mx < w; mx++) {
            if (!(qr->data[my * w + mx] & 1)) {
                continue;
            }

            x = (mx + NGX_HTTP_SHORTLINK_QR_QUIET) * (ngx_int_t) scale;
            last = x + (ngx_int_t) scale;

            for ( /* void */ ; x < last; x++) {
                row[1 + x / 8] &= (u_char) ~(0x80 >> (x % 8));
            }
        }

        for (y = 1; y < (ngx_int_t) scale; y++) {
            ngx_memcpy(row + y * stride, row, stride);
        }
    }

    zlen = compressBound(stride * pix);

    z = ngx_palloc(r->pool, zlen);
    if (z == NULL) {
        return NGX_ERROR;
    }

    /* the rows repeat: the fastest level compresses them almost as well */

    zrc = compress2(z, &zlen, raw, stride * pix, Z_BEST_SPEED);
    if (zrc != Z_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "shortlink: compress2() failed: %d", zrc);
        return NGX_ERROR;
    }

    b = ngx_create_temp_buf(r->pool, 8 + (12 + 13) + (12 + zlen) + 12);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, "\x89PNG\r\n\x1a\n", 8);

    (void) ngx_http_shortlink_qr_be32(ihdr, (uint32_t) pix);
    (void) ngx_http_shortlink_qr_be32(ihdr + 4, (uint32_t) pix);
    ihdr[8] = 1;        /* bit depth */
    ihdr[9] = 0;        /* greyscale */
    ihdr[10] = 0;       /* deflate */
    ihdr[11] = 0;       /* adaptive filtering (type 0 used throughout) */
    ihdr[12] = 0;       /* no interlace */

    p = ngx_http_shortlink_qr_chunk(p, "IHDR", ihdr, sizeof(ihdr));
    p = ngx_http_shortlink_qr_chunk(p, "IDAT", z, zlen);
    b->last = ngx_http_shortlink_qr_chunk(p, "IEND", NULL, 0);

    *bp = b;

    return NGX_OK;
}


static u_char *
ngx_http_shortlink_qr_chunk(u_char *p, const char *type, u_char *data,
    size_t len)
{
    uLong  crc;

    p = ngx_http_shortlink_qr_be32(p, (uint32_t) len);

    crc = crc32(0L, (const Bytef *) type, 4);
    p = ngx_cpymem(p, type, 4);

    if (len) {
        crc = crc32(crc, data, len);
        p = ngx_cpymem(p, data, len);
    }

    return ngx_http_shortlink_qr_be32(p, (uint32_t) crc);
}


static u_char *
ngx_http_shortlink_qr_be32(u_char *p, uint32_t n)
{
    *p++ = (u_char) (n >> 24);
    *p++ = (u_char) (n >> 16);
    *p++ = (u_char) (n >> 8);
    *p++ = (u_char) n;

    return p;
}


static void
ngx_http_shortlink_qr_free(void *data)
{
    QRcode_free(data);
}
