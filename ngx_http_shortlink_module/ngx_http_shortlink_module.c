
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The module itself: directives, configuration at each level, variables,
 * and the per-worker start and exit hooks that build and tear down what a
 * worker holds (PostgreSQL pool, Redis client, bloom filter, the LISTEN
 * subscription that keeps them true).  Request handling lives in
 * ngx_http_shortlink_handler.c and ngx_http_shortlink_lookup.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <math.h>

#include "ngx_http_shortlink_module.h"
#include "ngx_http_shortlink_queue.h"


static void *ngx_http_shortlink_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_shortlink_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_shortlink_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_shortlink_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_shortlink_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_shortlink_init(ngx_conf_t *cf);

static char *ngx_http_shortlink(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_postgres(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_bloom(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_queue(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_flush(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_shortlink_click_field(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_shortlink_visitor_cookie(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_shortlink_param_time(ngx_str_t *value,
    const char *name, ngx_msec_t *ms);
static ngx_uint_t ngx_http_shortlink_name_char(u_char c);
static ngx_int_t ngx_http_shortlink_name_size(ngx_conf_t *cf,
    ngx_str_t *value, ngx_uint_t min, ngx_str_t *name, size_t *size);

static ngx_int_t ngx_http_shortlink_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_shortlink_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_shortlink_init_process(ngx_cycle_t *cycle);
static void ngx_http_shortlink_notified(void *data, ngx_str_t *code);
static void ngx_http_shortlink_listening(void *data, ngx_uint_t up);
static void ngx_http_shortlink_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_shortlink_click_ip_modes[] = {
    { ngx_string("off"), NGX_HTTP_SHORTLINK_CLICK_IP_OFF },
    { ngx_string("anonymize"), NGX_HTTP_SHORTLINK_CLICK_IP_ANONYMIZE },
    { ngx_string("full"), NGX_HTTP_SHORTLINK_CLICK_IP_FULL },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_shortlink_code_length_bounds = {
    ngx_conf_check_num_bounds, NGX_HTTP_SHORTLINK_CODE_GEN_MIN,
    NGX_HTTP_SHORTLINK_CODE_GEN_MAX
};

static ngx_conf_num_bounds_t  ngx_http_shortlink_code_attempts_bounds = {
    ngx_conf_check_num_bounds, 1, 100
};


static ngx_command_t  ngx_http_shortlink_commands[] = {

    { ngx_string("shortlink"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_shortlink,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_profile"),
      NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_shortlink_profile_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_shortlink_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_code_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_shortlink_loc_conf_t, code_length),
      &ngx_http_shortlink_code_length_bounds },

    { ngx_string("shortlink_code_attempts"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_shortlink_loc_conf_t, code_attempts),
      &ngx_http_shortlink_code_attempts_bounds },

    { ngx_string("shortlink_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_shortlink_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_shortlink_postgres,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_shortlink_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_shortlink_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_bloom"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_shortlink_bloom,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_shortlink_queue,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_flush"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_shortlink_flush,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_click_field"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_shortlink_click_field,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_visitor_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF
                        |NGX_CONF_TAKE12,
      ngx_http_shortlink_visitor_cookie,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("shortlink_click_ip"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_shortlink_loc_conf_t, click_ip),
      &ngx_http_shortlink_click_ip_modes },

    { ngx_string("shortlink_rule_country"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_shortlink_loc_conf_t, rule_country),
      NULL },

    { ngx_string("shortlink_password_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_shortlink_loc_conf_t, password_secret),
      NULL },

    { ngx_string("shortlink_password_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_shortlink_loc_conf_t, password_ttl),
      NULL },

    { ngx_string("shortlink_respect_dnt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_shortlink_loc_conf_t, respect_dnt),
      NULL },

    { ngx_string("shortlink_qr"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_shortlink_loc_conf_t, qr),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_shortlink_module_ctx = {
    ngx_http_shortlink_add_variables,      /* preconfiguration */
    ngx_http_shortlink_init,               /* postconfiguration */

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
    ngx_http_shortlink_init_module,        /* init module */
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
      offsetof(ngx_http_shortlink_ctx_t, link.url),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("shortlink_cache"), NULL, ngx_http_shortlink_variable,
      offsetof(ngx_http_shortlink_ctx_t, tier),
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
     *     smcf->zone = NULL;
     *     smcf->redis.host = { 0, NULL };
     *     smcf->bloom.capacity = 0;
     *     smcf->used = 0;
     *     smcf->worker = NULL;
     */

    smcf->pg.size = NGX_CONF_UNSET_UINT;
    smcf->pg.connect_timeout = NGX_CONF_UNSET_MSEC;
    smcf->pg.query_timeout = NGX_CONF_UNSET_MSEC;
    smcf->pg.backoff_max = NGX_CONF_UNSET_MSEC;
    smcf->pg.listen_check = NGX_CONF_UNSET_MSEC;
    smcf->pg.listen_check_timeout = NGX_CONF_UNSET_MSEC;
    smcf->flush.interval = NGX_CONF_UNSET_MSEC;
    smcf->flush.batch = NGX_CONF_UNSET_UINT;
    smcf->flush.timeout = NGX_CONF_UNSET_MSEC;
    smcf->flush.parallel = NGX_CONF_UNSET_UINT;

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
    ngx_conf_init_msec_value(smcf->pg.listen_check, 5000);
    ngx_conf_init_msec_value(smcf->pg.listen_check_timeout, 5000);
    ngx_conf_init_msec_value(smcf->flush.interval, 1000);
    ngx_conf_init_uint_value(smcf->flush.batch, 5000);
    ngx_conf_init_msec_value(smcf->flush.timeout, 10000);

    if (smcf->flush.parallel == NGX_CONF_UNSET_UINT) {
        /* half the pool: the other half stays for link look-ups */
        smcf->flush.parallel = ngx_max(smcf->pg.size / 2, 1);
        smcf->flush.parallel = ngx_min(smcf->flush.parallel,
                                       NGX_HTTP_SHORTLINK_FLUSH_PARALLEL_MAX);
    }

    if (smcf->queue && smcf->pg.conninfo.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"shortlink_queue\" needs \"shortlink_postgres\"");
        return NGX_CONF_ERROR;
    }

    if ((smcf->zone || smcf->redis.host.len || smcf->bloom.capacity)
        && smcf->pg.conninfo.len == 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"shortlink_zone\", \"shortlink_redis\" and "
                      "\"shortlink_bloom\" need \"shortlink_postgres\"");
        return NGX_CONF_ERROR;
    }

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
     *     slcf->cookie_name = { 0, NULL };
     *     slcf->rule_country = NULL;
     *     slcf->password_secret = { 0, NULL };
     */

    slcf->enable = NGX_CONF_UNSET;
    slcf->cookie_max_age = NGX_CONF_UNSET;
    slcf->click_ip = NGX_CONF_UNSET_UINT;
    slcf->respect_dnt = NGX_CONF_UNSET;
    slcf->qr = NGX_CONF_UNSET;
    slcf->code_length = NGX_CONF_UNSET_UINT;
    slcf->code_attempts = NGX_CONF_UNSET_UINT;
    slcf->password_ttl = NGX_CONF_UNSET;

    return slcf;
}


static char *
ngx_http_shortlink_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_shortlink_loc_conf_t  *prev = parent;
    ngx_http_shortlink_loc_conf_t  *conf = child;

    ngx_str_t  name;

    /* like proxy_pass, "shortlink" and its code are not inherited */

    ngx_conf_init_value(conf->enable, 0);

    if (conf->cookie_max_age == NGX_CONF_UNSET) {
        conf->cookie_name = prev->cookie_name;
        conf->cookie_max_age = prev->cookie_max_age;
    }

    if (conf->cookie_max_age == NGX_CONF_UNSET) {
        ngx_str_set(&conf->cookie_name, "sl_vid");
        conf->cookie_max_age = 365 * 24 * 60 * 60;
    }

    ngx_conf_merge_uint_value(conf->click_ip, prev->click_ip,
                              NGX_HTTP_SHORTLINK_CLICK_IP_ANONYMIZE);
    ngx_conf_merge_value(conf->respect_dnt, prev->respect_dnt, 1);
    ngx_conf_merge_value(conf->qr, prev->qr, 0);
    ngx_conf_merge_uint_value(conf->code_length, prev->code_length, 7);
    ngx_conf_merge_uint_value(conf->code_attempts, prev->code_attempts, 10);

    if (conf->rule_country == NULL) {
        conf->rule_country = prev->rule_country;
    }

    ngx_conf_merge_str_value(conf->password_secret, prev->password_secret,
                             "");
    ngx_conf_merge_sec_value(conf->password_ttl, prev->password_ttl, 3600);

    if (conf->password_secret.len && conf->password_secret.len < 32) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "shortlink_password_secret must be at least 32 "
                           "bytes long");
        return NGX_CONF_ERROR;
    }

    if (conf->password_ttl <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "shortlink_password_ttl must be at least 1s");
        return NGX_CONF_ERROR;
    }

    if (!conf->enable && !conf->profile.enable) {
        return NGX_CONF_OK;
    }

    /* the request headers a click reads, as indexed variables */

    if (conf->cookie_name.len) {
        name.len = sizeof("cookie_") - 1 + conf->cookie_name.len;
        name.data = ngx_pnalloc(cf->pool, name.len);
        if (name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(name.data, "cookie_%V", &conf->cookie_name);

        conf->cookie_index = ngx_http_get_variable_index(cf, &name);
        if (conf->cookie_index == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_str_set(&name, "http_dnt");
    conf->dnt_index = ngx_http_get_variable_index(cf, &name);

    ngx_str_set(&name, "http_sec_gpc");
    conf->gpc_index = ngx_http_get_variable_index(cf, &name);

    if (conf->dnt_index == NGX_ERROR || conf->gpc_index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

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

    if (slcf->profile.enable) {
        return "cannot be used in a location with \"shortlink_profile\"";
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

    if (ngx_http_shortlink_metrics_add_zone(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* shortlink_api; */

static char *
ngx_http_shortlink_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_shortlink_main_conf_t  *smcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_shortlink_api_handler;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_shortlink_module);
    smcf->used = 1;

    return NGX_CONF_OK;
}


/* shortlink_metrics; */

static char *
ngx_http_shortlink_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_shortlink_metrics_handler;

    if (ngx_http_shortlink_metrics_add_zone(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* requests are counted in the log phase, once, whatever answered them */

static ngx_int_t
ngx_http_shortlink_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt             *h;
    ngx_http_core_main_conf_t       *cmcf;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_shortlink_module);

    if (!smcf->used) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_shortlink_metrics_log;

    return NGX_OK;
}


/*
 * shortlink_postgres conninfo [pool=N] [connect_timeout=time]
 *                    [query_timeout=time] [backoff=time]
 *                    [listen_check=time] [listen_check_timeout=time];
 */

static char *
ngx_http_shortlink_postgres(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_shortlink_main_conf_t  *smcf = conf;

    ngx_int_t    n, rc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (smcf->pg.conninfo.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty conninfo";
    }

    if (ngx_http_shortlink_pg_conninfo(cf, &smcf->pg, &value[1])
        != NGX_CONF_OK)
    {
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

        rc = ngx_http_shortlink_param_time(&value[i], "connect_timeout=",
                                           &smcf->pg.connect_timeout);
        if (rc == NGX_DECLINED) {
            rc = ngx_http_shortlink_param_time(&value[i], "query_timeout=",
                                               &smcf->pg.query_timeout);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_shortlink_param_time(&value[i], "backoff=",
                                               &smcf->pg.backoff_max);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_shortlink_param_time(&value[i], "listen_check=",
                                               &smcf->pg.listen_check);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_shortlink_param_time(&value[i],
                                               "listen_check_timeout=",
                                               &smcf->pg.listen_check_timeout);
        }

        if (rc != NGX_OK) {
            goto invalid;
        }
    }

    if (smcf->pg.listen_check == 0 || smcf->pg.listen_check_timeout == 0) {
        return "needs listen_check and listen_check_timeout above 0";
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/*
 * shortlink_zone name:size [ttl=time] [negative_ttl=time]
 *                [stale_if_error=time];
 */

static char *
ngx_http_shortlink_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_shortlink_main_conf_t  *smcf = conf;

    size_t       size;
    ngx_int_t    rc;
    ngx_str_t   *value, name;
    ngx_uint_t   i;

    if (smcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_shortlink_name_size(cf, &value[1], 8, &name, &size)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    smcf->cache.ttl = 60000;
    smcf->cache.negative_ttl = 5000;
    smcf->cache.stale_if_error = 3600000;

    for (i = 2; i < cf->args->nelts; i++) {

        rc = ngx_http_shortlink_param_time(&value[i], "ttl=",
                                           &smcf->cache.ttl);
        if (rc == NGX_DECLINED) {
            rc = ngx_http_shortlink_param_time(&value[i], "negative_ttl=",
                                               &smcf->cache.negative_ttl);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_shortlink_param_time(&value[i], "stale_if_error=",
                                               &smcf->cache.stale_if_error);
        }

        if (rc != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    smcf->zone = ngx_http_shortlink_cache_add(cf, &name, size, &smcf->cache);
    if (smcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * shortlink_redis address:port | unix:path [password=secret] [db=number]
 *                 [timeout=time] [ttl=time] [backoff=time] [prefix=string];
 */

static char *
ngx_http_shortlink_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_shortlink_main_conf_t  *smcf = conf;

    u_char      *p, *last;
    ngx_int_t    n, rc;
    ngx_str_t   *value, host;
    ngx_msec_t   ttl;
    ngx_uint_t   i;
    ngx_addr_t   addr;

    if (smcf->redis.host.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        host.data = value[1].data + 5;
        host.len = value[1].len - 5;
        smcf->redis.port = 0;

        if (host.len == 0) {
            goto invalid_address;
        }

    } else {
        last = value[1].data + value[1].len;

        for (p = last; p > value[1].data && p[-1] != ':'; p--) {
            /* void */
        }

        if (p == value[1].data) {
            goto invalid_address;
        }

        n = ngx_atoi(p, last - p);
        if (n < 1 || n > 65535) {
            goto invalid_address;
        }

        smcf->redis.port = (in_port_t) n;

        host.data = value[1].data;
        host.len = p - 1 - value[1].data;

        if (host.len > 2 && host.data[0] == '['
            && host.data[host.len - 1] == ']')
        {
            host.data++;
            host.len -= 2;
        }

        /* hiredis resolves names with a blocking getaddrinfo() */

        if (ngx_parse_addr(cf->pool, &addr, host.data, host.len) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"shortlink_redis\" needs an IP address or "
                               "a unix: path, not \"%V\": a host name would "
                               "be resolved blocking the worker", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    /* hiredis wants a NUL-terminated host */

    smcf->redis.host.data = ngx_pnalloc(cf->pool, host.len + 1);
    if (smcf->redis.host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(smcf->redis.host.data, host.data, host.len);
    smcf->redis.host.data[host.len] = '\0';
    smcf->redis.host.len = host.len;

    smcf->redis.timeout = 100;
    smcf->redis.backoff_max = 5000;
    ngx_str_set(&smcf->redis.prefix, "sl:");
    ttl = 600000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            smcf->redis.password.data = value[i].data + 9;
            smcf->redis.password.len = value[i].len - 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            smcf->redis.prefix.data = value[i].data + 7;
            smcf->redis.prefix.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            smcf->redis.db = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (smcf->redis.db == NGX_ERROR) {
                goto invalid;
            }

            continue;
        }

        rc = ngx_http_shortlink_param_time(&value[i], "timeout=",
                                           &smcf->redis.timeout);
        if (rc == NGX_DECLINED) {
            rc = ngx_http_shortlink_param_time(&value[i], "backoff=",
                                               &smcf->redis.backoff_max);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_shortlink_param_time(&value[i], "ttl=", &ttl);
        }

        if (rc != NGX_OK) {
            goto invalid;
        }
    }

    smcf->redis_ttl = (time_t) ngx_max(ttl / 1000, 1);

    return NGX_CONF_OK;

invalid_address:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid Redis address \"%V\"", &value[1]);
    return NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * shortlink_bloom capacity=number [error=rate] [rebuild=time];
 * shortlink_bloom off;
 */

static char *
ngx_http_shortlink_bloom(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_shortlink_main_conf_t  *smcf = conf;

    ngx_int_t    n, rc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (smcf->bloom.error != 0) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* "off" leaves capacity 0; error marks the directive as seen */
    smcf->bloom.error = 0.001;
    smcf->bloom.rebuild = 3600000;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "capacity=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);

            /* libbloom's smallest filter */
            if (n < 1000 || n > 1000000000) {
                goto invalid;
            }

            smcf->bloom.capacity = (ngx_uint_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "error=", 6) == 0) {
            n = ngx_atofp(value[i].data + 6, value[i].len - 6, 6);
            if (n <= 0 || n >= 1000000) {
                goto invalid;
            }

            smcf->bloom.error = (double) n / 1000000;
            continue;
        }

        rc = ngx_http_shortlink_param_time(&value[i], "rebuild=",
                                           &smcf->bloom.rebuild);
        if (rc != NGX_OK) {
            goto invalid;
        }
    }

    if (smcf->bloom.capacity == 0) {
        return "needs \"capacity=\"";
    }

    /* libbloom counts bits in an int: capacity * -ln(error) / ln(2)^2 */

    if ((double) smcf->bloom.capacity * -log(smcf->bloom.error)
        / (M_LN2 * M_LN2) >= (double) NGX_MAX_INT32_VALUE)
    {
        return "is too large for libbloom: lower capacity or raise error";
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/* shortlink_queue name:size; */

static char *
ngx_http_shortlink_queue(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_shortlink_main_conf_t  *smcf = conf;

    size_t      size;
    ngx_str_t  *value, name;

    if (smcf->queue) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_shortlink_name_size(cf, &value[1], 16, &name, &size)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    smcf->queue = ngx_http_shortlink_queue_add(cf, &name, size);
    if (smcf->queue == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * shortlink_flush [interval=time] [batch=number] [timeout=time]
 *                 [parallel=number];
 */

static char *
ngx_http_shortlink_flush(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_shortlink_main_conf_t  *smcf = conf;

    ngx_int_t    n, rc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (smcf->flush.batch != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "batch=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (n < 1 || n > 100000) {
                goto invalid;
            }

            smcf->flush.batch = (ngx_uint_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "parallel=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);
            if (n < 1 || n > NGX_HTTP_SHORTLINK_FLUSH_PARALLEL_MAX) {
                goto invalid;
            }

            smcf->flush.parallel = (ngx_uint_t) n;
            continue;
        }

        rc = ngx_http_shortlink_param_time(&value[i], "interval=",
                                           &smcf->flush.interval);
        if (rc == NGX_DECLINED) {
            rc = ngx_http_shortlink_param_time(&value[i], "timeout=",
                                               &smcf->flush.timeout);
        }

        if (rc != NGX_OK) {
            goto invalid;
        }
    }

    if (smcf->flush.interval == 0 || smcf->flush.timeout == 0) {
        return "needs times above zero";
    }

    if (smcf->flush.batch == NGX_CONF_UNSET_UINT) {
        smcf->flush.batch = 5000;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/* shortlink_click_field name value; */

static char *
ngx_http_shortlink_click_field(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_shortlink_main_conf_t  *smcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_shortlink_click_field_t  *field;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 64) {
        goto invalid;
    }

    for (i = 0; i < value[1].len; i++) {
        if (!ngx_http_shortlink_name_char(value[1].data[i])) {
            goto invalid;
        }
    }

    if (smcf->fields == NULL) {
        smcf->fields = ngx_array_create(cf->pool, 4,
                                    sizeof(ngx_http_shortlink_click_field_t));
        if (smcf->fields == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    field = smcf->fields->elts;

    for (i = 0; i < smcf->fields->nelts; i++) {
        if (field[i].name.len == value[1].len
            && ngx_strncmp(field[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            return "names a field twice";
        }
    }

    if (smcf->fields->nelts == NGX_HTTP_SHORTLINK_CLICK_USER_FIELDS_MAX) {
        return "is given too often";
    }

    field = ngx_array_push(smcf->fields);
    if (field == NULL) {
        return NGX_CONF_ERROR;
    }

    field->name = value[1];

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &field->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid field name \"%V\": 1-64 of [A-Za-z0-9_]",
                       &value[1]);
    return NGX_CONF_ERROR;
}


/* shortlink_visitor_cookie name [max_age] | off; */

static char *
ngx_http_shortlink_visitor_cookie(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_shortlink_loc_conf_t  *slcf = conf;

    time_t      age;
    ngx_str_t  *value;
    ngx_uint_t  i;

    if (slcf->cookie_max_age != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_null(&slcf->cookie_name);
        slcf->cookie_max_age = 0;
        return NGX_CONF_OK;
    }

    for (i = 0; i < value[1].len; i++) {
        if (!ngx_http_shortlink_name_char(value[1].data[i])
            && value[1].data[i] != '-')
        {
            break;
        }
    }

    if (value[1].len == 0 || i < value[1].len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid cookie name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    age = 365 * 24 * 60 * 60;

    if (cf->args->nelts == 3) {
        age = ngx_parse_time(&value[2], 1);
        if (age == (time_t) NGX_ERROR || age == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid cookie max age \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    slcf->cookie_name = value[1];
    slcf->cookie_max_age = age;

    return NGX_CONF_OK;
}


/* a shared-memory zone of this module; the name may be used only once */

ngx_shm_zone_t *
ngx_http_shortlink_zone_add(ngx_conf_t *cf, ngx_str_t *name, size_t size,
    ngx_shm_zone_init_pt init, void *data)
{
    ngx_shm_zone_t  *shm_zone;

    shm_zone = ngx_shared_memory_add(cf, name, size,
                                     &ngx_http_shortlink_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", name);
        return NULL;
    }

    shm_zone->init = init;
    shm_zone->data = data;

    return shm_zone;
}


/* "name:size" of a shared-memory zone, at least min pages */

static ngx_int_t
ngx_http_shortlink_name_size(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t min, ngx_str_t *name, size_t *size)
{
    u_char     *p;
    ssize_t     n;
    ngx_str_t   s;

    p = (u_char *) ngx_strchr(value->data, ':');
    if (p == NULL || p == value->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\": name:size expected", value);
        return NGX_ERROR;
    }

    name->data = value->data;
    name->len = p - value->data;

    s.data = p + 1;
    s.len = value->data + value->len - s.data;

    n = ngx_parse_size(&s);

    if (n == NGX_ERROR || n < (ssize_t) (min * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\": at least %uz bytes",
                           value, min * ngx_pagesize);
        return NGX_ERROR;
    }

    *size = (size_t) n;

    return NGX_OK;
}


/* [A-Za-z0-9_] */

static ngx_uint_t
ngx_http_shortlink_name_char(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_';
}


/* "name=time": NGX_OK, NGX_DECLINED (another name) or NGX_ERROR */

static ngx_int_t
ngx_http_shortlink_param_time(ngx_str_t *value, const char *name,
    ngx_msec_t *ms)
{
    size_t      len;
    ngx_str_t   s;
    ngx_msec_t  t;

    len = ngx_strlen(name);

    if (value->len < len || ngx_strncmp(value->data, name, len) != 0) {
        return NGX_DECLINED;
    }

    s.data = value->data + len;
    s.len = value->len - len;

    t = ngx_parse_time(&s, 0);
    if (t == (ngx_msec_t) NGX_ERROR) {
        return NGX_ERROR;
    }

    *ms = t;

    return NGX_OK;
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


/* in the master: what libpq would look up in every worker at every connect */

static ngx_int_t
ngx_http_shortlink_init_module(ngx_cycle_t *cycle)
{
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_shortlink_module);

    if (smcf == NULL || smcf->pg.conninfo.len == 0) {
        return NGX_OK;
    }

    return ngx_http_shortlink_pg_init_module(cycle, &smcf->pg);
}


static ngx_int_t
ngx_http_shortlink_init_process(ngx_cycle_t *cycle)
{
    ngx_http_shortlink_worker_t     *worker;
    ngx_http_shortlink_metrics_t    *m;
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

    worker = ngx_pcalloc(cycle->pool, sizeof(ngx_http_shortlink_worker_t));
    if (worker == NULL) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&worker->lookups, &worker->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_rbtree_init(&worker->profile_lookups, &worker->profile_sentinel,
                    ngx_str_rbtree_insert_value);

    m = ngx_http_shortlink_metrics_get(smcf->metrics);

    if (m) {
        smcf->pg.errors = &m->pg_errors;
        smcf->pg.timeouts = &m->pg_timeouts;
        smcf->redis.errors = &m->redis_errors;
        smcf->redis.timeouts = &m->redis_timeouts;
    }

    worker->pg = ngx_http_shortlink_pg_pool_create(cycle, &smcf->pg);
    if (worker->pg == NULL) {
        return NGX_ERROR;
    }

    if (smcf->redis.host.len) {
        worker->redis = ngx_http_shortlink_redis_create(cycle, &smcf->redis);
        if (worker->redis == NULL) {
            return NGX_ERROR;
        }
    }

    if (smcf->bloom.capacity) {
        worker->bloom = ngx_http_shortlink_bloom_create(cycle, &smcf->bloom,
                                                        worker->pg);
        if (worker->bloom == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_http_shortlink_ids_init(&worker->ids, cycle->log);

    smcf->worker = worker;

    if (smcf->queue) {
        worker->flush = ngx_http_shortlink_flush_create(cycle, smcf);
        if (worker->flush == NULL) {
            return NGX_ERROR;
        }
    }

    /* caches and the filter are kept true by PostgreSQL's notifications */

    if (smcf->zone || worker->redis || worker->bloom) {
        if (ngx_http_shortlink_pg_listen(worker->pg,
                                         NGX_HTTP_SHORTLINK_CHANNEL,
                                         ngx_http_shortlink_notified,
                                         ngx_http_shortlink_listening, smcf)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_http_shortlink_metrics_start(smcf, cycle);

    return NGX_OK;
}


static void
ngx_http_shortlink_notified(void *data, ngx_str_t *code)
{
    ngx_http_shortlink_main_conf_t  *smcf = data;

    ngx_http_shortlink_lookup_invalidate(smcf, code);
}


static void
ngx_http_shortlink_listening(void *data, ngx_uint_t up)
{
    ngx_http_shortlink_main_conf_t  *smcf = data;

    if (smcf->worker == NULL) {
        return;
    }

    if (smcf->worker->bloom) {
        ngx_http_shortlink_bloom_listening(smcf->worker->bloom, up);
    }

    if (!up) {
        smcf->worker->listen_lost = 1;
        return;
    }

    /*
     * Subscribed again after a loss: changes made meanwhile were not
     * announced to us, so the zone starts over (the bloom filter is
     * rebuilt above).  Not at a worker's first subscription: a reload
     * keeps the zone.
     */

    if (smcf->worker->listen_lost && smcf->zone) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "shortlink: notifications may have been missed, "
                      "zone cleared");
        ngx_http_shortlink_cache_clear(smcf->zone);
    }

    smcf->worker->listen_lost = 0;
}


static void
ngx_http_shortlink_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_shortlink_worker_t     *worker;
    ngx_http_shortlink_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_shortlink_module);

    if (smcf == NULL || smcf->worker == NULL) {
        return;
    }

    ngx_http_shortlink_metrics_stop(smcf);

    worker = smcf->worker;
    smcf->worker = NULL;

    /* requests first, then the backends their lookups were waiting on */

    ngx_http_shortlink_lookup_destroy(worker);
    ngx_http_shortlink_profile_destroy(worker);

    if (worker->flush) {
        ngx_http_shortlink_flush_destroy(worker->flush);
    }

    ngx_http_shortlink_pg_pool_destroy(worker->pg);

    if (worker->redis) {
        ngx_http_shortlink_redis_destroy(worker->redis);
    }

    if (worker->bloom) {
        ngx_http_shortlink_bloom_destroy(worker->bloom);
    }
}
