
/*
 * Copyright (C) ngx_http_shortlink_module authors
 *
 * The per-worker Redis client.  This is the only code that touches the
 * Redis socket or includes hiredis: one persistent hiredis async context per
 * worker, pipelined (Redis answers in the order commands were sent), driven
 * by nginx events through an adapter shaped like hiredis's own
 * adapters/libevent.h.  It must never call a blocking hiredis function
 * (redisConnect, redisCommand, redisGetReply): only the async API.
 *
 * hiredis owns its socket: we wrap the fd in an ngx_connection_t to get
 * events, and when hiredis lets go of the context (the adapter's cleanup
 * hook, the fd still open) we delete the events and give the connection
 * object back to nginx; hiredis closes the fd.  Events are level-triggered,
 * so a reply left in the kernel buffer by hiredis's 16 KB reads can never
 * stall.
 *
 * The connection is opened at once by ngx_http_shortlink_redis_create()
 * (init_process) and sends AUTH, SELECT and PING before anything else; it
 * is usable when PING is answered.  GETs are queued behind the handshake
 * only while a worker's first connection is being made; after a failure
 * nothing is queued (NGX_DECLINED: go to PostgreSQL) until a new connection
 * has answered PING.  Reconnection is driven by a timer with exponential
 * backoff and jitter.  hiredis 0.14 has no timeouts: the connect timer and
 * the per-command timers are ours, and a command that times out closes the
 * connection, so a Redis that accepts but never answers costs one timeout,
 * not one per request.
 *
 * A command is owned by this client, not by the request that asked for it:
 * hiredis calls every callback exactly once, with reply == NULL when the
 * context goes away, and that callback frees the command; a request that
 * goes away only detaches itself (data = NULL).
 *
 * Shutdown: the timers that only serve connecting are cancelable, the
 * per-command ones are not (they bound requests in flight); the connection
 * is idle when no reply is owed, so a graceful shutdown closes it, and
 * ngx_http_shortlink_redis_destroy() closes it in any case.  Backend errors
 * reach the error log at most once a second, not once per request.
 *
 * The address must be an IP address or a unix socket path: hiredis would
 * resolve a host name with a blocking getaddrinfo(), so names are refused.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_shortlink_redis.h"


#define NGX_HTTP_SHORTLINK_REDIS_DOWN          0
#define NGX_HTTP_SHORTLINK_REDIS_CONNECTING    1
#define NGX_HTTP_SHORTLINK_REDIS_READY         2
#define NGX_HTTP_SHORTLINK_REDIS_CLOSING       3

#define NGX_HTTP_SHORTLINK_REDIS_BACKOFF_MIN   100
#define NGX_HTTP_SHORTLINK_REDIS_LOG_INTERVAL  1000


struct ngx_http_shortlink_redis_s {
    ngx_http_shortlink_redis_conf_t      *conf;
    redisAsyncContext                    *ac;
    ngx_connection_t                     *c;          /* wraps ac->c.fd */
    ngx_log_t                            *log;
    ngx_event_t                           connect;    /* connect and PING */
    ngx_event_t                           retry;      /* backoff */
    char                                 *addr;       /* NUL-terminated */
    ngx_str_t                             name;       /* for the error log */
    ngx_str_t                             prefix;
    ngx_uint_t                            state;
    ngx_uint_t                            failures;
    ngx_uint_t                            pending;    /* callbacks owed */
    ngx_uint_t                            suppressed;
    ngx_msec_t                            logged;
    unsigned                              report:1;   /* last error logged */
    unsigned                              destroyed:1;
    unsigned                              timed_out:1; /* connection ended by
                                                          a timeout */
};


struct ngx_http_shortlink_redis_cmd_s {
    ngx_event_t                           timer;
    ngx_http_shortlink_redis_t           *rd;
    ngx_http_shortlink_redis_handler_pt   handler;
    void                                 *data;       /* NULL once answered
                                                         or detached */
};


static ngx_uint_t ngx_http_shortlink_redis_is_address(ngx_str_t *host,
    in_port_t port);
static ngx_uint_t ngx_http_shortlink_redis_usable(
    ngx_http_shortlink_redis_t *rd);
static ngx_int_t ngx_http_shortlink_redis_versioned(
    ngx_http_shortlink_redis_t *rd, ngx_str_t *key, int64_t at_least,
    ngx_str_t *value, time_t ttl);
static ngx_int_t ngx_http_shortlink_redis_command(
    ngx_http_shortlink_redis_t *rd, redisCallbackFn *fn, void *privdata,
    const char *fmt, ...);
static void ngx_http_shortlink_redis_answered(ngx_http_shortlink_redis_t *rd);

static void ngx_http_shortlink_redis_connect(ngx_http_shortlink_redis_t *rd);
static ngx_int_t ngx_http_shortlink_redis_handshake(
    ngx_http_shortlink_redis_t *rd);
static void ngx_http_shortlink_redis_close(ngx_http_shortlink_redis_t *rd);
static void ngx_http_shortlink_redis_down(ngx_http_shortlink_redis_t *rd);
static void ngx_http_shortlink_redis_connect_timeout(ngx_event_t *ev);
static void ngx_http_shortlink_redis_retry_handler(ngx_event_t *ev);

static void ngx_http_shortlink_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_http_shortlink_redis_disconnected(
    const redisAsyncContext *ac, int status);
static void ngx_http_shortlink_redis_handshake_done(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_shortlink_redis_get_done(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_shortlink_redis_failed(ngx_http_shortlink_redis_t *rd,
    redisReply *reply);
static void ngx_http_shortlink_redis_write_done(redisAsyncContext *ac,
    void *r, void *privdata);

static void ngx_http_shortlink_redis_get_timeout(ngx_event_t *ev);
static void ngx_http_shortlink_redis_deliver(
    ngx_http_shortlink_redis_cmd_t *cmd, ngx_int_t rc, ngx_str_t *value);
static void ngx_http_shortlink_redis_finish(
    ngx_http_shortlink_redis_cmd_t *cmd);

static ngx_int_t ngx_http_shortlink_redis_attach(
    ngx_http_shortlink_redis_t *rd, redisAsyncContext *ac);
static void ngx_http_shortlink_redis_add_read(void *data);
static void ngx_http_shortlink_redis_del_read(void *data);
static void ngx_http_shortlink_redis_add_write(void *data);
static void ngx_http_shortlink_redis_del_write(void *data);
static void ngx_http_shortlink_redis_cleanup(void *data);
static void ngx_http_shortlink_redis_arm(ngx_event_t *ev, ngx_int_t event,
    ngx_uint_t on);
static void ngx_http_shortlink_redis_read_handler(ngx_event_t *rev);
static void ngx_http_shortlink_redis_write_handler(ngx_event_t *wev);

static ngx_uint_t ngx_http_shortlink_redis_error(
    ngx_http_shortlink_redis_t *rd, const char *fmt, ...);


/*
 * Called from init_process: the connection is opened at once, so that it
 * is usually ready when the first request arrives.
 */

ngx_http_shortlink_redis_t *
ngx_http_shortlink_redis_create(ngx_cycle_t *cycle,
    ngx_http_shortlink_redis_conf_t *conf)
{
    u_char                      *p;
    ngx_http_shortlink_redis_t  *rd;

    rd = ngx_pcalloc(cycle->pool, sizeof(ngx_http_shortlink_redis_t));
    if (rd == NULL) {
        return NULL;
    }

    rd->addr = ngx_pnalloc(cycle->pool, conf->host.len + 1);
    if (rd->addr == NULL) {
        return NULL;
    }

    p = ngx_cpymem(rd->addr, conf->host.data, conf->host.len);
    *p = '\0';

    rd->name.data = ngx_pnalloc(cycle->pool,
                                conf->host.len + sizeof("unix::65535") - 1);
    if (rd->name.data == NULL) {
        return NULL;
    }

    if (conf->port) {
        p = ngx_sprintf(rd->name.data, "%V:%d", &conf->host, (int) conf->port);

    } else {
        p = ngx_sprintf(rd->name.data, "unix:%V", &conf->host);
    }

    rd->name.len = p - rd->name.data;

    rd->prefix = conf->prefix;

    if (rd->prefix.data == NULL) {
        ngx_str_set(&rd->prefix, "");
    }

    rd->conf = conf;
    rd->log = cycle->log;
    rd->logged = ngx_current_msec - NGX_HTTP_SHORTLINK_REDIS_LOG_INTERVAL;

    rd->connect.handler = ngx_http_shortlink_redis_connect_timeout;
    rd->connect.data = rd;
    rd->connect.log = cycle->log;
    rd->connect.cancelable = 1;

    rd->retry.handler = ngx_http_shortlink_redis_retry_handler;
    rd->retry.data = rd;
    rd->retry.log = cycle->log;
    rd->retry.cancelable = 1;

    if (!ngx_http_shortlink_redis_is_address(&conf->host, conf->port)) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "shortlink: Redis host \"%V\" is not an IP address; "
                      "host names are not resolved (hiredis would block), "
                      "Redis is not used", &conf->host);

        /* state stays DOWN and no retry is scheduled: always declined */
        return rd;
    }

    ngx_http_shortlink_redis_connect(rd);

    return rd;
}


/*
 * Called when the worker exits: every pending callback runs now with
 * reply == NULL and frees its command, and no handler is called.
 */

void
ngx_http_shortlink_redis_destroy(ngx_http_shortlink_redis_t *rd)
{
    rd->destroyed = 1;

    if (rd->retry.timer_set) {
        ngx_del_timer(&rd->retry);
    }

    ngx_http_shortlink_redis_close(rd);
}


ngx_uint_t
ngx_http_shortlink_redis_up(ngx_http_shortlink_redis_t *rd)
{
    return ngx_http_shortlink_redis_usable(rd);
}


ngx_int_t
ngx_http_shortlink_redis_get(ngx_http_shortlink_redis_t *rd, ngx_str_t *key,
    ngx_http_shortlink_redis_handler_pt handler, void *data,
    ngx_http_shortlink_redis_cmd_t **cmdp)
{
    ngx_http_shortlink_redis_cmd_t  *cmd;

    if (!ngx_http_shortlink_redis_usable(rd)) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "shortlink redis: unavailable, GET skipped");
        return NGX_DECLINED;
    }

    cmd = ngx_alloc(sizeof(ngx_http_shortlink_redis_cmd_t), rd->log);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(cmd, sizeof(ngx_http_shortlink_redis_cmd_t));

    cmd->rd = rd;
    cmd->handler = handler;
    cmd->data = data;

    cmd->timer.handler = ngx_http_shortlink_redis_get_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = rd->log;

    /* hiredis only buffers the command: no callback runs from here */

    if (ngx_http_shortlink_redis_command(rd,
                                         ngx_http_shortlink_redis_get_done,
                                         cmd, "GET %b%b",
                                         rd->prefix.data, rd->prefix.len,
                                         key->data, key->len)
        != NGX_OK)
    {
        ngx_free(cmd);
        return NGX_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "shortlink redis: GET \"%V%V\"", &rd->prefix, key);

    ngx_add_timer(&cmd->timer, rd->conf->timeout);

    *cmdp = cmd;

    return NGX_OK;
}


/*
 * The asker goes away.  The command stays queued in hiredis until its
 * reply (or the end of the connection) frees it; its handler is not called.
 */

void
ngx_http_shortlink_redis_detach(ngx_http_shortlink_redis_cmd_t *cmd)
{
    cmd->data = NULL;

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }
}


/* a ttl <= 0 means the value must not be cached: nothing is sent */

/*
 * SET unless the stored version is ARGV[1] or newer: one script, so
 * nothing can come between the comparison and the write.  A value of
 * another format (no "v<digits> " prefix) counts as older.
 *
 * A value of version v is sent with ARGV[1] = v + 1: it replaces what is
 * older, and a tombstone of v too.  A tombstone of version v ("entries
 * older than v are stale", as the notification says) is sent with
 * ARGV[1] = v: it never replaces the value of version v that the API's
 * warm-up (or a lookup) may have stored just before the notification of
 * that very change arrived.
 */

static const char  ngx_http_shortlink_redis_set_script[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v then "
    "local cur = tonumber(string.match(v, '^v(%d+) ')) "
    "if cur and cur >= tonumber(ARGV[1]) then return 0 end "
    "end "
    "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
    "return 1";


void
ngx_http_shortlink_redis_set(ngx_http_shortlink_redis_t *rd, ngx_str_t *key,
    int64_t version, ngx_str_t *value, time_t ttl)
{
    if (ttl <= 0 || !ngx_http_shortlink_redis_usable(rd)) {
        return;
    }

    if (ngx_http_shortlink_redis_versioned(rd, key,
                                      version == INT64_MAX ? version
                                                           : version + 1,
                                      value, ttl)
        == NGX_OK)
    {
        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "shortlink redis: SET \"%V%V\" v%L EX %T",
                       &rd->prefix, key, version, ttl);
    }
}


void
ngx_http_shortlink_redis_invalidate(ngx_http_shortlink_redis_t *rd,
    ngx_str_t *key, int64_t version, time_t ttl)
{
    ngx_int_t  rc;
    ngx_str_t  tomb;
    u_char     buf[NGX_INT64_LEN + sizeof("v -")];

    if (!ngx_http_shortlink_redis_usable(rd)) {
        return;
    }

    if (version <= 0 || version == INT64_MAX || ttl <= 0) {
        rc = ngx_http_shortlink_redis_command(rd,
                                         ngx_http_shortlink_redis_write_done,
                                         "DEL", "DEL %b%b",
                                         rd->prefix.data, rd->prefix.len,
                                         key->data, key->len);

    } else {
        tomb.data = buf;
        tomb.len = ngx_sprintf(buf, "v%L -", version) - buf;

        rc = ngx_http_shortlink_redis_versioned(rd, key, version, &tomb, ttl);
    }

    if (rc == NGX_OK) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "shortlink redis: invalidate \"%V%V\" v%L",
                       &rd->prefix, key, version);
    }
}


/* the script: value for ttl seconds unless version at_least+ is stored */

static ngx_int_t
ngx_http_shortlink_redis_versioned(ngx_http_shortlink_redis_t *rd,
    ngx_str_t *key, int64_t at_least, ngx_str_t *value, time_t ttl)
{
    if (ttl > NGX_MAX_INT32_VALUE) {
        ttl = NGX_MAX_INT32_VALUE;
    }

    return ngx_http_shortlink_redis_command(rd,
                                         ngx_http_shortlink_redis_write_done,
                                         "SET",
                                         "EVAL %s 1 %b%b %lld %b %d",
                                         ngx_http_shortlink_redis_set_script,
                                         rd->prefix.data, rd->prefix.len,
                                         key->data, key->len,
                                         (long long) at_least,
                                         value->data, value->len, (int) ttl);
}


/* port 0 is a unix socket path; otherwise only a literal address will do */

static ngx_uint_t
ngx_http_shortlink_redis_is_address(ngx_str_t *host, in_port_t port)
{
#if (NGX_HAVE_INET6)
    u_char  buf[16];
#endif

    if (port == 0) {
        return host->len > 0;
    }

    if (ngx_inet_addr(host->data, host->len) != INADDR_NONE) {
        return 1;
    }

#if (NGX_HAVE_INET6)
    if (ngx_inet6_addr(host->data, host->len, buf) == NGX_OK) {
        return 1;
    }
#endif

    return 0;
}


/*
 * Commands are accepted on a connection that has answered PING, and on a
 * worker's first connection while it is made: they wait in hiredis behind
 * the handshake.  After a failure, nothing waits for Redis.
 */

static ngx_uint_t
ngx_http_shortlink_redis_usable(ngx_http_shortlink_redis_t *rd)
{
    return rd->state == NGX_HTTP_SHORTLINK_REDIS_READY
           || (rd->state == NGX_HTTP_SHORTLINK_REDIS_CONNECTING
               && rd->failures == 0);
}


/*
 * Every command has a callback, so that "pending" counts exactly the
 * replies hiredis owes us and the connection is idle when it is zero.
 * hiredis refuses commands on a context that is going away.
 */

static ngx_int_t
ngx_http_shortlink_redis_command(ngx_http_shortlink_redis_t *rd,
    redisCallbackFn *fn, void *privdata, const char *fmt, ...)
{
    int      rc;
    va_list  args;

    va_start(args, fmt);
    rc = redisvAsyncCommand(rd->ac, fn, privdata, fmt, args);
    va_end(args);

    if (rc != REDIS_OK) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "shortlink redis: command refused");
        return NGX_ERROR;
    }

    rd->pending++;
    rd->c->idle = 0;

    return NGX_OK;
}


static void
ngx_http_shortlink_redis_answered(ngx_http_shortlink_redis_t *rd)
{
    rd->pending--;

    if (rd->c) {
        rd->c->idle = (rd->pending == 0
                       && rd->state == NGX_HTTP_SHORTLINK_REDIS_READY);
    }
}


static void
ngx_http_shortlink_redis_connect(ngx_http_shortlink_redis_t *rd)
{
    redisAsyncContext  *ac;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "shortlink redis: connecting to %V", &rd->name);

    rd->timed_out = 0;

    /* non-blocking connect(); the address is a literal (see create) */

    if (rd->conf->port) {
        ac = redisAsyncConnect(rd->addr, rd->conf->port);

    } else {
        ac = redisAsyncConnectUnix(rd->addr);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                      "shortlink: redisAsyncConnect() failed: no memory");
        ngx_http_shortlink_redis_down(rd);
        return;
    }

    if (ac->err) {
        rd->report = ngx_http_shortlink_redis_error(rd,
                                                    "could not connect: %s",
                                                    ac->errstr);

        /* nothing is attached yet: no callback or hook runs */
        redisAsyncFree(ac);

        ngx_http_shortlink_redis_down(rd);
        return;
    }

    if (ngx_http_shortlink_redis_attach(rd, ac) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_http_shortlink_redis_down(rd);
        return;
    }

    rd->state = NGX_HTTP_SHORTLINK_REDIS_CONNECTING;

    /* the connect callback arms the write event: hiredis learns of connect */

    redisAsyncSetConnectCallback(ac, ngx_http_shortlink_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_http_shortlink_redis_disconnected);

    if (ngx_http_shortlink_redis_handshake(rd) != NGX_OK) {
        ngx_http_shortlink_redis_close(rd);
        return;
    }

    ngx_add_timer(&rd->connect, rd->conf->timeout);
}


/*
 * AUTH and SELECT are queued before anything else, so they precede every
 * GET on the wire; PING is last: its answer means the connection works.
 */

static ngx_int_t
ngx_http_shortlink_redis_handshake(ngx_http_shortlink_redis_t *rd)
{
    redisCallbackFn                  *fn;
    ngx_http_shortlink_redis_conf_t  *conf;

    fn = ngx_http_shortlink_redis_handshake_done;
    conf = rd->conf;

    if (conf->password.len) {
        if (ngx_http_shortlink_redis_command(rd, fn, "AUTH", "AUTH %b",
                                             conf->password.data,
                                             conf->password.len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (conf->db > 0) {
        if (ngx_http_shortlink_redis_command(rd, fn, "SELECT", "SELECT %d",
                                             (int) conf->db)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_shortlink_redis_command(rd, fn, "PING", "PING");
}


/*
 * Our own way to end a connection (timeouts, shutdown), never called from
 * a hiredis callback: redisAsyncFree() runs every pending callback with
 * reply == NULL, then the cleanup hook and, if the connection was made, the
 * disconnect callback.
 */

static void
ngx_http_shortlink_redis_close(ngx_http_shortlink_redis_t *rd)
{
    if (rd->ac) {
        rd->state = NGX_HTTP_SHORTLINK_REDIS_CLOSING;
        redisAsyncFree(rd->ac);
    }

    ngx_http_shortlink_redis_down(rd);
}


/* exponential backoff with jitter: 100ms, 200ms, ... up to backoff_max */

static void
ngx_http_shortlink_redis_down(ngx_http_shortlink_redis_t *rd)
{
    ngx_msec_t  delay;

    if (rd->destroyed || rd->retry.timer_set
        || ngx_exiting || ngx_quit || ngx_terminate)
    {
        return;
    }

    rd->failures++;

    delay = (ngx_msec_t) NGX_HTTP_SHORTLINK_REDIS_BACKOFF_MIN
            << ngx_min(rd->failures - 1, 10);

    if (delay > rd->conf->backoff_max && rd->conf->backoff_max) {
        delay = rd->conf->backoff_max;
    }

    delay = delay / 2 + (ngx_msec_t) ngx_random() % (delay / 2 + 1);

    if (delay == 0) {
        delay = 1;
    }

    ngx_add_timer(&rd->retry, delay);

    if (rd->report) {
        rd->report = 0;
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "shortlink: Redis %V unavailable, lookups skip it, "
                      "next connection attempt in %M ms", &rd->name, delay);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "shortlink redis: next connection attempt in %M ms",
                   delay);
}


/* covers connect() and the handshake up to PING's answer */

static void
ngx_http_shortlink_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_http_shortlink_redis_t  *rd;

    rd = ev->data;
    rd->timed_out = 1;

    if (rd->conf->timeouts) {
        (void) ngx_atomic_fetch_add(rd->conf->timeouts, 1);
    }

    rd->report = ngx_http_shortlink_redis_error(rd, "%s timed out after %M ms",
                                                (rd->ac->c.flags
                                                 & REDIS_CONNECTED)
                                                ? "handshake (PING)"
                                                : "connect",
                                                rd->conf->timeout);

    ngx_http_shortlink_redis_close(rd);
}


static void
ngx_http_shortlink_redis_retry_handler(ngx_event_t *ev)
{
    ngx_http_shortlink_redis_t  *rd;

    rd = ev->data;

    if (rd->destroyed || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_http_shortlink_redis_connect(rd);
}


/*
 * hiredis calls this on the first event of the socket.  On failure it frees
 * the context right after we return (the disconnect callback is not
 * called): we only log and schedule the next attempt.
 */

static void
ngx_http_shortlink_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_shortlink_redis_t  *rd;

    rd = ac->data;

    if (status != REDIS_OK) {
        rd->report = ngx_http_shortlink_redis_error(rd,
                                                    "could not connect: %s",
                                                    ac->c.errstr);
        rd->state = NGX_HTTP_SHORTLINK_REDIS_CLOSING;
        ngx_http_shortlink_redis_down(rd);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "shortlink redis: connected to %V", &rd->name);
}


/*
 * hiredis calls this once a connected context is gone (the cleanup hook has
 * run, the context is freed right after): REDIS_ERR is a lost connection,
 * REDIS_OK one we closed.  The next attempt is a timer, never from here.
 */

static void
ngx_http_shortlink_redis_disconnected(const redisAsyncContext *ac,
    int status)
{
    ngx_http_shortlink_redis_t  *rd;

    rd = ac->data;

    if (status != REDIS_OK) {
        rd->report = ngx_http_shortlink_redis_error(rd, "connection lost: %s",
                                                    ac->errstr ? ac->errstr
                                                    : "unknown error");

    } else {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "shortlink redis: disconnected");
    }

    ngx_http_shortlink_redis_down(rd);
}


/*
 * AUTH, SELECT, PING.  An error ends the connection: redisAsyncDisconnect()
 * is the one safe from a reply callback (hiredis closes once the replies
 * still owed have arrived) and makes hiredis refuse new commands at once.
 */

static void
ngx_http_shortlink_redis_handshake_done(redisAsyncContext *ac, void *r,
    void *privdata)
{
    char                        *what;
    redisReply                  *reply;
    ngx_http_shortlink_redis_t  *rd;

    rd = ac->data;
    reply = r;
    what = privdata;

    ngx_http_shortlink_redis_answered(rd);

    if (reply == NULL || rd->state != NGX_HTTP_SHORTLINK_REDIS_CONNECTING) {
        /* the context is going away, or an earlier step failed */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        rd->report = ngx_http_shortlink_redis_error(rd, "%s failed: %*s",
                                                    what, (size_t) reply->len,
                                                    reply->str);
        rd->state = NGX_HTTP_SHORTLINK_REDIS_CLOSING;
        redisAsyncDisconnect(ac);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "shortlink redis: reply to %s", what);

    if (ngx_strcmp(what, "PING") != 0) {
        return;
    }

    if (rd->connect.timer_set) {
        ngx_del_timer(&rd->connect);
    }

    if (rd->failures) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "shortlink: Redis %V is available again", &rd->name);
    }

    rd->state = NGX_HTTP_SHORTLINK_REDIS_READY;
    rd->failures = 0;
    rd->c->idle = (rd->pending == 0);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "shortlink redis: ready on connection *%uA",
                   rd->c->number);
}


/* the command is freed here and only here, whatever happened to it */

static void
ngx_http_shortlink_redis_get_done(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_int_t                        rc;
    ngx_str_t                        value, *vp;
    redisReply                      *reply;
    ngx_http_shortlink_redis_t      *rd;
    ngx_http_shortlink_redis_cmd_t  *cmd;

    reply = r;
    cmd = privdata;
    rd = cmd->rd;

    ngx_http_shortlink_redis_answered(rd);

    vp = NULL;
    rc = NGX_ERROR;

    if (reply == NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "shortlink redis: reply none, connection closed");

    } else if (reply->type == REDIS_REPLY_STRING) {
        value.len = reply->len;
        value.data = (u_char *) reply->str;
        vp = &value;
        rc = NGX_OK;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "shortlink redis: reply \"%V\"", &value);

    } else if (reply->type == REDIS_REPLY_NIL) {
        rc = NGX_DECLINED;

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "shortlink redis: reply nil");

    } else if (reply->type == REDIS_REPLY_ERROR) {
        (void) ngx_http_shortlink_redis_error(rd, "GET failed: %*s",
                                              (size_t) reply->len,
                                              reply->str);

    } else {
        (void) ngx_http_shortlink_redis_error(rd,
                                              "unexpected reply type %d "
                                              "to GET", reply->type);
    }

    if (rc == NGX_ERROR) {
        ngx_http_shortlink_redis_failed(rd, reply);
    }

    ngx_http_shortlink_redis_deliver(cmd, rc, vp);
    ngx_http_shortlink_redis_finish(cmd);
}


/*
 * A command got an error, or no reply: a timeout when a timeout ended the
 * connection, an error otherwise, nothing when the worker is exiting (its
 * commands are cut off, not failed).
 */

static void
ngx_http_shortlink_redis_failed(ngx_http_shortlink_redis_t *rd,
    redisReply *reply)
{
    ngx_atomic_t  *counter;

    if (rd->destroyed) {
        return;
    }

    counter = (reply == NULL && rd->timed_out) ? rd->conf->timeouts
                                               : rd->conf->errors;

    if (counter) {
        (void) ngx_atomic_fetch_add(counter, 1);
    }
}


/* SET and DEL: nobody waits for them, errors are only logged */

static void
ngx_http_shortlink_redis_write_done(redisAsyncContext *ac, void *r,
    void *privdata)
{
    char                        *what;
    redisReply                  *reply;
    ngx_http_shortlink_redis_t  *rd;

    rd = ac->data;
    reply = r;
    what = privdata;

    ngx_http_shortlink_redis_answered(rd);

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_http_shortlink_redis_failed(rd, reply);
    }

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        (void) ngx_http_shortlink_redis_error(rd, "%s failed: %*s",
                                              what, (size_t) reply->len,
                                              reply->str);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "shortlink redis: reply to %s%s",
                   what, reply ? "" : " none, connection closed");
}


/*
 * A GET got no answer within the timeout.  Its asker falls through now;
 * the connection is closed, which answers every GET queued behind it at
 * once, and later lookups skip Redis until a new connection answers PING.
 */

static void
ngx_http_shortlink_redis_get_timeout(ngx_event_t *ev)
{
    ngx_http_shortlink_redis_t      *rd;
    ngx_http_shortlink_redis_cmd_t  *cmd;

    cmd = ev->data;
    rd = cmd->rd;

    /* the GET is counted when the closed connection answers it */
    rd->timed_out = 1;

    rd->report = ngx_http_shortlink_redis_error(rd,
                                            "GET timed out after %M ms, "
                                            "closing the connection",
                                            rd->conf->timeout);

    /* nothing more is queued on this connection, even from the handler */
    rd->state = NGX_HTTP_SHORTLINK_REDIS_CLOSING;

    ngx_http_shortlink_redis_deliver(cmd, NGX_ERROR, NULL);

    /* the command is freed in here, by its callback */
    ngx_http_shortlink_redis_close(rd);
}


static void
ngx_http_shortlink_redis_deliver(ngx_http_shortlink_redis_cmd_t *cmd,
    ngx_int_t rc, ngx_str_t *value)
{
    void  *data;

    data = cmd->data;

    if (data == NULL || cmd->rd->destroyed) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, cmd->rd->log, 0,
                       "shortlink redis: reply for an answered or detached "
                       "GET dropped");
        return;
    }

    cmd->data = NULL;

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    cmd->handler(data, rc, value);
}


static void
ngx_http_shortlink_redis_finish(ngx_http_shortlink_redis_cmd_t *cmd)
{
    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    ngx_free(cmd);
}


/* the adapter: hiredis's socket, nginx's events */

static ngx_int_t
ngx_http_shortlink_redis_attach(ngx_http_shortlink_redis_t *rd,
    redisAsyncContext *ac)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = rd;
    c->read->handler = ngx_http_shortlink_redis_read_handler;
    c->write->handler = ngx_http_shortlink_redis_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    ac->data = rd;
    ac->ev.data = rd;
    ac->ev.addRead = ngx_http_shortlink_redis_add_read;
    ac->ev.delRead = ngx_http_shortlink_redis_del_read;
    ac->ev.addWrite = ngx_http_shortlink_redis_add_write;
    ac->ev.delWrite = ngx_http_shortlink_redis_del_write;
    ac->ev.cleanup = ngx_http_shortlink_redis_cleanup;

    rd->ac = ac;
    rd->c = c;

    return NGX_OK;
}


static void
ngx_http_shortlink_redis_add_read(void *data)
{
    ngx_http_shortlink_redis_t  *rd = data;

    ngx_http_shortlink_redis_arm(rd->c->read, NGX_READ_EVENT, 1);
}


static void
ngx_http_shortlink_redis_del_read(void *data)
{
    ngx_http_shortlink_redis_t  *rd = data;

    ngx_http_shortlink_redis_arm(rd->c->read, NGX_READ_EVENT, 0);
}


static void
ngx_http_shortlink_redis_add_write(void *data)
{
    ngx_http_shortlink_redis_t  *rd = data;

    ngx_http_shortlink_redis_arm(rd->c->write, NGX_WRITE_EVENT, 1);
}


static void
ngx_http_shortlink_redis_del_write(void *data)
{
    ngx_http_shortlink_redis_t  *rd = data;

    ngx_http_shortlink_redis_arm(rd->c->write, NGX_WRITE_EVENT, 0);
}


/*
 * hiredis is about to free the context and close the fd: the fd is still
 * open, so the events are really deleted (not NGX_CLOSE_EVENT), and nginx
 * gets its connection object back.
 */

static void
ngx_http_shortlink_redis_cleanup(void *data)
{
    ngx_connection_t            *c;
    ngx_http_shortlink_redis_t  *rd;

    rd = data;
    c = rd->c;

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_http_shortlink_redis_arm(c->read, NGX_READ_EVENT, 0);
    ngx_http_shortlink_redis_arm(c->write, NGX_WRITE_EVENT, 0);

    c->read->closed = 1;
    c->write->closed = 1;

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;

    if (rd->connect.timer_set) {
        ngx_del_timer(&rd->connect);
    }

    rd->c = NULL;
    rd->ac = NULL;
    rd->state = NGX_HTTP_SHORTLINK_REDIS_DOWN;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "shortlink redis: connection released");
}


/*
 * Level-triggered, and idempotent as hiredis wants.  A failure has been
 * logged by the event module; the timers then end a connection that cannot
 * make progress.
 */

static void
ngx_http_shortlink_redis_arm(ngx_event_t *ev, ngx_int_t event, ngx_uint_t on)
{
    if (on && !ev->active) {
        (void) ngx_add_event(ev, event, NGX_LEVEL_EVENT);

    } else if (!on && ev->active) {
        (void) ngx_del_event(ev, event, 0);
    }
}


static void
ngx_http_shortlink_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t            *c;
    ngx_http_shortlink_redis_t  *rd;

    c = rev->data;
    rd = c->data;

    if (c->close) {
        /* an idle connection and the worker is shutting down */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                       "shortlink redis: closing idle connection");
        ngx_http_shortlink_redis_close(rd);
        return;
    }

    redisAsyncHandleRead(rd->ac);
}


static void
ngx_http_shortlink_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t            *c;
    ngx_http_shortlink_redis_t  *rd;

    c = wev->data;
    rd = c->data;

    redisAsyncHandleWrite(rd->ac);
}


/*
 * Backend errors at NGX_LOG_ERR, at most one a LOG_INTERVAL: a Redis that is
 * down must not write a line per request.  Returns whether it was logged.
 */

static ngx_uint_t
ngx_http_shortlink_redis_error(ngx_http_shortlink_redis_t *rd,
    const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;
    u_char    buf[NGX_MAX_ERROR_STR];

    if ((ngx_msec_int_t) (ngx_current_msec - rd->logged)
        < NGX_HTTP_SHORTLINK_REDIS_LOG_INTERVAL)
    {
        rd->suppressed++;
        return 0;
    }

    last = buf + sizeof(buf);

    va_start(args, fmt);
    p = ngx_vslprintf(buf, last, fmt, args);
    va_end(args);

    if (rd->suppressed) {
        p = ngx_slprintf(p, last, " (%ui more errors not logged)",
                         rd->suppressed);
    }

    ngx_log_error(NGX_LOG_ERR, rd->log, 0, "shortlink: Redis %V: %*s",
                  &rd->name, p - buf, buf);

    rd->logged = ngx_current_msec;
    rd->suppressed = 0;

    return 1;
}
