
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Link-in-bio profile pages: GET <location>/<username>, rendered in the
 * module from a built-in template and cached like links.
 */


#ifndef _NGX_HTTP_SHORTLINK_PROFILE_H_INCLUDED_
#define _NGX_HTTP_SHORTLINK_PROFILE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <libpq-fe.h>


/* the profiles_username constraint of sql/015_profiles.sql */
#define NGX_HTTP_SHORTLINK_PROFILE_NAME_MAX  30

/*
 * The template's revision: part of every ETag and of every cached page, so
 * a module with a new template neither serves nor validates old pages.
 */
#define NGX_HTTP_SHORTLINK_PROFILE_REV       "1"

/* stands for the link prefix in a cached page (never in escaped text) */
#define NGX_HTTP_SHORTLINK_PROFILE_HOLE      '\x01'

/* a zone entry holds at most this much (ngx_http_shortlink_cache.c) */
#define NGX_HTTP_SHORTLINK_PROFILE_MAX_LEN   65535


typedef struct {
    ngx_flag_t                    enable;
    ngx_str_t                     links;       /* prefix of entry hrefs */
    time_t                        ttl;         /* freshness in the caches */
    time_t                        max_age;     /* Cache-Control max-age */
} ngx_http_shortlink_profile_conf_t;


/*
 * A page as cached, in the zone and in Redis:
 *
 *     "v<version> P<rev> <profile id> <fresh until> <holes>\n<html>"
 *
 * where html is the whole page with NGX_HTTP_SHORTLINK_PROFILE_HOLE where
 * each entry's link prefix goes (so one cached page serves locations with
 * different prefixes), holes how many there are, and fresh until the Unix
 * time after which the page must be asked for again (the earliest of the
 * fetch time + ttl= and the next scheduled change of its entries).
 */
typedef struct {
    int64_t                       version;
    int64_t                       profile_id;
    time_t                        fresh_until;
    ngx_uint_t                    holes;
    ngx_str_t                     html;
} ngx_http_shortlink_profile_t;


/* ngx_http_shortlink_profile_render.c; the rest is in ..._module.h */

ngx_int_t ngx_http_shortlink_profile_render(PGresult *res, time_t ttl,
    ngx_str_t *value);
ngx_int_t ngx_http_shortlink_profile_decode(ngx_str_t *value,
    ngx_http_shortlink_profile_t *page);
ngx_uint_t ngx_http_shortlink_profile_valid(ngx_http_shortlink_profile_t *page);
size_t ngx_http_shortlink_profile_size(ngx_http_shortlink_profile_t *page,
    ngx_str_t *links);
u_char *ngx_http_shortlink_profile_fill(u_char *p,
    ngx_http_shortlink_profile_t *page, ngx_str_t *links);

extern ngx_str_t  ngx_http_shortlink_profile_csp;


#endif /* _NGX_HTTP_SHORTLINK_PROFILE_H_INCLUDED_ */
