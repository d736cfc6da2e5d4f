
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


#endif /* _NGX_HTTP_SHORTLINK_QR_H_INCLUDED_ */
