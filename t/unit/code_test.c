
/*
 * Unit tests for ngx_http_shortlink_code.c (pure functions).  Built and run
 * by `./build.sh test`; prints TAP.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_code.h"


static int  tests, failures;

static const char  alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* 20,000 generated codes of 7 digits, for the repeat check */
static char  codes[20000][8];


static int
code_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}


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


/* a generated code of len digits for url and salt, NUL-terminated */
static const char *
gen(const char *url, size_t len, uint32_t salt)
{
    static u_char  out[NGX_HTTP_SHORTLINK_CODE_GEN_MAX + 1];

    ngx_memset(out, '#', sizeof(out));
    ngx_http_shortlink_code_generate(out, len, (u_char *) url, strlen(url),
                                     salt);
    out[len] = '\0';

    return (const char *) out;
}


int
main(void)
{
    int          c, repeats, even;
    char         buf[80], one[2], first[NGX_HTTP_SHORTLINK_CODE_GEN_MAX + 1];
    uint32_t     salt;
    ngx_uint_t   counts[62], i, n;
    const char  *code;

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

    /*
     * generation: MurmurHash3 x64 128 of "hello" with seed 0 is
     * cbd8a7b341bd9b02 5b1e906a48ae1d19 (the reference implementation's
     * published vector); its base62 digits, least significant first, are
     * these
     */
    ok(strcmp(gen("hello", 16, 0), "4HMR20hH4VJXEyFG") == 0,
       "16 digits of MurmurHash3(\"hello\", 0) in base62");
    ok(strcmp(gen("hello", 7, 0), "4HMR20h") == 0,
       "7 digits are the first 7 of the 16");
    ok(strcmp(gen("hello", 4, 0), "4HMR") == 0, "4 digits");

    strcpy(first, gen("https://example.com/", 7, 1));
    ok(strcmp(gen("https://example.com/", 7, 1), first) == 0,
       "the same URL and salt give the same code");
    ok(strcmp(gen("https://example.com/", 7, 2), first) != 0,
       "another salt gives another code");
    ok(strcmp(gen("https://example.com/x", 7, 1), first) != 0,
       "another URL gives another code");

    /* 20,000 codes of one URL with consecutive salts: all valid, all of
       the requested length, no two alike, digits spread evenly */
    ngx_memzero(counts, sizeof(counts));
    n = 20000;

    for (salt = 0; salt < n; salt++) {
        code = gen("https://example.com/a/long/path?q=1", 7, salt);

        if (strlen(code) != 7
            || !ngx_http_shortlink_code_valid((u_char *) code, 7))
        {
            break;
        }

        for (i = 0; i < 7; i++) {
            counts[strchr(alphabet, code[i]) - alphabet]++;
        }

        strcpy(codes[salt], code);
    }
    ok(salt == n, "every generated code is 7 valid characters");

    /* a repeat among 20,000 of 62^7 codes: chance about 6e-5 */
    qsort(codes, n, sizeof(codes[0]), code_cmp);
    repeats = 0;

    for (i = 1; i < n; i++) {
        if (strcmp(codes[i - 1], codes[i]) == 0) {
            repeats++;
        }
    }
    ok(repeats == 0, "no two salts give the same code");

    /* 140,000 digits over 62 values: about 2258 each */
    even = 1;

    for (i = 0; i < 62; i++) {
        if (counts[i] < 2000 || counts[i] > 2520) {
            even = 0;
        }
    }
    ok(even, "every base62 digit appears about equally often");

    printf("1..%d\n", tests);
    printf("%d passed, %d failed\n", tests - failures, failures);

    return failures ? 1 : 0;
}
