
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * A click: what is recorded about one redirect, as it travels through the
 * click queue to PostgreSQL.
 */


#ifndef _NGX_HTTP_SHORTLINK_CLICK_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_CLICK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* what is kept of each header; longer values are cut, never refused */
#define NGX_HTTP_SHORTLINK_CLICK_UA_MAX       512
#define NGX_HTTP_SHORTLINK_CLICK_REFERER_MAX  1024
#define NGX_HTTP_SHORTLINK_CLICK_FIELD_MAX    256
/* shortlink_click_field directives, and fields the module adds itself */
#define NGX_HTTP_SHORTLINK_CLICK_USER_FIELDS_MAX     16
#define NGX_HTTP_SHORTLINK_CLICK_BUILTIN_FIELDS_MAX  4
#define NGX_HTTP_SHORTLINK_CLICK_FIELDS_MAX                                   \
    (NGX_HTTP_SHORTLINK_CLICK_USER_FIELDS_MAX                                 \
     + NGX_HTTP_SHORTLINK_CLICK_BUILTIN_FIELDS_MAX)
#define NGX_HTTP_SHORTLINK_CLICK_NAME_MAX     64
#define NGX_HTTP_SHORTLINK_VISITOR_LEN        32

#define NGX_HTTP_SHORTLINK_CLICK_IP_OFF        0
#define NGX_HTTP_SHORTLINK_CLICK_IP_ANONYMIZE  1
#define NGX_HTTP_SHORTLINK_CLICK_IP_FULL       2


/*
 * The record as queued: this header, then code, ip, visitor id, user
 * agent, referer, and each extra field as its name (an 8-bit length and
 * the name) and its value (a 16-bit little-endian length and the bytes).
 * Fields go by name, never by position: the queue outlives a reload that
 * may reorder, add or remove shortlink_click_field.  click.c writes only
 * valid UTF-8 without control characters, but a reader checks the layout
 * (ngx_http_shortlink_click_parse()) and trusts nothing else.
 */
typedef struct {
    u_char                        event_id[16];
    int64_t                       msec;          /* Unix time */
    u_char                        code_len;
    u_char                        ip_len;
    u_char                        visitor_len;
    u_char                        nfields;
    uint16_t                      ua_len;
    uint16_t                      referer_len;
} ngx_http_shortlink_click_t;


/* a record taken apart; the strings point into it */
typedef struct {
    ngx_http_shortlink_click_t   *click;
    ngx_str_t                     code;
    ngx_str_t                     ip;
    ngx_str_t                     visitor;
    ngx_str_t                     ua;
    ngx_str_t                     referer;
    u_char                       *fields;        /* nfields of them */
    ngx_uint_t                    nfields;
} ngx_http_shortlink_click_parts_t;


typedef struct {
    ngx_str_t                     name;
    ngx_http_complex_value_t      value;
} ngx_http_shortlink_click_field_t;


/* per worker: where event and visitor ids come from */
typedef struct {
    u_char                        prefix[8];
    uint64_t                      seq;
    uint64_t                      state[2];      /* xorshift128+ */
} ngx_http_shortlink_ids_t;


void ngx_http_shortlink_ids_init(ngx_http_shortlink_ids_t *ids,
    ngx_log_t *log);
ngx_int_t ngx_http_shortlink_click_record(ngx_http_request_t *r,
    ngx_str_t *code);
ngx_int_t ngx_http_shortlink_click_record_kv(ngx_http_request_t *r,
    ngx_str_t *code, ngx_keyval_t *builtin, ngx_uint_t nbuiltin);
ngx_int_t ngx_http_shortlink_click_parse(u_char *rec, size_t len,
    ngx_http_shortlink_click_parts_t *parts);
ngx_int_t ngx_http_shortlink_click_valid(u_char *rec, size_t len);
u_char *ngx_http_shortlink_click_next_field(u_char *p, ngx_str_t *name,
    ngx_str_t *value);


#endif /* _NGX_HTTP_SHORTLINK_CLICK_H_INCLUDED_ */
