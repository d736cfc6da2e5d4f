
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * A profile page from its row: the built-in template, every value from the
 * database HTML-escaped (text and attributes alike), the avatar URL checked
 * again against the rules of a link's target, codes against the rules of a
 * code.  Nobody's markup reaches the page: there is no field that is not
 * escaped.  The only inline resource is the stylesheet below, allowed by
 * its hash in the Content-Security-Policy; the page needs no script.
 * Pure functions but for ngx_alloc(): no I/O.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_profile.h"
#include "ngx_http_shortlink_code.h"
#include "ngx_http_shortlink_link.h"
#include "ngx_http_shortlink_utf8.h"


/* columns of the query in ngx_http_shortlink_profile.c */
#define NGX_HTTP_SHORTLINK_PROFILE_COL_ID       0
#define NGX_HTTP_SHORTLINK_PROFILE_COL_VERSION  1
#define NGX_HTTP_SHORTLINK_PROFILE_COL_NAME     2
#define NGX_HTTP_SHORTLINK_PROFILE_COL_BIO      3
#define NGX_HTTP_SHORTLINK_PROFILE_COL_AVATAR   4
#define NGX_HTTP_SHORTLINK_PROFILE_COL_THEME    5
#define NGX_HTTP_SHORTLINK_PROFILE_COL_NEXT     6
#define NGX_HTTP_SHORTLINK_PROFILE_COL_CODE     7
#define NGX_HTTP_SHORTLINK_PROFILE_COL_TITLE    8
#define NGX_HTTP_SHORTLINK_PROFILE_COLS         9

/* the most an escaped byte grows: '"' -> "&quot;" */
#define NGX_HTTP_SHORTLINK_PROFILE_ESCAPE_MAX   6


/*
 * The stylesheet, inline: "style-src 'sha256-...'" below is the SHA-256 of
 * exactly these bytes (t/165-profile-page.t checks it), so any change here
 * needs a new hash and a new NGX_HTTP_SHORTLINK_PROFILE_REV.
 */
#define NGX_HTTP_SHORTLINK_PROFILE_CSS                                        \
    "body{margin:0;"                                                          \
    "font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}"   \
    "main{max-width:36rem;margin:0 auto;padding:2rem 1rem 3rem;"              \
    "text-align:center}"                                                      \
    ".avatar{width:96px;height:96px;border-radius:50%;object-fit:cover}"      \
    "h1{font-size:1.5rem;margin:.75rem 0 .5rem;overflow-wrap:anywhere}"       \
    ".bio{white-space:pre-line;margin:0 0 1.5rem;overflow-wrap:anywhere}"     \
    "ul{list-style:none;margin:0;padding:0}"                                  \
    "li{margin:0 0 .75rem}"                                                   \
    "a{display:block;padding:.875rem 1rem;border-radius:.5rem;"               \
    "text-decoration:none;font-weight:600;overflow-wrap:anywhere}"            \
    "a:focus-visible{outline:3px solid;outline-offset:2px}"                   \
    ".t-light{background:#f7f7f7;color:#1a1a1a}"                              \
    ".t-light a{background:#fff;color:#1a1a1a;border:1px solid #bbb}"         \
    ".t-dark{background:#121212;color:#eee}"                                  \
    ".t-dark a{background:#262626;color:#fff;border:1px solid #555}"          \
    ".t-contrast{background:#000;color:#fff}"                                 \
    ".t-contrast a{background:#ff0;color:#000;border:2px solid #fff}"


ngx_str_t  ngx_http_shortlink_profile_csp = ngx_string(
    "default-src 'none'; "
    "style-src 'sha256-Fw8yQy/Hzd8S4iw6UTsYfFw7cmV6y+ikJ1sBPVf+xN0='; "
    "img-src https: http:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'");


static const char  ngx_http_shortlink_profile_head[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, "
    "initial-scale=1\">\n"
    "<title>";

static const char  ngx_http_shortlink_profile_style[] =
    "</title>\n"
    "<style>" NGX_HTTP_SHORTLINK_PROFILE_CSS "</style>\n"
    "</head>\n"
    "<body class=\"t-";

static const char  ngx_http_shortlink_profile_main[] =
    "\">\n<main>\n<header>\n";

static const char  ngx_http_shortlink_profile_img[] =
    "<img class=\"avatar\" src=\"";

static const char  ngx_http_shortlink_profile_img_end[] =
    "\" alt=\"\" width=\"96\" height=\"96\" referrerpolicy=\"no-referrer\">\n";

static const char  ngx_http_shortlink_profile_h1[] = "<h1 dir=\"auto\">";

static const char  ngx_http_shortlink_profile_h1_end[] = "</h1>\n";

static const char  ngx_http_shortlink_profile_bio[] =
    "<p class=\"bio\" dir=\"auto\">";

static const char  ngx_http_shortlink_profile_bio_end[] = "</p>\n";

static const char  ngx_http_shortlink_profile_nav[] =
    "</header>\n<nav aria-label=\"Links\">\n<ul>\n";

static const char  ngx_http_shortlink_profile_li[] = "<li><a href=\"\x01";

static const char  ngx_http_shortlink_profile_li_mid[] =
    "?_sls=profile\" dir=\"auto\">";

static const char  ngx_http_shortlink_profile_li_end[] = "</a></li>\n";

static const char  ngx_http_shortlink_profile_tail[] =
    "</ul>\n</nav>\n</main>\n</body>\n</html>\n";


/* the themes of the profiles_theme constraint; others render as the first */
static ngx_str_t  ngx_http_shortlink_profile_themes[] = {
    ngx_string("light"),
    ngx_string("dark"),
    ngx_string("contrast"),
    ngx_null_string
};


static ngx_str_t ngx_http_shortlink_profile_value(PGresult *res, int row,
    int col);
static u_char *ngx_http_shortlink_profile_escape(u_char *dst, ngx_str_t *src,
    ngx_uint_t newlines);
static ngx_uint_t ngx_http_shortlink_profile_entry_valid(ngx_str_t *code,
    ngx_str_t *title);
static ngx_str_t *ngx_http_shortlink_profile_theme(ngx_str_t *theme);
static ngx_uint_t ngx_http_shortlink_profile_avatar_valid(ngx_str_t *url);


#define ngx_http_shortlink_profile_cpy(p, s)  ngx_cpymem(p, s, sizeof(s) - 1)


/*
 * The cached form of a page from the rows of the profile query (one per
 * entry, at least one).  value->data is ngx_alloc()ed: the caller frees
 * it.  NGX_DECLINED: the row breaks the rules (logged by the caller).
 */

ngx_int_t
ngx_http_shortlink_profile_render(PGresult *res, time_t ttl,
    ngx_str_t *value)
{
    int         row, rows;
    u_char     *p;
    size_t      len;
    time_t      now, next, fresh;
    off_t       id, version;
    ngx_str_t   name, bio, avatar, code, title, *theme;
    ngx_uint_t  entries;

    rows = PQntuples(res);

    if (rows < 1 || PQnfields(res) != NGX_HTTP_SHORTLINK_PROFILE_COLS) {
        return NGX_DECLINED;
    }

    id = ngx_atoof((u_char *) PQgetvalue(res, 0,
                                       NGX_HTTP_SHORTLINK_PROFILE_COL_ID),
                   PQgetlength(res, 0, NGX_HTTP_SHORTLINK_PROFILE_COL_ID));
    version = ngx_atoof((u_char *) PQgetvalue(res, 0,
                                        NGX_HTTP_SHORTLINK_PROFILE_COL_VERSION),
                        PQgetlength(res, 0,
                                    NGX_HTTP_SHORTLINK_PROFILE_COL_VERSION));

    if (id == NGX_ERROR || version == NGX_ERROR) {
        return NGX_DECLINED;
    }

    name = ngx_http_shortlink_profile_value(res, 0,
                                         NGX_HTTP_SHORTLINK_PROFILE_COL_NAME);
    bio = ngx_http_shortlink_profile_value(res, 0,
                                           NGX_HTTP_SHORTLINK_PROFILE_COL_BIO);
    avatar = ngx_http_shortlink_profile_value(res, 0,
                                        NGX_HTTP_SHORTLINK_PROFILE_COL_AVATAR);
    title = ngx_http_shortlink_profile_value(res, 0,
                                         NGX_HTTP_SHORTLINK_PROFILE_COL_THEME);
    theme = ngx_http_shortlink_profile_theme(&title);

    if (avatar.len && !ngx_http_shortlink_profile_avatar_valid(&avatar)) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "shortlink: profile %O has an invalid avatar URL, "
                      "not shown", id);
        avatar.len = 0;
    }

    now = ngx_time();
    fresh = now + ttl;

    if (!PQgetisnull(res, 0, NGX_HTTP_SHORTLINK_PROFILE_COL_NEXT)) {
        next = ngx_atotm((u_char *) PQgetvalue(res, 0,
                                           NGX_HTTP_SHORTLINK_PROFILE_COL_NEXT),
                         PQgetlength(res, 0,
                                     NGX_HTTP_SHORTLINK_PROFILE_COL_NEXT));
        if (next != NGX_ERROR && next < fresh) {
            fresh = ngx_max(next, now);
        }
    }

    /* an upper bound: every text byte escaped at its worst */

    len = sizeof("v P" NGX_HTTP_SHORTLINK_PROFILE_REV "    \n") - 1
          + 3 * NGX_INT64_LEN + NGX_INT_T_LEN
          + sizeof(ngx_http_shortlink_profile_head) - 1
          + sizeof(ngx_http_shortlink_profile_style) - 1 + theme->len
          + sizeof(ngx_http_shortlink_profile_main) - 1
          + sizeof(ngx_http_shortlink_profile_img) - 1
          + sizeof(ngx_http_shortlink_profile_img_end) - 1
          + sizeof(ngx_http_shortlink_profile_h1) - 1
          + sizeof(ngx_http_shortlink_profile_h1_end) - 1
          + sizeof(ngx_http_shortlink_profile_bio) - 1
          + sizeof(ngx_http_shortlink_profile_bio_end) - 1
          + sizeof(ngx_http_shortlink_profile_nav) - 1
          + sizeof(ngx_http_shortlink_profile_tail) - 1
          + (2 * name.len + bio.len + avatar.len)
            * NGX_HTTP_SHORTLINK_PROFILE_ESCAPE_MAX;

    for (row = 0; row < rows; row++) {
        len += sizeof(ngx_http_shortlink_profile_li) - 1
               + sizeof(ngx_http_shortlink_profile_li_mid) - 1
               + sizeof(ngx_http_shortlink_profile_li_end) - 1
               + PQgetlength(res, row, NGX_HTTP_SHORTLINK_PROFILE_COL_CODE)
               + PQgetlength(res, row, NGX_HTTP_SHORTLINK_PROFILE_COL_TITLE)
                 * NGX_HTTP_SHORTLINK_PROFILE_ESCAPE_MAX;
    }

    value->data = ngx_alloc(len, ngx_cycle->log);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    entries = 0;

    for (row = 0; row < rows; row++) {
        code = ngx_http_shortlink_profile_value(res, row,
                                          NGX_HTTP_SHORTLINK_PROFILE_COL_CODE);
        title = ngx_http_shortlink_profile_value(res, row,
                                         NGX_HTTP_SHORTLINK_PROFILE_COL_TITLE);

        if (ngx_http_shortlink_profile_entry_valid(&code, &title)) {
            entries++;
        }
    }

    p = ngx_sprintf(value->data, "v%O P" NGX_HTTP_SHORTLINK_PROFILE_REV
                    " %O %T %ui\n", version, id, fresh, entries);

    p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_head);
    p = ngx_http_shortlink_profile_escape(p, &name, 0);
    p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_style);
    p = ngx_cpymem(p, theme->data, theme->len);
    p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_main);

    if (avatar.len) {
        p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_img);
        p = ngx_http_shortlink_profile_escape(p, &avatar, 0);
        p = ngx_http_shortlink_profile_cpy(p,
                                         ngx_http_shortlink_profile_img_end);
    }

    p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_h1);
    p = ngx_http_shortlink_profile_escape(p, &name, 0);
    p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_h1_end);

    if (bio.len) {
        p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_bio);
        p = ngx_http_shortlink_profile_escape(p, &bio, 1);
        p = ngx_http_shortlink_profile_cpy(p,
                                         ngx_http_shortlink_profile_bio_end);
    }

    p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_nav);

    for (row = 0; row < rows; row++) {
        code = ngx_http_shortlink_profile_value(res, row,
                                          NGX_HTTP_SHORTLINK_PROFILE_COL_CODE);
        title = ngx_http_shortlink_profile_value(res, row,
                                         NGX_HTTP_SHORTLINK_PROFILE_COL_TITLE);

        if (!ngx_http_shortlink_profile_entry_valid(&code, &title)) {
            if (code.len) {
                /* (a profile without entries has one row, no code) */
                ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                              "shortlink: profile %O has an invalid entry, "
                              "not shown", id);
            }

            continue;
        }

        p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_li);
        p = ngx_cpymem(p, code.data, code.len);
        p = ngx_http_shortlink_profile_cpy(p,
                                         ngx_http_shortlink_profile_li_mid);
        p = ngx_http_shortlink_profile_escape(p, &title, 0);
        p = ngx_http_shortlink_profile_cpy(p,
                                         ngx_http_shortlink_profile_li_end);
    }

    p = ngx_http_shortlink_profile_cpy(p, ngx_http_shortlink_profile_tail);

    value->len = p - value->data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "shortlink: profile %O v%O rendered, %ui entries",
                   id, version, entries);

    return NGX_OK;
}


/*
 * A cached page taken apart; page->html points into value.  NGX_DECLINED
 * for a tombstone (page->version is set), NGX_ERROR for anything else that
 * is not a page of this template revision: a Redis value is checked as
 * strictly as its form allows (its html must be UTF-8).
 */

ngx_int_t
ngx_http_shortlink_profile_decode(ngx_str_t *value,
    ngx_http_shortlink_profile_t *page)
{
    u_char  *p, *last, *sp;
    off_t    n;

    p = value->data;
    last = p + value->len;

    if (p == last || *p++ != 'v') {
        return NGX_ERROR;
    }

    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL || (n = ngx_atoof(p, sp - p)) == NGX_ERROR) {
        return NGX_ERROR;
    }

    page->version = n;
    p = sp + 1;

    if (last - p == 1 && *p == '-') {
        return NGX_DECLINED;
    }

    if ((size_t) (last - p) < sizeof("P" NGX_HTTP_SHORTLINK_PROFILE_REV " ")
        || ngx_strncmp(p, "P" NGX_HTTP_SHORTLINK_PROFILE_REV " ",
                       sizeof("P" NGX_HTTP_SHORTLINK_PROFILE_REV " ") - 1)
           != 0)
    {
        return NGX_ERROR;
    }

    p += sizeof("P" NGX_HTTP_SHORTLINK_PROFILE_REV " ") - 1;

    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL || (n = ngx_atoof(p, sp - p)) == NGX_ERROR) {
        return NGX_ERROR;
    }

    page->profile_id = n;
    p = sp + 1;

    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL || (page->fresh_until = ngx_atotm(p, sp - p)) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    p = sp + 1;

    sp = ngx_strlchr(p, last, '\n');
    if (sp == NULL || (n = ngx_atoof(p, sp - p)) == NGX_ERROR) {
        return NGX_ERROR;
    }

    page->holes = (ngx_uint_t) n;
    page->html.data = sp + 1;
    page->html.len = last - page->html.data;

    if (page->html.len == 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A page from Redis, which anyone on its network segment may write to:
 * well-formed UTF-8 with as many holes as it says.  (One from the zone was
 * written by this module: it is not checked on every hit.)
 */

ngx_uint_t
ngx_http_shortlink_profile_valid(ngx_http_shortlink_profile_t *page)
{
    u_char      *p, *last;
    ngx_uint_t   n;

    if (!ngx_http_shortlink_utf8_valid(page->html.data, page->html.len)) {
        return 0;
    }

    n = 0;
    last = page->html.data + page->html.len;

    for (p = page->html.data; p < last; p++) {
        if (*p == NGX_HTTP_SHORTLINK_PROFILE_HOLE) {
            n++;
        }
    }

    return n == page->holes;
}


/* the page's length once every hole is the link prefix */

size_t
ngx_http_shortlink_profile_size(ngx_http_shortlink_profile_t *page,
    ngx_str_t *links)
{
    return page->html.len + page->holes * links->len - page->holes;
}


u_char *
ngx_http_shortlink_profile_fill(u_char *p, ngx_http_shortlink_profile_t *page,
    ngx_str_t *links)
{
    u_char  *s, *last, *hole;

    s = page->html.data;
    last = s + page->html.len;

    for ( ;; ) {
        hole = memchr(s, NGX_HTTP_SHORTLINK_PROFILE_HOLE, last - s);

        if (hole == NULL) {
            return ngx_cpymem(p, s, last - s);
        }

        p = ngx_cpymem(p, s, hole - s);
        p = ngx_cpymem(p, links->data, links->len);
        s = hole + 1;
    }
}


static ngx_str_t
ngx_http_shortlink_profile_value(PGresult *res, int row, int col)
{
    ngx_str_t  s;

    if (PQgetisnull(res, row, col)) {
        ngx_str_null(&s);
        return s;
    }

    s.data = (u_char *) PQgetvalue(res, row, col);
    s.len = PQgetlength(res, row, col);

    return s;
}


/*
 * Text for an element or an attribute value: & < > " ' as entities,
 * ill-formed UTF-8 as U+FFFD, control characters dropped (a newline kept
 * where asked: the bio's CSS shows it).  Never writes
 * NGX_HTTP_SHORTLINK_PROFILE_HOLE.
 */

static u_char *
ngx_http_shortlink_profile_escape(u_char *dst, ngx_str_t *src,
    ngx_uint_t newlines)
{
    u_char    *p, *last, *start;
    uint32_t   ch;

    p = src->data;
    last = p + src->len;

    while (p < last) {
        start = p;
        ch = ngx_http_shortlink_utf8_next(&p, last);

        switch (ch) {

        case '&':
            dst = ngx_cpymem(dst, "&amp;", sizeof("&amp;") - 1);
            continue;

        case '<':
            dst = ngx_cpymem(dst, "&lt;", sizeof("&lt;") - 1);
            continue;

        case '>':
            dst = ngx_cpymem(dst, "&gt;", sizeof("&gt;") - 1);
            continue;

        case '"':
            dst = ngx_cpymem(dst, "&quot;", sizeof("&quot;") - 1);
            continue;

        case '\'':
            dst = ngx_cpymem(dst, "&#39;", sizeof("&#39;") - 1);
            continue;

        case '\n':
            if (newlines) {
                *dst++ = '\n';
            }
            continue;

        case NGX_HTTP_SHORTLINK_UTF8_INVALID:
            dst = ngx_cpymem(dst, "\xef\xbf\xbd", 3);
            continue;
        }

        if (ch < 0x20 || (ch >= 0x7f && ch < 0xa0)) {
            continue;
        }

        dst = ngx_cpymem(dst, start, p - start);
    }

    return dst;
}


static ngx_uint_t
ngx_http_shortlink_profile_entry_valid(ngx_str_t *code, ngx_str_t *title)
{
    return code->len && title->len
           && ngx_http_shortlink_code_valid(code->data, code->len);
}


static ngx_str_t *
ngx_http_shortlink_profile_theme(ngx_str_t *theme)
{
    ngx_str_t  *t;

    for (t = ngx_http_shortlink_profile_themes; t->len; t++) {
        if (t->len == theme->len
            && ngx_strncmp(t->data, theme->data, theme->len) == 0)
        {
            return t;
        }
    }

    return ngx_http_shortlink_profile_themes;
}


/* the rules of a link's target (ngx_http_shortlink_link_valid()) */

static ngx_uint_t
ngx_http_shortlink_profile_avatar_valid(ngx_str_t *url)
{
    ngx_http_shortlink_link_t  link;

    ngx_memzero(&link, sizeof(ngx_http_shortlink_link_t));

    link.url = *url;
    link.status = 302;

    return ngx_http_shortlink_link_valid(&link);
}
