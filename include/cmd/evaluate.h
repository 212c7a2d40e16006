// `clvae eval`: a trained model's test-set negative ELBO and its importance-weighted bound (IWAE,
// Burda et al. 2015) on -log p(x), computed on the device by the kernels of cl/iwae.cl.
#ifndef CLVAE_EVALUATE_H
#define CLVAE_EVALUATE_H

#include "error.h"
#include "iwae.h"

// `clvae eval [options]` (argv[0] is "eval"): prints the test set's negative ELBO and negative
// IWAE bound in nats per image and writes them to --csv. 0, or -1 with err filled.
int eval_main(int argc, char **argv, struct clvae_error *err);

// `clvae encode [options]` (src/cmd/encode.c): every test (or training) image's posterior mean and
// log-variance, its label, and with --elbo its negative ELBO and IWAE bound, as eval computes
// them, to a .npy or .csv file. 0, or -1 with err filled.
int encode_main(int argc, char **argv, struct clvae_error *err);

#endif
