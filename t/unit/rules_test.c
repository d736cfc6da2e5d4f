
/*
 * Unit tests for ngx_http_shortlink_rules.c (pure functions): the device
 * of a User-Agent, Accept-Language matching with q-values, query
 * parameters, the validation of encoded rules and the first-match choice.
 * Built and run by `./build.sh test`; prints TAP.  The file under test is
 * included here: build.sh links the tests with code.c and utf8.c only, and
 * rules.c needs nothing of ngx_core beyond macros and inline functions.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_rules.c"


static int  tests, failures;


static void
ok(int cond, const char *name)
{
    tests++;

    if (cond) {
        printf("ok %d - %s\n", tests, name);

    } else {
        failures++;
        printf("not ok %d - %s\n", tests, name);
    }
}


static ngx_uint_t
device(const char *ua)
{
    return ngx_http_shortlink_rules_device((u_char *) ua, strlen(ua));
}


static ngx_uint_t
lang(const char *accept, const char *wanted)
{
    ngx_str_t  a, w;

    a.data = (u_char *) accept;
    a.len = strlen(accept);
    w.data = (u_char *) wanted;
    w.len = strlen(wanted);

    return ngx_http_shortlink_rules_language(&a, &w);
}


static ngx_uint_t
query(const char *args, const char *name, const char *value)
{
    ngx_str_t  a, n, v;

    a.data = (u_char *) args;
    a.len = strlen(args);
    n.data = (u_char *) name;
    n.len = strlen(name);
    v.data = (u_char *) value;
    v.len = strlen(value);

    return ngx_http_shortlink_rules_query(&a, &n, &v);
}


static int
valid(const char *rules)
{
    ngx_str_t  r;

    r.data = (u_char *) rules;
    r.len = strlen(rules);

    return ngx_http_shortlink_rules_valid(&r) == NGX_OK;
}


static const char  *country_value;
static int          country_asked;


static ngx_int_t
country(void *data, ngx_str_t *value)
{
    country_asked++;

    if (country_value == NULL) {
        return NGX_ERROR;
    }

    value->data = (u_char *) country_value;
    value->len = strlen(country_value);

    return NGX_OK;
}


/* the index matched and its target, "-1 " when none */
static const char *
match(const char *rules, const char *ua, const char *al, const char *args,
    time_t now)
{
    ngx_int_t                          n;
    ngx_str_t                          r, target;
    ngx_http_shortlink_rules_input_t   in;
    static char                        out[256];

    r.data = (u_char *) rules;
    r.len = strlen(rules);

    ngx_memzero(&in, sizeof(in));
    in.user_agent.data = (u_char *) ua;
    in.user_agent.len = strlen(ua);
    in.accept_language.data = (u_char *) al;
    in.accept_language.len = strlen(al);
    in.args.data = (u_char *) args;
    in.args.len = strlen(args);
    in.now = now;
    in.country = country;

    n = ngx_http_shortlink_rules_match(&r, &in, &target);

    if (n < 0) {
        snprintf(out, sizeof(out), "%d ", (int) n);

    } else {
        snprintf(out, sizeof(out), "%d %.*s", (int) n, (int) target.len,
                 target.data);
    }

    return out;
}


int
main(void)
{
    char        *big, *p;
    size_t       n;
    ngx_uint_t   i;

    /* device */

    ok(device("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
              "Mobile/15E148 Safari/604.1") == NGX_HTTP_SHORTLINK_DEVICE_IOS,
       "iPhone is ios");
    ok(device("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X)")
       == NGX_HTTP_SHORTLINK_DEVICE_IOS, "iPad is ios");
    ok(device("Mozilla/5.0 (iPod touch; CPU iPhone OS 12_0)")
       == NGX_HTTP_SHORTLINK_DEVICE_IOS, "iPod is ios");
    ok(device("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari")
       == NGX_HTTP_SHORTLINK_DEVICE_ANDROID, "Android phone is android");
    ok(device("Mozilla/5.0 (Linux; Android 13; SM-X700) Safari/537.36")
       == NGX_HTTP_SHORTLINK_DEVICE_ANDROID, "Android tablet is android");
    ok(device("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120")
       == NGX_HTTP_SHORTLINK_DEVICE_DESKTOP, "Windows is desktop");
    ok(device("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari")
       == NGX_HTTP_SHORTLINK_DEVICE_DESKTOP, "Macintosh is desktop");
    ok(device("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Firefox/121.0")
       == NGX_HTTP_SHORTLINK_DEVICE_DESKTOP, "X11 Linux is desktop");
    ok(device("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) Chrome/120")
       == NGX_HTTP_SHORTLINK_DEVICE_DESKTOP, "ChromeOS is desktop");
    ok(device("Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1) Mobile Edge")
       == NGX_HTTP_SHORTLINK_DEVICE_ANDROID,
       "Windows Phone claiming Android: android comes first");
    ok(device("Mozilla/5.0 (Windows Phone 8.1; ARM; Trident/7.0) Mobile")
       == NGX_HTTP_SHORTLINK_DEVICE_NONE, "Windows Phone is no desktop");
    ok(device("") == NGX_HTTP_SHORTLINK_DEVICE_NONE, "empty is none");
    ok(device("curl/8.5.0") == NGX_HTTP_SHORTLINK_DEVICE_NONE,
       "curl is none");
    ok(device("iphone android windows") == NGX_HTTP_SHORTLINK_DEVICE_NONE,
       "words are case-sensitive");
    ok(device("iPa") == NGX_HTTP_SHORTLINK_DEVICE_NONE,
       "a shorter agent than a word is none");

    /* Accept-Language */

    ok(lang("de", "de"), "exact");
    ok(lang("DE", "de"), "case-insensitive");
    ok(lang("de-AT", "de"), "a sub-tag of the wanted language");
    ok(!lang("de", "de-AT"), "not the other way round");
    ok(!lang("den", "de"), "a longer primary tag is another language");
    ok(lang("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "de"),
       "the RFC 9110 example, a later range");
    ok(!lang("en, de;q=0", "de"), "q=0 is not wanted");
    ok(!lang("de;q=0.000", "de"), "q=0.000 is not wanted");
    ok(lang("de;q=0.001", "de"), "q=0.001 is wanted");
    ok(lang("de;q=1", "de") && lang("de;q=1.000", "de")
       && lang("de; Q=0.5", "de") && lang("de ;q=0.5 ", "de"),
       "q=1, q=1.000, Q, spaces");
    ok(!lang("de;q=1.5", "de") && !lang("de;q=2", "de")
       && !lang("de;q=0.0001", "de") && !lang("de;q=", "de")
       && !lang("de;q=.5", "de") && !lang("de;level=1", "de"),
       "malformed weights are ignored");
    ok(lang("de;q=x, de", "de"), "a malformed entry does not hide a good one");
    ok(!lang("*", "de"), "* wants no language in particular");
    ok(!lang("", "de") && !lang(",,, ;", "de"), "empty and junk");
    ok(lang("en,\tde", "de"), "a tab before a range");
    ok(!lang("de", ""), "nothing wanted matches nothing");

    /* query parameters */

    ok(query("v=b", "v", "b"), "the only parameter");
    ok(query("a=1&v=b&c", "v", "b"), "among others");
    ok(query("v=a&v=b", "v", "b"), "a later occurrence");
    ok(!query("v=bb", "v", "b") && !query("vv=b", "v", "b")
       && !query("V=b", "v", "b") && !query("v=B", "v", "b"),
       "exact name and value");
    ok(query("v=&x", "v", "") && query("v", "v", ""),
       "an empty value matches name= and name");
    ok(!query("", "v", "b") && !query("&&", "v", "b"), "empty query");
    ok(!query("v=b%20", "v", "b"), "compared as sent");

    /* validation */

    ok(valid("\nd=ios t=https://x.org/"), "one rule");
    ok(valid("\nd=ios l=de c=AT q=a=1 f=1 u=99999999999 t=http://x/a?b#c"
             "\nq=v= t=https://y.org/"),
       "every condition, two rules, an empty query value");
    ok(!valid(""), "empty");
    ok(!valid("d=ios t=https://x.org/"), "no leading LF");
    ok(!valid("\nt=https://x.org/"), "no condition");
    ok(!valid("\nd=ios"), "no target");
    ok(!valid("\nt=https://x.org/ d=ios"), "the target not last");
    ok(!valid("\nd=phone t=https://x.org/"), "unknown device");
    ok(!valid("\nd=ios t=javascript:alert(1)"), "a dangerous scheme");
    ok(!valid("\nd=ios t=https://x.org/\x01"), "a control character");
    ok(!valid("\nd=ios t=https://x.org/\r\nLocation:"), "a CR");
    ok(!valid("\nd=ios  t=https://x.org/"), "two spaces");
    ok(!valid("\nd=ios t=https://x.org/\n"), "an empty rule");
    ok(!valid("\nx=1 t=https://x.org/"), "an unknown condition");
    ok(!valid("\nl=1de t=https://x.org/") && !valid("\nl=de- t=https://x/")
       && !valid("\nl=abcdefghi t=https://x/")
       && !valid("\nl= t=https://x/"), "bad language tags");
    ok(valid("\nl=zh-Hant-TW t=https://x.org/"), "a three-part tag");
    ok(!valid("\nc= t=https://x.org/") && !valid("\nc=A/T t=https://x/"),
       "bad countries");
    ok(!valid("\nq=a t=https://x.org/") && !valid("\nq==1 t=https://x/")
       && !valid("\nq=a=%20 t=https://x/") && !valid("\nq=a&b=1 t=https://x/"),
       "bad query conditions");
    ok(!valid("\nf=-1 t=https://x.org/") && !valid("\nf= t=https://x/")
       && !valid("\nu=1234567890123 t=https://x/")
       && !valid("\nf=12a t=https://x/"), "bad times");

    big = malloc(NGX_HTTP_SHORTLINK_RULES_MAX_LEN + 64);
    if (big == NULL) {
        return 2;
    }

    p = big;
    for (i = 0; i < 16; i++) {
        p += sprintf(p, "\nd=ios t=https://x.org/%u", (unsigned) i);
    }
    ok(valid(big), "16 rules");
    sprintf(p, "\nd=ios t=https://x.org/16");
    ok(!valid(big), "17 rules");

    /* three rules of URLs up to 8000 bytes, 16384 bytes in all */

    p = big;
    while (p < big + NGX_HTTP_SHORTLINK_RULES_MAX_LEN) {
        p += sprintf(p, "\nd=ios t=https://x/");
        n = ngx_min(8000 - 11,
                    (size_t) (big + NGX_HTTP_SHORTLINK_RULES_MAX_LEN - p));
        memset(p, 'a', n);
        p += n;
    }
    *p = '\0';
    ok(valid(big), "16384 bytes");
    *p++ = 'a';
    *p = '\0';
    ok(!valid(big), "16385 bytes");
    free(big);

    /* the choice */

    country_value = "AT";
    country_asked = 0;

    ok(strcmp(match("\nd=ios t=https://i/\nd=android t=https://a/",
                    "Android", "", "", 0), "1 https://a/") == 0,
       "the second rule");
    ok(strcmp(match("\nd=ios t=https://i/\nd=android t=https://a/",
                    "Windows", "", "", 0), "-5 ") == 0,
       "no rule: NGX_DECLINED");
    ok(strcmp(match("\nd=ios l=de t=https://ide/\nd=ios t=https://i/",
                    "iPhone", "en", "", 0), "1 https://i/") == 0
       && strcmp(match("\nd=ios l=de t=https://ide/\nd=ios t=https://i/",
                       "iPhone", "de", "", 0), "0 https://ide/") == 0,
       "all conditions of a rule, the first that holds wins");
    ok(country_asked == 0, "the country is not asked for without a rule "
                           "that needs it");
    ok(strcmp(match("\nc=at t=https://c/", "", "", "", 0), "0 https://c/")
       == 0, "country, case-insensitive");
    ok(strcmp(match("\nc=DE t=https://d/\nc=AT t=https://c/", "", "", "", 0),
              "1 https://c/") == 0 && country_asked == 2,
       "the country is asked for once per choice");
    country_value = NULL;
    ok(strcmp(match("\nd=ios t=https://i/\nc=AT t=https://c/", "iPhone", "",
                    "", 0), "0 https://i/") == 0,
       "a country that fails is not asked for when an earlier rule wins");
    ok(strcmp(match("\nc=AT t=https://c/", "", "", "", 0), "-1 ") == 0,
       "a country that fails: NGX_ERROR");
    ok(strcmp(match("\nq=v=b t=https://q/", "", "", "a=1&v=b", 0),
              "0 https://q/") == 0, "query");
    ok(strcmp(match("\nf=100 u=200 t=https://w/", "", "", "", 99), "-5 ")
       == 0
       && strcmp(match("\nf=100 u=200 t=https://w/", "", "", "", 100),
                 "0 https://w/") == 0
       && strcmp(match("\nf=100 u=200 t=https://w/", "", "", "", 199),
                 "0 https://w/") == 0
       && strcmp(match("\nf=100 u=200 t=https://w/", "", "", "", 200), "-5 ")
          == 0,
       "time window: from inclusive, until exclusive");

    printf("1..%d\n", tests);
    printf("%d passed, %d failed\n", tests - failures, failures);

    return failures ? 1 : 0;
}
