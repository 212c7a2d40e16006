// Pictures drawn with cairo (text in DejaVu Sans): the learning curves of a metrics.csv and the
// latent space by class. PNGs are written whole or not at all (atomic_file).
#ifndef CLVAE_PLOT_H
#define CLVAE_PLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define PLOT_CURVES_WIDTH 1500
#define PLOT_CURVES_HEIGHT 480
#define PLOT_SCATTER_WIDTH 1000
#define PLOT_SCATTER_HEIGHT 800

// The colour of class c of n (RGB in [0, 1]): Tableau 10 up to 10 classes, which stays apart for
// colour-blind readers; beyond 10, n hues evenly around the colour wheel.
void plot_class_colour(int c, int n, double rgb[3]);

// The train and test colours of the curves (Okabe-Ito blue and vermilion).
extern const double plot_train_colour[3], plot_test_colour[3];

// The columns plot_curves reads: epoch, train_neg_elbo, train_rec, train_kl, test_neg_elbo,
// test_rec, test_kl.
#define PLOT_METRICS_COLUMNS 7

// path -> *rows (malloc'd, (*n, PLOT_METRICS_COLUMNS)) in file order; errors as plot_curves'
// (fewer than two rows only unless short_ok).
int plot_read_metrics(const char *path, bool short_ok, double **rows, int *n,
                      struct clvae_error *err);

// metrics.csv (clvae train's columns; any order, more columns allowed) -> png: three panels,
// negative ELBO, reconstruction and KL against epoch, train and test, in nats per image.
// Errors: CLVAE_EXIT_DATA naming the file (missing, empty, a column missing, a value not a finite
// number, fewer than two epochs unless short_ok: then it returns 1 and draws nothing);
// CLVAE_EXIT_OUTPUT naming png.
int plot_curves(const char *metrics_path, const char *png_path, bool short_ok,
                struct clvae_error *err);

// The picture plot_curves draws, of rows (n >= 2, PLOT_METRICS_COLUMNS each, finite, as
// plot_read_metrics returns them), in memory; written to png unless it is NULL (the fuzzer draws
// without writing). Errors: CLVAE_EXIT_OUTPUT naming png.
int plot_curves_rows(const double *rows, int n, const char *png_path, struct clvae_error *err);

// What plot_scatter draws: n points (x[i], y[i]) of class cls[i] (NULL: all one class), a
// legend of the class names, axis labels; with thumbs (n, thumb_h, thumb_w, thumb_channels)
// bytes, each point is drawn as its small image instead of a dot (a grey one tinted by its
// class, a colour one as it is).
struct plot_scatter_data {
    int n;
    const double *x, *y;
    const int *cls;
    int n_classes;
    const char *const *class_names;
    const char *x_label, *y_label, *title;
    const uint8_t *thumbs;
    int thumb_h, thumb_w, thumb_channels; // thumb_channels 0 or 1: grey; 3: RGB
};

int plot_scatter(const struct plot_scatter_data *d, const char *png_path, struct clvae_error *err);

// Principal components of data (n, d) row-major, n >= 2, d >= 2, by LAPACKE_dsyev on the
// covariance: proj (n, 2) the centred data on the first two components, explained[2] their
// shares of the total variance, components (2, d) the unit vectors (sign: largest entry
// positive). 0, or -1 when LAPACK fails.
int plot_pca(const double *data, int n, int d, double *proj, double explained[2],
             double *components);

#endif
