// Parsing of command-line values, shared by the subcommands: whole-string, range-checked, and
// reported as "clvae: <option>: <what is wrong>" with CLVAE_EXIT_USAGE.
#ifndef CLVAE_CLI_H
#define CLVAE_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "cli_value.h"
#include "error.h"

// The options every subcommand that opens a device and reads data shares, for its getopt_long
// table: --data DIR (-D), --platform N (-p), --device N (-d).
#define CLI_SOURCE_OPTIONS                                                                         \
    {"data", required_argument, NULL, 'D'}, {"platform", required_argument, NULL, 'p'},            \
    {                                                                                              \
        "device", required_argument, NULL, 'd'                                                     \
    }
#define CLI_SOURCE_SHORT "D:p:d:"

// Takes getopt's c and arg when they are one of CLI_SOURCE_OPTIONS: 1 when taken, 0 when c is
// another option, -1 with err for a bad value. --platform and --device are an index (0 to 1000)
// or a part of the name (clrt_open matches it).
int cli_parse_source(int c, const char *arg, const char **platform, const char **device,
                     const char **data, struct clvae_error *err);

// The error for getopt_long's '?' or ':' return, naming the option (argv as given to getopt).
int cli_bad_option(int c, char **argv, const char *command, struct clvae_error *err);

// What a subcommand's option loop does with every option it does not take itself: one of
// CLI_SOURCE_OPTIONS (cli_parse_source), else cli_bad_option's error. 0, or -1 with err.
int cli_parse_rest(int c, const char *arg, char **argv, const char *command, const char **platform,
                   const char **device, const char **data, struct clvae_error *err);

#endif
