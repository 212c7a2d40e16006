#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>

#include "cl_runtime.h"

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

// An index (digits, 0 to CLRT_MAX_INDEX) or a name's part (anything else but empty) for option,
// by the rule CLVAE_PLATFORM and CLVAE_DEVICE follow too.
static int parse_selector(const char *option, const char *arg, const char **out,
                          struct clvae_error *err)
{
    if (clrt_parse_selector(option, arg, err))
        return -1;
    *out = arg;
    return 1;
}

int cli_parse_source(int c, const char *arg, const char **platform, const char **device,
                     const char **data, struct clvae_error *err)
{
    switch (c) {
    case 'D': *data = arg; return 1;
    case 'p': return parse_selector("--platform", arg, platform, err);
    case 'd': return parse_selector("--device", arg, device, err);
    }
    return 0;
}

int cli_bad_option(int c, char **argv, const char *command, struct clvae_error *err)
{
    if (c == ':')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: needs a value", argv[optind - 1]);
    // Inside a group of short options (-xq) getopt has not moved optind on yet.
    if (optopt > 0 && optopt < 256)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "-%c: unknown option (see clvae %s --help)",
                          optopt, command);
    return clvae_fail(err, CLVAE_EXIT_USAGE,
                      "%s: unknown or ambiguous option (see clvae %s --help)", argv[optind - 1],
                      command);
}

int cli_parse_rest(int c, const char *arg, char **argv, const char *command, const char **platform,
                   const char **device, const char **data, struct clvae_error *err)
{
    int rc = cli_parse_source(c, arg, platform, device, data, err);
    if (rc == 0)
        return cli_bad_option(c, argv, command, err);
    return rc < 0 ? -1 : 0;
}
