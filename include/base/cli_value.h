// Values as a command line gives them (and the layer lists of --encoder, which the engine parses):
// whole-string, range-checked, and reported as "clvae: <option>: <what is wrong>" with
// CLVAE_EXIT_USAGE.
#ifndef CLVAE_CLI_VALUE_H
#define CLVAE_CLI_VALUE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

// An integer in [min, max]: digits with an optional leading '-', nothing else.
int cli_parse_int(const char *name, const char *text, long min, long max, int *out,
                  struct clvae_error *err);

// A finite number with min <= x (min < x when open) and x <= max.
int cli_parse_double(const char *name, const char *text, double min, bool open, double max,
                     double *out, struct clvae_error *err);

// An unsigned 64-bit integer: digits only.
int cli_parse_u64(const char *name, const char *text, uint64_t *out, struct clvae_error *err);

#endif
