// The subcommands that turn a trained model into pictures: generate, reconstruct, interpolate,
// manifold. Each takes argv from its own name on and returns 0 or -1 with err filled.
#ifndef CLVAE_IMAGES_H
#define CLVAE_IMAGES_H

#include "error.h"

int generate_main(int argc, char **argv, struct clvae_error *err);
int reconstruct_main(int argc, char **argv, struct clvae_error *err);
int interpolate_main(int argc, char **argv, struct clvae_error *err);
int manifold_main(int argc, char **argv, struct clvae_error *err);

// `clvae scatter`: the test images' posterior means by class (see its --help).
int scatter_main(int argc, char **argv, struct clvae_error *err);

// `clvae plot --metrics FILE -o FILE`: the learning curves of a metrics.csv.
int plot_main(int argc, char **argv, struct clvae_error *err);

// The inverse of the standard normal CDF at p in (0, 1) (Acklam's rational approximation, relative
// error below 1.2e-9).
double normal_quantile(double p);

#endif
