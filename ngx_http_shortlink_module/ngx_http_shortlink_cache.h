
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * L1: the shared-memory cache of links, one zone for all workers.
 */


#ifndef _NGX_HTTP_SHORTLINK_CACHE_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_link.h"


#define NGX_HTTP_SHORTLINK_CACHE_MISS      0
#define NGX_HTTP_SHORTLINK_CACHE_HIT       1   /* fresh: redirect */
#define NGX_HTTP_SHORTLINK_CACHE_NEGATIVE  2   /* known absent: 404 */
#define NGX_HTTP_SHORTLINK_CACHE_STALE     3   /* expired, usable on error */


typedef struct {
    ngx_msec_t                    ttl;
    ngx_msec_t                    negative_ttl;
    ngx_msec_t                    stale_if_error;
} ngx_http_shortlink_cache_conf_t;


ngx_shm_zone_t *ngx_http_shortlink_cache_add(ngx_conf_t *cf, ngx_str_t *name,
    size_t size, ngx_http_shortlink_cache_conf_t *conf);

ngx_uint_t ngx_http_shortlink_cache_get(ngx_shm_zone_t *zone, ngx_str_t *code,
    ngx_pool_t *pool, ngx_http_shortlink_link_t *link);
void ngx_http_shortlink_cache_put(ngx_shm_zone_t *zone, ngx_str_t *code,
    ngx_http_shortlink_link_t *link);
void ngx_http_shortlink_cache_invalidate(ngx_shm_zone_t *zone,
    ngx_str_t *code, int64_t version);
void ngx_http_shortlink_cache_clear(ngx_shm_zone_t *zone);


#endif /* _NGX_HTTP_SHORTLINK_CACHE_H_INCLUDED_ */
