
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Recording a click on the redirect path: the visitor cookie, privacy
 * (Do Not Track / Global Privacy Control, IP anonymisation), header values
 * cut to their limits and cleaned to well-formed UTF-8 without control
 * characters (ngx_http_shortlink_utf8_clean(): ill-formed bytes become
 * U+FFFD, never a refused click), the admin's extra fields, and the push
 * into the click queue.
 *
 * The record is built on the stack and copied into shared memory: nothing
 * here allocates from the request pool for the queue, does I/O, or waits.
 * A full queue only costs the click (counted as dropped), never the
 * redirect.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_code.h"
#include "ngx_http_shortlink_click.h"
#include "ngx_http_shortlink_queue.h"
#include "ngx_http_shortlink_utf8.h"
#include "ngx_http_shortlink_lang.h"


#define NGX_HTTP_SHORTLINK_CLICK_MAX                                          \
    (sizeof(ngx_http_shortlink_click_t) + NGX_HTTP_SHORTLINK_CODE_MAX_LEN    \
     + NGX_INET6_ADDRSTRLEN + NGX_HTTP_SHORTLINK_VISITOR_LEN                 \
     + NGX_HTTP_SHORTLINK_CLICK_UA_MAX + NGX_HTTP_SHORTLINK_CLICK_REFERER_MAX \
     + NGX_HTTP_SHORTLINK_CLICK_FIELDS_MAX                                   \
       * (1 + NGX_HTTP_SHORTLINK_CLICK_NAME_MAX                              \
          + 2 + NGX_HTTP_SHORTLINK_CLICK_FIELD_MAX))

static ngx_uint_t ngx_http_shortlink_click_private(ngx_http_request_t *r,
    ngx_http_shortlink_loc_conf_t *slcf);
static ngx_int_t ngx_http_shortlink_click_visitor(ngx_http_request_t *r,
    ngx_http_shortlink_loc_conf_t *slcf, u_char *id);
static size_t ngx_http_shortlink_click_ip(ngx_http_request_t *r,
    ngx_uint_t mode, u_char *text);
static uint64_t ngx_http_shortlink_ids_random(ngx_http_shortlink_ids_t *ids);


static u_char  ngx_http_shortlink_hex[] = "0123456789abcdef";


/* seeded once per worker from the kernel's random pool */

void
ngx_http_shortlink_ids_init(ngx_http_shortlink_ids_t *ids, ngx_log_t *log)
{
    ssize_t   n;
    ngx_fd_t  fd;
    u_char    seed[24];

    n = -1;
    fd = ngx_open_file("/dev/urandom", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd != NGX_INVALID_FILE) {
        n = read(fd, seed, sizeof(seed));
        ngx_close_file(fd);
    }

    if (n != (ssize_t) sizeof(seed)) {
        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      "shortlink: no /dev/urandom, ids seeded from time");
        *(uint64_t *) seed = (uint64_t) ngx_random() << 32 ^ ngx_pid;
        *(uint64_t *) (seed + 8) = (uint64_t) ngx_time() << 20
                                   ^ (uint64_t) ngx_random();
        *(uint64_t *) (seed + 16) = ngx_current_msec ^ (uint64_t) ngx_random();
    }

    ngx_memcpy(ids->prefix, seed, 8);
    ids->state[0] = *(uint64_t *) (seed + 8) | 1;
    ids->state[1] = *(uint64_t *) (seed + 16);
    ids->seq = 0;
}


/*
 * Called for every redirect before its header is sent (it may add the
 * visitor cookie).  NGX_ERROR only for an allocation failure.
 */

ngx_int_t
ngx_http_shortlink_click_record(ngx_http_request_t *r, ngx_str_t *code)
{
    return ngx_http_shortlink_click_record_kv(r, code, NULL, 0);
}


/*
 * A click with fields the module itself adds (a profile view's kind, the
 * redirect rule that matched, ...): each name is 1-64 bytes of
 * [A-Za-z0-9_]; values are cleaned like every other field's.  They go
 * after the shortlink_click_field ones, at most
 * NGX_HTTP_SHORTLINK_CLICK_BUILTIN_FIELDS_MAX - 1 of them: the last is
 * "language", which every click gets here (the first tag of
 * Accept-Language, when there is one of a language tag's shape).
 */

ngx_int_t
ngx_http_shortlink_click_record_kv(ngx_http_request_t *r, ngx_str_t *code,
    ngx_keyval_t *builtin, ngx_uint_t nbuiltin)
{
    u_char                            *p, *ip, *visitor;
    size_t                             len, ip_len, visitor_len;
    ngx_str_t                          value;
    ngx_uint_t                         i, private;
    ngx_time_t                        *tp;
    ngx_table_elt_t                   *h;
    ngx_http_shortlink_click_t        *click;
    ngx_http_shortlink_ids_t          *ids;
    ngx_http_shortlink_loc_conf_t     *slcf;
    ngx_http_shortlink_main_conf_t    *smcf;
    ngx_http_shortlink_click_field_t  *field;
    u_char                             rec[NGX_HTTP_SHORTLINK_CLICK_MAX]
                                           __attribute__((aligned(8)));
    u_char                             vid[NGX_HTTP_SHORTLINK_VISITOR_LEN];
    u_char                             addr[NGX_INET6_ADDRSTRLEN];

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    /*
     * HEAD is no visit; subrequests are not either.  A POST is the
     * password form of a protected link that redirects now.
     */

    if (smcf->queue == NULL || !(r->method & (NGX_HTTP_GET|NGX_HTTP_POST))
        || r != r->main)
    {
        return NGX_OK;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);
    ids = &smcf->worker->ids;

    private = ngx_http_shortlink_click_private(r, slcf);

    visitor = NULL;
    visitor_len = 0;
    ip_len = 0;

    if (!private) {
        if (slcf->cookie_name.len) {
            if (ngx_http_shortlink_click_visitor(r, slcf, vid) != NGX_OK) {
                return NGX_ERROR;
            }

            visitor = vid;
            visitor_len = NGX_HTTP_SHORTLINK_VISITOR_LEN;
        }

        ip_len = ngx_http_shortlink_click_ip(r, slcf->click_ip, addr);
    }

    ip = addr;

    click = (ngx_http_shortlink_click_t *) rec;

    ngx_memcpy(click->event_id, ids->prefix, 8);
    ids->seq++;
    ngx_memcpy(click->event_id + 8, &ids->seq, 8);

    tp = ngx_timeofday();
    click->msec = (int64_t) tp->sec * 1000 + tp->msec;

    /* the code was validated: at most NGX_HTTP_SHORTLINK_CODE_MAX_LEN */
    click->code_len = (u_char) code->len;
    click->ip_len = (u_char) ip_len;
    click->visitor_len = (u_char) visitor_len;

    p = rec + sizeof(ngx_http_shortlink_click_t);
    p = ngx_cpymem(p, code->data, click->code_len);
    p = ngx_cpymem(p, ip, ip_len);
    p = ngx_cpymem(p, visitor, visitor_len);

    len = 0;
    if (r->headers_in.user_agent) {
        len = ngx_http_shortlink_utf8_clean(p,
                                      r->headers_in.user_agent->value.data,
                                      r->headers_in.user_agent->value.len,
                                      NGX_HTTP_SHORTLINK_CLICK_UA_MAX);
    }

    click->ua_len = (uint16_t) len;
    p += len;

    len = 0;
    if (r->headers_in.referer) {
        len = ngx_http_shortlink_utf8_clean(p,
                                      r->headers_in.referer->value.data,
                                      r->headers_in.referer->value.len,
                                      NGX_HTTP_SHORTLINK_CLICK_REFERER_MAX);
    }

    click->referer_len = (uint16_t) len;
    p += len;

    click->nfields = 0;

    if (smcf->fields) {
        field = smcf->fields->elts;

        for (i = 0; i < smcf->fields->nelts; i++) {
            if (ngx_http_complex_value(r, &field[i].value, &value)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            /* the name (1-64 bytes, checked by the directive), then */
            *p++ = (u_char) field[i].name.len;
            p = ngx_cpymem(p, field[i].name.data, field[i].name.len);

            /* the value */
            len = ngx_http_shortlink_utf8_clean(p + 2, value.data, value.len,
                                         NGX_HTTP_SHORTLINK_CLICK_FIELD_MAX);
            p[0] = (u_char) (len & 0xff);
            p[1] = (u_char) (len >> 8);
            p += 2 + len;
            click->nfields++;
        }
    }

    for (i = 0;
         i < nbuiltin && i < NGX_HTTP_SHORTLINK_CLICK_BUILTIN_FIELDS_MAX - 1;
         i++)
    {
        if (builtin[i].key.len == 0
            || builtin[i].key.len > NGX_HTTP_SHORTLINK_CLICK_NAME_MAX)
        {
            continue;
        }

        *p++ = (u_char) builtin[i].key.len;
        p = ngx_cpymem(p, builtin[i].key.data, builtin[i].key.len);

        len = ngx_http_shortlink_utf8_clean(p + 2, builtin[i].value.data,
                                            builtin[i].value.len,
                                            NGX_HTTP_SHORTLINK_CLICK_FIELD_MAX);
        p[0] = (u_char) (len & 0xff);
        p[1] = (u_char) (len >> 8);
        p += 2 + len;
        click->nfields++;
    }

    /*
     * the language: already of a tag's shape ([a-z0-9-], at most
     * NGX_HTTP_SHORTLINK_LANG_MAX bytes), so nothing to clean; no field
     * for anything else, never an error or a log line
     */

    h = ngx_http_shortlink_accept_language(r);

    if (h) {
        len = ngx_http_shortlink_lang_first(p + 1 + sizeof("language") - 1
                                            + 2,
                                            h->value.data, h->value.len);
        if (len) {
            *p++ = (u_char) (sizeof("language") - 1);
            p = ngx_cpymem(p, "language", sizeof("language") - 1);
            p[0] = (u_char) len;
            p[1] = 0;
            p += 2 + len;
            click->nfields++;
        }
    }

    /* a full queue drops the click, counts it and logs it; never the visit */

    (void) ngx_http_shortlink_queue_push(smcf->queue, rec, p - rec);

    return NGX_OK;
}


/*
 * The request's first Accept-Language header, or NULL: what a click's
 * language and a redirect rule's "l=" condition read.  nginx keeps it in
 * headers_in when it is built with the headers it needs for HTTP/2 or
 * dynamic-module compatibility (NGX_HTTP_HEADERS); else the list is read.
 */

ngx_table_elt_t *
ngx_http_shortlink_accept_language(ngx_http_request_t *r)
{
#if (NGX_HTTP_HEADERS)

    return r->headers_in.accept_language;

#else

    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept-Language") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept-Language",
                               sizeof("Accept-Language") - 1) == 0)
        {
            return &h[i];
        }
    }

#endif
}


/*
 * Takes a record from the queue apart: NGX_OK if its parts lie within it
 * and add up to exactly its length, NGX_ERROR otherwise.  Nothing else is
 * assumed about the bytes (they came through shared memory).
 */

ngx_int_t
ngx_http_shortlink_click_parse(u_char *rec, size_t len,
    ngx_http_shortlink_click_parts_t *parts)
{
    u_char                      *p, *last;
    size_t                       fixed;
    ngx_str_t                    name, value;
    ngx_uint_t                   i;
    ngx_http_shortlink_click_t  *click;

    if (len < sizeof(ngx_http_shortlink_click_t)) {
        return NGX_ERROR;
    }

    click = (ngx_http_shortlink_click_t *) rec;

    fixed = (size_t) click->code_len + click->ip_len + click->visitor_len
            + click->ua_len + click->referer_len;

    if (click->code_len == 0
        || click->nfields > NGX_HTTP_SHORTLINK_CLICK_FIELDS_MAX
        || click->ua_len > NGX_HTTP_SHORTLINK_CLICK_UA_MAX
        || click->referer_len > NGX_HTTP_SHORTLINK_CLICK_REFERER_MAX
        || fixed > len - sizeof(ngx_http_shortlink_click_t))
    {
        return NGX_ERROR;
    }

    p = rec + sizeof(ngx_http_shortlink_click_t);
    last = rec + len;

    parts->click = click;

    parts->code.data = p;
    parts->code.len = click->code_len;
    p += click->code_len;

    parts->ip.data = p;
    parts->ip.len = click->ip_len;
    p += click->ip_len;

    parts->visitor.data = p;
    parts->visitor.len = click->visitor_len;
    p += click->visitor_len;

    parts->ua.data = p;
    parts->ua.len = click->ua_len;
    p += click->ua_len;

    parts->referer.data = p;
    parts->referer.len = click->referer_len;
    p += click->referer_len;

    parts->fields = p;
    parts->nfields = click->nfields;

    for (i = 0; i < click->nfields; i++) {
        if (last - p < 3 || p[0] == 0
            || p[0] > NGX_HTTP_SHORTLINK_CLICK_NAME_MAX
            || (size_t) (last - p) < 1 + (size_t) p[0] + 2)
        {
            return NGX_ERROR;
        }

        value.len = p[1 + p[0]] | (p[2 + p[0]] << 8);

        if (value.len > NGX_HTTP_SHORTLINK_CLICK_FIELD_MAX
            || (size_t) (last - p) < 1 + (size_t) p[0] + 2 + value.len)
        {
            return NGX_ERROR;
        }

        p = ngx_http_shortlink_click_next_field(p, &name, &value);
    }

    return (p == last) ? NGX_OK : NGX_ERROR;
}


/* the queue's check of every record it hands out */

ngx_int_t
ngx_http_shortlink_click_valid(u_char *rec, size_t len)
{
    ngx_http_shortlink_click_parts_t  parts;

    return ngx_http_shortlink_click_parse(rec, len, &parts);
}


/* a field of a record that ngx_http_shortlink_click_parse() accepted */

u_char *
ngx_http_shortlink_click_next_field(u_char *p, ngx_str_t *name,
    ngx_str_t *value)
{
    name->len = p[0];
    name->data = p + 1;
    p += 1 + name->len;

    value->len = p[0] | (p[1] << 8);
    value->data = p + 2;

    return p + 2 + value->len;
}


/* DNT: 1 or Sec-GPC: 1, when honoured: no visitor id, no IP */

static ngx_uint_t
ngx_http_shortlink_click_private(ngx_http_request_t *r,
    ngx_http_shortlink_loc_conf_t *slcf)
{
    ngx_http_variable_value_t  *v;

    if (!slcf->respect_dnt) {
        return 0;
    }

    v = ngx_http_get_indexed_variable(r, slcf->dnt_index);
    if (v && !v->not_found && v->len == 1 && v->data[0] == '1') {
        return 1;
    }

    v = ngx_http_get_indexed_variable(r, slcf->gpc_index);
    if (v && !v->not_found && v->len == 1 && v->data[0] == '1') {
        return 1;
    }

    return 0;
}


/*
 * The visitor id: the cookie's value when it is one of ours, otherwise a
 * new random one, sent back with the redirect.
 */

static ngx_int_t
ngx_http_shortlink_click_visitor(ngx_http_request_t *r,
    ngx_http_shortlink_loc_conf_t *slcf, u_char *id)
{
    u_char                          *p;
    size_t                           len;
    uint64_t                         n;
    ngx_uint_t                       i;
    ngx_table_elt_t                 *h;
    ngx_http_variable_value_t       *v;
    ngx_http_shortlink_main_conf_t  *smcf;

    v = ngx_http_get_indexed_variable(r, slcf->cookie_index);

    if (v && !v->not_found && v->len == NGX_HTTP_SHORTLINK_VISITOR_LEN) {
        for (i = 0; i < v->len; i++) {
            if (!((v->data[i] >= '0' && v->data[i] <= '9')
                  || (v->data[i] >= 'a' && v->data[i] <= 'f')))
            {
                break;
            }
        }

        if (i == v->len) {
            ngx_memcpy(id, v->data, NGX_HTTP_SHORTLINK_VISITOR_LEN);
            return NGX_OK;
        }
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_shortlink_module);

    for (i = 0; i < NGX_HTTP_SHORTLINK_VISITOR_LEN; i += 16) {
        n = ngx_http_shortlink_ids_random(&smcf->worker->ids);

        for (len = 0; len < 16; len++) {
            id[i + len] = ngx_http_shortlink_hex[n & 0xf];
            n >>= 4;
        }
    }

    len = slcf->cookie_name.len + 1 + NGX_HTTP_SHORTLINK_VISITOR_LEN
          + sizeof("; Max-Age=") - 1 + NGX_TIME_T_LEN
          + sizeof("; Path=/; HttpOnly; SameSite=Lax; Secure") - 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Set-Cookie");
    h->value.data = p;

    p = ngx_sprintf(p, "%V=%*s; Max-Age=%T; Path=/; HttpOnly; SameSite=Lax",
                    &slcf->cookie_name, (size_t) NGX_HTTP_SHORTLINK_VISITOR_LEN,
                    id, slcf->cookie_max_age);

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        p = ngx_cpymem(p, "; Secure", sizeof("; Secure") - 1);
    }
#endif

    h->value.len = p - h->value.data;

    return NGX_OK;
}


/* the client address as text: whole, cut to its network, or nothing */

static size_t
ngx_http_shortlink_click_ip(ngx_http_request_t *r, ngx_uint_t mode,
    u_char *text)
{
    u_char                addr[16];
    struct sockaddr      *sa;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    if (mode == NGX_HTTP_SHORTLINK_CLICK_IP_OFF) {
        return 0;
    }

    sa = r->connection->sockaddr;

    switch (sa->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        ngx_memcpy(addr, &sin->sin_addr, 4);

        if (mode == NGX_HTTP_SHORTLINK_CLICK_IP_ANONYMIZE) {
            addr[3] = 0;                               /* /24 */
        }

        return ngx_inet_ntop(AF_INET, addr, text, NGX_INET6_ADDRSTRLEN);

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        ngx_memcpy(addr, &sin6->sin6_addr, 16);

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            if (mode == NGX_HTTP_SHORTLINK_CLICK_IP_ANONYMIZE) {
                addr[15] = 0;
            }

            return ngx_inet_ntop(AF_INET, addr + 12, text,
                                 NGX_INET6_ADDRSTRLEN);
        }

        if (mode == NGX_HTTP_SHORTLINK_CLICK_IP_ANONYMIZE) {
            ngx_memzero(addr + 6, 10);                 /* /48 */
        }

        return ngx_inet_ntop(AF_INET6, addr, text, NGX_INET6_ADDRSTRLEN);
#endif

    default: /* unix socket */
        return 0;
    }
}


/* xorshift128+: fast, and seeded per worker; ids need no secrecy */

static uint64_t
ngx_http_shortlink_ids_random(ngx_http_shortlink_ids_t *ids)
{
    uint64_t  s1, s0;

    s1 = ids->state[0];
    s0 = ids->state[1];

    ids->state[0] = s0;
    s1 ^= s1 << 23;
    ids->state[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);

    return ids->state[1] + s0;
}
