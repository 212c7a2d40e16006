#include "ref_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

// Dense: y = x W + b, W (in, out) at params + l->weight, b at params + l->bias; ReLU if l->relu.
static void ref_dense(const struct layer *l, const double *params, const double *x, int rows,
                      double *y, double *margin)
{
    for (int r = 0; r < rows; r++) {
        for (int o = 0; o < l->out; o++) {
            const double *w = params + l->weight + (size_t)o;
            double a = params[l->bias + o];
            for (int i = 0; i < l->in; i++)
                a += w[(size_t)i * l->out] * x[(size_t)r * l->in + i];
            if (l->relu) {
                if (margin && fabs(a) < *margin)
                    *margin = fabs(a);
                a = a > 0.0 ? a : 0.0;
            }
            y[(size_t)r * l->out + o] = a;
        }
    }
}

void ref_layer_forward(const struct layer *l, const double *params, const double *x, int rows,
                       double *y, double *margin)
{
    switch (l->spec.kind) {
    case LAYER_DENSE: ref_dense(l, params, x, rows, y, margin); return;
    }
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

double *ref_params(const float *params, size_t n)
{
    double *p = tu_alloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++)
        p[i] = params[i];
    return p;
}
