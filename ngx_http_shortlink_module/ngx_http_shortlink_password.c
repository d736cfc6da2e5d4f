
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Password-protected links.  A visit without a valid cookie gets a small
 * HTML form (GET; HEAD the same without a body); the form POSTs the
 * password back to the same URL, and PostgreSQL checks it
 * (shortlink.check_link_password(): bcrypt, a per-link attempt limit)
 * through the worker's asynchronous pool: nothing is hashed here, nothing
 * blocks.  A right password gets the redirect (the click is recorded
 * then) and a cookie
 *
 *     slpw_<code>=<expires>.<hex HMAC-SHA256(secret, "<code>\n<expires>")>
 *
 * scoped to the link's path, so later visits redirect at once until it
 * expires.  PostgreSQL unavailable: 503 with Retry-After, never a
 * redirect.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_utf8.h"


/* a form body is small: "password=" and at most 256 characters, escaped */
#define NGX_HTTP_SHORTLINK_PASSWORD_BODY_MAX  4096
#define NGX_HTTP_SHORTLINK_PASSWORD_MAX       256
#define NGX_HTTP_SHORTLINK_PASSWORD_LOCKED    300   /* Retry-After */

#define NGX_HTTP_SHORTLINK_FORM_ASK      0
#define NGX_HTTP_SHORTLINK_FORM_WRONG    1
#define NGX_HTTP_SHORTLINK_FORM_LOCKED   2
#define NGX_HTTP_SHORTLINK_FORM_BAD      3


static ngx_int_t ngx_http_shortlink_password_cookie_ok(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, ngx_str_t *secret);
static void ngx_http_shortlink_password_sign(ngx_str_t *secret,
    ngx_str_t *code, time_t expires, u_char *hex);
static void ngx_http_shortlink_password_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_shortlink_password_field(ngx_http_request_t *r,
    ngx_str_t *password);
static void ngx_http_shortlink_password_done(void *data, PGresult *res,
    ngx_int_t rc);
static ngx_int_t ngx_http_shortlink_password_set_cookie(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx);
static void ngx_http_shortlink_password_cleanup(void *data);
static ngx_int_t ngx_http_shortlink_password_form(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, ngx_uint_t status, ngx_uint_t what);
static ngx_int_t ngx_http_shortlink_password_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);


static const char  ngx_http_shortlink_password_sql[] =
    "SELECT shortlink.check_link_password($1, $2)";

static ngx_str_t  ngx_http_shortlink_password_csp = ngx_string(
    "default-src 'none'; form-action 'self' http: https:; "
    "frame-ancestors 'none'; base-uri 'none'");


/*
 * Called for a link with a password before it redirects: NGX_DECLINED
 * when the visitor may go on (a valid cookie, or the password was just
 * right), else the answer (the form, 405) or NGX_DONE while the body is
 * read and the password checked.
 */

ngx_int_t
ngx_http_shortlink_password(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_http_shortlink_loc_conf_t  *slcf;

    if (ctx->unlocked) {
        return NGX_DECLINED;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        if (slcf->password_secret.len
            && ngx_http_shortlink_password_cookie_ok(r, ctx,
                                                     &slcf->password_secret))
        {
            return NGX_DECLINED;
        }

        return ngx_http_shortlink_password_form(r, ctx, NGX_HTTP_OK,
                                                NGX_HTTP_SHORTLINK_FORM_ASK);
    }

    /* POST: the handler let it through for this */

    if (r->headers_in.content_length_n > NGX_HTTP_SHORTLINK_PASSWORD_BODY_MAX)
    {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_shortlink_password_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_http_shortlink_password_cookie_ok(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, ngx_str_t *secret)
{
    u_char                     *dot;
    time_t                      expires;
    ngx_str_t                   name, value;
    ngx_http_variable_value_t  *vv;
    u_char                      buf[sizeof("cookie_slpw_") - 1
                                    + NGX_HTTP_SHORTLINK_CODE_MAX_LEN];
    u_char                      hex[2 * 32];

    name.data = buf;
    name.len = ngx_sprintf(buf, "cookie_slpw_%V", &ctx->code) - buf;

    vv = ngx_http_get_variable(r, &name, ngx_hash_key(name.data, name.len));

    if (vv == NULL || vv->not_found || vv->len == 0) {
        return 0;
    }

    value.data = vv->data;
    value.len = vv->len;

    dot = ngx_strlchr(value.data, value.data + value.len, '.');

    if (dot == NULL || dot == value.data
        || (size_t) (dot - value.data) > NGX_TIME_T_LEN
        || (size_t) (value.data + value.len - dot - 1) != sizeof(hex))
    {
        return 0;
    }

    expires = ngx_atotm(value.data, dot - value.data);

    if (expires == NGX_ERROR || expires <= ngx_time()) {
        return 0;
    }

    ngx_http_shortlink_password_sign(secret, &ctx->code, expires, hex);

    return CRYPTO_memcmp(hex, dot + 1, sizeof(hex)) == 0;
}


static void
ngx_http_shortlink_password_sign(ngx_str_t *secret, ngx_str_t *code,
    time_t expires, u_char *hex)
{
    u_char        *p;
    unsigned int   len;
    u_char         msg[NGX_HTTP_SHORTLINK_CODE_MAX_LEN + 1 + NGX_TIME_T_LEN];
    u_char         md[EVP_MAX_MD_SIZE];

    p = ngx_sprintf(msg, "%V\n%T", code, expires);

    len = 0;

    if (HMAC(EVP_sha256(), secret->data, (int) secret->len, msg, p - msg, md,
             &len)
        == NULL || len != 32)
    {
        /* no signature matches all zeroes as hex never does */
        ngx_memset(hex, 'x', 2 * 32);
        return;
    }

    ngx_hex_dump(hex, md, 32);
}


/* the body was read: the password to PostgreSQL */

static void
ngx_http_shortlink_password_body(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_str_t                        params[2];
    ngx_http_cleanup_t              *cln;
    ngx_http_shortlink_ctx_t        *ctx;
    ngx_http_shortlink_main_conf_t  *smcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_shortlink_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    rc = ngx_http_shortlink_password_field(r, &params[1]);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r,
            rc == NGX_DECLINED
            ? ngx_http_shortlink_password_form(r, ctx,
                                               NGX_HTTP_BAD_REQUEST,
                                               NGX_HTTP_SHORTLINK_FORM_BAD)
            : rc);
        return;
    }

    params[0] = ctx->code;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_http_shortlink_password_cleanup;
    cln->data = ctx;

    rc = ngx_http_shortlink_pg_exec(smcf->worker->pg,
                                    ngx_http_shortlink_password_sql, 2,
                                    params, smcf->pg.query_timeout * 5,
                                    ngx_http_shortlink_password_done, ctx,
                                    &ctx->password_query);

    if (rc != NGX_OK) {
        ctx->password_query = NULL;
        ngx_http_finalize_request(r, ngx_http_shortlink_respond(r, ctx,
                                         NGX_HTTP_SHORTLINK_UNAVAILABLE));
    }
}


/*
 * The "password" field of an application/x-www-form-urlencoded body,
 * decoded: NGX_DECLINED when the body is not such a form or the value is
 * not 1-256 bytes of UTF-8 without control characters, a status for a
 * body too large.
 */

static ngx_int_t
ngx_http_shortlink_password_field(ngx_http_request_t *r, ngx_str_t *password)
{
    u_char       *p, *last, *end, *src, *dst, *v;
    size_t        len;
    ngx_buf_t    *b;
    ngx_uint_t    i;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_DECLINED;
    }

    if (r->request_body->temp_file || r->request_body->bufs->next) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    b = r->request_body->bufs->buf;

    if (b->in_file
        || b->last - b->pos > NGX_HTTP_SHORTLINK_PASSWORD_BODY_MAX)
    {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    p = b->pos;
    last = b->last;

    while (p < last) {
        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        if (end - p >= 9 && ngx_strncmp(p, "password=", 9) == 0) {
            p += 9;
            len = end - p;

            if (len == 0 || len > 3 * NGX_HTTP_SHORTLINK_PASSWORD_MAX) {
                return NGX_DECLINED;
            }

            v = ngx_pnalloc(r->pool, len);
            if (v == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* "+" is a space in a form; then the %XX escapes */

            for (i = 0; i < len; i++) {
                v[i] = (p[i] == '+') ? ' ' : p[i];
            }

            src = v;
            dst = v;
            ngx_unescape_uri(&dst, &src, len, 0);

            password->data = v;
            password->len = dst - v;

            if (password->len == 0
                || password->len > 4 * NGX_HTTP_SHORTLINK_PASSWORD_MAX
                || !ngx_http_shortlink_utf8_valid(password->data,
                                                  password->len))
            {
                return NGX_DECLINED;
            }

            for (i = 0; i < password->len; i++) {
                if (password->data[i] < ' ' || password->data[i] == 0x7f) {
                    return NGX_DECLINED;
                }
            }

            return NGX_OK;
        }

        p = end + 1;
    }

    return NGX_DECLINED;
}


static void
ngx_http_shortlink_password_done(void *data, PGresult *res, ngx_int_t rc)
{
    ngx_http_shortlink_ctx_t  *ctx = data;

    char                *v;
    ngx_int_t            answer;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;
    ctx->password_query = NULL;

    if (rc != NGX_OK || res == NULL || PQntuples(res) != 1
        || PQnfields(res) != 1)
    {
        answer = ngx_http_shortlink_respond(r, ctx,
                                            NGX_HTTP_SHORTLINK_UNAVAILABLE);
        goto done;
    }

    if (PQgetisnull(res, 0, 0)) {
        answer = ngx_http_shortlink_password_form(r, ctx,
                     NGX_HTTP_TOO_MANY_REQUESTS,
                     NGX_HTTP_SHORTLINK_FORM_LOCKED);
        goto done;
    }

    v = PQgetvalue(res, 0, 0);

    if (v[0] != 't') {
        answer = ngx_http_shortlink_password_form(r, ctx, NGX_HTTP_FORBIDDEN,
                     NGX_HTTP_SHORTLINK_FORM_WRONG);
        goto done;
    }

    /* right: the cookie, then the redirect with its click */

    if (ngx_http_shortlink_password_set_cookie(r, ctx) != NGX_OK) {
        answer = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ctx->unlocked = 1;
    ctx->link.status = NGX_HTTP_SEE_OTHER;

    answer = ngx_http_shortlink_respond(r, ctx, NGX_HTTP_SHORTLINK_REDIRECT);

done:

    ngx_http_finalize_request(r, answer);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_shortlink_password_set_cookie(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx)
{
    u_char                         *p;
    time_t                          expires;
    ngx_str_t                       value;
    ngx_uint_t                      i, path;
    ngx_http_shortlink_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);

    if (slcf->password_secret.len == 0) {
        return NGX_OK;
    }

    /* the path of this link only, if it can be said in the attribute */

    path = (r->uri.len > 0 && r->uri.len <= 1024);

    for (i = 0; path && i < r->uri.len; i++) {
        if (r->uri.data[i] <= ' ' || r->uri.data[i] >= 0x7f
            || r->uri.data[i] == ';' || r->uri.data[i] == ',')
        {
            path = 0;
        }
    }

    expires = ngx_time() + slcf->password_ttl;

    value.data = ngx_pnalloc(r->pool, sizeof("slpw_=.") - 1 + ctx->code.len
                                      + NGX_TIME_T_LEN + 2 * 32
                                      + sizeof("; Path=") - 1 + 1024
                                      + sizeof("; Max-Age=") - 1
                                      + NGX_TIME_T_LEN
                                      + sizeof("; HttpOnly; SameSite=Lax"
                                               "; Secure") - 1);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(value.data, "slpw_%V=%T.", &ctx->code, expires);
    ngx_http_shortlink_password_sign(&slcf->password_secret, &ctx->code,
                                     expires, p);
    p += 2 * 32;

    if (path) {
        p = ngx_sprintf(p, "; Path=%V", &r->uri);
    }

    p = ngx_sprintf(p, "; Max-Age=%T; HttpOnly; SameSite=Lax",
                    slcf->password_ttl);

    if (r->connection->ssl) {
        p = ngx_cpymem(p, "; Secure", sizeof("; Secure") - 1);
    }

    value.len = p - value.data;

    return ngx_http_shortlink_password_header(r, "Set-Cookie", &value);
}


/* the request goes away while PostgreSQL checks: forget the answer */

static void
ngx_http_shortlink_password_cleanup(void *data)
{
    ngx_http_shortlink_ctx_t  *ctx = data;

    if (ctx->password_query) {
        ngx_http_shortlink_pg_detach(ctx->password_query);
        ctx->password_query = NULL;
    }
}


/*
 * The form, escaped, with a strict CSP: no script, no style, no external
 * resource.  form-action also allows http: and https: because browsers
 * apply it to the redirect that answers the POST.
 */

static ngx_int_t
ngx_http_shortlink_password_form(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx, ngx_uint_t status, ngx_uint_t what)
{
    size_t        len;
    u_char       *p;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_str_t     message, value;
    ngx_chain_t   out;
    u_char        retry[NGX_TIME_T_LEN];

    static u_char  head[] =
        "<!DOCTYPE html>" CRLF
        "<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width\">"
        "<meta name=\"robots\" content=\"noindex\">"
        "<title>Password required</title></head>" CRLF
        "<body><h1>Password required</h1>" CRLF
        "<p>The link <code>";
    static u_char  middle[] =
        "</code> is protected by a password.</p>" CRLF;
    static u_char  form[] =
        "<form method=\"post\"><label>Password "
        "<input type=\"password\" name=\"password\" required autofocus "
        "maxlength=\"256\" autocomplete=\"current-password\"></label> "
        "<button type=\"submit\">Continue</button></form>" CRLF
        "</body></html>" CRLF;

    switch (what) {
    case NGX_HTTP_SHORTLINK_FORM_WRONG:
        ngx_str_set(&message, "<p role=\"alert\">Wrong password.</p>" CRLF);
        break;
    case NGX_HTTP_SHORTLINK_FORM_LOCKED:
        ngx_str_set(&message, "<p role=\"alert\">Too many wrong passwords: "
                              "try again in a few minutes.</p>" CRLF);
        break;
    case NGX_HTTP_SHORTLINK_FORM_BAD:
        ngx_str_set(&message, "<p role=\"alert\">Send the form with a "
                              "password.</p>" CRLF);
        break;
    default:
        ngx_str_null(&message);
    }

    if (r->method == NGX_HTTP_POST) {
        /* whatever is left of the body is not wanted */
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }
    }

    if (what == NGX_HTTP_SHORTLINK_FORM_LOCKED) {
        value.data = retry;
        value.len = ngx_sprintf(retry, "%d",
                                NGX_HTTP_SHORTLINK_PASSWORD_LOCKED)
                    - retry;

        if (ngx_http_shortlink_password_header(r, "Retry-After", &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_str_set(&value, "no-store");

    if (ngx_http_shortlink_password_header(r, "Content-Security-Policy",
                                           &ngx_http_shortlink_password_csp)
        != NGX_OK
        || ngx_http_shortlink_password_header(r, "Cache-Control", &value)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&value, "no-referrer");

    if (ngx_http_shortlink_password_header(r, "Referrer-Policy", &value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof(head) - 1 + ctx->code.len
          + ngx_escape_html(NULL, ctx->code.data, ctx->code.len)
          + sizeof(middle) - 1 + message.len + sizeof(form) - 1;

    r->headers_out.status = status;
    ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, head, sizeof(head) - 1);
    p = (u_char *) ngx_escape_html(p, ctx->code.data, ctx->code.len);
    p = ngx_cpymem(p, middle, sizeof(middle) - 1);
    p = ngx_cpymem(p, message.data, message.len);
    b->last = ngx_cpymem(p, form, sizeof(form) - 1);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_shortlink_password_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
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

    return NGX_OK;
}
