
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Types shared by the module's files: configuration at each level, what
 * each worker holds, and the per-request context.
 */


#ifndef _NGX_HTTP_SHORTLINK_MODULE_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_code.h"
#include "ngx_http_shortlink_link.h"
#include "ngx_http_shortlink_rules.h"
#include "ngx_http_shortlink_cache.h"
#include "ngx_http_shortlink_pg.h"
#include "ngx_http_shortlink_redis.h"
#include "ngx_http_shortlink_bloom.h"
#include "ngx_http_shortlink_click.h"
#include "ngx_http_shortlink_flush.h"
#include "ngx_http_shortlink_metrics.h"
#include "ngx_http_shortlink_profile.h"


/* the channel sql/002_notify.sql notifies on every change of a link */
#define NGX_HTTP_SHORTLINK_CHANNEL  "shortlink_links"


typedef struct ngx_http_shortlink_lookup_s  ngx_http_shortlink_lookup_t;


/* what one worker process holds; built in init_process */
typedef struct {
    ngx_http_shortlink_pg_pool_t     *pg;
    ngx_http_shortlink_redis_t       *redis;       /* NULL: no L2 */
    ngx_http_shortlink_bloom_t       *bloom;       /* NULL: no filter */
    ngx_rbtree_t                      lookups;     /* in flight, by code */
    ngx_rbtree_node_t                 sentinel;
    ngx_rbtree_t                      profile_lookups; /* by "@name" */
    ngx_rbtree_node_t                 profile_sentinel;
    ngx_http_shortlink_ids_t          ids;
    ngx_http_shortlink_flush_t       *flush;       /* NULL: no queue */
    ngx_uint_t                        listen_lost; /* LISTEN went down */
    ngx_event_t                       publish;     /* metrics gauges */
} ngx_http_shortlink_worker_t;


typedef struct {
    ngx_http_shortlink_pg_conf_t      pg;
    ngx_shm_zone_t                   *zone;        /* NULL: no L1 */
    ngx_http_shortlink_cache_conf_t   cache;
    ngx_http_shortlink_redis_conf_t   redis;       /* host.len 0: no L2 */
    time_t                            redis_ttl;
    ngx_http_shortlink_bloom_conf_t   bloom;
    ngx_shm_zone_t                   *queue;       /* NULL: no clicks */
    ngx_http_shortlink_flush_conf_t   flush;
    ngx_array_t                      *fields;      /* click_field_t */
    ngx_shm_zone_t                   *metrics;
    ngx_flag_t                        used;        /* a location has it */
    ngx_http_shortlink_worker_t      *worker;
} ngx_http_shortlink_main_conf_t;


typedef struct {
    ngx_flag_t                        enable;
    ngx_http_complex_value_t         *code;        /* NULL: last segment */
    ngx_str_t                         cookie_name; /* empty: no cookie */
    time_t                            cookie_max_age;
    ngx_int_t                         cookie_index;
    ngx_uint_t                        click_ip;
    ngx_flag_t                        respect_dnt;
    ngx_int_t                         dnt_index;
    ngx_int_t                         gpc_index;
    ngx_uint_t                        code_length;   /* generated codes */
    ngx_uint_t                        code_attempts;
    ngx_http_shortlink_profile_conf_t profile;
    ngx_flag_t                        qr;            /* public /{code}/qr */
    ngx_http_complex_value_t         *rule_country;  /* NULL: none */
    ngx_str_t                         password_secret; /* empty: no cookie */
    time_t                            password_ttl;
} ngx_http_shortlink_loc_conf_t;


typedef struct {
    ngx_http_request_t               *request;
    ngx_str_t                         code;
    ngx_http_shortlink_link_t         link;
    ngx_str_t                         tier;        /* $shortlink_cache */
    ngx_queue_t                       queue;       /* in lookup->waiters */
    ngx_http_shortlink_lookup_t      *lookup;      /* while suspended */
    unsigned                          qr:1;        /* /{code}/qr asked */
    ngx_http_shortlink_pg_query_t    *password_query;
    unsigned                          unlocked:1;  /* password given */
} ngx_http_shortlink_ctx_t;


/* what a lookup ends in */
#define NGX_HTTP_SHORTLINK_REDIRECT      1
#define NGX_HTTP_SHORTLINK_NOT_FOUND     2
#define NGX_HTTP_SHORTLINK_UNAVAILABLE   3


ngx_shm_zone_t *ngx_http_shortlink_zone_add(ngx_conf_t *cf, ngx_str_t *name,
    size_t size, ngx_shm_zone_init_pt init, void *data);

ngx_int_t ngx_http_shortlink_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_shortlink_respond(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, ngx_uint_t outcome);

ngx_int_t ngx_http_shortlink_lookup(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, ngx_http_shortlink_link_t *stale);
void ngx_http_shortlink_lookup_invalidate(ngx_http_shortlink_main_conf_t *smcf,
    ngx_str_t *payload);
ngx_int_t ngx_http_shortlink_lookup_row(PGresult *res, int col, int vcol,
    ngx_http_shortlink_link_t *link);
void ngx_http_shortlink_lookup_warm(ngx_http_shortlink_main_conf_t *smcf,
    ngx_str_t *code, ngx_http_shortlink_link_t *link);
void ngx_http_shortlink_lookup_destroy(ngx_http_shortlink_worker_t *worker);

ngx_int_t ngx_http_shortlink_api_handler(ngx_http_request_t *r);

typedef struct ngx_http_shortlink_profile_lookup_s
    ngx_http_shortlink_profile_lookup_t;

typedef struct {
    ngx_http_shortlink_ctx_t              base;   /* for the variables */
    ngx_http_shortlink_profile_lookup_t  *lookup; /* while suspended */
} ngx_http_shortlink_profile_ctx_t;

char *ngx_http_shortlink_profile_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_shortlink_profile_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_shortlink_profile_send(ngx_http_request_t *r,
    ngx_http_shortlink_profile_t *page);
ngx_int_t ngx_http_shortlink_profile_status(ngx_http_request_t *r,
    ngx_uint_t status);
ngx_int_t ngx_http_shortlink_profile_lookup(ngx_http_request_t *r,
    ngx_http_shortlink_profile_ctx_t *ctx, ngx_str_t *stale);
void ngx_http_shortlink_profile_invalidate(
    ngx_http_shortlink_main_conf_t *smcf, ngx_str_t *payload);
void ngx_http_shortlink_profile_destroy(ngx_http_shortlink_worker_t *worker);
ngx_table_elt_t *ngx_http_shortlink_accept_language(ngx_http_request_t *r);
ngx_int_t ngx_http_shortlink_rules_apply(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx);
ngx_int_t ngx_http_shortlink_password(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx);

void ngx_http_shortlink_metrics_start(ngx_http_shortlink_main_conf_t *smcf,
    ngx_cycle_t *cycle);
void ngx_http_shortlink_metrics_stop(ngx_http_shortlink_main_conf_t *smcf);

ngx_http_shortlink_flush_t *ngx_http_shortlink_flush_create(ngx_cycle_t *cycle,
    ngx_http_shortlink_main_conf_t *smcf);
void ngx_http_shortlink_flush_destroy(ngx_http_shortlink_flush_t *f);


extern ngx_module_t  ngx_http_shortlink_module;


#endif /* _NGX_HTTP_SHORTLINK_MODULE_H_INCLUDED_ */
