#include "vae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"

// Appends one dense layer of in -> out at the end of the parameter layout.
static void add_layer(struct vae *vae, const char *name, int in, int out, bool relu)
{
    struct vae_dense *l = &vae->layer[vae->n_layers++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->in = in;
    l->out = out;
    l->relu = relu;
    l->weight = vae->n_params;
    l->bias = l->weight + (size_t)in * (size_t)out;
    vae->n_params = l->bias + (size_t)out;
    if (vae->n_layers > 1) {
        l->weight_t = vae->n_weights_t;
        vae->n_weights_t += (size_t)in * (size_t)out;
    }
}

void vae_layout(struct vae *vae, const struct vae_config *cfg)
{
    memset(vae, 0, sizeof *vae);
    vae->cfg = *cfg;
    int n = cfg->n_hidden, prev = cfg->in_dim;
    char name[24];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "encoder.%d", i);
        add_layer(vae, name, prev, cfg->hidden[i], true);
        prev = cfg->hidden[i];
    }
    vae->head = vae->n_layers;
    add_layer(vae, "mean+logvar", prev, 2 * cfg->latent, false);
    vae->first_decoder = vae->n_layers;
    prev = cfg->latent;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "decoder.%d", i);
        add_layer(vae, name, prev, cfg->hidden[n - 1 - i], true);
        prev = cfg->hidden[n - 1 - i];
    }
    add_layer(vae, "output", prev, cfg->in_dim, false);
}

// A device buffer of rows x cols floats that the model owns and releases.
static cl_mem own(struct vae *vae, size_t rows, size_t cols, const char *name,
                  struct clvae_error *err)
{
    cl_mem mem = clrt_buffer(vae->rt, rows * cols * sizeof(float), name, err);
    if (mem)
        vae->owned[vae->n_owned++] = mem;
    return mem;
}

// The largest power of two <= limit and <= want.
static size_t pow2_at_most(size_t limit, size_t want)
{
    size_t p = 1;
    while (p * 2 <= limit && p * 2 <= want)
        p *= 2;
    return p;
}

int vae_create(struct vae *vae, struct clrt *rt, const struct vae_config *cfg, int max_rows,
               struct clvae_error *err)
{
    vae_layout(vae, cfg);
    vae->rt = rt;
    vae->max_rows = max_rows;
    if (vae->n_params > (size_t)INT32_MAX)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "the model has %zu parameters; at most %d fit",
                          vae->n_params, INT32_MAX);
    size_t rows = (size_t)max_rows, d = (size_t)cfg->in_dim, z = (size_t)cfg->latent;
    if (!(vae->params = own(vae, vae->n_params, 1, "parameters", err)) ||
        !(vae->grads = own(vae, vae->n_params, 1, "gradients", err)) ||
        !(vae->weights_t = own(vae, vae->n_weights_t, 1, "transposed weights", err)))
        return -1;
    size_t before = rt->allocated;
    if (!(vae->x = own(vae, rows, d, "input batch", err)) ||
        !(vae->ml = own(vae, rows, 2 * z, "mean and log-variance", err)) ||
        !(vae->dml = own(vae, rows, 2 * z, "mean and log-variance gradient", err)) ||
        !(vae->z = own(vae, rows, z, "latent sample", err)) ||
        !(vae->dz = own(vae, rows, z, "latent sample gradient", err)) ||
        !(vae->eps = own(vae, rows, z, "latent noise", err)) ||
        !(vae->logits = own(vae, rows, d, "logits", err)) ||
        !(vae->dlogits = own(vae, rows, d, "logits gradient", err)) ||
        !(vae->terms = own(vae, rows, d, "per-pixel losses", err)))
        return -1;
    for (int i = 0; i < vae->n_layers; i++) {
        struct vae_dense *l = &vae->layer[i];
        if (i == vae->head) {
            l->y = vae->ml, l->dy = vae->dml;
        } else if (i == vae->n_layers - 1) {
            l->y = vae->logits, l->dy = vae->dlogits;
        } else {
            char name[64];
            snprintf(name, sizeof name, "%s activations", l->name);
            if (!(l->y = own(vae, rows, (size_t)l->out, name, err)))
                return -1;
            snprintf(name, sizeof name, "%s activation gradient", l->name);
            if (!(l->dy = own(vae, rows, (size_t)l->out, name, err)))
                return -1;
        }
        if (i == 0) {
            l->x = vae->x, l->dx = NULL;
        } else if (i == vae->first_decoder) {
            l->x = vae->z, l->dx = vae->dz;
        } else {
            l->x = vae->layer[i - 1].y, l->dx = vae->layer[i - 1].dy;
        }
    }
    // One scratch buffer, big enough for every product the passes make, shared: the queue is in
    // order, so no two products use it at once.
    size_t temp = 0;
    for (int i = 0; i < vae->n_layers; i++) {
        size_t in = (size_t)vae->layer[i].in, out = (size_t)vae->layer[i].out, t;
        t = clrt_gemm_temp_size(rt, false, false, rows, out, in, in, out, out);
        temp = t > temp ? t : temp;
        t = clrt_gemm_temp_size(rt, true, false, in, out, rows, in, out, out);
        temp = t > temp ? t : temp;
        t = clrt_gemm_temp_size(rt, false, false, rows, in, out, out, in, in);
        temp = t > temp ? t : temp;
    }
    if (!(vae->gemm_temp = clrt_buffer(rt, temp, "CLBlast scratch", err)))
        return -1;
    vae->owned[vae->n_owned++] = vae->gemm_temp;
    vae->activation_bytes = rt->allocated - before;

    vae->k_bias_forward = clrt_kernel(rt, "bias_forward");
    vae->k_bias_relu_forward = clrt_kernel(rt, "bias_relu_forward");
    vae->k_bias_grad = clrt_kernel(rt, "bias_grad");
    vae->k_relu_backward_bias_grad = clrt_kernel(rt, "relu_backward_bias_grad");
    vae->k_reparameterize = clrt_kernel(rt, "reparameterize");
    vae->k_reparameterize_backward = clrt_kernel(rt, "reparameterize_backward");
    vae->k_bce_logits_grad = clrt_kernel(rt, "bce_logits_grad");
    vae->k_sample_normal = clrt_kernel(rt, "sample_normal");
    vae->k_transpose = clrt_kernel(rt, "transpose");
    vae->k_row_sum = clrt_kernel(rt, "row_sum");
    vae->k_gather = clrt_kernel(rt, "gather_images");
    size_t kernel_max;
    CL_CHECK(clGetKernelWorkGroupInfo(vae->k_row_sum, rt->device, CL_KERNEL_WORK_GROUP_SIZE,
                                      sizeof kernel_max, &kernel_max, NULL));
    // A CPU runs a work-group's items one after another: one item a row, no barriers. A GPU
    // wants the row spread over a work-group.
    vae->reduce_local = rt->device_type & CL_DEVICE_TYPE_CPU ? 1 : pow2_at_most(kernel_max, 256);
    return 0;
}

void vae_release(struct vae *vae)
{
    cl_kernel kernels[] = {vae->k_bias_forward,         vae->k_bias_relu_forward,
                           vae->k_bias_grad,            vae->k_relu_backward_bias_grad,
                           vae->k_reparameterize,       vae->k_reparameterize_backward,
                           vae->k_bce_logits_grad,      vae->k_sample_normal,
                           vae->k_transpose,            vae->k_row_sum,
                           vae->k_gather};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    for (int i = 0; i < vae->n_owned; i++)
        clReleaseMemObject(vae->owned[i]);
    vae->n_owned = 0;
}

void vae_init_params_host(const struct vae *vae, uint64_t seed, float *params)
{
    for (int i = 0; i < vae->n_layers; i++) {
        const struct vae_dense *l = &vae->layer[i];
        double bound = 1.0 / sqrt((double)l->in);
        size_t end = l->bias + (size_t)l->out;
        for (size_t p = l->weight; p < end; p++) {
            double u = philox_uniform(seed, (uint32_t)p, 0, PHILOX_STREAM_INIT);
            params[p] = (float)((2.0 * u - 1.0) * bound);
        }
    }
}

// Row-major operand views.
static struct clrt_mat mat(cl_mem mem, size_t offset, int ld)
{
    return (struct clrt_mat){mem, offset, (size_t)ld};
}

// y = x W + b, then ReLU if the layer has it: (rows, in) -> (rows, out).
static void dense_forward(struct vae *vae, const struct vae_dense *l, int rows)
{
    clrt_gemm(vae->rt, false, false, (size_t)rows, (size_t)l->out, (size_t)l->in, 1.0f,
              mat(l->x, 0, l->in), mat(vae->params, l->weight, l->out), 0.0f,
              mat(l->y, 0, l->out), vae->gemm_temp);
    cl_kernel k = l->relu ? vae->k_bias_relu_forward : vae->k_bias_forward;
    int bias = (int)l->bias;
    KARG(k, 0, l->y);
    KARG(k, 1, vae->params);
    KARG(k, 2, bias);
    KARG(k, 3, rows);
    KARG(k, 4, l->out);
    size_t global[2] = {(size_t)l->out, (size_t)rows};
    clrt_launch(vae->rt, k, 2, global, NULL);
}

// dW (in, out) = x^T dy, and dx (rows, in) = dy W^T when the layer below needs it.
static void dense_backward(struct vae *vae, const struct vae_dense *l, int rows)
{
    clrt_gemm(vae->rt, true, false, (size_t)l->in, (size_t)l->out, (size_t)rows, 1.0f,
              mat(l->x, 0, l->in), mat(l->dy, 0, l->out), 0.0f,
              mat(vae->grads, l->weight, l->out), vae->gemm_temp);
    if (l->dx)
        clrt_gemm(vae->rt, false, false, (size_t)rows, (size_t)l->in, (size_t)l->out, 1.0f,
                  mat(l->dy, 0, l->out), mat(vae->weights_t, l->weight_t, l->in), 0.0f,
                  mat(l->dx, 0, l->in), vae->gemm_temp);
}

// weights_t = W^T, (out, in), for every layer whose input gradient is needed.
static void transpose_weights(struct vae *vae)
{
    cl_kernel k = vae->k_transpose;
    for (int i = 1; i < vae->n_layers; i++) {
        const struct vae_dense *l = &vae->layer[i];
        int src = (int)l->weight, dst = (int)l->weight_t;
        KARG(k, 0, vae->params);
        KARG(k, 1, src);
        KARG(k, 2, vae->weights_t);
        KARG(k, 3, dst);
        KARG(k, 4, l->in);
        KARG(k, 5, l->out);
        size_t global[2] = {(size_t)l->out, (size_t)l->in};
        clrt_launch(vae->rt, k, 2, global, NULL);
    }
}

// The bias gradient of layer l from its dy, masking dy by ReLU first when the layer has one.
static void bias_backward(struct vae *vae, const struct vae_dense *l, int rows)
{
    int dbias = (int)l->bias, arg = 0;
    cl_kernel k = l->relu ? vae->k_relu_backward_bias_grad : vae->k_bias_grad;
    KARG(k, arg++, l->dy);
    if (l->relu)
        KARG(k, arg++, l->y);
    KARG(k, arg++, vae->grads);
    KARG(k, arg++, dbias);
    KARG(k, arg++, rows);
    KARG(k, arg++, l->out);
    size_t global = (size_t)l->out;
    clrt_launch(vae->rt, k, 1, &global, NULL);
}

void vae_forward(struct vae *vae, const struct vae_pass *pass)
{
    int rows = pass->rows, latent = vae->cfg.latent, dim = vae->cfg.in_dim;
    for (int i = 0; i <= vae->head; i++)
        dense_forward(vae, &vae->layer[i], rows);

    cl_kernel k = vae->k_reparameterize;
    cl_uint seed_lo = (cl_uint)pass->seed, seed_hi = (cl_uint)(pass->seed >> 32);
    cl_uint step_lo = (cl_uint)pass->step, step_hi = (cl_uint)(pass->step >> 32);
    cl_uint stream = pass->stream;
    KARG(k, 0, vae->ml);
    KARG(k, 1, vae->z);
    KARG(k, 2, vae->eps);
    KARG(k, 3, pass->kl);
    KARG(k, 4, pass->offset);
    KARG(k, 5, rows);
    KARG(k, 6, latent);
    KARG(k, 7, seed_lo);
    KARG(k, 8, seed_hi);
    KARG(k, 9, step_lo);
    KARG(k, 10, step_hi);
    KARG(k, 11, stream);
    KARG(k, 12, pass->noise_scale);
    size_t global = (size_t)rows;
    clrt_launch(vae->rt, k, 1, &global, NULL);

    for (int i = vae->first_decoder; i < vae->n_layers; i++)
        dense_forward(vae, &vae->layer[i], rows);

    k = vae->k_bce_logits_grad;
    KARG(k, 0, vae->logits);
    KARG(k, 1, vae->x);
    KARG(k, 2, vae->dlogits);
    KARG(k, 3, vae->terms);
    KARG(k, 4, rows);
    KARG(k, 5, dim);
    KARG(k, 6, pass->grad_scale);
    size_t pixels[2] = {(size_t)dim, (size_t)rows};
    clrt_launch(vae->rt, k, 2, pixels, NULL);

    k = vae->k_row_sum;
    KARG(k, 0, vae->terms);
    KARG(k, 1, pass->rec);
    KARG(k, 2, pass->offset);
    KARG(k, 3, dim);
    CL_CHECK(clSetKernelArg(k, 4, vae->reduce_local * sizeof(float), NULL));
    size_t local = vae->reduce_local, groups = (size_t)rows * local;
    clrt_launch(vae->rt, k, 1, &groups, &local);
}

void vae_backward(struct vae *vae, const struct vae_pass *pass, float beta)
{
    int rows = pass->rows, latent = vae->cfg.latent;
    // Here rather than after each update: backward then always sees the current parameters,
    // however they were set.
    transpose_weights(vae);
    bias_backward(vae, &vae->layer[vae->n_layers - 1], rows);
    for (int i = vae->n_layers - 1; i >= 0; i--) {
        dense_backward(vae, &vae->layer[i], rows);
        if (i == 0)
            break;
        if (i == vae->first_decoder) {
            cl_kernel k = vae->k_reparameterize_backward;
            float beta_scale = beta * pass->grad_scale;
            KARG(k, 0, vae->dz);
            KARG(k, 1, vae->ml);
            KARG(k, 2, vae->eps);
            KARG(k, 3, vae->dml);
            KARG(k, 4, rows);
            KARG(k, 5, latent);
            KARG(k, 6, beta_scale);
            KARG(k, 7, pass->noise_scale);
            size_t global = (size_t)rows;
            clrt_launch(vae->rt, k, 1, &global, NULL);
        }
        bias_backward(vae, &vae->layer[i - 1], rows);
    }
}

void vae_gather(struct vae *vae, cl_mem data, cl_mem index, int start, int rows)
{
    cl_kernel k = vae->k_gather;
    int dim = vae->cfg.in_dim;
    KARG(k, 0, data);
    KARG(k, 1, index);
    KARG(k, 2, start);
    KARG(k, 3, rows);
    KARG(k, 4, dim);
    KARG(k, 5, vae->x);
    size_t global[2] = {(size_t)dim, (size_t)rows};
    clrt_launch(vae->rt, k, 2, global, NULL);
}

void vae_describe(const struct vae_config *cfg, char *buf, size_t len)
{
    int used = snprintf(buf, len, "%d", cfg->in_dim);
    for (int i = 0; i < cfg->n_hidden && used >= 0 && (size_t)used < len; i++)
        used += snprintf(buf + used, len - (size_t)used, "-%d", cfg->hidden[i]);
    if (used >= 0 && (size_t)used < len)
        snprintf(buf + used, len - (size_t)used, "-%d", cfg->latent);
}

void vae_decode(struct vae *vae, int rows)
{
    for (int i = vae->first_decoder; i < vae->n_layers; i++)
        dense_forward(vae, &vae->layer[i], rows);
}

void vae_sample_prior(struct vae *vae, int rows, uint64_t seed, uint64_t step, uint32_t stream)
{
    cl_kernel k = vae->k_sample_normal;
    int n = rows * vae->cfg.latent;
    cl_uint seed_lo = (cl_uint)seed, seed_hi = (cl_uint)(seed >> 32);
    cl_uint step_lo = (cl_uint)step, step_hi = (cl_uint)(step >> 32);
    KARG(k, 0, vae->z);
    KARG(k, 1, n);
    KARG(k, 2, seed_lo);
    KARG(k, 3, seed_hi);
    KARG(k, 4, step_lo);
    KARG(k, 5, step_hi);
    KARG(k, 6, stream);
    size_t global = (size_t)n;
    clrt_launch(vae->rt, k, 1, &global, NULL);
}
