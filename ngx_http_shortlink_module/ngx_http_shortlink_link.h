
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * A link as the redirect path sees it (target, status, expiry), the rules
 * a target must follow, and its compact encoding as a Redis value.
 * Pure functions, no I/O.
 */


#ifndef _NGX_HTTP_SHORTLINK_LINK_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_LINK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* the links_url_length constraint of sql/001_links.sql */
#define NGX_HTTP_SHORTLINK_URL_MAX_LEN    8192
/* the links_rules_encoded constraint of sql/018_link_rules.sql */
#define NGX_HTTP_SHORTLINK_RULES_MAX_LEN  16384

/* the status of a link the target policy blocks (sql/017): 410 Gone */
#define NGX_HTTP_SHORTLINK_GONE         410


typedef struct {
    ngx_str_t                    url;
    ngx_uint_t                   status;    /* 301, 302, 307, 308; 410 */
    time_t                       expires;   /* expires_at (epoch), 0: never */
    int64_t                      version;   /* of the row, 0: unknown */
    ngx_uint_t                   forward;   /* append the query string */
    ngx_uint_t                   password;  /* the form first */
    ngx_str_t                    rules;     /* encoded, see rules.c; len 0:
                                               none */
} ngx_http_shortlink_link_t;


ngx_uint_t ngx_http_shortlink_link_valid(ngx_http_shortlink_link_t *link);
ngx_uint_t ngx_http_shortlink_link_expired(ngx_http_shortlink_link_t *link,
    time_t now);

size_t ngx_http_shortlink_link_data_len(ngx_http_shortlink_link_t *link);
u_char *ngx_http_shortlink_link_move(ngx_http_shortlink_link_t *link,
    u_char *buf);

size_t ngx_http_shortlink_link_encoded_len(ngx_http_shortlink_link_t *link);
u_char *ngx_http_shortlink_link_encode(u_char *p,
    ngx_http_shortlink_link_t *link);
ngx_int_t ngx_http_shortlink_link_decode(ngx_str_t *value,
    ngx_http_shortlink_link_t *link);


#endif /* _NGX_HTTP_SHORTLINK_LINK_H_INCLUDED_ */
