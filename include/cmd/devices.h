// `clvae devices [--verbose]`: every OpenCL platform and device, with the indices that --platform
// and --device take.
#ifndef CLVAE_DEVICES_H
#define CLVAE_DEVICES_H

#include "error.h"

// argv from "devices" on: 0 (also after --help), or -1 with err filled.
int devices_main(int argc, char **argv, struct clvae_error *err);

#endif
