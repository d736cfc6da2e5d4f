
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The management API location ("shortlink_api").  nginx's part is small on
 * purpose: read the body, check that every input is UTF-8 (a 400 if not),
 * and hand method, path, query, body, bearer key and base URL to one SQL
 * function, shortlink.api() in sql/004_api.sql and sql/008_api_codes.sql,
 * which validates,
 * authorises, writes and answers in JSON.  The rules live there, so psql
 * users get the same operations.  JSON is never parsed here.
 *
 * Codes of links created without one are generated here (MurmurHash3 of
 * the URL and a random salt, ngx_http_shortlink_code.c), each candidate
 * checked against the worker's bloom filter: a POST to /links or
 * /links/bulk first asks PostgreSQL which items need a code and their
 * URLs (shortlink.api_code_urls), then sends the candidates with the
 * request (shortlink.api's p_codes); the primary key is the final guard.
 *
 * A link the API created is put into the caches at once, so its first
 * visit is a cache hit; every other change reaches the caches through
 * PostgreSQL's notifications.
 *
 * GET <location>/health is answered here: PostgreSQL (a live query),
 * Redis, the zone and the click queue.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_queue.h"
#include "ngx_http_shortlink_utf8.h"
#include "ngx_http_shortlink_qr.h"


typedef struct {
    ngx_http_request_t              *request;
    ngx_http_shortlink_pg_query_t   *query;
    ngx_str_t                        params[7];
    ngx_uint_t                       health;
} ngx_http_shortlink_api_ctx_t;


static void ngx_http_shortlink_api_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_shortlink_api_params(ngx_http_request_t *r,
    ngx_str_t *params, const char **detail);
static ngx_uint_t ngx_http_shortlink_api_creates(ngx_http_request_t *r,
    ngx_str_t *params);
static ngx_int_t ngx_http_shortlink_api_call(ngx_http_request_t *r,
    ngx_http_shortlink_api_ctx_t *ctx, const char *sql, int n,
    ngx_str_t *params, ngx_http_shortlink_pg_handler_pt handler);
static void ngx_http_shortlink_api_urls_done(void *data, PGresult *res,
    ngx_int_t rc);
static ngx_int_t ngx_http_shortlink_api_candidates(ngx_http_request_t *r,
    ngx_http_shortlink_api_ctx_t *ctx, PGresult *res);
static void ngx_http_shortlink_api_done(void *data, PGresult *res,
    ngx_int_t rc);
static void ngx_http_shortlink_api_warm(ngx_http_request_t *r,
    PGresult *res);
static ngx_int_t ngx_http_shortlink_api_header(ngx_http_request_t *r,
    PGresult *res, int col, const char *name);
static size_t ngx_http_shortlink_api_header_copy(u_char *dst, u_char *src,
    size_t len);
static ngx_int_t ngx_http_shortlink_api_health(ngx_http_request_t *r,
    ngx_http_shortlink_api_ctx_t *ctx);
static ngx_int_t ngx_http_shortlink_api_health_send(ngx_http_request_t *r,
    ngx_uint_t pg_up);
static ngx_int_t ngx_http_shortlink_api_send(ngx_http_request_t *r,
    ngx_uint_t status, u_char *body, size_t len);
static ngx_int_t ngx_http_shortlink_api_problem(ngx_http_request_t *r,
    ngx_uint_t status, const char *title, const char *detail);
static ngx_uint_t ngx_http_shortlink_api_qr(ngx_http_shortlink_api_ctx_t *ctx,
    PGresult *res);
static ngx_int_t ngx_http_shortlink_api_qr_send(ngx_http_request_t *r,
    PGresult *res);
static void ngx_http_shortlink_api_cleanup(void *data);


/*
 * One statement: the dispatcher's answer, the headers it asks for, and for
 * a link it just created what the caches need (PostgreSQL reads them out
 * of the answer: no JSON is parsed here; the table itself would not show
 * a row this very statement inserted).
 */
static const char  ngx_http_shortlink_api_sql[] =
    "SELECT a.status, a.body::text, c.code, c.url, c.status,"
    " extract(epoch FROM c.expires_at)::bigint,"
    " a.body->>'www_authenticate', a.body->>'allow', c.version, c.forward,"
    " q.text, q.format, q.size"
    " FROM shortlink.api($1, $2, $3, $4, $5, $6, nullif($7, '')::jsonb) a"
    " LEFT JOIN LATERAL (SELECT a.body->>'code' AS code,"
    " a.body->>'url' AS url, (a.body->>'redirect_status')::int AS status,"
    " (a.body->>'expires_at')::timestamptz AS expires_at,"
    " (a.body->>'version')::bigint AS version,"
    " (a.body->>'forward_query')::boolean AS forward"
    " WHERE a.status = 201 AND (a.body->>'enabled')::boolean) c ON true"
    " LEFT JOIN LATERAL (SELECT a.body->'qr'->>'text' AS text,"
    " a.body->'qr'->>'format' AS format, a.body->'qr'->>'size' AS size"
    " WHERE a.status = 200 AND a.body ? 'qr') q ON true";

/* which items of a POST body need a generated code, and their URLs */
static const char  ngx_http_shortlink_api_urls_sql[] =
    "SELECT idx, url FROM shortlink.api_code_urls($1, $2)";

static const char  ngx_http_shortlink_api_ping[] = "SELECT 1";


/* what a 400 says when params[i] is not UTF-8 */
static const char  *ngx_http_shortlink_api_inputs[] = {
    NULL,
    "the path is not valid UTF-8 text",
    "the query string is not valid UTF-8 text",
    "the request body is not valid UTF-8 text",
    "the Authorization header is not valid UTF-8 text",
    "the Host header is not valid UTF-8 text"
};


/* at most this much JSON in a request; more is a 413 problem */
#define NGX_HTTP_SHORTLINK_API_BODY_MAX  (1024 * 1024)


ngx_int_t
ngx_http_shortlink_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_http_cleanup_t            *cln;
    ngx_http_shortlink_api_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_shortlink_api_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_shortlink_api_cleanup;
    cln->data = ctx;

    /* the body goes to SQL as one string: keep it in memory */
    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_shortlink_api_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the whole body is in: ask PostgreSQL */

static void
ngx_http_shortlink_api_body(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_str_t                       *params, urls[2];
    const char                      *detail;
    ngx_http_cleanup_t              *cln;
    ngx_http_shortlink_api_ctx_t    *ctx;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    ctx = NULL;

    for (cln = r->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_shortlink_api_cleanup) {
            ctx = cln->data;
            break;
        }
    }

    if (ctx == NULL || smcf->worker == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_shortlink_api_params(r, ctx->params, &detail);

    if (rc != NGX_OK) {
        if (detail) {
            rc = ngx_http_shortlink_api_problem(r, rc,
                         rc == NGX_HTTP_BAD_REQUEST ? "Bad Request"
                                                    : "Payload Too Large",
                         detail);
        }

        ngx_http_finalize_request(r, rc);
        return;
    }

    params = ctx->params;

    /* exactly <location>/health: a link coded "health" is /links/health */

    if (params[1].len == sizeof("/health") - 1
        && ngx_strncmp(params[1].data, "/health", params[1].len) == 0
        && (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        ngx_http_finalize_request(r, ngx_http_shortlink_api_health(r, ctx));
        return;
    }
    ngx_str_set(&params[6], "");

    if (ngx_http_shortlink_api_creates(r, params)) {
        /* first: which items need a code (path and body) */
        urls[0] = params[1];
        urls[1] = params[3];

        rc = ngx_http_shortlink_api_call(r, ctx,
                                         ngx_http_shortlink_api_urls_sql, 2,
                                         urls,
                                         ngx_http_shortlink_api_urls_done);

    } else {
        rc = ngx_http_shortlink_api_call(r, ctx, ngx_http_shortlink_api_sql,
                                         7, params,
                                         ngx_http_shortlink_api_done);
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* answered from ngx_http_shortlink_api_done() */
}


/* POST /links or /links/bulk with a body: codes may have to be made */

static ngx_uint_t
ngx_http_shortlink_api_creates(ngx_http_request_t *r, ngx_str_t *params)
{
    ngx_str_t  *path;

    path = &params[1];

    if (r->method != NGX_HTTP_POST || params[3].len == 0) {
        return 0;
    }

    return (path->len == sizeof("/links") - 1
            && ngx_strncmp(path->data, "/links", path->len) == 0)
           || (path->len == sizeof("/links/bulk") - 1
               && ngx_strncmp(path->data, "/links/bulk", path->len) == 0);
}


/*
 * One query of the API; NGX_OK: handler answers later, else the status to
 * finalize with (503 with a problem when PostgreSQL is known to be down)
 */

static ngx_int_t
ngx_http_shortlink_api_call(ngx_http_request_t *r,
    ngx_http_shortlink_api_ctx_t *ctx, const char *sql, int n,
    ngx_str_t *params, ngx_http_shortlink_pg_handler_pt handler)
{
    ngx_int_t                        rc;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    rc = ngx_http_shortlink_pg_exec(smcf->worker->pg, sql, n, params,
                                    smcf->pg.query_timeout * 5, handler, ctx,
                                    &ctx->query);

    if (rc == NGX_DECLINED) {
        return ngx_http_shortlink_api_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                              "Service Unavailable",
                                              "PostgreSQL is unavailable");
    }

    return rc;
}


/* the URLs that need codes are known: generate, then send the request */

static void
ngx_http_shortlink_api_urls_done(void *data, PGresult *res, ngx_int_t rc)
{
    ngx_http_shortlink_api_ctx_t  *ctx = data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;
    ctx->query = NULL;

    if (rc != NGX_OK) {
        rc = ngx_http_shortlink_api_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "Service Unavailable",
                                            "PostgreSQL could not answer");
        goto done;
    }

    if (ngx_http_shortlink_api_candidates(r, ctx, res) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    rc = ngx_http_shortlink_api_call(r, ctx, ngx_http_shortlink_api_sql, 7,
                                     ctx->params, ngx_http_shortlink_api_done);

    if (rc == NGX_OK) {
        return;
    }

done:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * ctx->params[6] =
 *     {"attempts":N,"length":L,"items":{"<index>":["code",...],...}}:
 * for every row (index, url) of api_code_urls, the codes of up to N
 * attempts (shortlink_code_attempts) that the bloom filter does not know.
 * A code the filter knows may be taken: it costs an attempt and is not
 * sent.  Written here, never parsed: digits, base62 letters and
 * punctuation only.
 */

static ngx_int_t
ngx_http_shortlink_api_candidates(ngx_http_request_t *r,
    ngx_http_shortlink_api_ctx_t *ctx, PGresult *res)
{
    u_char                          *p;
    size_t                           len;
    uint32_t                         salt;
    ngx_int_t                        n;
    ngx_str_t                        code, arg;
    ngx_uint_t                       row, rows, attempt, sent, length;
    ngx_http_shortlink_loc_conf_t   *slcf;
    ngx_http_shortlink_main_conf_t  *smcf;
    ngx_http_shortlink_bloom_t      *bloom;
    ngx_http_shortlink_metrics_t    *m;
    u_char                           buf[NGX_HTTP_SHORTLINK_CODE_GEN_MAX];

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    rows = PQntuples(res);

    if (rows == 0 || rows > 1000 || PQnfields(res) != 2) {
        /* nothing to generate, or a bulk body PostgreSQL refuses anyway */
        return NGX_OK;
    }

    /* ?code_length= overrides the directive; a bad one is SQL's 400 */

    length = slcf->code_length;

    if (ngx_http_arg(r, (u_char *) "code_length", sizeof("code_length") - 1,
                     &arg)
        == NGX_OK)
    {
        n = ngx_atoi(arg.data, arg.len);

        if (n >= NGX_HTTP_SHORTLINK_CODE_GEN_MIN
            && n <= NGX_HTTP_SHORTLINK_CODE_GEN_MAX)
        {
            length = (ngx_uint_t) n;
        }
    }

    len = sizeof("{\"attempts\":,\"length\":,\"items\":{}}") - 1
          + 2 * NGX_INT_T_LEN
          + rows * (sizeof("\"\":[],") - 1 + NGX_INT_T_LEN
                    + slcf->code_attempts * (length + sizeof("\"\",") - 1));

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->params[6].data = p;

    p = ngx_sprintf(p, "{\"attempts\":%ui,\"length\":%ui,\"items\":{",
                    slcf->code_attempts, length);

    bloom = smcf->worker->bloom;
    m = ngx_http_shortlink_metrics_get(smcf->metrics);

    for (row = 0; row < rows; row++) {
        p = ngx_sprintf(p, "%s\"%*s\":[", row ? "," : "",
                        (size_t) PQgetlength(res, row, 0),
                        PQgetvalue(res, row, 0));
        sent = 0;

        for (attempt = 0; attempt < slcf->code_attempts; attempt++) {
            salt = (uint32_t) ngx_random() ^ ((uint32_t) ngx_random() << 16);

            ngx_http_shortlink_code_generate(buf, length,
                                        (u_char *) PQgetvalue(res, row, 1),
                                        PQgetlength(res, row, 1), salt);

            code.data = buf;
            code.len = length;

            /* "bulk" (the route /links/bulk) is skipped by SQL */
            if (bloom && ngx_http_shortlink_bloom_present(bloom, &code)) {
                ngx_http_shortlink_metric_add(m, code_collisions, 1);
                continue;
            }

            p = ngx_sprintf(p, "%s\"%*s\"", sent ? "," : "", length, buf);
            sent++;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "shortlink api: item %*s: %ui candidate codes",
                       (size_t) PQgetlength(res, row, 0),
                       PQgetvalue(res, row, 0), sent);

        *p++ = ']';
    }

    *p++ = '}';
    *p++ = '}';

    ctx->params[6].len = p - ctx->params[6].data;

    return NGX_OK;
}


/*
 * method, path below the location, query, body, bearer key, base URL.
 * NGX_OK, or an HTTP status: with *detail set, a problem the caller sends.
 */

static ngx_int_t
ngx_http_shortlink_api_params(ngx_http_request_t *r, ngx_str_t *params,
    const char **detail)
{
    u_char                    *p;
    size_t                     len, skip;
    ngx_str_t                  port;
    ngx_uint_t                 i;
    ngx_buf_t                 *b;
    ngx_chain_t               *cl;
    ngx_table_elt_t           *auth;
    ngx_http_core_loc_conf_t  *clcf;

    *detail = NULL;

    params[0] = r->method_name;

    /* the path below a prefix location: "/api/links/x" -> "/links/x" */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    params[1] = r->uri;

#if (NGX_PCRE)
    if (clcf->regex == NULL)
#endif
    {
        skip = clcf->name.len;

        if (skip && clcf->name.data[skip - 1] == '/') {
            skip--;
        }

        if (skip <= r->uri.len
            && ngx_strncmp(r->uri.data, clcf->name.data, skip) == 0)
        {
            params[1].data += skip;
            params[1].len -= skip;
        }
    }

    if (params[1].len == 0) {
        ngx_str_set(&params[1], "/");
    }

    params[2] = r->args;

    /* the body, in one piece */

    len = 0;

    if (r->request_body) {
        if (r->request_body->temp_file) {
            *detail = "the request body is larger than "
                      "client_body_buffer_size";
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            len += ngx_buf_size(cl->buf);
        }
    }

    if (len > NGX_HTTP_SHORTLINK_API_BODY_MAX) {
        *detail = "the request body is over 1 MB";
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    params[3].len = len;
    params[3].data = ngx_pnalloc(r->pool, len + 1);
    if (params[3].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = params[3].data;

    if (r->request_body) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    /* Authorization: Bearer <key> */

    ngx_str_null(&params[4]);
    auth = r->headers_in.authorization;

    if (auth && auth->value.len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(auth->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) == 0)
    {
        params[4].data = auth->value.data + sizeof("Bearer ") - 1;
        params[4].len = auth->value.len - (sizeof("Bearer ") - 1);
    }

    /*
     * The base of short URLs: this request's scheme, host and port.
     * nginx's validated host has no port; the port is taken from Host:
     * only when that is exactly the host, ':' and 1-5 digits.
     */

    port.len = 0;
    port.data = NULL;

    if (r->headers_in.host) {
        port = r->headers_in.host->value;

        for (i = port.len; i && port.data[i - 1] >= '0'
                             && port.data[i - 1] <= '9'; i--)
        { /* void */ }

        if (port.len - i >= 1 && port.len - i <= 5
            && i == r->headers_in.server.len + 1
            && port.data[i - 1] == ':')
        {
            port.data += i - 1;
            port.len -= i - 1;

        } else {
            port.len = 0;
        }
    }

    params[5].data = ngx_pnalloc(r->pool, sizeof("https://") - 1
                                          + r->headers_in.server.len
                                          + port.len);
    if (params[5].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[5].len = ngx_sprintf(params[5].data, "%s://%V%V",
#if (NGX_HTTP_SSL)
                                r->connection->ssl ? "https" :
#endif
                                "http", &r->headers_in.server, &port)
                    - params[5].data;

    /*
     * PostgreSQL takes text only as well-formed UTF-8 without a NUL, and
     * refuses the whole call otherwise: that is the client's mistake, a
     * 400 here, never a failed query.
     */

    for (i = 1; i < 6; i++) {
        if (!ngx_http_shortlink_utf8_valid(params[i].data, params[i].len)) {
            *detail = ngx_http_shortlink_api_inputs[i];
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    return NGX_OK;
}


static void
ngx_http_shortlink_api_done(void *data, PGresult *res, ngx_int_t rc)
{
    ngx_http_shortlink_api_ctx_t  *ctx = data;

    ngx_int_t            status;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;
    ctx->query = NULL;

    if (ctx->health) {
        rc = ngx_http_shortlink_api_health_send(r, rc == NGX_OK);
        goto done;
    }

    if (rc != NGX_OK || PQntuples(res) != 1 || PQnfields(res) < 2) {
        rc = ngx_http_shortlink_api_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "Service Unavailable",
                                            "PostgreSQL could not answer");
        goto done;
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));

    if (status < 200 || status > 599) {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (status == NGX_HTTP_CREATED) {
        ngx_http_shortlink_api_warm(r, res);
    }

    if (status == NGX_HTTP_OK && ngx_http_shortlink_api_qr(ctx, res)) {
        rc = ngx_http_shortlink_api_qr_send(r, res);
        goto done;
    }

    if (ngx_http_shortlink_api_header(r, res, 6, "WWW-Authenticate")
        != NGX_OK
        || ngx_http_shortlink_api_header(r, res, 7, "Allow") != NGX_OK)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    rc = ngx_http_shortlink_api_send(r, (ngx_uint_t) status,
                                     (u_char *) PQgetvalue(res, 0, 1),
                                     PQgetisnull(res, 0, 1)
                                     ? 0 : PQgetlength(res, 0, 1));

done:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* a header the dispatcher asked for (column col), copied into r->pool */

static ngx_int_t
ngx_http_shortlink_api_header(ngx_http_request_t *r, PGresult *res,
    int col, const char *name)
{
    size_t            len;
    ngx_table_elt_t  *h;

    if (PQnfields(res) <= col || PQgetisnull(res, 0, col)) {
        return NGX_OK;
    }

    len = PQgetlength(res, 0, col);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, len);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    /* PostgreSQL wrote it; still, never a CR or LF in a header */
    h->value.len = ngx_http_shortlink_api_header_copy(h->value.data,
                                         (u_char *) PQgetvalue(res, 0, col),
                                         len);
    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);

    return NGX_OK;
}


static size_t
ngx_http_shortlink_api_header_copy(u_char *dst, u_char *src, size_t len)
{
    u_char  *d;

    for (d = dst; len; len--, src++) {
        if (*src >= ' ' && *src != 0x7f) {
            *d++ = *src;
        }
    }

    return d - dst;
}


/* a link just created goes into every tier, so its first visit is a hit */

static void
ngx_http_shortlink_api_warm(ngx_http_request_t *r, PGresult *res)
{
    ngx_str_t                        code;
    ngx_http_shortlink_link_t        link;
    ngx_http_shortlink_main_conf_t  *smcf;

    if (ngx_http_shortlink_lookup_row(res, 3, 8, &link) != NGX_OK
        || PQgetisnull(res, 0, 2))
    {
        return;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    code.data = (u_char *) PQgetvalue(res, 0, 2);
    code.len = PQgetlength(res, 0, 2);

    ngx_http_shortlink_lookup_warm(smcf, &code, &link);
}


/*
 * GET .../links/{code}/qr: shortlink.api_link_qr() answered {"qr": {text,
 * format, size}} (columns 10-12); the answer is the image, not the JSON
 */

static ngx_uint_t
ngx_http_shortlink_api_qr(ngx_http_shortlink_api_ctx_t *ctx, PGresult *res)
{
    ngx_str_t  *path;

    path = &ctx->params[1];

    return PQnfields(res) > 12 && !PQgetisnull(res, 0, 10)
           && !PQgetisnull(res, 0, 11) && !PQgetisnull(res, 0, 12)
           && path->len > 3
           && ngx_strncmp(path->data + path->len - 3, "/qr", 3) == 0;
}


static ngx_int_t
ngx_http_shortlink_api_qr_send(ngx_http_request_t *r, PGresult *res)
{
    ngx_int_t  size;
    ngx_str_t  text, format;

    text.data = (u_char *) PQgetvalue(res, 0, 10);
    text.len = PQgetlength(res, 0, 10);
    format.data = (u_char *) PQgetvalue(res, 0, 11);
    format.len = PQgetlength(res, 0, 11);

    size = ngx_atoi((u_char *) PQgetvalue(res, 0, 12),
                    PQgetlength(res, 0, 12));

    return ngx_http_shortlink_qr_send(r, &text, &format,
                                      size == NGX_ERROR ? 0 : size);
}


/* GET .../health: a live query to PostgreSQL, the rest from memory */

static ngx_int_t
ngx_http_shortlink_api_health(ngx_http_request_t *r,
    ngx_http_shortlink_api_ctx_t *ctx)
{
    ngx_int_t                        rc;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    ctx->health = 1;

    rc = ngx_http_shortlink_pg_exec(smcf->worker->pg,
                                    ngx_http_shortlink_api_ping, 0, NULL,
                                    smcf->pg.query_timeout,
                                    ngx_http_shortlink_api_done, ctx,
                                    &ctx->query);

    if (rc == NGX_DECLINED) {
        return ngx_http_shortlink_api_health_send(r, 0);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the request stays until the answer; read_client_request_body's
       reference is given back by the finalization in api_done() */
    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_shortlink_api_health_send(ngx_http_request_t *r, ngx_uint_t pg_up)
{
    u_char                            *p;
    ngx_uint_t                         redis_up;
    ngx_slab_pool_t                   *shpool;
    ngx_http_shortlink_main_conf_t    *smcf;
    ngx_http_shortlink_queue_stats_t   qs;
    u_char                             buf[512];

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    redis_up = smcf->worker->redis
               && ngx_http_shortlink_redis_up(smcf->worker->redis);

    p = ngx_sprintf(buf, "{\"status\":\"%s\",\"postgresql\":\"%s\","
                    "\"redis\":\"%s\"",
                    !pg_up ? "down"
                    : (smcf->worker->redis && !redis_up) ? "degraded" : "ok",
                    pg_up ? "up" : "down",
                    smcf->worker->redis == NULL ? "off"
                    : redis_up ? "up" : "down");

    if (smcf->zone) {
        shpool = (ngx_slab_pool_t *) smcf->zone->shm.addr;
        p = ngx_sprintf(p, ",\"zone\":{\"size\":%uz,\"free\":%uz}",
                        smcf->zone->shm.size, shpool->pfree * ngx_pagesize);
    }

    if (smcf->queue) {
        ngx_http_shortlink_queue_stats(smcf->queue, &qs);
        p = ngx_sprintf(p, ",\"queue\":{\"clicks\":%uL,\"used\":%uz,"
                        "\"size\":%uz,\"dropped\":%uL}",
                        qs.queued, qs.used, qs.size, qs.dropped);
    }

    *p++ = '}';

    return ngx_http_shortlink_api_send(r, pg_up ? NGX_HTTP_OK
                                                : NGX_HTTP_SERVICE_UNAVAILABLE,
                                       buf, p - buf);
}


/* JSON below 400, problem+json from 400 on; 204 and HEAD without body */

static ngx_int_t
ngx_http_shortlink_api_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    r->headers_out.status = status;

    if (status >= NGX_HTTP_BAD_REQUEST) {
        ngx_str_set(&r->headers_out.content_type, "application/problem+json");

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    if (status == NGX_HTTP_NO_CONTENT) {
        len = 0;
        r->header_only = 1;
        ngx_str_null(&r->headers_out.content_type);
    }

    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only || len == 0) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, body, len);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* problems found before PostgreSQL is asked (texts are constants) */

static ngx_int_t
ngx_http_shortlink_api_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *title, const char *detail)
{
    u_char  *p;
    size_t   len;

    len = sizeof("{\"type\":\"about:blank\",\"title\":\"\",\"status\":,"
                 "\"detail\":\"\"}") - 1
          + ngx_strlen(title) + NGX_INT_T_LEN + ngx_strlen(detail);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_sprintf(p, "{\"type\":\"about:blank\",\"title\":\"%s\","
                      "\"status\":%ui,\"detail\":\"%s\"}",
                      title, status, detail) - p;

    return ngx_http_shortlink_api_send(r, status, p, len);
}


/* the client left: PostgreSQL's answer, when it comes, is dropped */

static void
ngx_http_shortlink_api_cleanup(void *data)
{
    ngx_http_shortlink_api_ctx_t  *ctx = data;

    if (ctx->query) {
        ngx_http_shortlink_pg_detach(ctx->query);
        ctx->query = NULL;
    }
}
