
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The per-worker bloom filter of existing codes (libbloom): lets unknown
 * codes be refused without a database query.
 */


#ifndef _NGX_HTTP_SHORTLINK_BLOOM_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_BLOOM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_pg.h"


typedef struct ngx_http_shortlink_bloom_s  ngx_http_shortlink_bloom_t;


typedef struct {
    ngx_uint_t                    capacity;    /* 0: no filter */
    double                        error;
    ngx_msec_t                    rebuild;
} ngx_http_shortlink_bloom_conf_t;


ngx_http_shortlink_bloom_t *ngx_http_shortlink_bloom_create(
    ngx_cycle_t *cycle, ngx_http_shortlink_bloom_conf_t *conf,
    ngx_http_shortlink_pg_pool_t *pg);
void ngx_http_shortlink_bloom_destroy(ngx_http_shortlink_bloom_t *b);

ngx_uint_t ngx_http_shortlink_bloom_absent(ngx_http_shortlink_bloom_t *b,
    ngx_str_t *code);
ngx_uint_t ngx_http_shortlink_bloom_present(ngx_http_shortlink_bloom_t *b,
    ngx_str_t *code);
void ngx_http_shortlink_bloom_add(ngx_http_shortlink_bloom_t *b,
    ngx_str_t *code);
void ngx_http_shortlink_bloom_stats(ngx_http_shortlink_bloom_t *b,
    ngx_uint_t *codes, ngx_uint_t *capacity);
void ngx_http_shortlink_bloom_listening(ngx_http_shortlink_bloom_t *b,
    ngx_uint_t up);


#endif /* _NGX_HTTP_SHORTLINK_BLOOM_H_INCLUDED_ */
