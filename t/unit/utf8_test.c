
/*
 * Unit tests for ngx_http_shortlink_utf8.c (pure functions).  Built and run
 * by `./build.sh test`; prints TAP.
 *
 * The cases are the classic UTF-8 decoder stress test (after Markus Kuhn's
 * UTF-8-test.txt): boundaries, lone and missing continuation bytes,
 * impossible bytes, overlong forms, surrogates, noncharacters, plus the
 * sequences that once stopped click recording.  "clean" is what a click
 * field becomes: one U+FFFD per maximal ill-formed subpart (as Unicode
 * recommends and Python's "replace" decoder does, which computed the
 * expected bytes), '?' for control characters.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_utf8.h"


typedef struct {
    const char  *name;
    size_t       len;
    size_t       clean_len;
    ngx_uint_t   valid;
    const char  *in;
    const char  *clean;
} utf8_case_t;


static utf8_case_t  cases[] = {

    { "kosme (Greek)", 11, 11, 1,
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" },

    { "first 1-byte", 1, 1, 1,
      "\x01",
      "\x3f" },

    { "first 2-byte U+0080", 2, 1, 1,
      "\xc2\x80",
      "\x3f" },

    { "first 3-byte U+0800", 3, 3, 1,
      "\xe0\xa0\x80",
      "\xe0\xa0\x80" },

    { "first 4-byte U+10000", 4, 4, 1,
      "\xf0\x90\x80\x80",
      "\xf0\x90\x80\x80" },

    { "first 5-byte (not UTF-8)", 5, 15, 0,
      "\xf8\x88\x80\x80\x80",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd" },

    { "first 6-byte (not UTF-8)", 6, 18, 0,
      "\xfc\x84\x80\x80\x80\x80",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd" },

    { "last 1-byte U+007F", 1, 1, 1,
      "\x7f",
      "\x3f" },

    { "last 2-byte U+07FF", 2, 2, 1,
      "\xdf\xbf",
      "\xdf\xbf" },

    { "last 3-byte U+FFFF", 3, 3, 1,
      "\xef\xbf\xbf",
      "\xef\xbf\xbf" },

    { "last 4-byte U+10FFFF", 4, 4, 1,
      "\xf4\x8f\xbf\xbf",
      "\xf4\x8f\xbf\xbf" },

    { "U+110000 (too big)", 4, 12, 0,
      "\xf4\x90\x80\x80",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "U+1FFFFF (too big)", 4, 12, 0,
      "\xf7\xbf\xbf\xbf",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "U+D7FF", 3, 3, 1,
      "\xed\x9f\xbf",
      "\xed\x9f\xbf" },

    { "U+E000", 3, 3, 1,
      "\xee\x80\x80",
      "\xee\x80\x80" },

    { "U+FFFD", 3, 3, 1,
      "\xef\xbf\xbd",
      "\xef\xbf\xbd" },

    { "lone continuation 0x80", 1, 3, 0,
      "\x80",
      "\xef\xbf\xbd" },

    { "lone continuation 0xbf", 1, 3, 0,
      "\xbf",
      "\xef\xbf\xbd" },

    { "2 continuations", 2, 6, 0,
      "\x80\xbf",
      "\xef\xbf\xbd\xef\xbf\xbd" },

    { "7 continuations", 7, 21, 0,
      "\x80\xbf\x80\xbf\x80\xbf\x80",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "all 64 continuations", 64, 192, 0,
      "\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b"
      "\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97"
      "\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2\xa3"
      "\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xaf"
      "\xb0\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xbb"
      "\xbc\xbd\xbe\xbf",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "lonely 2-byte starts", 63, 127, 0,
      "\xc0\x20\xc1\x20\xc2\x20\xc3\x20\xc4\x20\xc5\x20"
      "\xc6\x20\xc7\x20\xc8\x20\xc9\x20\xca\x20\xcb\x20"
      "\xcc\x20\xcd\x20\xce\x20\xcf\x20\xd0\x20\xd1\x20"
      "\xd2\x20\xd3\x20\xd4\x20\xd5\x20\xd6\x20\xd7\x20"
      "\xd8\x20\xd9\x20\xda\x20\xdb\x20\xdc\x20\xdd\x20"
      "\xde\x20\xdf",
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd" },

    { "lonely 3-byte starts", 31, 63, 0,
      "\xe0\x20\xe1\x20\xe2\x20\xe3\x20\xe4\x20\xe5\x20"
      "\xe6\x20\xe7\x20\xe8\x20\xe9\x20\xea\x20\xeb\x20"
      "\xec\x20\xed\x20\xee\x20\xef",
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd" },

    { "lonely 4-byte starts", 15, 31, 0,
      "\xf0\x20\xf1\x20\xf2\x20\xf3\x20\xf4\x20\xf5\x20"
      "\xf6\x20\xf7",
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd" },

    { "lonely 5/6-byte starts", 11, 23, 0,
      "\xf8\x20\xf9\x20\xfa\x20\xfb\x20\xfc\x20\xfd",
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd\x20"
      "\xef\xbf\xbd\x20\xef\xbf\xbd\x20\xef\xbf\xbd" },

    { "2-byte, last missing", 1, 3, 0,
      "\xc2",
      "\xef\xbf\xbd" },

    { "3-byte, last missing", 2, 3, 0,
      "\xe0\xa0",
      "\xef\xbf\xbd" },

    { "4-byte, last missing", 3, 3, 0,
      "\xf0\x90\x80",
      "\xef\xbf\xbd" },

    { "3-byte, last missing, then a", 3, 4, 0,
      "\xe1\x80\x61",
      "\xef\xbf\xbd\x61" },

    { "all incomplete, concatenated", 12, 18, 0,
      "\xc2\xe0\xa0\xf0\x90\x80\xdf\xef\xbf\xf4\x8f\xbf",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd" },

    { "fe", 1, 3, 0,
      "\xfe",
      "\xef\xbf\xbd" },

    { "ff", 1, 3, 0,
      "\xff",
      "\xef\xbf\xbd" },

    { "fe fe ff ff", 4, 12, 0,
      "\xfe\xfe\xff\xff",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "overlong / 2-byte", 2, 6, 0,
      "\xc0\xaf",
      "\xef\xbf\xbd\xef\xbf\xbd" },

    { "overlong / 3-byte", 3, 9, 0,
      "\xe0\x80\xaf",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "overlong / 4-byte", 4, 12, 0,
      "\xf0\x80\x80\xaf",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "overlong / 5-byte", 5, 15, 0,
      "\xf8\x80\x80\x80\xaf",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd" },

    { "max overlong 2-byte", 2, 6, 0,
      "\xc1\xbf",
      "\xef\xbf\xbd\xef\xbf\xbd" },

    { "max overlong 3-byte", 3, 9, 0,
      "\xe0\x9f\xbf",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "max overlong 4-byte", 4, 12, 0,
      "\xf0\x8f\xbf\xbf",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "overlong NUL 2-byte", 2, 6, 0,
      "\xc0\x80",
      "\xef\xbf\xbd\xef\xbf\xbd" },

    { "overlong NUL 3-byte", 3, 9, 0,
      "\xe0\x80\x80",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "surrogate U+D800", 3, 9, 0,
      "\xed\xa0\x80",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "surrogate U+DFFF", 3, 9, 0,
      "\xed\xbf\xbf",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "surrogate pair", 6, 18, 0,
      "\xed\xa0\x80\xed\xb0\x80",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
      "\xef\xbf\xbd\xef\xbf\xbd" },

    { "noncharacter U+FFFE", 3, 3, 1,
      "\xef\xbf\xbe",
      "\xef\xbf\xbe" },

    { "noncharacter U+FDD0", 3, 3, 1,
      "\xef\xb7\x90",
      "\xef\xb7\x90" },

    { "the issue's c3 c3", 2, 6, 0,
      "\xc3\xc3",
      "\xef\xbf\xbd\xef\xbf\xbd" },

    { "the issue's f8 90 80 80", 4, 12, 0,
      "\xf8\x90\x80\x80",
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },

    { "lead as continuation", 3, 5, 0,
      "\xc3\xc3\xa9",
      "\xef\xbf\xbd\xc3\xa9" },

    { "C0 controls, DEL", 7, 7, 0,
      "\x61\x00\x62\x01\x1f\x7f\x63",
      "\x61\x3f\x62\x3f\x3f\x3f\x63" },

    { "C1 control U+0085", 4, 3, 1,
      "\x78\xc2\x85\x79",
      "\x78\x3f\x79" },

    { "NBSP U+00A0 kept", 2, 2, 1,
      "\xc2\xa0",
      "\xc2\xa0" },

    { NULL, 0, 0, 0, NULL, NULL }
};


static int  tests, failures;


static void
ok(int cond, const char *name, const char *what)
{
    tests++;

    if (!cond) {
        failures++;
    }

    printf("%sok %d - %s: %s\n", cond ? "" : "not ", tests, name, what);
}


/* what next() decodes, over the whole input, without a step back */

static int
walks_forward(const u_char *in, size_t len)
{
    u_char    *p, *last, *prev;
    uint32_t   ch;

    p = (u_char *) in;
    last = p + len;

    while (p < last) {
        prev = p;
        ch = ngx_http_shortlink_utf8_next(&p, last);

        if (p <= prev || p > last) {
            return 0;
        }

        if (ch != NGX_HTTP_SHORTLINK_UTF8_INVALID
            && (ch > 0x10ffff || (ch >= 0xd800 && ch <= 0xdfff)))
        {
            return 0;
        }
    }

    return 1;
}


int
main(void)
{
    u_char        out[4096], *p;
    size_t        n;
    uint32_t      ch, cp;
    utf8_case_t  *c;
    u_char        enc[4];

    for (c = cases; c->name; c++) {
        ok(ngx_http_shortlink_utf8_valid((u_char *) c->in, c->len)
           == c->valid, c->name, "valid");

        n = ngx_http_shortlink_utf8_clean(out, (u_char *) c->in, c->len,
                                          sizeof(out));
        ok(n == c->clean_len && ngx_memcmp(out, c->clean, n) == 0, c->name,
           "clean");

        ok(ngx_http_shortlink_utf8_valid(out, n), c->name,
           "clean output is valid");

        ok(walks_forward((u_char *) c->in, c->len), c->name,
           "next() always moves forward, never past the end");
    }

    /* every scalar value round-trips; every surrogate is refused */

    for (cp = 1; cp <= 0x10ffff; cp++) {
        if (cp < 0x80) {
            enc[0] = (u_char) cp;
            n = 1;

        } else if (cp < 0x800) {
            enc[0] = (u_char) (0xc0 | (cp >> 6));
            enc[1] = (u_char) (0x80 | (cp & 0x3f));
            n = 2;

        } else if (cp < 0x10000) {
            enc[0] = (u_char) (0xe0 | (cp >> 12));
            enc[1] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
            enc[2] = (u_char) (0x80 | (cp & 0x3f));
            n = 3;

        } else {
            enc[0] = (u_char) (0xf0 | (cp >> 18));
            enc[1] = (u_char) (0x80 | ((cp >> 12) & 0x3f));
            enc[2] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
            enc[3] = (u_char) (0x80 | (cp & 0x3f));
            n = 4;
        }

        p = enc;
        ch = ngx_http_shortlink_utf8_next(&p, enc + n);

        if (cp >= 0xd800 && cp <= 0xdfff) {
            if (ch != NGX_HTTP_SHORTLINK_UTF8_INVALID) {
                break;
            }

        } else if (ch != cp || p != enc + n) {
            break;
        }
    }

    ok(cp == 0x110000, "U+0001..U+10FFFF", "decoded, surrogates refused");

    /* a character is never cut in two by max */

    n = ngx_http_shortlink_utf8_clean(out, (u_char *) "a\xc3\xa9", 3, 2);
    ok(n == 1 && out[0] == 'a', "max 2 of \"a\\u00e9\"", "no half character");

    n = ngx_http_shortlink_utf8_clean(out, (u_char *) "ab\xc3", 3, 4);
    ok(n == 2 && out[0] == 'a' && out[1] == 'b', "max 4 of \"ab\\xc3\"",
       "no half U+FFFD");

    n = ngx_http_shortlink_utf8_clean(out, (u_char *) "abc", 3, 0);
    ok(n == 0, "max 0", "nothing written");

    printf("1..%d\n", tests);

    if (failures) {
        printf("# %d of %d failed\n", failures, tests);
    }

    return failures ? 1 : 0;
}
