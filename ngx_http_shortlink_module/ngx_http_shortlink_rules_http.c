
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * Redirect rules meet the request: what a rule may look at (User-Agent,
 * Accept-Language, the query string, the time, the shortlink_rule_country
 * value) handed to the pure matcher of ngx_http_shortlink_rules.c.  Runs
 * only for links that have rules; nothing here talks to a backend.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_shortlink_module.h"


static ngx_int_t ngx_http_shortlink_rules_country(void *data,
    ngx_str_t *value);


/*
 * The index of the rule that picked the target (ctx->link.url is now that
 * rule's url), NGX_DECLINED when none applies, NGX_ERROR on failure.
 */

ngx_int_t
ngx_http_shortlink_rules_apply(ngx_http_request_t *r,
    ngx_http_shortlink_ctx_t *ctx)
{
    ngx_int_t                         n;
    ngx_str_t                         target;
    ngx_table_elt_t                  *h;
    ngx_http_shortlink_loc_conf_t    *slcf;
    ngx_http_shortlink_rules_input_t  in;

    ngx_memzero(&in, sizeof(ngx_http_shortlink_rules_input_t));

    if (r->headers_in.user_agent) {
        in.user_agent = r->headers_in.user_agent->value;
    }

    h = ngx_http_shortlink_accept_language(r);

    if (h) {
        in.accept_language = h->value;
    }

    in.args = r->args;
    in.now = ngx_time();

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);

    if (slcf->rule_country) {
        in.country = ngx_http_shortlink_rules_country;
        in.data = r;
    }

    n = ngx_http_shortlink_rules_match(&ctx->link.rules, &in, &target);

    if (n >= 0) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "shortlink: rule %i of \"%V\" applies",
                       n, &ctx->code);

        ctx->link.url = target;
    }

    return n;
}


static ngx_int_t
ngx_http_shortlink_rules_country(void *data, ngx_str_t *value)
{
    ngx_http_request_t  *r = data;

    ngx_http_shortlink_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_shortlink_module);

    return ngx_http_complex_value(r, slcf->rule_country, value);
}
