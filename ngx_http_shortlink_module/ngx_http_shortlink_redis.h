
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The per-worker Redis client: one persistent, pipelined hiredis async
 * connection driven by nginx events, GET for lookups and SET ... EX to fill
 * the cache.  Nothing else in the module includes hiredis.
 */


#ifndef _NGX_HTTP_SHORTLINK_REDIS_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct ngx_http_shortlink_redis_s      ngx_http_shortlink_redis_t;
typedef struct ngx_http_shortlink_redis_cmd_s  ngx_http_shortlink_redis_cmd_t;


/*
 * Called exactly once per GET, from an event handler, never from inside
 * ngx_http_shortlink_redis_get():
 *     rc == NGX_OK        value holds the stored string (valid only during
 *                         the call: copy what you keep);
 *     rc == NGX_DECLINED  the key does not exist (value is NULL);
 *     rc == NGX_ERROR     error, timeout or disconnect (value is NULL).
 */
typedef void (*ngx_http_shortlink_redis_handler_pt)(void *data,
    ngx_int_t rc, ngx_str_t *value);


typedef struct {
    ngx_str_t                     host;       /* address or unix path */
    in_port_t                     port;       /* 0 for a unix socket */
    ngx_str_t                     password;   /* empty: no AUTH */
    ngx_int_t                     db;         /* SELECT db when > 0 */
    ngx_msec_t                    timeout;    /* connect and each command */
    ngx_msec_t                    backoff_max;
    ngx_str_t                     prefix;     /* key prefix, "sl:" */

    /* counters shared by all workers (metrics), NULL: not counted */
    ngx_atomic_t                 *errors;     /* failed, not timed out */
    ngx_atomic_t                 *timeouts;
} ngx_http_shortlink_redis_conf_t;


ngx_http_shortlink_redis_t *ngx_http_shortlink_redis_create(
    ngx_cycle_t *cycle, ngx_http_shortlink_redis_conf_t *conf);
void ngx_http_shortlink_redis_destroy(ngx_http_shortlink_redis_t *rd);

/*
 * GET <prefix><key>.  NGX_OK: queued, the handler will be called;
 * NGX_DECLINED: Redis is unavailable (down, connecting after a failure, or
 * backing off): go to the next tier at once; NGX_ERROR: no memory.
 */
ngx_int_t ngx_http_shortlink_redis_get(ngx_http_shortlink_redis_t *rd,
    ngx_str_t *key, ngx_http_shortlink_redis_handler_pt handler, void *data,
    ngx_http_shortlink_redis_cmd_t **cmdp);

/* the asker goes away: its handler will not be called */
void ngx_http_shortlink_redis_detach(ngx_http_shortlink_redis_cmd_t *cmd);

/*
 * <prefix><key> = value (which starts "v<version> ") for ttl seconds,
 * unless Redis holds a newer version; fire and forget; no-op when down
 */
void ngx_http_shortlink_redis_set(ngx_http_shortlink_redis_t *rd,
    ngx_str_t *key, int64_t version, ngx_str_t *value, time_t ttl);

/* 1 while lookups can use Redis (connected and answering) */
ngx_uint_t ngx_http_shortlink_redis_up(ngx_http_shortlink_redis_t *rd);

/*
 * The link changed to version: a tombstone "v<version> -" for ttl seconds
 * replaces an older value (a plain DEL when the version is unknown);
 * fire and forget; no-op when down
 */
void ngx_http_shortlink_redis_invalidate(ngx_http_shortlink_redis_t *rd,
    ngx_str_t *key, int64_t version, time_t ttl);


#endif /* _NGX_HTTP_SHORTLINK_REDIS_H_INCLUDED_ */
