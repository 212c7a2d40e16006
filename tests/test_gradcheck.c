// Gradient check of the whole model: vae_forward then vae_backward on the OpenCL device against
// central finite differences of a double-precision C implementation of the same loss
// (tests/ref_model.c), for every parameter of small models (two hidden layers; one hidden layer
// with an odd latent size; noise on and off; convolutions). Walks each layer's checkpoint tensors
// (its kind's list), so a new kind's parameters are checked by its reference and a case; prints
// the largest error per tensor and the tolerance.
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_runtime.h"
#include "philox.h"
#include "ref_model.h"
#include "test_util.h"
#include "vae.h"

#define MAX_ROWS 80
#define MAX_WIDTH 1024
#define FD_STEP 1e-6
#define GRAD_ATOL 2e-4
#define GRAD_RTOL 2e-3
#define LOSS_RTOL 1e-4
#define RELU_MARGIN 1e-4

static struct clrt rt;

// What the reference forward pass gives: the loss, per-image rec and kl (rows), and the smallest
// |pre-activation| any ReLU saw (finite differences across a kink would be meaningless).
struct ref_result {
    double loss, rec[MAX_ROWS], kl[MAX_ROWS], relu_margin;
};

// The model's loss (sum_r rec_r + beta sum_r kl_r) / rows in double: x (rows, in_dim) through the
// encoder to [mu | logvar] (rows, 2 latent), z = mu + noise_scale exp(logvar / 2) eps with eps
// (rows, latent), the decoder to its output (rows, out_dim), the likelihood's -log p(x|z).
static struct ref_result ref_forward(const struct vae *vae, const double *params, const double *x,
                                     const double *eps, int rows, double noise_scale, double beta)
{
    static double ml[MAX_ROWS * MAX_WIDTH], z[MAX_ROWS * MAX_WIDTH], logits[MAX_ROWS * MAX_WIDTH];
    struct ref_result res = {.relu_margin = INFINITY};
    int latent = vae->cfg.latent, dim = vae->cfg.in_dim, out_dim = vae->out_dim;
    ref_encode(vae, params, x, rows, ml, &res.relu_margin);
    for (int r = 0; r < rows; r++) {
        for (int k = 0; k < latent; k++) {
            double mu = ml[r * 2 * latent + k], logvar = ml[r * 2 * latent + latent + k];
            z[r * latent + k] = mu + noise_scale * exp(0.5 * logvar) * eps[r * latent + k];
            res.kl[r] += -0.5 * (1.0 + logvar - mu * mu - exp(logvar));
        }
    }
    ref_decode(vae, params, z, rows, logits, &res.relu_margin);
    double total = 0.0;
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < dim; j++)
            res.rec[r] += ref_pixel_nll(vae, logits + (size_t)r * out_dim, j, x[r * dim + j]);
        total += res.rec[r] + beta * res.kl[r];
    }
    res.loss = total / rows;
    return res;
}

// Row r's class in a conditional case (cfg.classes): every class, in an order that is not the
// rows'.
static int case_label(int r, int classes)
{
    return (r * 5 + 2) % classes;
}

// A conditional model's labels of rows [first, first + rows) on the device (vae_set_labels).
static void set_case_labels(struct vae *vae, int first, int rows)
{
    int labels[MAX_ROWS];
    for (int r = 0; r < rows && vae->cfg.classes; r++)
        labels[r] = case_label(first + r, vae->cfg.classes);
    vae_set_labels(vae, labels, rows);
}

// One gradient check configuration.
struct gc_case {
    const char *name;
    struct vae_config cfg;
    // Layer lists as --encoder and --decoder take them, read into cfg when given (the decoder the
    // encoder's mirror unless given); NULL: cfg's lists.
    const char *encoder, *decoder;
    int max_rows, rows, offset;
    uint64_t seed, step;
    float noise_scale, beta;
    int micro;          // rows a pass takes; 0: the whole batch at once
    size_t reduce_work; // forces rt.reduce_work (bias gradients in several parts); 0: the device's
    size_t splitk_groups, splitk_min_k; // force split-K weight gradients; 0: the device's
    size_t max_alloc;   // forces rt.max_alloc while the model is made: parameters in several parts
    size_t slice_bytes; // forces rt.slice_bytes (conv layers' batches in slices); 0: the device's
    bool dx_accumulate; // also check that every layer's backward adds into dx when told to
};

// c's architecture: cfg with the layer lists c gives as text.
static struct vae_config case_config(const struct gc_case *c)
{
    struct clvae_error err;
    struct vae_config cfg = c->cfg;
    if (c->encoder) {
        tu_die_on(vae_parse_layers(c->name, c->encoder, cfg.encoder, &cfg.n_encoder, &err), &err);
        cfg.n_decoder = 0;
    }
    if (c->decoder)
        tu_die_on(vae_parse_layers(c->name, c->decoder, cfg.decoder, &cfg.n_decoder, &err), &err);
    return cfg;
}

// got (n) against want (n) per element: rel err |got - want| / |want| counted where |want| >
// 1e-3; returns the worst |got - want| / (atol + rtol |want|) and prints one line.
static double compare_grad(const char *what, const float *got, const double *want, size_t n)
{
    double max_abs = 0.0, max_rel = 0.0, worst = 0.0;
    size_t worst_at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]), tol = GRAD_ATOL + GRAD_RTOL * fabs(want[i]);
        if (!(d <= max_abs))
            max_abs = d;
        if (fabs(want[i]) > 1e-3 && !(d / fabs(want[i]) <= max_rel))
            max_rel = d / fabs(want[i]);
        if (!(d / tol <= worst))
            worst = d / tol, worst_at = i;
    }
    tu_checks++;
    bool ok = worst <= 1.0;
    if (!ok)
        tu_failures++;
    printf("%s%s: max abs err %.3g, max rel err %.3g (|fd| > 1e-3) (tol %g + %g rel)",
           ok ? "" : "FAIL ", what, max_abs, max_rel, GRAD_ATOL, GRAD_RTOL);
    if (!ok)
        printf("; worst [%zu]: device %.9g, finite difference %.9g", worst_at,
               (double)got[worst_at], want[worst_at]);
    printf("\n");
    return worst;
}

// The elements of tensor t (row-major) from the flat gradients: got from the device's, want from
// the finite differences; returns how many.
static size_t tensor_gather(const struct layer_tensor *t, const float *grads, const double *fd,
                            float *got, double *want)
{
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++)
        count *= (size_t)t->shape[d];
    for (size_t k = 0; k < count; k++) {
        size_t at = t->base, rest = k;
        for (int d = t->ndim - 1; d >= 0; d--) {
            at += rest % (size_t)t->shape[d] * t->stride[d];
            rest /= (size_t)t->shape[d];
        }
        got[k] = grads[at];
        want[k] = fd[at];
    }
    return count;
}

// Runs one configuration: device forward and backward against the double reference's rec, kl and
// central differences of its loss for every parameter.
static void run_case(const struct gc_case *c)
{
    struct clvae_error err;
    struct vae vae;
    // A forced reduce_work splits even these small reductions (reduce_min 0) for the case.
    size_t reduce_work = rt.reduce_work, reduce_min = rt.reduce_min;
    if (c->reduce_work)
        rt.reduce_work = c->reduce_work, rt.reduce_min = 0;
    size_t splitk_groups = rt.splitk_groups, splitk_min_k = rt.splitk_min_k;
    if (c->splitk_groups)
        rt.splitk_groups = c->splitk_groups, rt.splitk_min_k = c->splitk_min_k;
    size_t slice_bytes = rt.slice_bytes;
    if (c->slice_bytes)
        rt.slice_bytes = c->slice_bytes;
    size_t allocated = rt.allocated, scratch = rt.gemm_temp_bytes;
    size_t zeros = rt.zeros_floats * sizeof(float); // (the runtime's, as the scratch is)
    cl_ulong max_alloc = rt.max_alloc;
    if (c->max_alloc)
        rt.max_alloc = c->max_alloc;
    struct vae_config cfg = case_config(c);
    tu_die_on(vae_create(&vae, &rt, &cfg, c->max_rows, c->name, &err), &err);
    if (c->max_alloc) {
        tu_check(vae.params.n > 1,
                 "case %s: parameters in %d parts (wanted several of at most %zu "
                 "bytes)",
                 c->name, vae.params.n, c->max_alloc);
        for (int i = 0; i < vae.params.n; i++)
            tu_check(vae.params.start[i + 1] - vae.params.start[i] <= c->max_alloc,
                     "case %s: parameter part %d of %zu bytes", c->name, i,
                     vae.params.start[i + 1] - vae.params.start[i]);
    }
    // The memory train refuses a model by, before allocating: what vae_create then allocates
    // (planned for the same device: what fits one allocation depends on max_alloc).
    size_t largest;
    const char *largest_name;
    size_t planned = vae_device_bytes(&vae, &rt, c->max_rows, &largest, &largest_name);
    rt.max_alloc = max_alloc;
    size_t used = rt.allocated - allocated - (rt.gemm_temp_bytes - scratch) -
                  (rt.zeros_floats * sizeof(float) - zeros);
    tu_check(planned == used, "case %s: vae_device_bytes %zu = bytes vae_create allocated %zu",
             c->name, planned, used);
    if (c->reduce_work && !c->max_alloc) { // (with max_alloc: to keep the partial sums small)
        int parts = layer_bias_parts(&vae.ctx, c->micro ? c->micro : c->rows, vae.layer[0].out);
        tu_check(parts > 1, "case %s: the first layer's bias gradient in %d parts (wanted > 1)",
                 c->name, parts);
    }
    rt.reduce_work = reduce_work;
    if (c->splitk_groups) {
        // The first pass's rows and the last's (the batch's rest after micro-batches).
        const struct layer *l0 = &vae.layer[0];
        int micro = c->micro ? c->micro : c->rows, last = c->rows - (c->rows - 1) / micro * micro;
        size_t k1 = (size_t)micro * l0->wgrad_k, k2 = (size_t)last * l0->wgrad_k;
        int p1 = layer_splitk_parts(&rt, l0->wgrad_m, l0->wgrad_n, k1);
        int p2 = layer_splitk_parts(&rt, l0->wgrad_m, l0->wgrad_n, k2);
        tu_check(p1 > 1 && p2 > 1 && (k1 % (size_t)p1 || k2 % (size_t)p2),
                 "case %s: the first layer's weight gradient split-K: %zu rows in %d parts, %zu "
                 "in %d (wanted > 1, and rows left over in one)",
                 c->name, k1, p1, k2, p2);
    }
    int rows = c->rows, dim = c->cfg.in_dim, latent = c->cfg.latent;
    size_t n = vae.n_params;
    int widest = dim;
    for (int i = 0; i < vae.n_layers; i++)
        widest = vae.layer[i].out > widest ? vae.layer[i].out : widest;
    if (rows > MAX_ROWS || widest > MAX_WIDTH) {
        fprintf(stderr, "test_gradcheck: case %s exceeds MAX_ROWS or MAX_WIDTH\n", c->name);
        exit(1);
    }
    char encoder[128], decoder[128];
    vae_format_layers(vae.cfg.encoder, vae.cfg.n_encoder, encoder, sizeof encoder);
    vae_format_layers(vae.cfg.decoder, vae.cfg.n_decoder, decoder, sizeof decoder);
    printf("case %s: in %d, encoder %s, decoder %s, latent %d, %d classes, %s, rows %d of %d, "
           "noise %g, beta %g, %zu parameters\n",
           c->name, dim, encoder, decoder, latent, cfg.classes, likelihood_name(c->cfg.likelihood),
           rows, c->max_rows, c->noise_scale, c->beta, n);

    float *params = tu_alloc(n, sizeof(float));
    float *grads = tu_alloc(n, sizeof(float));
    double *p = tu_alloc(n, sizeof(double));
    double *fd = tu_alloc(n, sizeof(double));
    float *got_t = tu_alloc(n, sizeof(float));
    double *want_t = tu_alloc(n, sizeof(double));
    float *x = tu_alloc((size_t)rows * dim, sizeof(float));
    double *xd = tu_alloc((size_t)rows * dim, sizeof(double));
    double *eps = tu_alloc((size_t)rows * latent, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        params[i] = (float)(philox_uniform(c->seed, (uint32_t)i, 1, PHILOX_STREAM_INIT) - 0.5);
        p[i] = params[i];
    }
    // The discretised logistic's x is 8-bit levels, a fifth of them the ends 0 and 255.
    for (int i = 0; i < rows * dim; i++) {
        x[i] = (float)philox_uniform(c->seed, (uint32_t)i, 2, PHILOX_STREAM_INIT);
        if (c->cfg.likelihood == LIKELIHOOD_LOGISTIC)
            x[i] = i % 10 == 3 ? 0.0f : i % 10 == 7 ? 1.0f : rintf(x[i] * 255.0f) / 255.0f;
        xd[i] = x[i];
    }
    for (int i = 0; i < rows * latent; i++)
        eps[i] = philox_normal(c->seed, (uint32_t)i, c->step, PHILOX_STREAM_TRAIN);

    size_t n_loss = (size_t)c->offset + rows;
    cl_mem rec = tu_buffer(&rt, n_loss * sizeof(float), "rec");
    cl_mem kl = tu_buffer(&rt, n_loss * sizeof(float), "kl");
    clrt_parts_write(&rt, &vae.params, params, true);
    // The batch in micro-batches of c->micro rows (all at once when 0), as training takes a batch
    // larger than a pass: the noise is the whole batch's, the gradients summed over the passes.
    int micro = c->micro ? c->micro : rows;
    for (int first = 0; first < rows; first += micro) {
        int part = rows - first < micro ? rows - first : micro;
        tu_write(&rt, vae.x, x + (size_t)first * dim, (size_t)part * dim * sizeof(float));
        set_case_labels(&vae, first, part);
        struct vae_pass pass = {
            .rows = part,
            .seed = c->seed,
            .step = c->step,
            .stream = PHILOX_STREAM_TRAIN,
            .noise_scale = c->noise_scale,
            .rec = rec,
            .kl = kl,
            .offset = c->offset + first,
            .grad_scale = 1.0f / (float)rows,
            .noise_row0 = first,
            .accumulate = first > 0,
        };
        vae_forward(&vae, &pass);
        vae_backward(&vae, &pass, c->beta);
    }
    float got_rec[MAX_ROWS], got_kl[MAX_ROWS];
    CL_CHECK(clEnqueueReadBuffer(rt.queue, rec, CL_TRUE, (size_t)c->offset * sizeof(float),
                                 (size_t)rows * sizeof(float), got_rec, 0, NULL, NULL));
    CL_CHECK(clEnqueueReadBuffer(rt.queue, kl, CL_TRUE, (size_t)c->offset * sizeof(float),
                                 (size_t)rows * sizeof(float), got_kl, 0, NULL, NULL));
    clrt_parts_read(&rt, &vae.grads, grads, true);

    int labels[MAX_ROWS];
    for (int r = 0; r < rows && cfg.classes; r++)
        labels[r] = case_label(r, cfg.classes);
    ref_set_labels(cfg.classes ? labels : NULL);
    struct ref_result ref = ref_forward(&vae, p, xd, eps, rows, c->noise_scale, c->beta);
    double rec_err = 0.0, kl_err = 0.0;
    for (int r = 0; r < rows; r++) {
        double e = fabs(got_rec[r] - ref.rec[r]) / fabs(ref.rec[r]);
        rec_err = e > rec_err || e != e ? e : rec_err;
        e = fabs(got_kl[r] - ref.kl[r]) / fabs(ref.kl[r]);
        kl_err = e > kl_err || e != e ? e : kl_err;
    }
    tu_check(rec_err <= LOSS_RTOL,
             "case %s: per-image rec (rows %d, offset %d): max rel err %.3g (tol %g rel)", c->name,
             rows, c->offset, rec_err, LOSS_RTOL);
    tu_check(kl_err <= LOSS_RTOL,
             "case %s: per-image kl (rows %d, offset %d): max rel err %.3g (tol %g rel)", c->name,
             rows, c->offset, kl_err, LOSS_RTOL);
    tu_check(
        ref.relu_margin > RELU_MARGIN,
        "case %s: smallest |pre-activation| of a ReLU %.3g (needs > %g for finite differences)",
        c->name, ref.relu_margin, RELU_MARGIN);

    for (size_t i = 0; i < n; i++) {
        double keep = p[i];
        p[i] = keep + FD_STEP;
        double up = ref_forward(&vae, p, xd, eps, rows, c->noise_scale, c->beta).loss;
        p[i] = keep - FD_STEP;
        double down = ref_forward(&vae, p, xd, eps, rows, c->noise_scale, c->beta).loss;
        p[i] = keep;
        fd[i] = (up - down) / (2.0 * FD_STEP);
    }
    size_t zero = 0;
    for (size_t i = 0; i < n; i++)
        zero += fd[i] == 0.0;
    double worst = 0.0;
    size_t checked = 0;
    for (int i = 0; i < vae.n_layers; i++) {
        const struct layer *l = &vae.layer[i];
        struct layer_tensor t[LAYER_MAX_TENSORS];
        int n_tensors = l->ops->tensors(l, t);
        for (int j = 0; j < n_tensors; j++) {
            char what[256];
            size_t count = tensor_gather(&t[j], grads, fd, got_t, want_t);
            snprintf(what, sizeof what, "case %.16s: d loss / d %.47s (%.23s %.16s, %zu)", c->name,
                     t[j].name, l->name, l->ops->kind, count);
            double w = compare_grad(what, got_t, want_t, count);
            worst = w > worst ? w : worst;
            checked += count;
        }
    }
    tu_check(checked == n, "case %s: the layers' tensors hold %zu parameters, all %zu of the model",
             c->name, checked, n);
    printf("case %s: loss %.6f, all %zu parameters (%zu with zero gradient: dead ReLUs): worst "
           "|device - fd| / tol = %.3g\n",
           c->name, ref.loss, n, zero, worst);

    rt.reduce_min = reduce_min;
    rt.splitk_groups = splitk_groups, rt.splitk_min_k = splitk_min_k;
    rt.slice_bytes = slice_bytes;
    clReleaseMemObject(rec);
    clReleaseMemObject(kl);
    vae_release(&vae);
    free(params);
    free(grads);
    free(p);
    free(fd);
    free(got_t);
    free(want_t);
    free(x);
    free(xd);
    free(eps);
}

// Every kind's items through the registry: each text parses, formats to its canonical form (the
// numbers a kind leaves out filled in) and parses back to the same layers; a case's mirrored
// decoder has the items vae_mirror_items counts before the layout.
static void check_layer_lists(const struct gc_case *cases, size_t n_cases)
{
    static const struct {
        const char *text, *canonical;
    } lists[] = {
        {"dense:7,dense:5", "dense:7,dense:5"},
        {"conv:32,conv:64:3,dense:256", "conv:32:4:2:1,conv:64:3:2:1,dense:256"},
        {"dense:392,reshape:8x7x7,deconv:4:3:1:1", "dense:392,reshape:8x7x7,deconv:4:3:1:1"},
        {"conv:16:3:1:1,res:16,res:16:4,up:3", "conv:16:3:1:1,res:16:8,res:16:4,up:3"},
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        struct vae_config a = {.latent = 2}, b = {.latent = 2};
        struct clvae_error err;
        char text[VAE_LAYERS_TEXT_MAX] = "";
        int rc = vae_parse_layers("list", lists[i].text, a.encoder, &a.n_encoder, &err);
        if (rc == 0)
            vae_format_layers(a.encoder, a.n_encoder, text, sizeof text);
        bool back = rc == 0 && vae_parse_layers("list", text, b.encoder, &b.n_encoder, &err) == 0 &&
                    vae_same_layers(&a, &b);
        tu_check(rc == 0 && strcmp(text, lists[i].canonical) == 0 && back,
                 "layer list '%s' reads as '%s' (want '%s') and back", lists[i].text, text,
                 lists[i].canonical);
    }
    for (size_t i = 0; i < n_cases; i++) {
        struct vae_config cfg = case_config(&cases[i]);
        struct vae vae;
        struct clvae_error err;
        if (!cases[i].encoder)
            continue;
        tu_die_on(vae_layout(&vae, &cfg, cases[i].name, &err), &err);
        int counted = vae_mirror_items(cfg.encoder, cfg.n_encoder);
        tu_check(counted == vae.cfg.n_decoder,
                 "case %s: vae_mirror_items %d = the mirrored decoder's %d items", cases[i].name,
                 counted, vae.cfg.n_decoder);
    }
}

// A layer whose input feeds two layers (a skip connection) gets its dy from both: each adds into
// it (layer.dx_accumulate; the model's wiring sets it for no layer today). For every layer of c's
// model that takes dx: after a forward pass, its backward pass with the flag over dx holding r must
// leave r + the dx of a pass without it.
static void check_dx_accumulate(const struct gc_case *c)
{
    struct clvae_error err;
    struct vae vae;
    struct vae_config cfg = case_config(c);
    tu_die_on(vae_create(&vae, &rt, &cfg, c->rows, c->name, &err), &err);
    int rows = c->rows, dim = cfg.in_dim;
    float *params = tu_alloc(vae.n_params, sizeof(float));
    for (size_t i = 0; i < vae.n_params; i++)
        params[i] = (float)(philox_uniform(c->seed, (uint32_t)i, 1, PHILOX_STREAM_INIT) - 0.5);
    clrt_parts_write(&rt, &vae.params, params, true);
    float *x = tu_alloc((size_t)rows * dim, sizeof(float));
    for (int i = 0; i < rows * dim; i++)
        x[i] = (float)philox_uniform(c->seed, (uint32_t)i, 2, PHILOX_STREAM_INIT);
    tu_write(&rt, vae.x, x, (size_t)rows * dim * sizeof(float));
    set_case_labels(&vae, 0, rows);
    cl_mem rec = tu_buffer(&rt, (size_t)rows * sizeof(float), "rec");
    cl_mem kl = tu_buffer(&rt, (size_t)rows * sizeof(float), "kl");
    struct vae_pass pass = {.rows = rows,
                            .seed = c->seed,
                            .step = c->step,
                            .stream = PHILOX_STREAM_TRAIN,
                            .noise_scale = c->noise_scale,
                            .rec = rec,
                            .kl = kl,
                            .grad_scale = 1.0f / (float)rows};
    vae_forward(&vae, &pass);
    vae_backward(&vae, &pass, c->beta); // every dy in place for the layers' passes below
    for (int i = 0; i < vae.n_layers; i++) {
        struct layer *l = &vae.layer[i];
        if (!l->needs_dx)
            continue;
        size_t n = (size_t)rows * (size_t)l->in;
        float *plain = tu_alloc(n, sizeof(float)), *got = tu_alloc(n, sizeof(float));
        float *r = tu_alloc(n, sizeof(float));
        double *want = tu_alloc(n, sizeof(double));
        l->ops->backward(&vae.ctx, l, rows, false);
        tu_download(&rt, l->dx, plain, n * sizeof(float));
        for (size_t k = 0; k < n; k++) {
            r[k] = (float)(philox_uniform(c->seed, (uint32_t)k, 3, PHILOX_STREAM_INIT) - 0.5);
            want[k] = (double)r[k] + plain[k];
        }
        tu_write(&rt, l->dx, r, n * sizeof(float));
        l->dx_accumulate = true;
        l->ops->backward(&vae.ctx, l, rows, false);
        l->dx_accumulate = false;
        tu_download(&rt, l->dx, got, n * sizeof(float));
        char what[160];
        snprintf(what, sizeof what, "case %s: %s (%s) backward adds into dx (%d x %d)", c->name,
                 l->name, l->ops->kind, rows, l->in);
        tu_compare(what, got, want, NULL, n, 1e-6, 1e-5);
        free(plain);
        free(got);
        free(r);
        free(want);
    }
    clReleaseMemObject(rec);
    clReleaseMemObject(kl);
    vae_release(&vae);
    free(params);
    free(x);
}

// Cases C and KC's model: 6x6 images through conv 4x4/2 (3 channels, to 3x3), conv 3x3/1 (2
// channels, padding at the edges) and dense 4, latent 2, the decoder their mirror.
#define CONV6                                                                                      \
    .cfg = {.in_dim = 36, .channels = 1, .height = 6, .width = 6, .latent = 2},                    \
    .encoder = "conv:3:4:2:1,conv:2:3:1:1,dense:4"

// Case C's batch and draws (case CS runs it again in slices).
#define CASE_C_RUN                                                                                 \
    .max_rows = 3, .rows = 3, .offset = 1, .seed = 41, .step = 4, .noise_scale = 1.0f,             \
    .beta = 1.0f, .dx_accumulate = true

// Case R's batch and draws (case RS runs it again in slices).
#define CASE_R_RUN                                                                                 \
    .max_rows = 3, .rows = 3, .offset = 1, .seed = 71, .step = 3, .noise_scale = 1.0f,             \
    .beta = 1.0f, .dx_accumulate = true

// Cases R and RM's model: 5x7 images through conv 3x3/1 (6 channels), res:6:3, dense 4, latent 3.
#define RES57                                                                                      \
    .cfg = {.in_dim = 35, .channels = 1, .height = 5, .width = 7, .latent = 3},                    \
    .encoder = "conv:6:3:1:1,res:6:3,dense:4"

// Cases SD and SM's model: 6x8 images through conv 3x3/1 and 4x4/2 (16 channels), dense 4.
#define DIRECT68                                                                                   \
    .cfg = {.in_dim = 48, .channels = 1, .height = 6, .width = 8, .latent = 3},                    \
    .encoder = "conv:16:3:1:1,conv:16:4:2:1,dense:4"

int main(void)
{
    tu_init("test_gradcheck");
    tu_open_device(&rt);
    // A: two hidden layers; B: one, with an odd latent size and a partial batch written at an
    // offset of the loss buffers; A0, B0: the same with z = mu (noise_scale 0).
    static const struct gc_case cases[] = {
        {.name = "A",
         .cfg = CFG2(12, 7, 5, 3),
         .max_rows = 4,
         .rows = 4,
         .seed = 11,
         .step = 5,
         .noise_scale = 1.0f,
         .beta = 0.7f},
        {.name = "B",
         .cfg = CFG1(11, 9, 5),
         .max_rows = 5,
         .rows = 3,
         .offset = 2,
         .seed = 23,
         .step = 9,
         .noise_scale = 1.0f,
         .beta = 0.7f},
        {.name = "A0",
         .cfg = CFG2(12, 7, 5, 3),
         .max_rows = 4,
         .rows = 4,
         .seed = 11,
         .step = 5,
         .noise_scale = 0.0f,
         .beta = 0.7f},
        {.name = "B0",
         .cfg = CFG1(11, 9, 5),
         .max_rows = 5,
         .rows = 3,
         .offset = 2,
         .seed = 23,
         .step = 9,
         .noise_scale = 0.0f,
         .beta = 1.3f},
        // M: a batch of 70 in micro-batches of 40 and 30, gradients summed over them, the bias
        // gradients of the 40-row pass as a two-part column reduction.
        {.name = "M",
         .cfg = CFG2(12, 7, 5, 3),
         .max_rows = 40,
         .rows = 70,
         .offset = 3,
         .seed = 31,
         .step = 2,
         .noise_scale = 1.0f,
         .beta = 0.9f,
         .micro = 40,
         .reduce_work = 1000},
        // C: convolutions on 6x6 images, the decoder their mirror: conv 4x4/2 (3 channels, to
        // 3x3), conv 3x3/1 (2 channels, odd, padding at the edges), dense 4; back through dense
        // 4, dense 18 reshaped to 2x3x3, deconv 3x3/1 to 3 channels, the output deconv 4x4/2.
        {.name = "C", CONV6, CASE_C_RUN},
        // CS: case C with every conv layer's batch in slices of one image (rt.slice_bytes 1, where
        // clvae's kernels run the products): im2col, col2im and the products beside them a slice
        // at a time.
        {.name = "CS", CONV6, CASE_C_RUN, .slice_bytes = 1},
        // K: case M's micro-batches (40 and 30 rows) with every weight gradient split-K, in up to
        // 16 parts of at least 4 rows and the rows left over as one more.
        {.name = "K",
         .cfg = CFG2(12, 7, 5, 3),
         .max_rows = 40,
         .rows = 70,
         .offset = 3,
         .seed = 37,
         .step = 2,
         .noise_scale = 1.0f,
         .beta = 0.9f,
         .micro = 40,
         .splitk_groups = 1000,
         .splitk_min_k = 4},
        // KC: case C's convolutions with split-K weight gradients: conv 4x4/2 sums 5 rows x 9
        // pixels, the output deconv 5 x 9 as well.
        {.name = "KC",
         CONV6,
         .max_rows = 5,
         .rows = 5,
         .offset = 1,
         .seed = 47,
         .step = 4,
         .noise_scale = 1.0f,
         .beta = 1.0f,
         .splitk_groups = 1000,
         .splitk_min_k = 4},
        // L: case A under the discretised logistic (a mean and a log-scale a pixel).
        {.name = "L",
         .cfg = {.in_dim = 12,
                 .n_encoder = 2,
                 .n_decoder = 2,
                 .encoder = {DENSE(7), DENSE(5)},
                 .decoder = {DENSE(5), DENSE(7)},
                 .latent = 3,
                 .likelihood = LIKELIHOOD_LOGISTIC},
         .max_rows = 4,
         .rows = 4,
         .offset = 1,
         .seed = 13,
         .step = 3,
         .noise_scale = 1.0f,
         .beta = 0.8f},
        // LC: 3-channel 4x4 images through conv 4x4/2 (3 channels) and dense 4 under the
        // discretised logistic: the output deconv gives 6 channels, each pixel's 3 means and 3
        // log-scales.
        {.name = "LC",
         .cfg = {.in_dim = 48,
                 .channels = 3,
                 .height = 4,
                 .width = 4,
                 .latent = 2,
                 .likelihood = LIKELIHOOD_LOGISTIC},
         .encoder = "conv:3:4:2:1,dense:4",
         .max_rows = 3,
         .rows = 3,
         .seed = 43,
         .step = 6,
         .noise_scale = 1.0f,
         .beta = 1.0f},
        // D: a deconv inside the encoder (4x4 images: conv 3x3/1 to 2 channels, deconv 4x4/2 to
        // 8x8, dense 4), mirrored as dense layers back to each image shape (dense 128 reshaped to
        // 2x8x8, dense 32 reshaped to 2x4x4), the output the conv's transpose.
        {.name = "D",
         .cfg = {.in_dim = 16, .channels = 1, .height = 4, .width = 4, .latent = 2},
         .encoder = "conv:2:3:1:1,deconv:2:4:2:1,dense:4",
         .max_rows = 2,
         .rows = 2,
         .offset = 1,
         .seed = 61,
         .step = 3,
         .noise_scale = 1.0f,
         .beta = 1.0f,
         .dx_accumulate = true},
        // R: a residual block on odd images (1x5x7: conv 3x3/1 to 6 channels, res:6:3, dense 4),
        // its mirror in the decoder (dense 210 reshaped to 6x5x7, res:6:3, the output deconv).
        {.name = "R", RES57, CASE_R_RUN},
        // RS: case R with every convolution's batch in slices of one image (the block's
        // forward reusing the start of its columns buffer for each slice, as a CPU runs it).
        {.name = "RS", RES57, CASE_R_RUN, .slice_bytes = 1},
        // RD: residual blocks of 8 channels, whose convolutions clvae's kernels run on the image
        // (no columns: clrt_conv_direct) where they run the products: 5x7 images through conv
        // 3x3/1 (8 channels), res:8:2, conv 3x3/2 (8 channels, to 3x4: its input gradient at
        // stride 2 on the image too), dense 4; back through dense 96 reshaped to 8x3x4, the
        // deconv (8 channels: its forward through columns, its backward on dy), res:8:2 and the
        // output deconv.
        {.name = "RD",
         .cfg = {.in_dim = 35, .channels = 1, .height = 5, .width = 7, .latent = 3},
         .encoder = "conv:8:3:1:1,res:8:2,conv:8:3:2:1,dense:4",
         CASE_R_RUN},
        // SD: a deconv whose forward clvae's kernels run on its input (16 channels out: no
        // columns) and a stride-2 conv's input gradient on the image, both reading their weights
        // with rows 16 floats further apart than their 256 (K K C = 4 x 4 x 16): 6x8 images
        // through conv 3x3/1 and 4x4/2 (16 channels each, to 3x4), dense 4; back through dense
        // 192 reshaped to 16x3x4, the deconv 4x4/2 to 16x6x8 and the output deconv.
        {.name = "SD", DIRECT68, CASE_R_RUN},
        // SM: case SD in micro-batches of 3 and 2 rows (the deconv's weight gradient on dy,
        // added to over the passes through its transpose).
        {.name = "SM",
         DIRECT68,
         .max_rows = 3,
         .rows = 5,
         .offset = 2,
         .seed = 101,
         .step = 5,
         .noise_scale = 1.0f,
         .beta = 0.9f,
         .micro = 3},
        // RM: case R in micro-batches of 3 and 2 rows (every gradient of the block added over the
        // passes).
        {.name = "RM",
         RES57,
         .max_rows = 3,
         .rows = 5,
         .offset = 2,
         .seed = 73,
         .step = 5,
         .noise_scale = 1.0f,
         .beta = 0.9f,
         .micro = 3},
        // U: upsampling by 3 in both halves, under the discretised logistic: 1x3x9 images through
        // conv 3x3/1 (2 channels), up:3 (to 2x9x27), conv 3x3/3 (3 channels, to 3x3x9), dense 4;
        // back through dense 6 reshaped to 2x1x3, up:3, res:2:2 (groups of one channel) and
        // res:2:1 (one group), the output deconv 3x3/1.
        {.name = "U",
         .cfg = {.in_dim = 27,
                 .channels = 1,
                 .height = 3,
                 .width = 9,
                 .latent = 2,
                 .likelihood = LIKELIHOOD_LOGISTIC},
         .encoder = "conv:2:3:1:1,up:3,conv:3:3:3:0,dense:4",
         .decoder = "dense:6,reshape:2x1x3,up:3,res:2:2,res:2:1",
         .max_rows = 3,
         .rows = 3,
         .seed = 79,
         .step = 2,
         .noise_scale = 1.0f,
         .beta = 1.0f,
         .dx_accumulate = true},
        // Y: case A conditional on 3 classes (--conditional): the one-hot class beside the
        // encoder's features at the Gaussian head and beside z at the decoder's first layer, in
        // micro-batches of 4 and 3 rows (the class rows' gradients summed over them).
        {.name = "Y",
         .cfg = {.in_dim = 12,
                 .n_encoder = 2,
                 .n_decoder = 2,
                 .encoder = {DENSE(7), DENSE(5)},
                 .decoder = {DENSE(5), DENSE(7)},
                 .latent = 3,
                 .classes = 3},
         .max_rows = 4,
         .rows = 7,
         .offset = 1,
         .seed = 17,
         .step = 3,
         .noise_scale = 1.0f,
         .beta = 0.8f,
         .micro = 4,
         .dx_accumulate = true},
        // YC: case C's convolutions conditional on 4 classes: the class beside the flattened
        // features at the head, and beside z at the mirrored decoder's dense layer.
        {.name = "YC",
         .cfg = {.in_dim = 36, .channels = 1, .height = 6, .width = 6, .latent = 2, .classes = 4},
         .encoder = "conv:3:4:2:1,conv:2:3:1:1,dense:4",
         .max_rows = 5,
         .rows = 5,
         .seed = 71,
         .step = 2,
         .noise_scale = 1.0f,
         .beta = 1.0f,
         .dx_accumulate = true},
        // P: micro-batches of 4 and 2 rows with the parameters and their gradients in parts of at
        // most 512 bytes, whole layers each (4 parts), as on a device whose largest allocation is
        // smaller than the model.
        {.name = "P",
         .cfg = CFG2(12, 7, 5, 3),
         .max_rows = 4,
         .rows = 6,
         .offset = 3,
         .seed = 53,
         .step = 2,
         .noise_scale = 1.0f,
         .beta = 0.9f,
         .micro = 4,
         .reduce_work = 64,
         .max_alloc = 512},
        // PC: case C's convolutions, one image, in parts of at most 1 KiB.
        {.name = "PC",
         CONV6,
         .max_rows = 1,
         .rows = 1,
         .seed = 59,
         .step = 4,
         .noise_scale = 1.0f,
         .beta = 1.0f,
         .reduce_work = 32,
         .max_alloc = 1024},
    };
    check_layer_lists(cases, sizeof cases / sizeof cases[0]);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(&cases[i]);
        if (cases[i].dx_accumulate)
            check_dx_accumulate(&cases[i]);
    }
    clrt_close(&rt);
    return tu_summary();
}
