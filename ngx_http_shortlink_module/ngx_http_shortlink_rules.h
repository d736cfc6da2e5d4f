
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Redirect rules: their encoding as the link carries it (PostgreSQL's
 * shortlink.link_rules_encode(), the zone, Redis), their validation, and
 * the choice of a target.  Pure functions over what the request gave: no
 * I/O, no allocation, nothing of ngx_http.
 */


#ifndef _NGX_HTTP_SHORTLINK_RULES_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_RULES_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* the links_rules_count constraint of sql/018_link_rules.sql */
#define NGX_HTTP_SHORTLINK_RULES_MAX          16

#define NGX_HTTP_SHORTLINK_DEVICE_NONE        0
#define NGX_HTTP_SHORTLINK_DEVICE_IOS         1
#define NGX_HTTP_SHORTLINK_DEVICE_ANDROID     2
#define NGX_HTTP_SHORTLINK_DEVICE_DESKTOP     3


typedef ngx_int_t (*ngx_http_shortlink_rules_get_pt)(void *data,
    ngx_str_t *value);


/* what a rule may look at; country is asked for only when a rule needs it */
typedef struct {
    ngx_str_t                         user_agent;
    ngx_str_t                         accept_language;
    ngx_str_t                         args;          /* the query string */
    time_t                            now;
    ngx_http_shortlink_rules_get_pt   country;       /* NULL: none */
    void                             *data;
} ngx_http_shortlink_rules_input_t;


ngx_int_t ngx_http_shortlink_rules_valid(ngx_str_t *rules);
ngx_int_t ngx_http_shortlink_rules_match(ngx_str_t *rules,
    ngx_http_shortlink_rules_input_t *in, ngx_str_t *target);

ngx_uint_t ngx_http_shortlink_rules_device(u_char *ua, size_t len);
ngx_uint_t ngx_http_shortlink_rules_language(ngx_str_t *accept,
    ngx_str_t *wanted);
ngx_uint_t ngx_http_shortlink_rules_query(ngx_str_t *args, ngx_str_t *name,
    ngx_str_t *value);


#endif /* _NGX_HTTP_SHORTLINK_RULES_H_INCLUDED_ */
