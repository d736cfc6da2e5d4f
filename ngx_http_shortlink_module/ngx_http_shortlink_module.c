
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The module itself: directives, configuration at each level, variables,
 * and the per-worker start and exit hooks.  Request handling lives in
 * ngx_http_shortlink_handler.c, PostgreSQL in ngx_http_shortlink_pg.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"


static void *ngx_http_shortlink_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_shortlink_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_shortlink_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_shortlink_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_shortlink_add_variables(ngx_conf_t *cf);

static char *ngx_http_shortlink(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_postgres(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static ngx_int_t ngx_http_shortlink_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_shortlink_init_process(ngx_cycle_t *cycle);
static void ngx_http_shortlink_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_shortlink_commands[] = {

    { ngx_string("shortlink"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_shortlink,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_shortlink_postgres,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_shortlink_module_ctx = {
    ngx_http_shortlink_add_variables,      /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_shortlink_create_main_conf,   /* create main configuration */
    ngx_http_shortlink_init_main_conf,     /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_shortlink_create_loc_conf,    /* create location configuration */
    ngx_http_shortlink_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_shortlink_module = {
    NGX_MODULE_V1,
    &ngx_http_shortlink_module_ctx,        /* module context */
    ngx_http_shortlink_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_shortlink_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_shortlink_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_shortlink_vars[] = {

    { ngx_string("shortlink_code"), NULL, ngx_http_shortlink_variable,
      offsetof(ngx_http_shortlink_ctx_t, code),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("shortlink_url"), NULL, ngx_http_shortlink_variable,
      offsetof(ngx_http_shortlink_ctx_t, url),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static void *
ngx_http_shortlink_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_shortlink_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->pg.conninfo = { 0, NULL };
     *     smcf->pg_pool = NULL;
     *     smcf->used = 0;
     */

    smcf->pg.size = NGX_CONF_UNSET_UINT;
    smcf->pg.connect_timeout = NGX_CONF_UNSET_MSEC;
    smcf->pg.query_timeout = NGX_CONF_UNSET_MSEC;
    smcf->pg.backoff_max = NGX_CONF_UNSET_MSEC;

    return smcf;
}


static char *
ngx_http_shortlink_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_shortlink_main_conf_t  *smcf = conf;

    ngx_conf_init_uint_value(smcf->pg.size, 4);
    ngx_conf_init_msec_value(smcf->pg.connect_timeout, 2000);
    ngx_conf_init_msec_value(smcf->pg.query_timeout, 1000);
    ngx_conf_init_msec_value(smcf->pg.backoff_max, 5000);

    if (smcf->used && smcf->pg.conninfo.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"shortlink\" is used but \"shortlink_postgres\" "
                      "is not set");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_shortlink_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_shortlink_loc_conf_t  *slcf;

    slcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_shortlink_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     slcf->code = NULL;
     */

    slcf->enable = NGX_CONF_UNSET;

    return slcf;
}


static char *
ngx_http_shortlink_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_shortlink_loc_conf_t  *conf = child;

    /* like proxy_pass, "shortlink" and its code are not inherited */

    ngx_conf_init_value(conf->enable, 0);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_shortlink_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_shortlink_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* shortlink [code]; */

static char *
ngx_http_shortlink(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_shortlink_loc_conf_t  *slcf = conf;

    ngx_str_t                         *value;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_shortlink_main_conf_t    *smcf;
    ngx_http_compile_complex_value_t   ccv;

    if (slcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    slcf->enable = 1;

    if (cf->args->nelts == 2) {
        value = cf->args->elts;

        slcf->code = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (slcf->code == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[1];
        ccv.complex_value = slcf->code;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_shortlink_handler;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_shortlink_module);
    smcf->used = 1;

    return NGX_CONF_OK;
}


/*
 * shortlink_postgres conninfo [pool=N] [connect_timeout=time]
 *                    [query_timeout=time] [backoff=time];
 */

static char *
ngx_http_shortlink_postgres(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_shortlink_main_conf_t  *smcf = conf;

    ngx_str_t   *value, s;
    ngx_int_t    n;
    ngx_msec_t   ms, *target;
    ngx_uint_t   i;

    if (smcf->pg.conninfo.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty conninfo";
    }

    if (ngx_http_shortlink_pg_check_conninfo(cf, &value[1]) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    smcf->pg.conninfo = value[1];

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0) {
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (n == NGX_ERROR || n < 1 || n > 1024) {
                goto invalid;
            }

            smcf->pg.size = (ngx_uint_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            target = &smcf->pg.connect_timeout;
            s.data = value[i].data + 16;

        } else if (ngx_strncmp(value[i].data, "query_timeout=", 14) == 0) {
            target = &smcf->pg.query_timeout;
            s.data = value[i].data + 14;

        } else if (ngx_strncmp(value[i].data, "backoff=", 8) == 0) {
            target = &smcf->pg.backoff_max;
            s.data = value[i].data + 8;

        } else {
            goto invalid;
        }

        s.len = value[i].data + value[i].len - s.data;

        ms = ngx_parse_time(&s, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        *target = ms;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_shortlink_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                 *s;
    ngx_http_shortlink_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_shortlink_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_shortlink_init_process(ngx_cycle_t *cycle)
{
    ngx_http_shortlink_main_conf_t  *smcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_shortlink_module);

    if (smcf == NULL || smcf->pg.conninfo.len == 0) {
        return NGX_OK;
    }

    smcf->pg_pool = ngx_http_shortlink_pg_pool_create(cycle, &smcf->pg);
    if (smcf->pg_pool == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_shortlink_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_shortlink_module);

    if (smcf && smcf->pg_pool) {
        ngx_http_shortlink_pg_pool_destroy(smcf->pg_pool);
        smcf->pg_pool = NULL;
    }
}
