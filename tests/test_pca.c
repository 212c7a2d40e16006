// plot_pca (LAPACKE_dsyev on the covariance) against a plain C reference: power iteration with
// deflation on the same covariance, on a fixed 8x4 matrix with well-separated variances; the
// components compared up to sign, their explained shares, and the projections.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "plot.h"
#include "test_util.h"

#define N 8
#define D 4

// The top eigenvector of the symmetric (D, D) matrix a by power iteration, and its eigenvalue.
static double power_iteration(const double a[D][D], double v[D])
{
    for (int j = 0; j < D; j++)
        v[j] = 1.0 / (j + 1);
    double lambda = 0;
    for (int it = 0; it < 5000; it++) {
        double w[D] = {0}, norm = 0;
        for (int j = 0; j < D; j++)
            for (int k = 0; k < D; k++)
                w[j] += a[j][k] * v[k];
        for (int j = 0; j < D; j++)
            norm += w[j] * w[j];
        norm = sqrt(norm);
        for (int j = 0; j < D; j++)
            v[j] = w[j] / norm;
        lambda = norm;
    }
    return lambda;
}

int main(void)
{
    tu_init("test_pca");
    // Columns of very different spread, mixed so the components are not the axes.
    static const double base[N][D] = {
        {3, 0.5, -0.2, 0.1},   {-2, 1.0, 0.3, -0.1}, {4, -0.7, 0.1, 0.05}, {-5, 0.2, -0.4, 0.0},
        {1, -1.2, 0.5, -0.05}, {-1, 0.9, -0.1, 0.1}, {2, 0.1, 0.2, -0.1},  {-3, -0.6, -0.3, 0.02}};
    double data[N * D];
    for (int i = 0; i < N; i++) {
        data[i * D + 0] = base[i][0] + 0.5 * base[i][1];
        data[i * D + 1] = 0.8 * base[i][0] - base[i][1] + base[i][2];
        data[i * D + 2] = base[i][2] - 0.3 * base[i][0];
        data[i * D + 3] = base[i][3] + 0.2 * base[i][1];
    }
    double mean[D] = {0}, cov[D][D] = {{0}};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            mean[j] += data[i * D + j] / N;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            for (int k = 0; k < D; k++)
                cov[j][k] += (data[i * D + j] - mean[j]) * (data[i * D + k] - mean[k]) / (N - 1);
    double trace = 0;
    for (int j = 0; j < D; j++)
        trace += cov[j][j];
    double want[2][D], lambda[2], deflated[D][D];
    memcpy(deflated, cov, sizeof cov);
    for (int p = 0; p < 2; p++) {
        lambda[p] = power_iteration((const double(*)[D])deflated, want[p]);
        for (int j = 0; j < D; j++)
            for (int k = 0; k < D; k++)
                deflated[j][k] -= lambda[p] * want[p][j] * want[p][k];
    }

    double proj[N * 2], explained[2], comp[2 * D];
    tu_check(plot_pca(data, N, D, proj, explained, comp) == 0, "plot_pca returns 0");
    for (int p = 0; p < 2; p++) {
        double dot = 0, err = 0;
        for (int j = 0; j < D; j++)
            dot += comp[p * D + j] * want[p][j];
        double sign = dot < 0 ? -1 : 1;
        for (int j = 0; j < D; j++)
            err = fmax(err, fabs(comp[p * D + j] - sign * want[p][j]));
        tu_check(err < 1e-9,
                 "component %d against power iteration (up to sign): max err %.2g "
                 "(tol 1e-9)",
                 p + 1, err);
        double share = lambda[p] / trace;
        tu_check(fabs(explained[p] - share) < 1e-9,
                 "component %d explains %.6f of the variance (reference %.6f)", p + 1, explained[p],
                 share);
        double perr = 0;
        for (int i = 0; i < N; i++) {
            double s = 0;
            for (int j = 0; j < D; j++)
                s += (data[i * D + j] - mean[j]) * comp[p * D + j];
            perr = fmax(perr, fabs(proj[i * 2 + p] - s));
        }
        tu_check(perr < 1e-12, "projections on component %d: max err %.2g", p + 1, perr);
        int big = 0;
        for (int j = 0; j < D; j++)
            big = fabs(comp[p * D + j]) > fabs(comp[p * D + big]) ? j : big;
        tu_check(comp[p * D + big] > 0, "component %d's largest entry is positive", p + 1);
    }
    tu_check(explained[0] > explained[1] && explained[0] + explained[1] <= 1 + 1e-12,
             "shares in order and at most 1: %.4f, %.4f", explained[0], explained[1]);
    return tu_summary();
}
