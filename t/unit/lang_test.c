
/*
 * Unit tests for ngx_http_shortlink_lang.c (a pure function).  Built and
 * run by `./build.sh test`; prints TAP.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_shortlink_lang.h"


static int  tests, failures;


typedef struct {
    const char  *name;
    size_t       len;        /* 0: strlen(in) */
    const char  *in;
    const char  *out;        /* "" when there is no language */
} lang_case_t;


static lang_case_t  cases[] = {

    { "a plain tag", 0, "de", "de" },
    { "region, lower-cased", 0, "en-US", "en-us" },
    { "upper-case primary", 0, "FR-ca", "fr-ca" },
    { "the first of a list", 0, "de-DE,de;q=0.9,en;q=0.8", "de-de" },
    { "by position, not by q-value", 0, "fr;q=0.1, en;q=1", "fr" },
    { "q=0 is still first by position", 0, "nl;q=0,en", "nl" },
    { "parameters are not the tag", 0, "pt-BR;q=0.9", "pt-br" },
    { "leading whitespace", 0, "  \tit", "it" },
    { "empty list elements first", 0, " , ,es-419, en", "es-419" },
    { "whitespace ends the tag", 0, "sv  ,en", "sv" },
    { "whitespace then a parameter", 0, "sv ;q=0.5", "sv" },
    { "script and region", 0, "zh-Hant-TW", "zh-hant-tw" },
    { "private use", 0, "x-klingon", "x-klingon" },
    { "digits in a subtag", 0, "de-CH-1996", "de-ch-1996" },
    { "eight-letter primary", 0, "abcdefgh", "abcdefgh" },
    { "eight-character subtag", 0, "en-abcdefgh", "en-abcdefgh" },
    { "exactly 35 bytes", 0, "en-aaaaaaaa-bbbbbbbb-cccccccc-ddddd",
      "en-aaaaaaaa-bbbbbbbb-cccccccc-ddddd" },
    { "35 bytes, then a list", 0, "en-aaaaaaaa-bbbbbbbb-cccccccc-ddddd,fr",
      "en-aaaaaaaa-bbbbbbbb-cccccccc-ddddd" },

    { "empty", 0, "", "" },
    { "whitespace only", 0, " \t ", "" },
    { "commas only", 0, ",,, ,", "" },
    { "the wildcard", 0, "*", "" },
    { "the wildcard first, then a tag", 0, "*, de", "" },
    { "an invalid first tag hides the second", 0, "en_US, de", "" },
    { "36 bytes", 0, "en-aaaaaaaa-bbbbbbbb-cccccccc-dddddd", "" },
    { "a very long tag", 0,
      "en-aaaaaaaa-aaaaaaaa-aaaaaaaa-aaaaaaaa-aaaaaaaa-aaaaaaaa-aaaaaaaa", "" },
    { "nine-letter primary", 0, "abcdefghi", "" },
    { "nine-character subtag", 0, "en-abcdefghi", "" },
    { "digit in the primary subtag", 0, "e1", "" },
    { "digits only", 0, "123", "" },
    { "leading hyphen", 0, "-de", "" },
    { "trailing hyphen", 0, "de-", "" },
    { "double hyphen", 0, "de--ch", "" },
    { "a dot", 0, "de.ch", "" },
    { "a slash", 0, "../etc", "" },
    { "a quote", 0, "de\"", "" },
    { "HTML", 0, "<script>", "" },
    { "a NUL inside", 3, "d\0e", "" },
    { "a NUL first", 1, "\0", "" },
    { "CR LF", 0, "de\r\nX: y", "" },
    { "non-ASCII letters", 0, "fran\xc3\xa7" "ais", "" },
    { "a high byte", 0, "\xff", "" },
    { "an overlong UTF-8 letter", 0, "\xc1\xa1", "" },
    { "a parameter first", 0, ";q=0.5, de", "" },

    { NULL, 0, NULL, NULL }
};


static void
ok(int cond, const char *name)
{
    tests++;

    if (!cond) {
        failures++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", tests, name);
}


int
main(void)
{
    u_char        out[NGX_HTTP_SHORTLINK_LANG_MAX + 64], *big;
    size_t        n, len, i, expect;
    lang_case_t  *c;

    for (c = cases; c->name; c++) {
        len = c->len ? c->len : strlen(c->in);
        expect = strlen(c->out);

        /* canaries: nothing is written past the tag */
        memset(out, 0xa5, sizeof(out));

        n = ngx_http_shortlink_lang_first(out, (u_char *) c->in, len);

        ok(n == expect && memcmp(out, c->out, n) == 0, c->name);
        ok(out[NGX_HTTP_SHORTLINK_LANG_MAX] == 0xa5, "nothing past 35 bytes");
    }

    /* a header of 1 MB of letters: no tag, nothing written past 35 bytes */

    len = 1024 * 1024;
    big = malloc(len);
    if (big == NULL) {
        return 2;
    }

    memset(big, 'a', len);
    memset(out, 0xa5, sizeof(out));
    n = ngx_http_shortlink_lang_first(out, big, len);
    ok(n == 0 && out[NGX_HTTP_SHORTLINK_LANG_MAX] == 0xa5,
       "1 MB of letters: no tag");

    /* 1 MB of separators then a tag: found, whatever comes before */

    memset(big, ',', len);
    memcpy(big + len - 2, "ja", 2);
    n = ngx_http_shortlink_lang_first(out, big, len);
    ok(n == 2 && memcmp(out, "ja", 2) == 0, "1 MB of separators, then ja");

    /* every single byte: a letter is a tag, anything else is none */

    for (i = 0; i < 256; i++) {
        big[0] = (u_char) i;
        n = ngx_http_shortlink_lang_first(out, big, 1);

        if ((i >= 'a' && i <= 'z') || (i >= 'A' && i <= 'Z')) {
            if (n != 1 || out[0] != (u_char) (i | 0x20)) {
                break;
            }

        } else if (n != 0) {
            break;
        }
    }

    ok(i == 256, "every single byte");

    free(big);

    printf("1..%d\n", tests);

    return failures ? 1 : 0;
}
