
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Link-in-bio profile pages, the request side: the shortlink_profile
 * directive, GET <location>/@<username> (or .../<username>) walking the
 * tiers a redirect walks with "@<username>" as the key
 *
 *     validate -> L1 zone -> bloom filter -> Redis -> PostgreSQL
 *              -> a stale page if every backend failed
 *
 * (the last two in ngx_http_shortlink_profile_cache.c), and the response.
 * Every page served (200, or 304 to If-None-Match) to a GET is a profile
 * view, queued as a click on the code "_p<profile id>" with
 * kind=profile_view: the same queue and guarantees as a redirect's click.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_profile.h"


static ngx_int_t ngx_http_shortlink_profile_key(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_int_t ngx_http_shortlink_profile_header(ngx_http_request_t *r,
    char *key, ngx_str_t *value, ngx_table_elt_t **hp);
static ngx_uint_t ngx_http_shortlink_profile_cookie(ngx_http_request_t *r);


static ngx_str_t  ngx_http_shortlink_profile_html =
    ngx_string("text/html; charset=utf-8");
static ngx_str_t  ngx_http_shortlink_profile_nosniff = ngx_string("nosniff");
static ngx_str_t  ngx_http_shortlink_profile_referrer =
    ngx_string("same-origin");
static ngx_str_t  ngx_http_shortlink_profile_get_head =
    ngx_string("GET, HEAD");
static ngx_str_t  ngx_http_shortlink_profile_kind = ngx_string("kind");
static ngx_str_t  ngx_http_shortlink_profile_view =
    ngx_string("profile_view");


/*
 * shortlink_profile [links=prefix] [ttl=time] [max_age=time];
 */

char *
ngx_http_shortlink_profile_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_shortlink_loc_conf_t  *slcf = conf;

    u_char                          *p, *last;
    ngx_str_t                       *value, s;
    ngx_int_t                        n;
    ngx_uint_t                       i;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_shortlink_main_conf_t  *smcf;

    if (slcf->profile.enable) {
        return "is duplicate";
    }

    if (slcf->enable == 1) {
        return "cannot be used in a location with \"shortlink\"";
    }

    slcf->profile.enable = 1;
    ngx_str_set(&slcf->profile.links, "/");
    slcf->profile.ttl = 300;
    slcf->profile.max_age = 60;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "links=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            /* goes into an href as it is: no quote, no markup, no space */

            last = s.data + s.len;

            for (p = s.data; p < last; p++) {
                if (*p <= ' ' || *p >= 0x7f || *p == '"' || *p == '\''
                    || *p == '<' || *p == '>' || *p == '&' || *p == '\\'
                    || *p == '?' || *p == '#')
                {
                    break;
                }
            }

            if (s.len == 0 || p != last || s.data[0] != '/'
                || s.data[s.len - 1] != '/' || s.len > 256)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"links=\" must be a path from \"/\" to "
                                   "\"/\" of printable characters without "
                                   "quotes, \"<>&\\?#\", in \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            slcf->profile.links = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            n = ngx_parse_time(&s, 1);
            if (n == NGX_ERROR || n < 1) {
                goto invalid;
            }

            slcf->profile.ttl = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_age=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            n = ngx_parse_time(&s, 1);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            slcf->profile.max_age = n;
            continue;
        }

        goto invalid;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_shortlink_profile_handler;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_shortlink_module);
    smcf->used = 1;

    if (ngx_http_shortlink_metrics_add_zone(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_http_shortlink_profile_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_str_t                          key, *stale;
    ngx_http_shortlink_link_t          cached;
    ngx_http_shortlink_profile_t       page;
    ngx_http_shortlink_profile_ctx_t  *ctx;
    ngx_http_shortlink_main_conf_t    *smcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_shortlink_profile_header(r, "Allow",
                                        &ngx_http_shortlink_profile_get_head,
                                        NULL)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_shortlink_profile_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->base.request = r;
    ngx_http_set_ctx(r, &ctx->base, ngx_http_shortlink_module);

    /* 1. the username: a malformed one never reaches a backend */

    rc = ngx_http_shortlink_profile_key(r, &key);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx->base.code = key;

    /* 2. L1 */

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);
    stale = NULL;

    if (smcf->zone) {

        switch (ngx_http_shortlink_cache_get(smcf->zone, &key, r->pool,
                                             &cached))
        {
        case NGX_HTTP_SHORTLINK_CACHE_HIT:
            if (ngx_http_shortlink_profile_decode(&cached.url, &page)
                != NGX_OK)
            {
                break;
            }

            if (page.fresh_until > ngx_time()) {
                ngx_str_set(&ctx->base.tier, "shm");
                return ngx_http_shortlink_profile_send(r, &page);
            }

            /* a scheduled change is due, or ttl= is over */

            stale = &cached.url;
            break;

        case NGX_HTTP_SHORTLINK_CACHE_NEGATIVE:
            ngx_str_set(&ctx->base.tier, "negative");
            return ngx_http_shortlink_profile_status(r, NGX_HTTP_NOT_FOUND);

        case NGX_HTTP_SHORTLINK_CACHE_STALE:
            if (ngx_http_shortlink_profile_decode(&cached.url, &page)
                == NGX_OK)
            {
                stale = &cached.url;
            }

            break;
        }
    }

    /* 3. the bloom filter knows "@<username>" of every profile */

    if (smcf->worker && smcf->worker->bloom
        && ngx_http_shortlink_bloom_absent(smcf->worker->bloom, &key))
    {
        ngx_str_set(&ctx->base.tier, "bloom");
        return ngx_http_shortlink_profile_status(r, NGX_HTTP_NOT_FOUND);
    }

    /* 4.-5. Redis, then PostgreSQL: one lookup per profile in this worker */

    return ngx_http_shortlink_profile_lookup(r, ctx, stale);
}


/*
 * "@<username>" from the last segment of the path, "@" optional:
 * /@alice, /p/alice and /p/@alice are all "alice".
 */

static ngx_int_t
ngx_http_shortlink_profile_key(ngx_http_request_t *r, ngx_str_t *key)
{
    u_char  *p, *start, *last;

    if (r->quoted_uri) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "shortlink: percent-encoded profile path refused");
        return NGX_HTTP_NOT_FOUND;
    }

    last = r->uri.data + r->uri.len;
    start = last;

    while (start > r->uri.data && start[-1] != '/') {
        start--;
    }

    if (start < last && *start == '@') {
        start++;
    }

    if (last - start < 1
        || last - start > NGX_HTTP_SHORTLINK_PROFILE_NAME_MAX)
    {
        goto invalid;
    }

    for (p = start; p < last; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '_' || *p == '.'))
        {
            goto invalid;
        }
    }

    key->len = 1 + (last - start);
    key->data = ngx_pnalloc(r->pool, key->len);
    if (key->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    key->data[0] = '@';
    ngx_memcpy(key->data + 1, start, last - start);

    return NGX_OK;

invalid:

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "shortlink: invalid username refused");

    return ngx_http_shortlink_profile_status(r, NGX_HTTP_NOT_FOUND);
}


/*
 * The page: a profile view is queued first (HEAD is none), then the
 * headers; nginx's not_modified filter turns the answer into a 304 when
 * If-None-Match names the ETag.
 */

ngx_int_t
ngx_http_shortlink_profile_send(ngx_http_request_t *r,
    ngx_http_shortlink_profile_t *page)
{
    size_t                          len;
    ngx_int_t                       rc;
    ngx_buf_t                      *b;
    ngx_str_t                       code, etag, cc;
    ngx_chain_t                     out;
    ngx_keyval_t                    kv;
    ngx_table_elt_t                *h;
    ngx_http_shortlink_loc_conf_t  *slcf;
    u_char                          cbuf[sizeof("_p") + NGX_INT64_LEN];

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);

    code.data = cbuf;
    code.len = ngx_sprintf(cbuf, "_p%L", page->profile_id) - cbuf;

    kv.key = ngx_http_shortlink_profile_kind;
    kv.value = ngx_http_shortlink_profile_view;

    if (ngx_http_shortlink_click_record_kv(r, &code, &kv, 1) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    etag.data = ngx_pnalloc(r->pool, sizeof("\"p-\"") + NGX_INT64_LEN
                                     + sizeof(NGX_HTTP_SHORTLINK_PROFILE_REV));
    cc.data = ngx_pnalloc(r->pool,
                          sizeof("private, max-age=") + NGX_TIME_T_LEN);

    if (etag.data == NULL || cc.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    etag.len = ngx_sprintf(etag.data, "\"p%L-" NGX_HTTP_SHORTLINK_PROFILE_REV
                           "\"", page->version)
               - etag.data;
    /*
     * A response that gives a new visitor its cookie is for that visitor
     * only: a shared cache must not hand the cookie to everyone
     */

    cc.len = ngx_sprintf(cc.data, "%s, max-age=%T",
                         ngx_http_shortlink_profile_cookie(r)
                         ? "private" : "public",
                         slcf->profile.max_age)
             - cc.data;

    if (ngx_http_shortlink_profile_header(r, "ETag", &etag, &h) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.etag = h;

    if (ngx_http_shortlink_profile_header(r, "Cache-Control", &cc, NULL)
        != NGX_OK
        || ngx_http_shortlink_profile_header(r, "Content-Security-Policy",
                                             &ngx_http_shortlink_profile_csp,
                                             NULL)
           != NGX_OK
        || ngx_http_shortlink_profile_header(r, "X-Content-Type-Options",
                                         &ngx_http_shortlink_profile_nosniff,
                                         NULL)
           != NGX_OK
        || ngx_http_shortlink_profile_header(r, "Referrer-Policy",
                                         &ngx_http_shortlink_profile_referrer,
                                         NULL)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_http_shortlink_profile_size(page, &slcf->profile.links);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = ngx_http_shortlink_profile_html;
    r->headers_out.content_type_len = ngx_http_shortlink_profile_html.len;
    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_http_shortlink_profile_fill(b->last, page,
                                              &slcf->profile.links);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* whether the response sets a cookie (the click's visitor id) */

static ngx_uint_t
ngx_http_shortlink_profile_cookie(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash
            && h[i].key.len == sizeof("Set-Cookie") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Set-Cookie",
                               sizeof("Set-Cookie") - 1)
               == 0)
        {
            return 1;
        }
    }
}


static ngx_int_t
ngx_http_shortlink_profile_header(ngx_http_request_t *r, char *key,
    ngx_str_t *value, ngx_table_elt_t **hp)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    if (hp) {
        *hp = h;
    }

    return NGX_OK;
}


/* 404, or 503 with the Retry-After the PostgreSQL pool suggests */

ngx_int_t
ngx_http_shortlink_profile_status(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_str_t                        value;
    ngx_http_shortlink_main_conf_t  *smcf;

    if (status != NGX_HTTP_SERVICE_UNAVAILABLE) {
        return status;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%T",
                            ngx_http_shortlink_pg_retry_after(
                                smcf->worker->pg))
                - value.data;

    if (ngx_http_shortlink_profile_header(r, "Retry-After", &value, NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return status;
}
