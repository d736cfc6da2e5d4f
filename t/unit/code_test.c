
/*
 * Unit tests for ngx_http_shortlink_code.c (pure functions).  Built and run
 * by `./build.sh test`; prints TAP.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_code.h"


static int  tests, failures;


static void
ok(int cond, const char *name)
{
    tests++;

    if (!cond) {
        failures++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", tests, name);
}


static int
valid(const char *s)
{
    return (int) ngx_http_shortlink_code_valid((u_char *) s, strlen(s));
}


static int
segment_is(const char *uri, const char *expect)
{
    ngx_str_t  u, code;

    u.data = (u_char *) uri;
    u.len = strlen(uri);

    ngx_http_shortlink_code_from_uri(&u, &code);

    return code.len == strlen(expect)
           && memcmp(code.data, expect, code.len) == 0;
}


int
main(void)
{
    int   c;
    char  buf[80], one[2];

    ok(valid("Ab3xY9"), "letters and digits are valid");
    ok(valid("a_b-c"), "underscore and dash are valid");
    ok(valid("0"), "one character is valid");
    ok(!valid(""), "the empty code is invalid");

    memset(buf, 'x', 64);
    buf[64] = '\0';
    ok(valid(buf), "64 characters are valid");
    buf[64] = 'x';
    buf[65] = '\0';
    ok(!valid(buf), "65 characters are invalid");

    ok(!valid("a.b"), "a dot is invalid");
    ok(!valid("a b"), "a space is invalid");
    ok(!valid("a%41"), "a percent sign is invalid");
    ok(!valid("a/b"), "a slash is invalid");
    ok(!valid("ab\r\n"), "CR/LF is invalid");
    ok(!valid("\xc3\xa9"), "non-ASCII is invalid");
    ok(ngx_http_shortlink_code_valid((u_char *) "ab\0cd", 5) == 0,
       "an embedded NUL is invalid");

    /* every byte: exactly [0-9A-Za-z_-] is accepted */
    for (c = 1; c < 256; c++) {
        one[0] = (char) c;
        one[1] = '\0';

        if (valid(one) != (isalnum(c) || c == '_' || c == '-')) {
            break;
        }
    }
    ok(c == 256, "exactly [0-9A-Za-z_-] is accepted, byte by byte");

    ok(segment_is("/Ab3", "Ab3"), "/Ab3 gives Ab3");
    ok(segment_is("/go/Ab3", "Ab3"), "/go/Ab3 gives Ab3");
    ok(segment_is("/go/", ""), "/go/ gives an empty code");
    ok(segment_is("/", ""), "/ gives an empty code");
    ok(segment_is("Ab3", "Ab3"), "a URI without a slash is the code");
    ok(segment_is("", ""), "the empty URI gives an empty code");

    printf("1..%d\n", tests);
    printf("%d passed, %d failed\n", tests - failures, failures);

    return failures ? 1 : 0;
}
