#include "cli_value.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

int cli_parse_int(const char *name, const char *text, long min, long max, int *out,
                  struct clvae_error *err)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    // strtol would take leading blanks and a '+'; a command line value is digits, maybe a '-'.
    bool digits =
        text[0] == '-' ? isdigit((unsigned char)text[1]) : isdigit((unsigned char)text[0]);
    if (!digits || end == text || *end != '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not an integer", name, text);
    if (errno == ERANGE || v < min || v > max)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: %s is out of range (%ld to %ld)", name, text,
                          min, max);
    *out = (int)v;
    return 0;
}

int cli_parse_double(const char *name, const char *text, double min, bool open, double max,
                     double *out, struct clvae_error *err)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(v))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not a finite number", name, text);
    if (v < min || (open && v == min) || v > max)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: %s is out of range (%s%g to %g)", name, text,
                          open ? "above " : "", min, max);
    *out = v;
    return 0;
}

int cli_parse_u64(const char *name, const char *text, uint64_t *out, struct clvae_error *err)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (!isdigit((unsigned char)text[0]) || *end != '\0' || errno == ERANGE)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not an integer from 0 to 2^64-1",
                          name, text);
    *out = v;
    return 0;
}
