
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * QR code images (SVG, PNG) of a short link's URL.
 */


#ifndef _NGX_HTTP_SHORTLINK_QR_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_QR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * Encodes text and sends it as the whole answer: format "png" or
 * anything else for "svg", size the image's side in pixels (64-1024).
 * Returns what the content phase returns (for ngx_http_finalize_request).
 */
ngx_int_t ngx_http_shortlink_qr_send(ngx_http_request_t *r, ngx_str_t *text,
    ngx_str_t *format, ngx_uint_t size);


/*
 * "shortlink_qr on": whether the URI is ".../{code}/qr", and then the code
 * (the segment before "/qr", not yet validated)
 */
ngx_uint_t ngx_http_shortlink_qr_uri(ngx_http_request_t *r, ngx_str_t *code);

/*
 * The answer to a public /{code}/qr of a followable link: the QR code of
 * scheme://Host/.../{code}?_sls=qr, ?format=svg|png&size= as in the API
 * (400 for anything else)
 */
ngx_int_t ngx_http_shortlink_qr_link(ngx_http_request_t *r);


#endif /* _NGX_HTTP_SHORTLINK_QR_H_INCLUDED_ */
