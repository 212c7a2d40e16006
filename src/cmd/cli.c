#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>

#include "cl_runtime.h"

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
