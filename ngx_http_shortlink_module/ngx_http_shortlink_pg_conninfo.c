
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * What the pool's connections are opened with.  The admin's conninfo is
 * parsed once, when the configuration is read; each worker then passes
 * libpq every parameter itself (PQconnectStartParams() with
 * expand_dbname = 0), the admin's first and then defaults for the ones the
 * conninfo and the environment leave out:
 *
 *   - options gets "-c statement_timeout=..." (from query_timeout, see
 *     ngx_http_shortlink_pg_conn.c) after what the admin gave;
 *   - TCP keepalives and tcp_user_timeout, so that a connection whose
 *     packets vanish without a reset dies within about 25 s even when idle;
 *   - nothing that libpq would look up synchronously at every connect in
 *     the worker: gssencmode=disable (else libpq reads the Kerberos
 *     configuration and credential caches, even for a server without
 *     GSSAPI), and the user name, password file and SSL file names libpq
 *     would derive from the password database (getpwuid(): /etc/passwd,
 *     or whatever NSS asks, LDAP included).  These are looked up once, by
 *     the master, for the user the workers run as.
 *
 * What is still read at a connect: the password file, if one exists and
 * the conninfo has no password= (a stat() when there is none), and the
 * SSL client certificate and root certificate files, if SSL is
 * negotiated and they exist.  A GSSAPI or Kerberos login asked for by the
 * server or the conninfo reads its own files.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <pwd.h>

#include "ngx_http_shortlink_pg_conn.h"


typedef struct {
    const char  *key;
    const char  *env;        /* libpq reads it when the key is not given */
    const char  *value;      /* NULL: under the home directory */
} ngx_http_shortlink_pg_default_t;


static ngx_uint_t ngx_http_shortlink_pg_given(
    ngx_http_shortlink_pg_conf_t *conf, const char *key);
static char *ngx_http_shortlink_pg_options(ngx_http_shortlink_pg_conf_t *conf,
    ngx_pool_t *p);


static ngx_http_shortlink_pg_default_t  ngx_http_shortlink_pg_defaults[] = {
    { "fallback_application_name", NULL, "nginx-shortlink" },
    { "gssencmode", "PGGSSENCMODE", "disable" },
    { "keepalives", NULL, "1" },
    { "keepalives_idle", NULL, "10" },
    { "keepalives_interval", NULL, "5" },
    { "keepalives_count", NULL, "3" },
    { "tcp_user_timeout", NULL, "25000" },

    /* libpq's own defaults, without its getpwuid() */
    { "passfile", "PGPASSFILE", "/.pgpass" },
    { "sslcert", "PGSSLCERT", "/.postgresql/postgresql.crt" },
    { "sslkey", "PGSSLKEY", "/.postgresql/postgresql.key" },
    { "sslrootcert", "PGSSLROOTCERT", "/.postgresql/root.crt" },
    { "sslcrl", "PGSSLCRL", "/.postgresql/root.crl" },
    { NULL, NULL, NULL }
};


/*
 * Configuration time: refuse a conninfo libpq cannot parse, and one that
 * would make libpq resolve a host name (getaddrinfo() blocks the worker,
 * on every connect and reconnect); keep what it gives.
 */

char *
ngx_http_shortlink_pg_conninfo(ngx_conf_t *cf,
    ngx_http_shortlink_pg_conf_t *conf, ngx_str_t *ci)
{
    char              *err;
    size_t             len;
    u_char            *p, *last, *comma;
    ngx_str_t          host;
    ngx_addr_t         addr;
    ngx_uint_t         hostaddr;
    ngx_keyval_t      *kv;
    PQconninfoOption  *opts, *o;

    err = NULL;

    opts = PQconninfoParse((const char *) ci->data, &err);

    if (opts == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid PostgreSQL conninfo \"%V\": %*s", ci,
                           err ? ngx_http_shortlink_pg_msglen(err) : 0,
                           err ? err : "");
        if (err) {
            PQfreemem(err);
        }

        return NGX_CONF_ERROR;
    }

    conf->given = ngx_array_create(cf->pool, 8, sizeof(ngx_keyval_t));
    if (conf->given == NULL) {
        goto failed;
    }

    ngx_str_null(&host);
    hostaddr = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL || o->val[0] == '\0') {
            continue;
        }

        if (ngx_strcmp(o->keyword, "service") == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "PostgreSQL conninfo \"%V\": \"service\" is "
                               "not supported, name the host and database",
                               ci);
            goto failed;
        }

        kv = ngx_array_push(conf->given);
        if (kv == NULL) {
            goto failed;
        }

        len = ngx_strlen(o->keyword);
        kv->key.data = ngx_pnalloc(cf->pool, len + 1);
        if (kv->key.data == NULL) {
            goto failed;
        }

        (void) ngx_cpystrn(kv->key.data, (u_char *) o->keyword, len + 1);
        kv->key.len = len;

        len = ngx_strlen(o->val);
        kv->value.data = ngx_pnalloc(cf->pool, len + 1);
        if (kv->value.data == NULL) {
            goto failed;
        }

        (void) ngx_cpystrn(kv->value.data, (u_char *) o->val, len + 1);
        kv->value.len = len;

        if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            /* addresses given: host names are only used for checks */
            hostaddr = 1;

        } else if (ngx_strcmp(o->keyword, "host") == 0) {
            host = kv->value;
        }
    }

    PQconninfoFree(opts);

    if (hostaddr) {
        return NGX_CONF_OK;
    }

    /* host=a,b,c: each an address or a Unix socket directory */

    p = host.data;
    last = host.data + host.len;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (comma > p && *p != '/' && *p != '@'
            && ngx_parse_addr(cf->pool, &addr, p, comma - p) != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "PostgreSQL conninfo \"%V\" names host "
                               "\"%*s\": libpq would resolve it blocking the "
                               "worker; use an address, or add hostaddr=",
                               ci, (size_t) (comma - p), p);
            return NGX_CONF_ERROR;
        }

        p = comma + 1;
    }

    return NGX_CONF_OK;

failed:

    PQconninfoFree(opts);

    return NGX_CONF_ERROR;
}


/*
 * In the master, after the configuration is read: the user the workers
 * will run as, and its home directory, as libpq would look them up.
 */

ngx_int_t
ngx_http_shortlink_pg_init_module(ngx_cycle_t *cycle,
    ngx_http_shortlink_pg_conf_t *conf)
{
    size_t            len;
    ngx_uid_t         uid;
    struct passwd    *pw;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    /* the workers change to "user" only when started by root */

    uid = geteuid();

    if (uid == 0 && ccf->master
        && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT)
    {
        uid = ccf->user;
    }

    pw = getpwuid(uid);

    if (pw == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "shortlink: uid %d is not in the password database, "
                      "libpq will look it up at every connect", (int) uid);
        return NGX_OK;
    }

    len = ngx_strlen(pw->pw_name);
    conf->user = ngx_pnalloc(cycle->pool, len + 1);
    if (conf->user == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(conf->user, (u_char *) pw->pw_name, len + 1);

    len = ngx_strlen(pw->pw_dir);
    conf->home = ngx_pnalloc(cycle->pool, len + 1);
    if (conf->home == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(conf->home, (u_char *) pw->pw_dir, len + 1);

    return NGX_OK;
}


/* in the worker: PQconnectStartParams()'s keys and values */

ngx_int_t
ngx_http_shortlink_pg_params(ngx_http_shortlink_pg_pool_t *pool,
    ngx_pool_t *p)
{
    u_char                           *v;
    size_t                            len;
    ngx_uint_t                        i, n;
    const char                      **keys, **values;
    ngx_keyval_t                     *kv;
    ngx_http_shortlink_pg_conf_t     *conf;
    ngx_http_shortlink_pg_default_t  *d;

    conf = pool->conf;

    n = conf->given->nelts
        + sizeof(ngx_http_shortlink_pg_defaults)
          / sizeof(ngx_http_shortlink_pg_default_t)
        + 3;

    keys = ngx_pcalloc(p, n * sizeof(char *));
    values = ngx_pcalloc(p, n * sizeof(char *));

    if (keys == NULL || values == NULL) {
        return NGX_ERROR;
    }

    n = 0;
    kv = conf->given->elts;

    for (i = 0; i < conf->given->nelts; i++) {
        if (ngx_strcmp(kv[i].key.data, "options") == 0) {
            continue;
        }

        keys[n] = (const char *) kv[i].key.data;
        values[n++] = (const char *) kv[i].value.data;
    }

    keys[n] = "options";
    values[n] = ngx_http_shortlink_pg_options(conf, p);

    if (values[n++] == NULL) {
        return NGX_ERROR;
    }

    if (conf->user
        && !ngx_http_shortlink_pg_given(conf, "user")
        && getenv("PGUSER") == NULL)
    {
        keys[n] = "user";
        values[n++] = (const char *) conf->user;
    }

    for (d = ngx_http_shortlink_pg_defaults; d->key; d++) {

        if (ngx_http_shortlink_pg_given(conf, d->key)
            || (d->env && getenv(d->env) != NULL))
        {
            continue;
        }

        if (d->value[0] != '/') {
            keys[n] = d->key;
            values[n++] = d->value;
            continue;
        }

        /* under the home directory */

        if (conf->home == NULL) {
            continue;
        }

        if (ngx_strcmp(d->key, "passfile") == 0
            && (ngx_http_shortlink_pg_given(conf, "password")
                || getenv("PGPASSWORD") != NULL))
        {
            continue;
        }

        if (ngx_strcmp(d->key, "sslcrl") == 0
            && (ngx_http_shortlink_pg_given(conf, "sslcrldir")
                || getenv("PGSSLCRLDIR") != NULL))
        {
            continue;
        }

        len = ngx_strlen(conf->home) + ngx_strlen(d->value);

        v = ngx_pnalloc(p, len + 1);
        if (v == NULL) {
            return NGX_ERROR;
        }

        *ngx_sprintf(v, "%s%s", conf->home, d->value) = '\0';

        keys[n] = d->key;
        values[n++] = (const char *) v;
    }

    keys[n] = NULL;
    values[n] = NULL;

    pool->keys = keys;
    pool->values = values;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_shortlink_pg_given(ngx_http_shortlink_pg_conf_t *conf,
    const char *key)
{
    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    kv = conf->given->elts;

    for (i = 0; i < conf->given->nelts; i++) {
        if (ngx_strcmp(kv[i].key.data, key) == 0) {
            return 1;
        }
    }

    return 0;
}


/* the admin's options (or PGOPTIONS), then our statement_timeout */

static char *
ngx_http_shortlink_pg_options(ngx_http_shortlink_pg_conf_t *conf,
    ngx_pool_t *p)
{
    u_char        *v, *last;
    size_t         len;
    ngx_uint_t     i;
    const char    *options;
    ngx_keyval_t  *kv;

    options = getenv("PGOPTIONS");

    kv = conf->given->elts;

    for (i = 0; i < conf->given->nelts; i++) {
        if (ngx_strcmp(kv[i].key.data, "options") == 0) {
            options = (const char *) kv[i].value.data;
        }
    }

    if (options == NULL) {
        options = "";
    }

    len = ngx_strlen(options) + sizeof(" -c statement_timeout=") - 1
          + NGX_INT_T_LEN + 1;

    v = ngx_pnalloc(p, len);
    if (v == NULL) {
        return NULL;
    }

    last = ngx_sprintf(v, "%s%s-c statement_timeout=%M", options,
                       options[0] ? " " : "",
                       ngx_http_shortlink_pg_statement_timeout(
                           conf->query_timeout));
    *last = '\0';

    return (char *) v;
}
