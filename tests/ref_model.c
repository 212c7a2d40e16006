#include "ref_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

// A conv's or deconv's numbers after its channels (layer_spec.arg), as layer_conv.c has them.
enum { KERNEL, STRIDE, PAD };

// ref_set_labels'.
static const int *ref_labels;

void ref_set_labels(const int *labels)
{
    ref_labels = labels;
}

// Dense: y = x W + b, W (in, out) at params + l->weight, b at params + l->bias; ReLU if l->relu.
// With classes, x is each row's input and its one-hot class concatenated, as torch.nn.Linear(in +
// classes, out) of torch.cat([x, one_hot]): W has in + classes rows.
static void ref_dense(const struct layer *l, const double *params, const double *x, int rows,
                      double *y, double *margin)
{
    if (l->classes && !ref_labels) {
        fprintf(stderr, "ref_model: %s takes classes but no labels were set\n", l->name);
        exit(1);
    }
    for (int r = 0; r < rows; r++) {
        for (int o = 0; o < l->out; o++) {
            const double *w = params + l->weight + (size_t)o;
            double a = params[l->bias + o];
            for (int i = 0; i < l->in + l->classes; i++) {
                double xi = i < l->in ? x[(size_t)r * l->in + i] : i - l->in == ref_labels[r];
                a += w[(size_t)i * l->out] * xi;
            }
            if (l->relu) {
                if (margin && fabs(a) < *margin)
                    *margin = fabs(a);
                a = a > 0.0 ? a : 0.0;
            }
            y[(size_t)r * l->out + o] = a;
        }
    }
}

// Bias and ReLU on y (rows, l->out) whose channel is the fastest index (NHWC), as dense and conv
// both do.
static void ref_bias_relu(const struct layer *l, const double *params, int rows, double *y,
                          double *margin)
{
    int c = l->out_shape.c;
    for (size_t i = 0; i < (size_t)rows * l->out; i++) {
        double a = y[i] + params[l->bias + i % c];
        if (l->relu) {
            if (margin && fabs(a) < *margin)
                *margin = fabs(a);
            a = a > 0.0 ? a : 0.0;
        }
        y[i] = a;
    }
}

// Conv, directly from its definition (no im2col): y[n, oy, ox, oc] = sum over ky, kx, c of
// x[n, oy S - P + ky, ox S - P + kx, c] W[(ky K + kx) C + c, oc], inside the image.
static void ref_conv(const struct layer *l, const double *params, const double *x, int rows,
                     double *y)
{
    int C = l->in_shape.c, H = l->in_shape.h, W = l->in_shape.w, K = l->spec.arg[KERNEL];
    int S = l->spec.arg[STRIDE], P = l->spec.arg[PAD], OC = l->out_shape.c;
    int OH = l->out_shape.h, OW = l->out_shape.w;
    for (int n = 0; n < rows; n++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int oc = 0; oc < OC; oc++) {
                    double a = 0.0;
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++)
                            for (int c = 0; c < C; c++) {
                                int iy = oy * S - P + ky, ix = ox * S - P + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                    continue;
                                a += x[(((size_t)n * H + iy) * W + ix) * C + c] *
                                     params[l->weight + ((size_t)(ky * K + kx) * C + c) * OC + oc];
                            }
                    y[(((size_t)n * OH + oy) * OW + ox) * OC + oc] = a;
                }
}

// Deconv, as PyTorch's ConvTranspose2d defines it: each input pixel (n, iy, ix, ic) adds
// x Wd[ic, (ky K + kx) OC + oc] to y[n, iy S - P + ky, ix S - P + kx, oc] inside the output.
static void ref_deconv(const struct layer *l, const double *params, const double *x, int rows,
                       double *y)
{
    int IC = l->in_shape.c, IH = l->in_shape.h, IW = l->in_shape.w, K = l->spec.arg[KERNEL];
    int S = l->spec.arg[STRIDE], P = l->spec.arg[PAD], OC = l->out_shape.c;
    int OH = l->out_shape.h, OW = l->out_shape.w;
    memset(y, 0, (size_t)rows * l->out * sizeof *y);
    for (int n = 0; n < rows; n++)
        for (int iy = 0; iy < IH; iy++)
            for (int ix = 0; ix < IW; ix++)
                for (int ic = 0; ic < IC; ic++)
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            int oy = iy * S - P + ky, ox = ix * S - P + kx;
                            if (oy < 0 || oy >= OH || ox < 0 || ox >= OW)
                                continue;
                            double v = x[(((size_t)n * IH + iy) * IW + ix) * IC + ic];
                            for (int oc = 0; oc < OC; oc++)
                                y[(((size_t)n * OH + oy) * OW + ox) * OC + oc] +=
                                    v * params[l->weight + (size_t)ic * K * K * OC +
                                               (size_t)(ky * K + kx) * OC + oc];
                        }
}

static void ref_conv_layer(const struct layer *l, const double *params, const double *x, int rows,
                           double *y, double *margin)
{
    ref_conv(l, params, x, rows, y);
    ref_bias_relu(l, params, rows, y, margin);
}

static void ref_deconv_layer(const struct layer *l, const double *params, const double *x, int rows,
                             double *y, double *margin)
{
    ref_deconv(l, params, x, rows, y);
    ref_bias_relu(l, params, rows, y, margin);
}

void ref_group_norm(const double *gamma, const double *beta, const double *x, int rows, int hw,
                    int c, int groups, double *y, double *stats, double *margin)
{
    int cg = c / groups;
    double m = (double)hw * cg;
    for (int n = 0; n < rows; n++)
        for (int g = 0; g < groups; g++) {
            double sum = 0.0, sq = 0.0;
            for (int p = 0; p < hw; p++)
                for (int k = g * cg; k < (g + 1) * cg; k++)
                    sum += x[((size_t)n * hw + p) * c + k];
            double mean = sum / m;
            for (int p = 0; p < hw; p++)
                for (int k = g * cg; k < (g + 1) * cg; k++) {
                    double d = x[((size_t)n * hw + p) * c + k] - mean;
                    sq += d * d;
                }
            double rstd = 1.0 / sqrt(sq / m + 1e-5);
            if (stats)
                stats[((size_t)n * groups + g) * 2] = mean,
                                                 stats[((size_t)n * groups + g) * 2 + 1] = rstd;
            for (int p = 0; p < hw; p++)
                for (int k = g * cg; k < (g + 1) * cg; k++) {
                    size_t i = ((size_t)n * hw + p) * c + k;
                    double a = (x[i] - mean) * rstd * gamma[k] + beta[k];
                    if (margin && fabs(a) < *margin)
                        *margin = fabs(a);
                    y[i] = a > 0.0 ? a : 0.0;
                }
        }
}

void ref_group_norm_backward(const double *gamma, const double *x, const double *dg, int rows,
                             int hw, int c, int groups, double *dx, double *dgamma, double *dbeta)
{
    int cg = c / groups;
    double m = (double)hw * cg;
    size_t n_all = (size_t)rows * hw * c;
    double *y = tu_alloc(n_all, sizeof(double)),
           *stats = tu_alloc((size_t)rows * groups * 2, sizeof(double));
    double *zero = tu_alloc((size_t)c, sizeof(double));
    ref_group_norm(gamma, zero, x, rows, hw, c, groups, y, stats, NULL);
    for (int k = 0; k < c; k++)
        dgamma[k] = dbeta[k] = 0.0;
    for (int n = 0; n < rows; n++)
        for (int g = 0; g < groups; g++) {
            double mean = stats[((size_t)n * groups + g) * 2];
            double rstd = stats[((size_t)n * groups + g) * 2 + 1], s1 = 0.0, s2 = 0.0;
            for (int p = 0; p < hw; p++)
                for (int k = g * cg; k < (g + 1) * cg; k++) {
                    size_t i = ((size_t)n * hw + p) * c + k;
                    double xhat = (x[i] - mean) * rstd;
                    s1 += gamma[k] * dg[i];
                    s2 += gamma[k] * dg[i] * xhat;
                    dgamma[k] += dg[i] * xhat;
                    dbeta[k] += dg[i];
                }
            for (int p = 0; p < hw; p++)
                for (int k = g * cg; k < (g + 1) * cg; k++) {
                    size_t i = ((size_t)n * hw + p) * c + k;
                    double xhat = (x[i] - mean) * rstd;
                    dx[i] = rstd * (gamma[k] * dg[i] - s1 / m - xhat * s2 / m);
                }
        }
    free(y);
    free(stats);
    free(zero);
}

void ref_up_backward(const double *dy, int rows, int h, int w, int c, int f, double *dx)
{
    memset(dx, 0, (size_t)rows * h * w * c * sizeof *dx);
    for (int n = 0; n < rows; n++)
        for (int oy = 0; oy < h * f; oy++)
            for (int ox = 0; ox < w * f; ox++)
                for (int k = 0; k < c; k++)
                    dx[(((size_t)n * h + oy / f) * w + ox / f) * c + k] +=
                        dy[(((size_t)n * h * f + oy) * w * f + ox) * c + k];
}

// A 3x3/1/1 convolution C to C with bias and no ReLU, its weight at params + weight in conv's
// layout and its bias after, by ref_conv on a layer of those numbers.
static void ref_conv3(const struct layer *l, size_t weight, size_t bias, const double *params,
                      const double *x, int rows, double *y)
{
    struct layer c = *l;
    c.spec.arg[KERNEL] = 3, c.spec.arg[STRIDE] = 1, c.spec.arg[PAD] = 1;
    c.weight = weight, c.bias = bias, c.relu = false;
    c.out_shape = l->in_shape, c.out = l->in;
    ref_conv(&c, params, x, rows, y);
    ref_bias_relu(&c, params, rows, y, NULL);
}

// The residual block res:C:G, from torch_resvae.py's definition: h = conv1(relu(gn1(x))),
// y = x + conv2(relu(gn2(h))). Its parameters from l->weight: conv1's weight (9 C, C) and bias,
// conv2's, gn1's scale and shift, gn2's (layer_res.c's layout).
static void ref_res(const struct layer *l, const double *params, const double *x, int rows,
                    double *y, double *margin)
{
    int c = l->in_shape.c, hw = l->in_shape.h * l->in_shape.w, groups = l->spec.arg[0];
    size_t w = (size_t)9 * c * c, n = (size_t)rows * l->in;
    size_t w1 = l->weight, b1 = w1 + w, w2 = b1 + c, b2 = w2 + w, g1 = b2 + c, s1 = g1 + c;
    size_t g2 = s1 + c, s2 = g2 + c;
    double *r = tu_alloc(n, sizeof(double)), *h = tu_alloc(n, sizeof(double));
    ref_group_norm(params + g1, params + s1, x, rows, hw, c, groups, r, NULL, margin);
    ref_conv3(l, w1, b1, params, r, rows, h);
    ref_group_norm(params + g2, params + s2, h, rows, hw, c, groups, r, NULL, margin);
    ref_conv3(l, w2, b2, params, r, rows, y);
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
    free(r);
    free(h);
}

// Nearest-neighbour upsampling by F: y[n, oy, ox, c] = x[n, oy / F, ox / F, c].
static void ref_up(const struct layer *l, const double *params, const double *x, int rows,
                   double *y, double *margin)
{
    (void)params, (void)margin;
    int f = l->spec.units, c = l->in_shape.c, h = l->in_shape.h, w = l->in_shape.w;
    for (int n = 0; n < rows; n++)
        for (int oy = 0; oy < h * f; oy++)
            for (int ox = 0; ox < w * f; ox++)
                for (int k = 0; k < c; k++)
                    y[(((size_t)n * h * f + oy) * w * f + ox) * c + k] =
                        x[(((size_t)n * h + oy / f) * w + ox / f) * c + k];
}

// Every layer kind's reference, by the kind's name: a new kind adds its row.
static const struct {
    const char *kind;
    void (*forward)(const struct layer *l, const double *params, const double *x, int rows,
                    double *y, double *margin);
} refs[] = {
    {"dense", ref_dense}, {"conv", ref_conv_layer}, {"deconv", ref_deconv_layer},
    {"res", ref_res},     {"up", ref_up},
};

void ref_layer_forward(const struct layer *l, const double *params, const double *x, int rows,
                       double *y, double *margin)
{
    for (size_t k = 0; k < sizeof refs / sizeof refs[0]; k++) {
        if (strcmp(refs[k].kind, l->ops->kind) == 0) {
            refs[k].forward(l, params, x, rows, y, margin);
            return;
        }
    }
    fprintf(stderr, "ref_model: no reference for layer kind %s (%s)\n", l->ops->kind, l->name);
    exit(1);
}

// Layers first .. last - 1 on x (rows, layer[first].in) -> out (rows, layer[last - 1].out).
static void ref_layers(const struct vae *vae, int first, int last, const double *params,
                       const double *x, int rows, double *out, double *margin)
{
    size_t widest = 0;
    for (int i = first; i < last; i++)
        widest = (size_t)vae->layer[i].out > widest ? (size_t)vae->layer[i].out : widest;
    double *buf[2] = {tu_alloc((size_t)rows * widest, sizeof(double)),
                      tu_alloc((size_t)rows * widest, sizeof(double))};
    const double *in = x;
    for (int i = first; i < last; i++) {
        const struct layer *l = &vae->layer[i];
        double *y = i == last - 1 ? out : buf[i % 2];
        ref_layer_forward(l, params, in, rows, y, margin);
        in = y;
    }
    free(buf[0]);
    free(buf[1]);
}

void ref_encode(const struct vae *vae, const double *params, const double *x, int rows, double *ml,
                double *margin)
{
    ref_layers(vae, 0, vae->n_encoder, params, x, rows, ml, margin);
}

void ref_decode(const struct vae *vae, const double *params, const double *z, int rows,
                double *logits, double *margin)
{
    ref_layers(vae, vae->n_encoder, vae->n_layers, params, z, rows, logits, margin);
}

double ref_bernoulli_nll(double l, double t)
{
    return fmax(l, 0.0) - l * t + log1p(exp(-fabs(l)));
}

// The logistic's CDF and its log in double, the reference's own way.
double ref_logistic_cdf(double v)
{
    return v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v));
}

static double ref_log_cdf(double v)
{
    return v >= 0 ? -log1p(exp(-v)) : v - log1p(exp(v));
}

// The discretised logistic (cl/likelihood.cl's logistic_nll) in double by its definition:
// P = CDF(a) - CDF(b), in logs so that pixels a thousand scales off do not underflow, taken from
// the tail where both CDFs are small (CDF(-b) - CDF(-a) when b > 0); the derivatives from the
// density, pdf(v) / P = exp(log CDF(v) + log CDF(-v) - log P). *dmu, *du are those of -log P in
// mu and the log-scale u (0 where u is clamped).
double ref_logistic_nll(double mu, double u, double x, double *dmu, double *du)
{
    double uc = fmin(fmax(u, -7.0), 15.0), s = exp(uc), h = 0.5 / 255.0;
    double a = (x - mu + h) / s, b = (x - mu - h) / s, log_p;
    bool low = x<h, high = x> 1.0 - h;
    if (low)
        log_p = ref_log_cdf(a);
    else if (high)
        log_p = ref_log_cdf(-b);
    else if (b > 0)
        log_p = ref_log_cdf(-b) + log1p(-exp(ref_log_cdf(-a) - ref_log_cdf(-b)));
    else
        log_p = ref_log_cdf(a) + log1p(-exp(ref_log_cdf(b) - ref_log_cdf(a)));
    // pdf(v) / P, 0 for an end at infinity.
    double ra = high ? 0.0 : exp(ref_log_cdf(a) + ref_log_cdf(-a) - log_p);
    double rb = low ? 0.0 : exp(ref_log_cdf(b) + ref_log_cdf(-b) - log_p);
    *dmu = (ra - rb) / s;
    *du = u == uc ? a * ra - b * rb : 0.0;
    return -log_p;
}

static double ref_bernoulli_pixel(const double *out, int j, int channels, double x)
{
    (void)channels;
    return ref_bernoulli_nll(out[j], x);
}

// Pixel p's channel c: its mean at out[p 2C + c], its log-scale C after.
static double ref_logistic_pixel(const double *out, int j, int channels, double x)
{
    int m = j / channels * 2 * channels + j % channels;
    double dmu, du;
    return ref_logistic_nll(out[m], out[m + channels], x, &dmu, &du);
}

// Every likelihood's reference, by its kind: a new likelihood adds its row.
static double (*const pixel_refs[])(const double *out, int j, int channels, double x) = {
    [LIKELIHOOD_BERNOULLI] = ref_bernoulli_pixel,
    [LIKELIHOOD_LOGISTIC] = ref_logistic_pixel,
};

double ref_pixel_nll(const struct vae *vae, const double *out, int j, double x)
{
    return pixel_refs[vae->cfg.likelihood](out, j, vae->cfg.channels, x);
}

double *ref_params(const float *params, size_t n)
{
    double *p = tu_alloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++)
        p[i] = params[i];
    return p;
}
