
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The redirect path: GET /{code} -> 302 Location.  The content handler reads
 * as the data flow in DESIGN.md, one call per step: validate, L1, then the
 * lookup (ngx_http_shortlink_lookup.c) that walks the slower tiers and
 * answers through ngx_http_shortlink_respond().  Nothing here talks to a
 * backend.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_code.h"
#include "ngx_http_shortlink_source.h"
#include "ngx_http_shortlink_qr.h"


static ngx_int_t ngx_http_shortlink_get_code(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx);
static ngx_int_t ngx_http_shortlink_redirect(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx);
static ngx_int_t ngx_http_shortlink_target(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, ngx_str_t *args, ngx_str_t *target);
static ngx_int_t ngx_http_shortlink_unavailable(ngx_http_request_t *r);
static ngx_int_t ngx_http_shortlink_not_allowed(ngx_http_request_t *r);
static ngx_int_t ngx_http_shortlink_add_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value, ngx_table_elt_t **hp);


static ngx_str_t  ngx_http_shortlink_location = ngx_string("Location");
static ngx_str_t  ngx_http_shortlink_cache_control =
    ngx_string("Cache-Control");
static ngx_str_t  ngx_http_shortlink_no_store =
    ngx_string("private, max-age=0");
static ngx_str_t  ngx_http_shortlink_retry_after = ngx_string("Retry-After");
static ngx_str_t  ngx_http_shortlink_allow = ngx_string("Allow");
static ngx_str_t  ngx_http_shortlink_get_head = ngx_string("GET, HEAD");
static ngx_str_t  ngx_http_shortlink_text_html = ngx_string("text/html");


ngx_int_t
ngx_http_shortlink_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_shortlink_ctx_t        *ctx;
    ngx_http_shortlink_link_t        link, *stale;
    ngx_http_shortlink_main_conf_t  *smcf;

    /* POST only for the password form of a protected link: see below */

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))) {
        return ngx_http_shortlink_not_allowed(r);
    }

    if (r->method != NGX_HTTP_POST) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_shortlink_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_shortlink_module);

    /* 1. validate the code: a malformed one never reaches a backend */

    rc = ngx_http_shortlink_get_code(r, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    /* 2. L1, the shared-memory zone */

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);
    stale = NULL;

    if (smcf->zone) {

        switch (ngx_http_shortlink_cache_get(smcf->zone, &ctx->code, r->pool,
                                             &link))
        {
        case NGX_HTTP_SHORTLINK_CACHE_HIT:
            ctx->link = link;
            ngx_str_set(&ctx->tier, "shm");
            return ngx_http_shortlink_redirect(r, ctx);

        case NGX_HTTP_SHORTLINK_CACHE_NEGATIVE:
            ngx_str_set(&ctx->tier, "negative");
            return NGX_HTTP_NOT_FOUND;

        case NGX_HTTP_SHORTLINK_CACHE_STALE:
            stale = &link;
            break;
        }
    }

    /*
     * 3. the bloom filter: a code that certainly is no link gets 404 here,
     *    before any backend, and is not cached (a flood of random codes
     *    must not push real links out of the zone)
     */

    if (smcf->worker && smcf->worker->bloom
        && ngx_http_shortlink_bloom_absent(smcf->worker->bloom, &ctx->code))
    {
        ngx_str_set(&ctx->tier, "bloom");
        return NGX_HTTP_NOT_FOUND;
    }

    /* 4.-5. Redis, then PostgreSQL: one lookup per code in this worker */

    return ngx_http_shortlink_lookup(r, ctx, stale);
}


/* how a lookup that finished later is answered */

ngx_int_t
ngx_http_shortlink_respond(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, ngx_uint_t outcome)
{
    switch (outcome) {

    case NGX_HTTP_SHORTLINK_REDIRECT:
        return ngx_http_shortlink_redirect(r, ctx);

    case NGX_HTTP_SHORTLINK_NOT_FOUND:
        return NGX_HTTP_NOT_FOUND;

    default:
        return ngx_http_shortlink_unavailable(r);
    }
}


static ngx_int_t
ngx_http_shortlink_get_code(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx)
{
    ngx_http_shortlink_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);

    if (slcf->code) {
        if (ngx_http_complex_value(r, slcf->code, &ctx->code) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (r->quoted_uri) {
        /* codes never need %-escapes: any in the path is a trick */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "shortlink: percent-encoded path refused");
        return NGX_HTTP_NOT_FOUND;

    } else if (slcf->qr && ngx_http_shortlink_qr_uri(r, &ctx->code)) {
        ctx->qr = 1;

    } else {
        ngx_http_shortlink_code_from_uri(&r->uri, &ctx->code);
    }

    if (!ngx_http_shortlink_code_valid(ctx->code.data, ctx->code.len)) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "shortlink: invalid code refused");
        ngx_str_null(&ctx->code);
        return NGX_HTTP_NOT_FOUND;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_shortlink_redirect(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx)
{
    size_t         len, escape;
    u_char        *p;
    ngx_int_t      rc, rule;
    ngx_buf_t     *b;
    ngx_str_t      reason, target, args;
    ngx_uint_t     nkv;
    ngx_chain_t    out;
    ngx_keyval_t   kv[2];
    u_char         index[NGX_INT_T_LEN];

    /* a link the target policy blocks: no Location, no click */

    if (ctx->link.status == NGX_HTTP_SHORTLINK_GONE) {
        return NGX_HTTP_SHORTLINK_GONE;
    }

    /* "shortlink_qr on": /{code}/qr is the link's QR code, not a visit */

    if (ctx->qr) {
        if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            return ngx_http_shortlink_qr_link(r);
        }

        return ngx_http_shortlink_not_allowed(r);
    }

    /* a password first (the form, or its POST), if the link has one */

    if (ctx->link.password) {
        rc = ngx_http_shortlink_password(r, ctx);
        if (rc != NGX_DECLINED) {
            return rc;
        }

    } else if (r->method == NGX_HTTP_POST) {
        return ngx_http_shortlink_not_allowed(r);
    }

    /* the "_sls" source marker: recorded, never forwarded */

    nkv = 0;

    if (ngx_http_shortlink_source(r, &args, &kv[0].value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (kv[0].value.len) {
        ngx_str_set(&kv[0].key, "source");
        nkv = 1;
    }

    /* the redirect rules, if the link has any, may pick another target */

    rule = NGX_DECLINED;

    if (ctx->link.rules.len) {
        rule = ngx_http_shortlink_rules_apply(r, ctx);

        if (rule == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* 6. the click: queued, never waited for (may set the visitor cookie) */

    if (rule >= 0) {
        ngx_str_set(&kv[nkv].key, "rule");
        kv[nkv].value.data = index;
        kv[nkv].value.len = ngx_sprintf(index, "%i", rule) - index;
        nkv++;
    }

    if (ngx_http_shortlink_click_record_kv(r, &ctx->code, kv, nkv) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_shortlink_target(r, ctx, &args, &target) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_shortlink_add_header(r, &ngx_http_shortlink_location,
                                      &target, &r->headers_out.location)
        != NGX_OK
        || ngx_http_shortlink_add_header(r, &ngx_http_shortlink_cache_control,
                                         &ngx_http_shortlink_no_store, NULL)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (ctx->link.status) {
    case NGX_HTTP_MOVED_PERMANENTLY:
        ngx_str_set(&reason, "301 Moved Permanently");
        break;
    case NGX_HTTP_TEMPORARY_REDIRECT:
        ngx_str_set(&reason, "307 Temporary Redirect");
        break;
    case NGX_HTTP_PERMANENT_REDIRECT:
        ngx_str_set(&reason, "308 Permanent Redirect");
        break;
    case NGX_HTTP_SEE_OTHER:
        ngx_str_set(&reason, "303 See Other");
        break;
    default:
        ngx_str_set(&reason, "302 Found");
    }

    escape = ngx_escape_html(NULL, target.data, target.len);

    len = sizeof("<html><head><title></title></head>" CRLF) - 1 + reason.len
          + sizeof("<body><a href=\"\">") - 1 + target.len + escape
          + sizeof("</a></body></html>" CRLF) - 1 + reason.len;

    r->headers_out.status = ctx->link.status;
    r->headers_out.content_type = ngx_http_shortlink_text_html;
    r->headers_out.content_type_len = ngx_http_shortlink_text_html.len;
    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, "<html><head><title>",
                   sizeof("<html><head><title>") - 1);
    p = ngx_cpymem(p, reason.data, reason.len);
    p = ngx_cpymem(p, "</title></head>" CRLF "<body><a href=\"",
                   sizeof("</title></head>" CRLF "<body><a href=\"") - 1);
    p = (u_char *) ngx_escape_html(p, target.data, target.len);
    p = ngx_cpymem(p, "\">", 2);
    p = ngx_cpymem(p, reason.data, reason.len);
    b->last = ngx_cpymem(p, "</a></body></html>" CRLF,
                         sizeof("</a></body></html>" CRLF) - 1);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * Where the visitor goes: the link's target, plus the request's query
 * string for links with forward_query (after "&" if the target has a
 * query already), without the "_sls" source marker
 * (ngx_http_shortlink_source.c).  A query string that is not printable
 * ASCII is not forwarded: nothing unchecked ever reaches the Location
 * header.
 */

static ngx_int_t
ngx_http_shortlink_target(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, ngx_str_t *args, ngx_str_t *target)
{
    u_char  *p, *last, *hash;

    *target = ctx->link.url;

    if (!ctx->link.forward || args->len == 0) {
        return NGX_OK;
    }

    last = args->data + args->len;

    for (p = args->data; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            return NGX_OK;
        }
    }

    if (ctx->link.url.len + 1 + args->len > NGX_HTTP_SHORTLINK_URL_MAX_LEN) {
        return NGX_OK;
    }

    target->data = ngx_pnalloc(r->pool, ctx->link.url.len + 1 + args->len);
    if (target->data == NULL) {
        return NGX_ERROR;
    }

    /* the query goes before a fragment: "https://x/a?b#c" + "q" */

    hash = ngx_strlchr(ctx->link.url.data,
                       ctx->link.url.data + ctx->link.url.len, '#');
    if (hash == NULL) {
        hash = ctx->link.url.data + ctx->link.url.len;
    }

    p = ngx_cpymem(target->data, ctx->link.url.data,
                   hash - ctx->link.url.data);
    *p++ = ngx_strlchr(ctx->link.url.data, hash, '?') ? '&' : '?';
    p = ngx_cpymem(p, args->data, args->len);
    p = ngx_cpymem(p, hash, ctx->link.url.data + ctx->link.url.len - hash);

    target->len = p - target->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_shortlink_unavailable(ngx_http_request_t *r)
{
    ngx_str_t                        value;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%T",
                            ngx_http_shortlink_pg_retry_after(
                                smcf->worker->pg))
                - value.data;

    if (ngx_http_shortlink_add_header(r, &ngx_http_shortlink_retry_after,
                                      &value, NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_HTTP_SERVICE_UNAVAILABLE;
}


static ngx_int_t
ngx_http_shortlink_not_allowed(ngx_http_request_t *r)
{
    if (ngx_http_shortlink_add_header(r, &ngx_http_shortlink_allow,
                                      &ngx_http_shortlink_get_head, NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_HTTP_NOT_ALLOWED;
}


static ngx_int_t
ngx_http_shortlink_add_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value, ngx_table_elt_t **hp)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;

    if (hp) {
        *hp = h;
    }

    return NGX_OK;
}
