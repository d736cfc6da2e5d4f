
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The redirect path: GET /{code} -> 302 Location.  The content handler reads
 * as the data flow in DESIGN.md, one call per step; a request that needs
 * PostgreSQL is suspended and resumed from the pool's reply callback.
 * Nothing here talks to a backend directly.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_code.h"


#define NGX_HTTP_SHORTLINK_URL_MAX_LEN  8192


static ngx_int_t ngx_http_shortlink_get_code(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx);
static ngx_int_t ngx_http_shortlink_lookup(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx);
static void ngx_http_shortlink_lookup_done(void *data, PGresult *res,
    ngx_int_t rc);
static ngx_int_t ngx_http_shortlink_found(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, PGresult *res);
static ngx_uint_t ngx_http_shortlink_target_valid(ngx_str_t *url);
static ngx_int_t ngx_http_shortlink_redirect(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx);
static ngx_int_t ngx_http_shortlink_unavailable(ngx_http_request_t *r);
static ngx_int_t ngx_http_shortlink_not_allowed(ngx_http_request_t *r);
static ngx_int_t ngx_http_shortlink_add_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value, ngx_table_elt_t **hp);
static void ngx_http_shortlink_cleanup(void *data);


static ngx_str_t  ngx_http_shortlink_location = ngx_string("Location");
static ngx_str_t  ngx_http_shortlink_cache_control =
    ngx_string("Cache-Control");
static ngx_str_t  ngx_http_shortlink_no_store = ngx_string("private, max-age=0");
static ngx_str_t  ngx_http_shortlink_retry_after = ngx_string("Retry-After");
static ngx_str_t  ngx_http_shortlink_allow = ngx_string("Allow");
static ngx_str_t  ngx_http_shortlink_get_head = ngx_string("GET, HEAD");
static ngx_str_t  ngx_http_shortlink_text_html = ngx_string("text/html");


ngx_int_t
ngx_http_shortlink_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_shortlink_ctx_t  *ctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_shortlink_not_allowed(r);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
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

    /* 2. PostgreSQL (the caches come before it) */

    return ngx_http_shortlink_lookup(r, ctx);
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
ngx_http_shortlink_lookup(ngx_http_request_t *r, ngx_http_shortlink_ctx_t *ctx)
{
    ngx_int_t                        rc;
    ngx_http_cleanup_t              *cln;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    if (smcf->pg_pool == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_shortlink_cleanup;
    cln->data = ctx;

    rc = ngx_http_shortlink_pg_query(smcf->pg_pool,
                                     NGX_HTTP_SHORTLINK_PG_LOOKUP,
                                     1, &ctx->code,
                                     ngx_http_shortlink_lookup_done, ctx,
                                     &ctx->query);

    if (rc == NGX_DECLINED) {
        return ngx_http_shortlink_unavailable(r);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "shortlink: looking up \"%V\" in PostgreSQL", &ctx->code);

    /* notice a client that leaves while we wait: it finalizes with 499 */
    r->read_event_handler = ngx_http_test_reading;

    r->main->count++;

    return NGX_DONE;
}


/* the pool's callback: resume the suspended request */

static void
ngx_http_shortlink_lookup_done(void *data, PGresult *res, ngx_int_t rc)
{
    ngx_http_shortlink_ctx_t *ctx = data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ctx->query = NULL;

    if (rc == NGX_OK) {
        rc = ngx_http_shortlink_found(r, ctx, res);

    } else {
        rc = ngx_http_shortlink_unavailable(r);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_shortlink_found(ngx_http_request_t *r, ngx_http_shortlink_ctx_t *ctx,
    PGresult *res)
{
    ngx_int_t   status;
    ngx_str_t   url;

    if (PQntuples(res) == 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "shortlink: \"%V\" not found", &ctx->code);
        return NGX_HTTP_NOT_FOUND;
    }

    if (PQnfields(res) < 2) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "shortlink: unexpected lookup result");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    url.len = PQgetlength(res, 0, 0);
    url.data = (u_char *) PQgetvalue(res, 0, 0);

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 1),
                      PQgetlength(res, 0, 1));

    /* the database checks both; a row written around its rules is refused */

    if (!ngx_http_shortlink_target_valid(&url)
        || (status != NGX_HTTP_MOVED_PERMANENTLY
            && status != NGX_HTTP_MOVED_TEMPORARILY
            && status != NGX_HTTP_TEMPORARY_REDIRECT
            && status != NGX_HTTP_PERMANENT_REDIRECT))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "shortlink: link \"%V\" has an invalid target or "
                      "status, refused", &ctx->code);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->url.data = ngx_pnalloc(r->pool, url.len);
    if (ctx->url.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->url.data, url.data, url.len);
    ctx->url.len = url.len;
    ctx->status = (ngx_uint_t) status;

    return ngx_http_shortlink_redirect(r, ctx);
}


/* the links_url_* constraints of sql/001_links.sql, checked again */

static ngx_uint_t
ngx_http_shortlink_target_valid(ngx_str_t *url)
{
    u_char  *p, *last;

    if (url->len > NGX_HTTP_SHORTLINK_URL_MAX_LEN) {
        return 0;
    }

    if (!(url->len > 7 && ngx_strncasecmp(url->data, (u_char *) "http://", 7)
                          == 0)
        && !(url->len > 8
             && ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0))
    {
        return 0;
    }

    last = url->data + url->len;

    for (p = url->data; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_shortlink_redirect(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx)
{
    size_t        len, escape;
    u_char       *p;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_str_t     reason;
    ngx_chain_t   out;

    if (ngx_http_shortlink_add_header(r, &ngx_http_shortlink_location,
                                      &ctx->url, &r->headers_out.location)
        != NGX_OK
        || ngx_http_shortlink_add_header(r, &ngx_http_shortlink_cache_control,
                                         &ngx_http_shortlink_no_store, NULL)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (ctx->status) {
    case NGX_HTTP_MOVED_PERMANENTLY:
        ngx_str_set(&reason, "301 Moved Permanently");
        break;
    case NGX_HTTP_TEMPORARY_REDIRECT:
        ngx_str_set(&reason, "307 Temporary Redirect");
        break;
    case NGX_HTTP_PERMANENT_REDIRECT:
        ngx_str_set(&reason, "308 Permanent Redirect");
        break;
    default:
        ngx_str_set(&reason, "302 Found");
    }

    escape = ngx_escape_html(NULL, ctx->url.data, ctx->url.len);

    len = sizeof("<html><head><title></title></head>" CRLF) - 1 + reason.len
          + sizeof("<body><a href=\"\">") - 1 + ctx->url.len + escape
          + sizeof("</a></body></html>" CRLF) - 1 + reason.len;

    r->headers_out.status = ctx->status;
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
    p = (u_char *) ngx_escape_html(p, ctx->url.data, ctx->url.len);
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
                            ngx_http_shortlink_pg_retry_after(smcf->pg_pool))
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


/* the request goes away: whatever PostgreSQL answers later is dropped */

static void
ngx_http_shortlink_cleanup(void *data)
{
    ngx_http_shortlink_ctx_t *ctx = data;

    if (ctx->query) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                       "shortlink: request gone, lookup detached");

        ngx_http_shortlink_pg_detach(ctx->query);
        ctx->query = NULL;
    }
}
