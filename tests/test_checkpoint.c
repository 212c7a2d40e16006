// checkpoint tests: round trips bit for bit, the file as another safetensors reader sees it, atomic
// replacement (an interrupted save keeps the old file), and every malformed file refused cleanly.
// Run as `test_checkpoint DIR`, it instead writes DIR/small.safetensors and DIR/small_expected.bin
// for tests/test_checkpoint_numpy.py (see write_numpy_fixture).
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "error.h"
#include "ref_model.h"
#include "test_util.h"
#include "vae.h"

// An architecture and data shape to save and load.
struct arch {
    const char *name;
    int rows, cols;
    int n_hidden;
    int hidden[VAE_MAX_HIDDEN];
    int latent;
    int channels; // 0: 1
    enum likelihood_kind likelihood;
    int n_classes;
};

static const struct arch small_arch = {"6-5-4-3 (2x3 images)", 2, 3, 2, {5, 4}, 3, 1, 0, 0};
static const struct arch default_arch = {
    "784-128-10 (28x28 images)", 28, 28, 1, {128}, 10, 1, 0, 0};
// Colour, the discretised logistic (12 outputs), and class names that need JSON's escapes.
static const struct arch colour_arch = {
    "18-5-2 (2x3x3 images, logistic, 3 classes)", 2, 3, 1, {5}, 2, 3, LIKELIHOOD_LOGISTIC, 3};
static char *class_names[] = {"cat", "dog \"quoted\" \\ back", "\xc3\xa9t\xc3\xa9"};

// Parameters and moments for one architecture, in clvae's flat layout.
struct model {
    struct ckpt_meta meta;
    struct vae vae; // the layout only: no device buffers
    size_t n;
    float *params;
    float *state[OPTIMIZER_MAX_STATE]; // Adam's m and v, or NULL
};

// A whole file read into memory.
struct blob {
    uint8_t *bytes;
    size_t len;
};

// splitmix64: a reproducible stream of 64-bit values.
static uint64_t next_u64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

// Uniform in [-scale, scale).
static float next_uniform(uint64_t *state, float scale)
{
    double u = (double)(next_u64(state) >> 11) / 9007199254740992.0;
    return (float)((2 * u - 1) * scale);
}

// A float from its bits.
static float from_bits(uint32_t bits)
{
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

// Random values plus, when specials, bit patterns a lossy copy would change: -0, a subnormal,
// infinities and NaNs with payloads.
static void fill_random(float *a, size_t n, uint64_t seed, bool specials)
{
    uint64_t state = seed;
    for (size_t i = 0; i < n; i++) {
        a[i] = next_uniform(&state, 1.0f);
    }
    if (specials && n >= 6) {
        static const uint32_t bits[] = {0x80000000u, 0x00000001u, 0x7f800000u,
                                        0xff800000u, 0x7fc12345u, 0xffa00001u};
        for (size_t k = 0; k < sizeof bits / sizeof bits[0]; k++) {
            a[(k * 7919) % n] = from_bits(bits[k]);
        }
    }
}

// Metadata for arch, with values that test the printing: a seed past 2^63, a step past 2^32, an
// lr and beta that %g would round.
static struct ckpt_meta make_meta(const struct arch *a, bool optimizer)
{
    struct ckpt_meta m;
    memset(&m, 0, sizeof m);
    m.channels = a->channels ? a->channels : 1;
    m.cfg.in_dim = a->rows * a->cols * m.channels;
    m.cfg.likelihood = a->likelihood;
    m.background[0] = 10, m.background[1] = 200, m.background[2] = 255;
    m.test_split = 0.25;
    m.n_classes = a->n_classes;
    m.class_names = a->n_classes ? class_names : NULL;
    m.cfg.n_encoder = m.cfg.n_decoder = a->n_hidden;
    for (int i = 0; i < a->n_hidden; i++) {
        m.cfg.encoder[i] = (struct layer_spec){.kind = LAYER_DENSE, .units = a->hidden[i]};
        m.cfg.decoder[a->n_hidden - 1 - i] = m.cfg.encoder[i];
    }
    m.cfg.latent = a->latent;
    m.image_rows = a->rows;
    m.image_cols = a->cols;
    m.batch = 256;
    m.lr = 1e-3 / 3;
    m.beta = 0.1 + 1e-12;
    m.seed = UINT64_C(0xfedcba9876543210);
    m.epoch = 7;
    m.step = (INT64_C(1) << 33) + 12345;
    m.epoch_step = 17;
    if (optimizer) {
        m.optimizer = optimizer_defaults(optimizer_find("adam"));
    }
    return m;
}

// A model of arch with random parameters (and moments when optimizer).
static void make_model(struct model *md, const struct arch *a, bool optimizer, uint64_t seed)
{
    memset(md, 0, sizeof *md);
    md->meta = make_meta(a, optimizer);
    tu_expect(vae_layout(&md->vae, &md->meta.cfg, "test", NULL) == 0, "cannot lay out %s", a->name);
    md->n = md->vae.n_params;
    md->params = malloc(md->n * sizeof(float));
    fill_random(md->params, md->n, seed, true);
    if (optimizer) {
        for (int s = 0; s < 2; s++) {
            md->state[s] = malloc(md->n * sizeof(float));
            fill_random(md->state[s], md->n, seed + 1 + (uint64_t)s, true);
        }
    }
}

// Releases make_model's arrays.
static void free_model(struct model *md)
{
    free(md->params);
    free(md->state[0]);
    free(md->state[1]);
    memset(md, 0, sizeof *md);
}

// md's optimizer state for checkpoint_save: NULL without one.
static const float *const *state_of(const struct model *md)
{
    return md->state[0] ? (const float *const *)md->state : NULL;
}

// Saves md to path; the current check fails if the save does.
static int save_model(const char *path, const struct model *md)
{
    struct clvae_error err = {0};
    int rc = checkpoint_save(path, &md->meta, md->params, state_of(md), &err);
    tu_expect(rc == 0, "saving %s: %s", path, err.msg);
    return rc;
}

// The first index where a and b differ in their bits, or -1.
static long first_diff(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            return (long)i;
        }
    }
    return -1;
}

// Compares a loaded array with the saved one, bit for bit.
static void expect_same_floats(const char *what, const float *got, const float *want, size_t n)
{
    tu_expect(got != NULL, "%s: not loaded", what);
    if (!got) {
        return;
    }
    long d = first_diff(got, want, n);
    uint32_t g = 0, w = 0;
    if (d >= 0) {
        memcpy(&g, &got[d], 4);
        memcpy(&w, &want[d], 4);
    }
    tu_expect(d < 0, "%s[%ld]: bits %08" PRIx32 ", saved %08" PRIx32, what, d, g, w);
}

// Compares every metadata field.
static void expect_same_meta(const struct ckpt_meta *got, const struct ckpt_meta *want)
{
    tu_expect(got->cfg.in_dim == want->cfg.in_dim, "in_dim %d, saved %d", got->cfg.in_dim,
              want->cfg.in_dim);
    char got_layers[256], want_layers[256];
    vae_format_layers(got->cfg.encoder, got->cfg.n_encoder, got_layers, sizeof got_layers);
    vae_format_layers(want->cfg.encoder, want->cfg.n_encoder, want_layers, sizeof want_layers);
    tu_expect(strcmp(got_layers, want_layers) == 0, "encoder %s, saved %s", got_layers,
              want_layers);
    vae_format_layers(got->cfg.decoder, got->cfg.n_decoder, got_layers, sizeof got_layers);
    vae_format_layers(want->cfg.decoder, want->cfg.n_decoder, want_layers, sizeof want_layers);
    tu_expect(strcmp(got_layers, want_layers) == 0, "decoder %s, saved %s", got_layers,
              want_layers);
    tu_expect(vae_same_layers(&got->cfg, &want->cfg), "the architectures differ");
    tu_expect(got->cfg.latent == want->cfg.latent, "latent %d, saved %d", got->cfg.latent,
              want->cfg.latent);
    tu_expect(got->image_rows == want->image_rows && got->image_cols == want->image_cols,
              "image %dx%d, saved %dx%d", got->image_rows, got->image_cols, want->image_rows,
              want->image_cols);
    tu_expect(got->channels == want->channels, "channels %d, saved %d", got->channels,
              want->channels);
    tu_expect(got->cfg.likelihood == want->cfg.likelihood, "likelihood %s, saved %s",
              likelihood_name(got->cfg.likelihood), likelihood_name(want->cfg.likelihood));
    tu_expect(memcmp(got->background, want->background, 3) == 0,
              "background %d,%d,%d, saved %d,%d,%d", got->background[0], got->background[1],
              got->background[2], want->background[0], want->background[1], want->background[2]);
    tu_expect(got->test_split == want->test_split, "test_split %g, saved %g", got->test_split,
              want->test_split);
    tu_expect(got->n_classes == want->n_classes, "%d classes, saved %d", got->n_classes,
              want->n_classes);
    for (int c = 0; c < got->n_classes && c < want->n_classes; c++) {
        tu_expect(strcmp(got->class_names[c], want->class_names[c]) == 0,
                  "class %d '%s', saved '%s'", c, got->class_names[c], want->class_names[c]);
    }
    tu_expect(got->batch == want->batch, "batch %d, saved %d", got->batch, want->batch);
    tu_expect(got->lr == want->lr, "lr %.17g, saved %.17g", got->lr, want->lr);
    tu_expect(got->beta == want->beta, "beta %.17g, saved %.17g", got->beta, want->beta);
    tu_expect(got->seed == want->seed, "seed %" PRIu64 ", saved %" PRIu64, got->seed, want->seed);
    tu_expect(got->epoch == want->epoch, "epoch %d, saved %d", got->epoch, want->epoch);
    tu_expect(got->step == want->step, "step %" PRId64 ", saved %" PRId64, got->step, want->step);
    tu_expect(got->epoch_step == want->epoch_step, "epoch_step %d, saved %d", got->epoch_step,
              want->epoch_step);
    const struct optimizer_kind *gk = got->optimizer.kind, *wk = want->optimizer.kind;
    tu_expect(gk == wk, "optimizer %s, saved %s", gk ? gk->name : "none", wk ? wk->name : "none");
    for (int i = 0; gk && gk == wk && i < gk->n_hyper; i++) {
        tu_expect(got->optimizer.hyper[i] == want->optimizer.hyper[i], "%s %.17g, saved %.17g",
                  gk->hyper[i].name, got->optimizer.hyper[i], want->optimizer.hyper[i]);
    }
}

// Loads path and compares everything with md.
static void expect_loads_as(const char *path, const struct model *md)
{
    struct ckpt c;
    struct clvae_error err = {0};
    int rc = checkpoint_load(path, &c, &err);
    tu_expect(rc == 0, "loading %s: %s", path, err.msg);
    if (rc != 0) {
        return;
    }
    tu_expect(c.n_params == md->n, "n_params %zu, the layout has %zu", c.n_params, md->n);
    expect_same_meta(&c.meta, &md->meta);
    if (c.n_params == md->n) {
        expect_same_floats("params", c.params, md->params, md->n);
        if (md->state[0]) {
            expect_same_floats("adam_m", c.state[0], md->state[0], md->n);
            expect_same_floats("adam_v", c.state[1], md->state[1], md->n);
        } else {
            tu_expect(!c.state[0] && !c.state[1], "moments loaded from a checkpoint without them");
        }
    }
    checkpoint_free(&c);
}

// Reads a whole file; bytes NULL when it cannot.
static struct blob read_blob(const char *path)
{
    struct blob b = {NULL, 0};
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        return b;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) == 0) {
        b.bytes = malloc((size_t)st.st_size + 1);
        b.len = fread(b.bytes, 1, (size_t)st.st_size, fp);
    }
    fclose(fp);
    return b;
}

// Little-endian u64 at p.
static uint64_t get_u64_le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) {
        v |= (uint64_t)p[k] << (8 * k);
    }
    return v;
}

// Little-endian u64 into p.
static void put_u64_le(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++) {
        p[k] = (uint8_t)(v >> (8 * k));
    }
}

// A safetensors file as this test reads it on its own: length, header JSON, data section.
struct st_file {
    struct blob blob;
    uint64_t header_len;
    const char *header;
    const uint8_t *data;
    size_t data_len;
    cJSON *root;
};

// Reads and parses path; 0 on success, the current check failing otherwise.
static int st_open(const char *path, struct st_file *f)
{
    memset(f, 0, sizeof *f);
    f->blob = read_blob(path);
    tu_expect(f->blob.bytes && f->blob.len >= 8, "cannot read %s", path);
    if (!f->blob.bytes || f->blob.len < 8) {
        return -1;
    }
    f->header_len = get_u64_le(f->blob.bytes);
    tu_expect(f->header_len <= f->blob.len - 8, "header length %" PRIu64 " past the end",
              f->header_len);
    if (f->header_len > f->blob.len - 8) {
        return -1;
    }
    f->header = (const char *)f->blob.bytes + 8;
    f->data = f->blob.bytes + 8 + f->header_len;
    f->data_len = f->blob.len - 8 - (size_t)f->header_len;
    f->root = cJSON_ParseWithLength(f->header, (size_t)f->header_len);
    tu_expect(f->root != NULL, "%s: the header does not parse", path);
    return f->root ? 0 : -1;
}

// Releases st_open's memory.
static void st_close(struct st_file *f)
{
    cJSON_Delete(f->root);
    free(f->blob.bytes);
    memset(f, 0, sizeof *f);
}

// The bytes of tensor name and its shape (ndim entries of dims); NULL when absent or malformed.
static const uint8_t *st_tensor(const struct st_file *f, const char *name, int *ndim, int dims[2],
                                size_t *nbytes)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(f->root, name);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!cJSON_IsArray(shape) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        cJSON_GetArraySize(shape) > 2) {
        return NULL;
    }
    *ndim = cJSON_GetArraySize(shape);
    for (int k = 0; k < *ndim; k++) {
        dims[k] = cJSON_GetArrayItem(shape, k)->valueint;
    }
    double begin = cJSON_GetArrayItem(off, 0)->valuedouble;
    double end = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (begin < 0 || end < begin || end > (double)f->data_len) {
        return NULL;
    }
    *nbytes = (size_t)(end - begin);
    return f->data + (size_t)begin;
}

// A metadata string from the file, or "" when absent.
static const char *st_meta(const struct st_file *f, const char *key)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(f->root, "__metadata__");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

// One tensor the file should hold, computed here from the layout: weight (out, in) with element
// [o][i] = flat[weight + i * ld + col0 + o], or bias (out) with [o] = flat[bias + col0 + o].
struct expected {
    char name[64];
    int out, in; // in == 0: a bias
    size_t start, ld;
};

// The tensors of a model in the documented order, parameters only; returns how many.
static int expected_tensors(const struct vae *vae, struct expected *e)
{
    int n = 0;
    for (int k = 0; k < vae->n_layers; k++) {
        const struct layer *l = &vae->layer[k];
        int parts = l->gaussian_head ? 2 : 1;
        int out = l->out / parts;
        for (int p = 0; p < parts; p++) {
            const char *base = !l->gaussian_head ? l->name : p == 0 ? "mean" : "logvar";
            size_t col0 = (size_t)p * (size_t)out;
            e[n] = (struct expected){
                .out = out, .in = l->in, .start = l->weight + col0, .ld = (size_t)l->out};
            snprintf(e[n].name, sizeof e[n].name, "%s.weight", base);
            n++;
            e[n] = (struct expected){.out = out, .in = 0, .start = l->bias + col0, .ld = 0};
            snprintf(e[n].name, sizeof e[n].name, "%s.bias", base);
            n++;
        }
    }
    return n;
}

// Compares a tensor's bytes in the file with its expected values from flat; returns elements seen.
static size_t expect_tensor_bytes(const struct st_file *f, const char *name,
                                  const struct expected *e, const float *flat)
{
    int ndim = 0, dims[2] = {0, 0};
    size_t nbytes = 0;
    const uint8_t *bytes = st_tensor(f, name, &ndim, dims, &nbytes);
    tu_expect(bytes != NULL, "%s: missing or malformed in the file", name);
    if (!bytes) {
        return 0;
    }
    bool weight = e->in > 0;
    size_t count = (size_t)e->out * (size_t)(weight ? e->in : 1);
    tu_expect(ndim == (weight ? 2 : 1) && dims[0] == e->out && (!weight || dims[1] == e->in),
              "%s: shape [%d,%d] (ndim %d), expected [%d,%d]", name, dims[0], dims[1], ndim, e->out,
              e->in);
    tu_expect(nbytes == 4 * count, "%s: %zu bytes, expected %zu", name, nbytes, 4 * count);
    if (tu_failing()) {
        return 0;
    }
    for (size_t o = 0; o < (size_t)e->out; o++) {
        for (size_t i = 0; i < (weight ? (size_t)e->in : 1); i++) {
            float want = flat[e->start + i * e->ld + o];
            const uint8_t *p = bytes + 4 * (o * (weight ? (size_t)e->in : 1) + i);
            uint32_t bits =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            float got = from_bits(bits);
            if (memcmp(&got, &want, 4) != 0) {
                tu_expect(0, "%s[%zu][%zu]: %g in the file, the flat layout's transpose has %g",
                          name, o, i, (double)got, (double)want);
                return 0;
            }
        }
    }
    return count;
}

// Saves and loads arch with and without moments: every float and metadata field comes back.
static void test_round_trip(const struct arch *a, bool optimizer)
{
    char path[TU_PATH_MAX];
    struct model md;
    make_model(&md, a, optimizer, 1000 + (uint64_t)optimizer);
    tu_in_tmp(path, "round_trip.safetensors");
    tu_begin();
    if (save_model(path, &md) == 0) {
        expect_loads_as(path, &md);
    }
    tu_note("%zu parameters%s, bit-exact", md.n, optimizer ? " and both moments" : "");
    tu_end("round trip %s %s Adam moments", a->name, optimizer ? "with" : "without");
    unlink(path);
    free_model(&md);
}

// Reads the file with this test's own reader: the header's form, the metadata's strings, and every
// tensor's bytes as the (out, in) transpose of the flat layout, back to back in header order.
static void test_file_layout(const struct arch *a)
{
    char path[TU_PATH_MAX];
    struct model md;
    make_model(&md, a, true, 2000);
    tu_in_tmp(path, "layout.safetensors");
    tu_begin();
    struct st_file f;
    if (save_model(path, &md) == 0 && st_open(path, &f) == 0) {
        tu_expect(f.header_len % 8 == 0, "header length %" PRIu64 " is not a multiple of 8",
                  f.header_len);
        const char *last = f.header + f.header_len - 1;
        while (last > f.header && *last == ' ') {
            last--;
        }
        tu_expect(*last == '}', "the header is not JSON padded with spaces");
        char encoder[128] = "", decoder[128] = "";
        for (int i = 0; i < a->n_hidden; i++) {
            size_t used = strlen(encoder);
            snprintf(encoder + used, sizeof encoder - used, "%sdense:%d", i ? "," : "",
                     a->hidden[i]);
            used = strlen(decoder);
            snprintf(decoder + used, sizeof decoder - used, "%sdense:%d", i ? "," : "",
                     a->hidden[a->n_hidden - 1 - i]);
        }
        char lr[64], seed[32];
        snprintf(lr, sizeof lr, "%.17g", md.meta.lr);
        snprintf(seed, sizeof seed, "%" PRIu64, md.meta.seed);
        const char *pairs[][2] = {{"format", "clvae"},
                                  {"format_version", "3"},
                                  {"channels", "1"},
                                  {"likelihood", "bernoulli"},
                                  {"background", "10,200,255"},
                                  {"test_split", "0.25"},
                                  {"encoder", encoder},
                                  {"decoder", decoder},
                                  {"lr", lr},
                                  {"seed", seed},
                                  {"step", "8589946937"},
                                  {"optimizer", "adam"},
                                  {"adam_beta1", "0.9"},
                                  {"adam_beta2", "0.999"},
                                  {"adam_eps", "1e-08"},
                                  {"layout", "weight (out, in) as torch.nn.Linear"}};
        for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
            tu_expect(strcmp(st_meta(&f, pairs[k][0]), pairs[k][1]) == 0,
                      "__metadata__ %s is '%s', expected '%s'", pairs[k][0],
                      st_meta(&f, pairs[k][0]), pairs[k][1]);
        }

        struct expected e[2 * (VAE_MAX_LAYERS + 1)];
        int n = expected_tensors(&md.vae, e);
        static const char *const prefix[] = {"", "optimizer.m.", "optimizer.v."};
        const float *flat[] = {md.params, md.state[0], md.state[1]};
        size_t seen = 0, mean_weight = 0;
        double offset = 0;
        int entries = 0;
        for (int a3 = 0; a3 < 3; a3++) {
            for (int k = 0; k < n; k++) {
                char name[96];
                if (snprintf(name, sizeof name, "%s%s", prefix[a3], e[k].name) >=
                    (int)sizeof name) {
                    tu_expect(0, "tensor name %s%s too long", prefix[a3], e[k].name);
                }
                size_t got = expect_tensor_bytes(&f, name, &e[k], flat[a3]);
                seen += got;
                if (a3 == 0 && strcmp(e[k].name, "mean.weight") == 0) {
                    mean_weight = got;
                }
                // Back to back in the documented order.
                const cJSON *off = cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(f.root, name), "data_offsets");
                tu_expect(off && cJSON_GetArrayItem(off, 0)->valuedouble == offset,
                          "%s does not start where the tensor before it ends (%.0f)", name, offset);
                offset += 4.0 * (double)got;
                entries++;
            }
        }
        tu_expect(cJSON_GetArraySize(f.root) == entries + 1,
                  "the header has %d entries, expected %d", cJSON_GetArraySize(f.root),
                  entries + 1);
        tu_expect(offset == (double)f.data_len, "tensors take %.0f bytes, the data section %zu",
                  offset, f.data_len);
        tu_note("%d tensors, %zu floats as (out, in); mean.weight's %zu match", entries, seen,
                mean_weight);
        st_close(&f);
    }
    tu_end("file layout %s: header, metadata strings, transposed tensors", a->name);
    unlink(path);
    free_model(&md);
}

// Saving over an existing checkpoint replaces it whole.
static void test_overwrite(void)
{
    char path[TU_PATH_MAX];
    struct model old, fresh;
    make_model(&old, &small_arch, true, 3000);
    make_model(&fresh, &small_arch, false, 3100);
    fresh.meta.epoch = 8;
    tu_in_tmp(path, "overwrite.safetensors");
    tu_begin();
    if (save_model(path, &old) == 0 && save_model(path, &fresh) == 0) {
        expect_loads_as(path, &fresh);
    }
    tu_expect_no_tmp(tu_tmp_dir);
    tu_end("saving over an existing checkpoint replaces it");
    unlink(path);
    free_model(&old);
    free_model(&fresh);
}

// Checks a failed save: status, message naming path, nothing at path.
static void expect_save_error(int rc, const struct clvae_error *err, int status, const char *path)
{
    tu_expect(rc == -1, "the save succeeded");
    tu_expect(err->status == status, "status %d, expected %d (%s)", err->status, status, err->msg);
    tu_expect(strncmp(err->msg, path, strlen(path)) == 0, "message \"%s\" does not start with %s",
              err->msg, path);
    tu_note("%s", err->msg);
}

// Saves into a directory that does not exist, or onto a directory: status 4, nothing left.
static void test_bad_paths(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX];
    struct model md;
    make_model(&md, &small_arch, false, 4000);
    tu_in_tmp(dir, "missing");
    tu_join(path, dir, "c.safetensors");
    tu_begin();
    struct clvae_error err = {0};
    int rc = checkpoint_save(path, &md.meta, md.params, NULL, &err);
    expect_save_error(rc, &err, CLVAE_EXIT_OUTPUT, path);
    tu_expect(!tu_exists(dir) && !tu_exists(path), "%s was created", dir);
    tu_expect_no_tmp(tu_tmp_dir);
    tu_end("save into a missing directory fails with status 4");

    tu_in_tmp(dir, "a_directory");
    tu_begin();
    tu_expect(mkdir(dir, 0700) == 0, "mkdir %s: %s", dir, strerror(errno));
    err = (struct clvae_error){0};
    rc = checkpoint_save(dir, &md.meta, md.params, NULL, &err);
    expect_save_error(rc, &err, CLVAE_EXIT_OUTPUT, dir);
    struct stat st;
    tu_expect(stat(dir, &st) == 0 && S_ISDIR(st.st_mode), "%s is no longer a directory", dir);
    tu_expect_no_tmp(tu_tmp_dir);
    tu_end("save onto a directory fails with status 4");
    rmdir(dir);
    free_model(&md);
}

// Arguments that are the caller's bug: status 1, nothing written.
static void test_invalid_save(void)
{
    char path[TU_PATH_MAX];
    struct model md;
    make_model(&md, &small_arch, true, 4500);
    tu_in_tmp(path, "invalid.safetensors");
    struct ckpt_meta bad_meta[5];
    const char *what[5] = {"latent 0", "in_dim not rows x cols", "9 encoder layers", "lr 0",
                           "adam_m without adam_v"};
    for (int k = 0; k < 5; k++) {
        bad_meta[k] = md.meta;
    }
    bad_meta[0].cfg.latent = 0;
    bad_meta[1].cfg.in_dim = 7;
    bad_meta[2].cfg.n_encoder = 9;
    bad_meta[3].lr = 0;
    for (int k = 0; k < 5; k++) {
        tu_begin();
        struct clvae_error err = {0};
        const float *m_only[OPTIMIZER_MAX_STATE] = {md.state[0], NULL};
        int rc =
            checkpoint_save(path, &bad_meta[k], md.params, k == 4 ? m_only : state_of(&md), &err);
        expect_save_error(rc, &err, CLVAE_EXIT_FAILURE, path);
        tu_expect(!tu_exists(path), "%s was written", path);
        tu_expect_no_tmp(tu_tmp_dir);
        tu_end("save refuses %s with status 1", what[k]);
    }
    free_model(&md);
}

// The child of test_interrupted_save: saves under a small RLIMIT_FSIZE, reports through fd.
static void interrupted_child(const char *path, const struct model *md, rlim_t limit, int fd)
{
    struct rlimit small = {limit, limit};
    struct rlimit cur;
    if (getrlimit(RLIMIT_FSIZE, &cur) == 0 && cur.rlim_max != RLIM_INFINITY &&
        cur.rlim_max < limit) {
        small.rlim_max = cur.rlim_max;
    }
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &small) != 0) {
        _exit(20);
    }
    struct clvae_error err = {0};
    int rc = checkpoint_save(path, &md->meta, md->params, state_of(md), &err);
    size_t len = strlen(err.msg);
    if (write(fd, err.msg, len) != (ssize_t)len) {
        _exit(21);
    }
    _exit(rc == 0 ? 10 : err.status == CLVAE_EXIT_OUTPUT ? 0 : 11);
}

// A save that fails part-way (a full disk, simulated in a child with RLIMIT_FSIZE) leaves the
// old checkpoint whole and no temporary file.
static void test_interrupted_save(rlim_t limit)
{
    char path[TU_PATH_MAX];
    struct model old, fresh;
    make_model(&old, &default_arch, true, 5000);
    make_model(&fresh, &default_arch, true, 5100);
    tu_in_tmp(path, "interrupted.safetensors");
    tu_begin();
    int pipe_fd[2];
    if (save_model(path, &old) == 0 && pipe(pipe_fd) == 0) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(pipe_fd[0]);
            interrupted_child(path, &fresh, limit, pipe_fd[1]);
        }
        close(pipe_fd[1]);
        char msg[CLVAE_ERROR_MAX] = "";
        ssize_t got = read(pipe_fd[0], msg, sizeof msg - 1);
        msg[got > 0 ? got : 0] = '\0';
        close(pipe_fd[0]);
        int status = 0;
        tu_expect(pid > 0 && waitpid(pid, &status, 0) == pid, "fork or wait failed");
        tu_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the child's save: exit %d (10: it succeeded, 11: wrong status, 2x: setup), "
                  "signal %d; \"%s\"",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0, msg);
        tu_expect(strncmp(msg, path, strlen(path)) == 0, "message \"%s\" does not name %s", msg,
                  path);
        tu_note("%s", msg);
        expect_loads_as(path, &old);
        tu_expect_no_tmp(tu_tmp_dir);
    }
    tu_end("save interrupted at %lu bytes (RLIMIT_FSIZE) keeps the old checkpoint bit-exact",
           (unsigned long)limit);
    unlink(path);
    free_model(&old);
    free_model(&fresh);
}

// A good small file's parts, for the corrupt cases to edit.
struct good_file {
    cJSON *root;
    uint8_t *data;
    size_t data_len;
};

// Writes header JSON text (padded with spaces to a multiple of 8) and data as a checkpoint.
static int write_checkpoint(const char *path, const char *json, const uint8_t *data,
                            size_t data_len)
{
    size_t json_len = strlen(json), header_len = (json_len + 7) / 8 * 8;
    size_t total = 8 + header_len + data_len;
    uint8_t *bytes = malloc(total);
    put_u64_le(bytes, header_len);
    memcpy(bytes + 8, json, json_len);
    memset(bytes + 8 + json_len, ' ', header_len - json_len);
    if (data_len) {
        memcpy(bytes + 8 + header_len, data, data_len);
    }
    int rc = tu_write_file(path, bytes, total);
    free(bytes);
    return rc;
}

// Writes root re-emitted with data; 0 on success.
static int write_json_checkpoint(const char *path, const cJSON *root, const uint8_t *data,
                                 size_t data_len)
{
    char *json = cJSON_PrintUnformatted(root);
    int rc = json ? write_checkpoint(path, json, data, data_len) : -1;
    cJSON_free(json);
    return rc;
}

// Reads a good checkpoint's header and data for editing.
static int open_good(const char *path, struct good_file *g)
{
    struct st_file f;
    memset(g, 0, sizeof *g);
    if (st_open(path, &f) != 0) {
        return -1;
    }
    g->root = cJSON_Duplicate(f.root, true);
    g->data_len = f.data_len;
    g->data = malloc(f.data_len + 64);
    memcpy(g->data, f.data, f.data_len);
    st_close(&f);
    return 0;
}

// Releases open_good's copies.
static void close_good(struct good_file *g)
{
    cJSON_Delete(g->root);
    free(g->data);
    memset(g, 0, sizeof *g);
}

// Loads path expecting a refusal: status 3, a message "<path>: ..." holding word, *out zeroed.
static void expect_refused(const char *path, const char *word)
{
    struct ckpt c;
    memset(&c, 0xa5, sizeof c);
    struct clvae_error err = {0};
    int rc = checkpoint_load(path, &c, &err);
    size_t len = strlen(path);
    tu_expect(rc == -1, "the load succeeded");
    tu_expect(err.status == CLVAE_EXIT_DATA, "status %d, expected %d (%s)", err.status,
              CLVAE_EXIT_DATA, err.msg);
    tu_expect(strncmp(err.msg, path, len) == 0 && err.msg[len] == ':' && err.msg[len + 1] == ' ',
              "message \"%s\" does not start with \"%s: \"", err.msg, path);
    tu_expect(strstr(err.msg, word) != NULL, "message \"%s\" lacks \"%s\"", err.msg, word);
    static const struct ckpt zero;
    tu_expect(memcmp(&c, &zero, sizeof c) == 0, "*out is not zeroed after the failure");
    checkpoint_free(&c);
    if (strncmp(err.msg, path, len) == 0 && err.msg[len] == ':') {
        tu_note("%s", err.msg + len + 2);
    }
}

// One header edit: in the object named target (the root when NULL), key set to the JSON value,
// or deleted when value is NULL; the load must then fail with a message holding word.
struct json_edit {
    const char *target, *key, *value, *word;
};

// Applies e to root; false when its target is not there or its value is not JSON.
static bool apply_edit(cJSON *root, const struct json_edit *e)
{
    cJSON *obj = e->target ? cJSON_GetObjectItemCaseSensitive(root, e->target) : root;
    if (!cJSON_IsObject(obj)) {
        return false;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, e->key);
    if (e->value) {
        cJSON *v = cJSON_Parse(e->value);
        if (!v) {
            return false;
        }
        cJSON_AddItemToObject(obj, e->key, v);
    }
    return true;
}

// Every header edit the loader must refuse, on a small checkpoint with Adam moments.
static const struct json_edit json_edits[] = {
    {NULL, "__metadata__", NULL, "__metadata__"},
    {NULL, "__metadata__", "[1,2]", "__metadata__ is not an object"},
    {"__metadata__", "format", "\"pytorch\"", "format"},
    {"__metadata__", "format", "1", "not a string"},
    {"__metadata__", "format_version", "\"7\"", "format version 7, this clvae reads 1"},
    {"__metadata__", "format_version", "\"1.0\"", "not an integer"},
    {"__metadata__", "format_version", "\"99999999999999999999999\"", "out of range"},
    {"__metadata__", "layout", "\"weight (in, out)\"", "layout"},
    {"__metadata__", "in_dim", "\"7\"", "image_rows x image_cols"},
    {"__metadata__", "in_dim", "\"six\"", "not an integer"},
    {"__metadata__", "in_dim", "\" 6\"", "not an integer"},
    {"__metadata__", "in_dim", "\"-6\"", "out of range"},
    {"__metadata__", "image_rows", "\"0\"", "out of range"},
    {"__metadata__", "image_cols", "\"3000000000\"", "out of range"},
    {"__metadata__", "encoder", "\"dense:5,,dense:4\"", "comma-separated"},
    {"__metadata__", "encoder", "\"\"", "comma-separated"},
    {"__metadata__", "encoder", "\"dense:5,dense:4,\"", "comma-separated"},
    {"__metadata__", "encoder", "\"dense:5,dense:0\"", "out of range"},
    {"__metadata__", "encoder", "\"dense:5,dense:99999999999999999999\"", "out of range"},
    {"__metadata__", "encoder", "\"dense:5,dense\"", "not a layer"},
    {"__metadata__", "encoder", "\"5,4\"", "not a layer"},
    {"__metadata__", "encoder", "\"dense:5,dense:5\"", "the architecture needs [5,5]"},
    {"__metadata__", "decoder",
     "\"dense:1,dense:1,dense:1,dense:1,dense:1,dense:1,dense:1,dense:1,"
     "dense:1\"",
     "at most 8 layers"},
    {"__metadata__", "decoder", "\"dense:4\"", "decoder.1.weight"},
    {"__metadata__", "latent", "\"0\"", "out of range"},
    {"__metadata__", "latent", "\"16777217\"", "out of range"},
    {"__metadata__", "batch", "\"0\"", "out of range"},
    {"__metadata__", "lr", "\"nan\"", "not a finite number"},
    {"__metadata__", "lr", "\"0\"", "out of range"},
    {"__metadata__", "lr", "\"1e-3x\"", "not a finite number"},
    {"__metadata__", "beta", "\"-1\"", "out of range"},
    {"__metadata__", "beta", "\"inf\"", "not a finite number"},
    {"__metadata__", "seed", "\"-1\"", "not an integer"},
    {"__metadata__", "seed", "\"18446744073709551616\"", "not an integer"},
    {"__metadata__", "epoch", "\"-1\"", "out of range"},
    {"__metadata__", "step", "\"x\"", "not an integer"},
    {"__metadata__", "step", "\"-5\"", "out of range"},
    {"__metadata__", "epoch_step", "\"1.5\"", "not an integer"},
    {"__metadata__", "optimizer", "\"sgd\"", "optimizer"},
    {"__metadata__", "channels", "\"2\"", "channels 2"},
    {"__metadata__", "channels", "\"4\"", "out of range"},
    {"__metadata__", "channels", "\"3\"", "image_rows x image_cols x channels"},
    {"__metadata__", "channels", NULL, "\"channels\" is missing"},
    {"__metadata__", "likelihood", "\"gaussian\"", "not a likelihood"},
    {"__metadata__", "likelihood", "\"logistic\"", "the architecture needs [12,5]"},
    {"__metadata__", "background", "\"1,2\"", "not R,G,B"},
    {"__metadata__", "background", "\"256,0,0\"", "0 to 255"},
    {"__metadata__", "background", "\"-1,0,0\"", "not R,G,B"},
    {"__metadata__", "test_split", "\"1.5\"", "out of range"},
    {"__metadata__", "test_split", "\"0\"", "out of range"},
    {"__metadata__", "classes", "\"[1]\"", "not a name"},
    {"__metadata__", "classes", "\"[\\\"\\\"]\"", "not a name"},
    {"__metadata__", "classes", "\"cat\"", "not a JSON array"},
    {"__metadata__", "classes", "\"[]\"", "not a JSON array"},
    {"__metadata__", "optimizer", "\"none\"", "unexpected tensor 'optimizer."},
    {"__metadata__", "adam_beta1", "\"0.8\"", "adam_beta1"},
    {"__metadata__", "adam_eps", "\"1e-7\"", "adam_eps"},
    {"__metadata__", "optimizer", "\"adamw\"", "\"adamw_beta1\" is missing"},
    {NULL, "mean.bias", NULL, "tensor 'mean.bias' is missing"},
    {NULL, "optimizer.v.output.weight", NULL, "tensor 'optimizer.v.output.weight' is missing"},
    {NULL, "extra.weight", "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
     "unexpected tensor 'extra.weight'"},
    {NULL, "mean.weight", "[]", "not an object"},
    {"mean.weight", "dtype", "\"F16\"", "dtype"},
    {"mean.weight", "dtype", NULL, "dtype"},
    {"mean.weight", "dtype", "32", "dtype"},
    {"mean.weight", "shape", "[4,3]", "shape [4,3], the architecture needs [3,4]"},
    {"mean.weight", "shape", "[3,4,1]", "shape"},
    {"mean.weight", "shape", "[12]", "shape"},
    {"mean.weight", "shape", "[3.5,4]", "shape"},
    {"mean.weight", "shape", "\"3,4\"", "shape"},
    {"mean.weight", "shape", NULL, "shape"},
    {"mean.bias", "shape", "[]", "shape"},
    {"mean.weight", "data_offsets", NULL, "data_offsets"},
    {"mean.weight", "data_offsets", "[0]", "data_offsets"},
    {"mean.weight", "data_offsets", "[0,48,96]", "data_offsets"},
    {"mean.weight", "data_offsets", "[\"0\",\"48\"]", "data_offsets"},
    {"mean.weight", "data_offsets", "[-48,0]", "data_offsets"},
    {"mean.weight", "data_offsets", "[0.5,48.5]", "data_offsets"},
    {"mean.weight", "data_offsets", "[1e300,1e300]", "data_offsets"},
    {"mean.weight", "data_offsets", "[48,0]", "end before begin"},
    {"mean.weight", "data_offsets", "[0,44]", "shape needs 48"},
    {"mean.weight", "data_offsets", "[1000000,1000048]", "outside the data section"},
    {"mean.weight", "data_offsets", "[0,48]", "overlap"},
};

// Names of every metadata field: removing any one must be refused.
static const char *const meta_fields[] = {
    "format",  "format_version", "layout",    "in_dim",     "image_rows", "image_cols", "encoder",
    "decoder", "latent",         "batch",     "lr",         "beta",       "seed",       "epoch",
    "step",    "epoch_step",     "optimizer", "adam_beta1", "adam_beta2", "adam_eps",
};

// Each header edit on a good file, and each missing metadata field.
static void test_corrupt_headers(const char *good_path)
{
    char path[TU_PATH_MAX];
    tu_in_tmp(path, "corrupt.safetensors");
    size_t n_edits = sizeof json_edits / sizeof json_edits[0];
    size_t n_fields = sizeof meta_fields / sizeof meta_fields[0];
    for (size_t k = 0; k < n_edits + n_fields; k++) {
        struct json_edit missing = {"__metadata__", NULL, NULL, NULL};
        const struct json_edit *e = k < n_edits ? &json_edits[k] : &missing;
        char word[96];
        if (k >= n_edits) {
            missing.key = meta_fields[k - n_edits];
            snprintf(word, sizeof word, "\"%s\" is missing", missing.key);
            missing.word = word;
        }
        struct good_file g;
        tu_begin();
        if (open_good(good_path, &g) == 0) {
            tu_expect(apply_edit(g.root, e), "the edit does not apply");
            tu_expect(write_json_checkpoint(path, g.root, g.data, g.data_len) == 0,
                      "cannot write %s", path);
            expect_refused(path, e->word);
            close_good(&g);
        }
        tu_end("refuses %s%s%s %s", e->target ? e->target : "", e->target ? "." : "", e->key,
               e->value ? e->value : "removed");
    }
    unlink(path);
}

// The good file with edits[0 .. n) applied, written to path; -1 (a failed expectation of the
// current check) when it cannot be.
static int write_edited(const char *good_path, const struct json_edit *edits, size_t n,
                        const char *path)
{
    struct good_file g;
    if (open_good(good_path, &g) != 0) {
        return -1;
    }
    bool ok = true;
    for (size_t e = 0; e < n; e++) {
        ok = ok && apply_edit(g.root, &edits[e]);
        tu_expect(ok, "edit %zu does not apply", e);
    }
    ok = ok && write_json_checkpoint(path, g.root, g.data, g.data_len) == 0;
    tu_expect(ok, "cannot write %s", path);
    close_good(&g);
    return ok ? 0 : -1;
}

// md as a checkpoint of format 1 or 2 loads: those versions knew nothing of colour, likelihoods
// or folders, so it takes their defaults (one channel, Bernoulli, white, a 0.1 split).
static struct model old_format(const struct model *md)
{
    struct model old = *md;
    old.meta.background[0] = old.meta.background[1] = old.meta.background[2] = 255;
    old.meta.test_split = 0.1;
    return old;
}

// Format version 1 (clvae before the layer list) named the architecture by "hidden" widths, the
// decoder mirroring them: such a file loads as the same model; its bad "hidden" is refused.
static void test_version1(const char *good_path, const struct model *md)
{
    char path[TU_PATH_MAX];
    tu_in_tmp(path, "version1.safetensors");
    struct model v1 = old_format(md);
    static const char *const hidden[] = {"\"5,4\"", "\"5,,4\"", "\"1,1,1,1,1,1,1,1,1\"", "\"5,0\""};
    static const char *const words[] = {NULL, "comma-separated", "too many hidden layers",
                                        "out of range"};
    for (size_t k = 0; k < sizeof hidden / sizeof hidden[0]; k++) {
        tu_begin();
        const struct json_edit edits[] = {
            {"__metadata__", "format_version", "\"1\"", NULL},
            {"__metadata__", "encoder", NULL, NULL},
            {"__metadata__", "decoder", NULL, NULL},
            {"__metadata__", "hidden", hidden[k], NULL},
            {"__metadata__", "channels", NULL, NULL},
            {"__metadata__", "likelihood", NULL, NULL},
            {"__metadata__", "background", NULL, NULL},
            {"__metadata__", "test_split", NULL, NULL},
        };
        if (write_edited(good_path, edits, sizeof edits / sizeof edits[0], path) == 0) {
            if (words[k]) {
                expect_refused(path, words[k]);
            } else {
                expect_loads_as(path, &v1);
            }
        }
        tu_end("format version 1 with hidden %s: %s", hidden[k], words[k] ? "refused" : "loads");
    }
    unlink(path);
}

// A format version 2 file (the layers, no channels, likelihood or folder keys) loads as one
// channel under the Bernoulli likelihood, white background, a 0.1 split.
static void test_version2(const char *good_path, const struct model *md)
{
    char path[TU_PATH_MAX];
    tu_in_tmp(path, "version2.safetensors");
    struct model v2 = old_format(md);
    tu_begin();
    const struct json_edit edits[] = {
        {"__metadata__", "format_version", "\"2\"", NULL},
        {"__metadata__", "channels", NULL, NULL},
        {"__metadata__", "likelihood", NULL, NULL},
        {"__metadata__", "background", NULL, NULL},
        {"__metadata__", "test_split", NULL, NULL},
    };
    if (write_edited(good_path, edits, sizeof edits / sizeof edits[0], path) == 0) {
        expect_loads_as(path, &v2);
    }
    tu_end("format version 2 loads: one channel, Bernoulli, white, split 0.1");
    unlink(path);
}

// ---- Crafted files: every header written here by hand, not by checkpoint_save, so that a shape
// can be what no architecture implies and a product of sizes can pass 2^64. The layer lists
// allow 65536 channels and kernels, so a conv weight (OC, C, K, K) reaches 65536^4 = 2^64.

// A tensor as a crafted file lists it.
struct raw_tensor {
    const char *name;
    int ndim;
    uint64_t shape[4];
};

#define RAW_MAX_TENSORS 16

// A crafted file's architecture (latent 2, one channel) and its tensors in header order.
struct raw_arch {
    const char *what;
    int rows, cols;
    const char *encoder, *decoder;
    const char *hidden; // the same as format version 1's dense widths, or NULL
    int n;
    struct raw_tensor t[RAW_MAX_TENSORS];
    const char *refusal; // what refusing an overflowing one names: the limit passed
};

// The product of a shape as a writer in 64 bits computes it: modulo 2^64.
static uint64_t wrapped_count(const struct raw_tensor *t)
{
    uint64_t count = 1;
    for (int d = 0; d < t->ndim; d++) {
        count *= t->shape[d];
    }
    return count;
}

// The largest data section a crafted file is written with; a larger one is left out (the file
// then ends after its header) and must be refused all the same.
#define RAW_MAX_DATA ((uint64_t)32 << 20)

// Writes a checkpoint of format version (1, 2 or 3, each with the metadata keys its format has)
// for a, with Adam's moments of every tensor when adam. Every tensor named as a replacement's
// name takes that one's shape instead. Each data_offsets holds 4 x the shape's product modulo
// 2^64, as a 64-bit writer would put it (a tensor of 2^63 elements takes 0 bytes), and the data
// section is that many zero bytes. 0, or -1 (a failed expectation) when it cannot be written.
static int write_raw(const char *path, const struct raw_arch *a, int version, bool adam,
                     const struct raw_tensor *replacement)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(root, "__metadata__");
    char text[64];
    snprintf(text, sizeof text, "%d", version);
    cJSON_AddStringToObject(md, "format", "clvae");
    cJSON_AddStringToObject(md, "format_version", text);
    cJSON_AddStringToObject(md, "layout", "weight (out, in) as torch.nn.Linear");
    snprintf(text, sizeof text, "%d", a->rows * a->cols);
    cJSON_AddStringToObject(md, "in_dim", text);
    snprintf(text, sizeof text, "%d", a->rows);
    cJSON_AddStringToObject(md, "image_rows", text);
    snprintf(text, sizeof text, "%d", a->cols);
    cJSON_AddStringToObject(md, "image_cols", text);
    if (version == 1) {
        cJSON_AddStringToObject(md, "hidden", a->hidden);
    } else {
        cJSON_AddStringToObject(md, "encoder", a->encoder);
        cJSON_AddStringToObject(md, "decoder", a->decoder);
    }
    if (version >= 3) {
        cJSON_AddStringToObject(md, "channels", "1");
        cJSON_AddStringToObject(md, "likelihood", "bernoulli");
        cJSON_AddStringToObject(md, "background", "255,255,255");
        cJSON_AddStringToObject(md, "test_split", "0.1");
    }
    static const char *const fixed[][2] = {{"latent", "2"}, {"batch", "4"},     {"lr", "0.001"},
                                           {"beta", "1"},   {"seed", "7"},      {"epoch", "1"},
                                           {"step", "3"},   {"epoch_step", "0"}};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) {
        cJSON_AddStringToObject(md, fixed[k][0], fixed[k][1]);
    }
    cJSON_AddStringToObject(md, "optimizer", adam ? "adam" : "none");
    if (adam) {
        cJSON_AddStringToObject(md, "adam_beta1", "0.9");
        cJSON_AddStringToObject(md, "adam_beta2", "0.999");
        cJSON_AddStringToObject(md, "adam_eps", "1e-08");
    }
    static const char *const prefix[] = {"", "optimizer.m.", "optimizer.v."};
    uint64_t offset = 0;
    for (int copy = 0; copy < (adam ? 3 : 1); copy++) {
        for (int k = 0; k < a->n; k++) {
            char name[96];
            snprintf(name, sizeof name, "%s%s", prefix[copy], a->t[k].name);
            const struct raw_tensor *t = &a->t[k];
            if (replacement && strcmp(replacement->name, name) == 0) {
                t = replacement;
            }
            double shape[4], offsets[2];
            for (int d = 0; d < t->ndim; d++) {
                shape[d] = (double)t->shape[d];
            }
            uint64_t bytes = 4 * wrapped_count(t);
            offsets[0] = (double)offset;
            offsets[1] = (double)(offset + bytes);
            offset += bytes;
            cJSON *entry = cJSON_AddObjectToObject(root, name);
            cJSON_AddStringToObject(entry, "dtype", "F32");
            cJSON_AddItemToObject(entry, "shape", cJSON_CreateDoubleArray(shape, t->ndim));
            cJSON_AddItemToObject(entry, "data_offsets", cJSON_CreateDoubleArray(offsets, 2));
        }
    }
    size_t data_len = offset <= RAW_MAX_DATA ? (size_t)offset : 0;
    uint8_t *data = calloc(data_len + 1, 1);
    int rc = write_json_checkpoint(path, root, data, data_len);
    tu_expect(rc == 0, "cannot write %s", path);
    free(data);
    cJSON_Delete(root);
    return rc;
}

// Weights whose element counts pass 2^64, each listed with the bytes its count takes modulo 2^64
// (0): what a loader that multiplies sizes unchecked accepts and then writes past its arrays; and
// sizes that pass an int. Layer lists of format versions 2 and 3 (version 1's dense widths up to
// 2^24 cannot wrap: see huge_dense).
static const struct raw_arch overflowing[] = {
    {"two conv weights of 2^63 elements each (0 bytes; 2^64 in all)",
     1,
     1,
     "conv:32768:1:1:0,conv:65536:65536:1:32768,conv:32768:65536:1:32767",
     "dense:4",
     NULL,
     14,
     {{"encoder.0.weight", 4, {32768, 1, 1, 1}},
      {"encoder.0.bias", 1, {32768}},
      {"encoder.1.weight", 4, {65536, 32768, 65536, 65536}},
      {"encoder.1.bias", 1, {65536}},
      {"encoder.2.weight", 4, {32768, 65536, 65536, 65536}},
      {"encoder.2.bias", 1, {32768}},
      {"mean.weight", 2, {2, 32768}},
      {"mean.bias", 1, {2}},
      {"logvar.weight", 2, {2, 32768}},
      {"logvar.bias", 1, {2}},
      {"decoder.0.weight", 2, {4, 2}},
      {"decoder.0.bias", 1, {4}},
      {"output.weight", 2, {1, 4}},
      {"output.bias", 1, {1}}},
     "2147483647"},
    {"a conv weight of 65536^4 = 2^64 elements (0 bytes)",
     2,
     2,
     "conv:65536:1:1:0,conv:65536:65536:1:32767",
     "dense:4",
     NULL,
     12,
     {{"encoder.0.weight", 4, {65536, 1, 1, 1}},
      {"encoder.0.bias", 1, {65536}},
      {"encoder.1.weight", 4, {65536, 65536, 65536, 65536}},
      {"encoder.1.bias", 1, {65536}},
      {"mean.weight", 2, {2, 65536}},
      {"mean.bias", 1, {2}},
      {"logvar.weight", 2, {2, 65536}},
      {"logvar.bias", 1, {2}},
      {"decoder.0.weight", 2, {4, 2}},
      {"decoder.0.bias", 1, {4}},
      {"output.weight", 2, {4, 4}},
      {"output.bias", 1, {4}}},
     "2147483647"},
    {"a deconv weight of 65536^4 = 2^64 elements (0 bytes) in the decoder",
     2,
     2,
     "conv:1:1:1:0",
     "dense:65536,reshape:65536x1x1,deconv:65536:65536:1:32767",
     NULL,
     14,
     {{"encoder.0.weight", 4, {1, 1, 1, 1}},
      {"encoder.0.bias", 1, {1}},
      {"mean.weight", 2, {2, 4}},
      {"mean.bias", 1, {2}},
      {"logvar.weight", 2, {2, 4}},
      {"logvar.bias", 1, {2}},
      {"decoder.0.weight", 2, {65536, 2}},
      {"decoder.0.bias", 1, {65536}},
      {"decoder.1.weight", 4, {65536, 65536, 65536, 65536}},
      {"decoder.1.bias", 1, {65536}},
      {"output.weight", 4, {65536, 1, 1, 1}},
      {"output.bias", 1, {1}}},
     "2147483647"},
    // A deconv's output of 32768 x 65535 + 1 rows, then a padding of 16384 on each side: the
    // padded height passes an int (UndefinedBehaviorSanitizer's report in the conv's layout).
    {"a conv padding a deconv's 2147450881 rows past 2^31 - 1",
     32769,
     1,
     "deconv:1:1:65535:0,conv:1:16385:1:16384",
     "dense:4",
     NULL,
     4,
     {{"encoder.0.weight", 4, {1, 1, 1, 1}},
      {"encoder.0.bias", 1, {1}},
      {"encoder.1.weight", 4, {1, 1, 16385, 16385}},
      {"encoder.1.bias", 1, {1}}},
     "encoder.1"},
};

// A dense weight of 2^32 elements, in every format version: no wrap, but more than clvae holds.
static const struct raw_arch huge_dense = {"dense weights of 2^32 elements (256x256 images)",
                                           256,
                                           256,
                                           "dense:65536",
                                           "dense:65536",
                                           "65536",
                                           8,
                                           {{"encoder.0.weight", 2, {65536, 65536}},
                                            {"encoder.0.bias", 1, {65536}},
                                            {"mean.weight", 2, {2, 65536}},
                                            {"mean.bias", 1, {2}},
                                            {"logvar.weight", 2, {2, 65536}},
                                            {"logvar.bias", 1, {2}},
                                            {"decoder.0.weight", 2, {65536, 2}},
                                            {"decoder.0.bias", 1, {65536}}},
                                           "2147483647"};

// Loads path expecting success with n_params parameters; the arrays are read in full so that
// AddressSanitizer sees they hold that many.
static void expect_loads_raw(const char *path, size_t n_params, bool adam)
{
    struct ckpt c;
    struct clvae_error err = {0};
    int rc = checkpoint_load(path, &c, &err);
    tu_expect(rc == 0, "load: %s", err.msg);
    if (rc == 0) {
        tu_expect(c.n_params == n_params, "n_params %zu, expected %zu", c.n_params, n_params);
        tu_expect(!adam == !c.state[0] && !adam == !c.state[1], "moments %s",
                  adam ? "missing" : "loaded");
        double sum = 0;
        for (size_t i = 0; i < c.n_params; i++) {
            sum += c.params[i] + (adam ? c.state[0][i] + c.state[1][i] : 0);
        }
        tu_expect(sum == 0, "the zero data loaded as %g", sum);
    }
    checkpoint_free(&c);
}

// Each overflowing architecture in format versions 2 and 3, with and without Adam's moments, and a
// huge dense one in every version: refused with status 3 before anything is allocated for it.
static void test_overflowing_shapes(void)
{
    char path[TU_PATH_MAX];
    tu_in_tmp(path, "overflowing.safetensors");
    size_t n = sizeof overflowing / sizeof overflowing[0];
    for (size_t k = 0; k <= n; k++) {
        const struct raw_arch *a = k == n ? &huge_dense : &overflowing[k];
        for (int version = a->hidden ? 1 : 2; version <= CKPT_FORMAT_VERSION; version++) {
            for (int adam = 0; adam < 2; adam++) {
                tu_begin();
                if (write_raw(path, a, version, adam, NULL) == 0) {
                    expect_refused(path, a->refusal);
                }
                tu_end("format version %d%s: refuses %s", version, adam ? " with moments" : "",
                       a->what);
            }
        }
    }
    unlink(path);
}

// Small good architectures, and shapes each file may give that the metadata does not imply.
static const struct raw_arch conv_small = {"conv:2:2:2:0 on 4x4 images",
                                           4,
                                           4,
                                           "conv:2:2:2:0",
                                           "dense:8,reshape:2x2x2",
                                           NULL,
                                           10,
                                           {{"encoder.0.weight", 4, {2, 1, 2, 2}},
                                            {"encoder.0.bias", 1, {2}},
                                            {"mean.weight", 2, {2, 8}},
                                            {"mean.bias", 1, {2}},
                                            {"logvar.weight", 2, {2, 8}},
                                            {"logvar.bias", 1, {2}},
                                            {"decoder.0.weight", 2, {8, 2}},
                                            {"decoder.0.bias", 1, {8}},
                                            {"output.weight", 4, {2, 1, 2, 2}},
                                            {"output.bias", 1, {1}}},
                                           NULL};
static const struct raw_arch dense_small = {"dense 5 on 2x3 images",
                                            2,
                                            3,
                                            "dense:5",
                                            "dense:5",
                                            "5",
                                            10,
                                            {{"encoder.0.weight", 2, {5, 6}},
                                             {"encoder.0.bias", 1, {5}},
                                             {"mean.weight", 2, {2, 5}},
                                             {"mean.bias", 1, {2}},
                                             {"logvar.weight", 2, {2, 5}},
                                             {"logvar.bias", 1, {2}},
                                             {"decoder.0.weight", 2, {5, 2}},
                                             {"decoder.0.bias", 1, {5}},
                                             {"output.weight", 2, {6, 5}},
                                             {"output.bias", 1, {6}}},
                                            NULL};

// A shape in place of the architecture's, and what it is.
struct mismatch {
    struct raw_tensor t;
    const char *what;
};

static const struct mismatch conv_mismatches[] = {
    {{"encoder.0.weight", 4, {2, 1, 2, 3}}, "a kernel dimension one more"},
    {{"encoder.0.weight", 4, {1, 2, 2, 2}}, "(C, OC) for (OC, C): the same count"},
    {{"encoder.0.weight", 3, {2, 1, 4}}, "three dimensions of the same count"},
    {{"encoder.0.weight", 2, {2, 4}}, "two dimensions of the same count"},
    {{"encoder.0.weight", 1, {8}}, "flat, the same count"},
    {{"encoder.0.bias", 2, {2, 1}}, "a bias as a matrix"},
    {{"encoder.0.weight", 4, {65536, 65536, 65536, 65536}}, "65536^4 = 2^64 elements (0 bytes)"},
    {{"encoder.0.weight", 4, {32768, 65536, 65536, 65536}}, "2^63 elements (0 bytes)"},
    {{"encoder.0.weight", 4, {UINT64_C(4294967298), 1, 2, 2}}, "2^32 + 2 output channels"},
    {{"output.weight", 4, {1, 2, 2, 2}}, "a deconv weight as a conv's (OC, IC)"},
    {{"decoder.0.weight", 2, {2, 8}}, "a dense weight (in, out)"},
    {{"optimizer.m.encoder.0.weight", 4, {2, 1, 1, 4}}, "a moment of another shape"},
    {{"optimizer.v.output.weight", 4, {65536, 65536, 65536, 65536}}, "a moment of 2^64 elements"},
};

static const struct mismatch dense_mismatches[] = {
    {{"encoder.0.weight", 2, {6, 5}}, "(in, out) for (out, in)"},
    {{"encoder.0.weight", 2, {5, 7}}, "one input more"},
    {{"encoder.0.weight", 1, {30}}, "flat, the same count"},
    {{"encoder.0.weight", 3, {5, 6, 1}}, "a third dimension of 1"},
    {{"encoder.0.weight", 2, {UINT64_C(4294967301), 6}}, "2^32 + 5 outputs"},
    {{"encoder.0.weight", 4, {65536, 65536, 65536, 65536}}, "65536^4 = 2^64 elements (0 bytes)"},
    {{"mean.weight", 2, {UINT64_C(1) << 62, 4}}, "2^64 elements as two dimensions (0 bytes)"},
    {{"output.bias", 1, {0}}, "an empty bias"},
    {{"optimizer.v.decoder.0.weight", 2, {2, 5}}, "a moment (in, out)"},
};

// arch loads in each format version it can be written in, and each mismatch is refused naming
// its tensor: with moments when the mismatch is in a moment, else with and without them.
static void test_mismatched_shapes(const struct raw_arch *arch, const struct mismatch *m,
                                   size_t n_mismatches, size_t n_params)
{
    char path[TU_PATH_MAX];
    tu_in_tmp(path, "mismatch.safetensors");
    for (int version = arch->hidden ? 1 : 2; version <= CKPT_FORMAT_VERSION; version++) {
        for (int adam = 0; adam < 2; adam++) {
            tu_begin();
            if (write_raw(path, arch, version, adam, NULL) == 0) {
                expect_loads_raw(path, n_params, adam);
            }
            tu_end("format version %d%s: %s as crafted loads", version, adam ? " with moments" : "",
                   arch->what);
        }
        for (size_t k = 0; k < n_mismatches; k++) {
            bool moment = strncmp(m[k].t.name, "optimizer.", 10) == 0;
            for (int adam = moment; adam < 2; adam++) {
                tu_begin();
                if (write_raw(path, arch, version, adam, &m[k].t) == 0) {
                    char word[96];
                    snprintf(word, sizeof word, "tensor '%s': shape", m[k].t.name);
                    expect_refused(path, word);
                }
                tu_end("format version %d%s, %s: refuses %s %s", version,
                       adam ? " with moments" : "", arch->what, m[k].t.name, m[k].what);
            }
        }
    }
    unlink(path);
}

// Corruptions outside what a JSON edit reaches: the length field, broken JSON, the data section.
static void test_corrupt_files(const char *good_path)
{
    char path[TU_PATH_MAX];
    tu_in_tmp(path, "corrupt.safetensors");
    struct blob good = read_blob(good_path);
    uint8_t bytes[64];

    tu_begin();
    char missing[TU_PATH_MAX];
    expect_refused(tu_in_tmp(missing, "no-such.safetensors"), strerror(ENOENT));
    tu_end("refuses a missing file");

    tu_begin();
    expect_refused(tu_tmp_dir, strerror(EISDIR));
    tu_end("refuses a directory");

    for (size_t len = 0; len < 8; len += 7) {
        tu_begin();
        tu_expect(tu_write_file(path, good.bytes, len) == 0, "cannot write %s", path);
        expect_refused(path, "too short");
        tu_end("refuses a %zu-byte file", len);
    }

    // In a 40-byte file: 32 bytes follow the length, so 40 runs past the end.
    const uint64_t lengths[] = {0, (UINT64_C(100) << 20) + 8, UINT64_MAX, 40};
    const char *words[] = {"header length 0", "100 MiB", "100 MiB", "past the end"};
    for (size_t k = 0; k < 4; k++) {
        tu_begin();
        memset(bytes, ' ', sizeof bytes);
        uint64_t v = lengths[k];
        put_u64_le(bytes, v);
        tu_expect(tu_write_file(path, bytes, 8 + 32) == 0, "cannot write %s", path);
        expect_refused(path, words[k]);
        tu_end("refuses header length %" PRIu64 " (file of 40 bytes)", v);
    }

    static const struct {
        const char *json, *word, *what;
    } texts[] = {
        {"{\"a\":", "not valid JSON", "truncated JSON"},
        {"{not json}", "not valid JSON", "invalid JSON"},
        {"[1,2,3]", "not an object", "a JSON array"},
        {"\"clvae\"", "not an object", "a JSON string"},
        {"{} {}", "not valid JSON", "two JSON objects"},
        {"{}", "__metadata__", "an empty object"},
        {"{\"__metadata__\":{}}", "\"format\" is missing", "empty metadata"},
    };
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        tu_begin();
        tu_expect(write_checkpoint(path, texts[k].json, NULL, 0) == 0, "cannot write %s", path);
        expect_refused(path, texts[k].word);
        tu_end("refuses a header of %s", texts[k].what);
    }

    // NUL bytes as padding: not JSON whitespace.
    tu_begin();
    {
        const char json[] = "{}\0\0\0\0\0";
        uint8_t raw[16];
        put_u64_le(raw, 8);
        memcpy(raw + 8, json, 8);
        tu_expect(tu_write_file(path, raw, 16) == 0, "cannot write %s", path);
        expect_refused(path, "not valid JSON");
    }
    tu_end("refuses a header padded with NUL bytes");

    struct good_file g;
    tu_begin();
    if (open_good(good_path, &g) == 0) {
        memset(g.data + g.data_len, 0, 4);
        tu_expect(write_json_checkpoint(path, g.root, g.data, g.data_len + 4) == 0, "write failed");
        expect_refused(path, "trailing bytes");
        close_good(&g);
    }
    tu_end("refuses 4 bytes after the last tensor");

    // A gap: the last tensor moved 4 bytes on, the data section 4 bytes longer to hold it.
    tu_begin();
    if (open_good(good_path, &g) == 0) {
        cJSON *off = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(g.root, "optimizer.v.output.bias"), "data_offsets");
        double begin = cJSON_GetArrayItem(off, 0)->valuedouble;
        double end = cJSON_GetArrayItem(off, 1)->valuedouble;
        tu_expect(end == (double)g.data_len, "optimizer.v.output.bias is not the last tensor");
        cJSON_SetNumberValue(cJSON_GetArrayItem(off, 0), begin + 4);
        cJSON_SetNumberValue(cJSON_GetArrayItem(off, 1), end + 4);
        memset(g.data + g.data_len, 0, 4);
        tu_expect(write_json_checkpoint(path, g.root, g.data, g.data_len + 4) == 0, "write failed");
        expect_refused(path, "gap of 4 bytes");
        close_good(&g);
    }
    tu_end("refuses a gap between tensors");

    tu_begin();
    if (open_good(good_path, &g) == 0) {
        cJSON *copy = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(g.root, "mean.bias"), 1);
        cJSON_AddItemToObject(g.root, "mean.bias", copy);
        tu_expect(write_json_checkpoint(path, g.root, g.data, g.data_len) == 0, "write failed");
        expect_refused(path, "appears twice");
        close_good(&g);
    }
    tu_end("refuses a tensor named twice");

    tu_begin();
    if (open_good(good_path, &g) == 0) {
        cJSON *copy = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(g.root, "__metadata__"), 1);
        cJSON_AddItemToObject(g.root, "__metadata__", copy);
        tu_expect(write_json_checkpoint(path, g.root, g.data, g.data_len) == 0, "write failed");
        expect_refused(path, "__metadata__ appears twice");
        close_good(&g);
    }
    tu_end("refuses __metadata__ twice");

    // Claiming Adam moments a file without them lacks.
    tu_begin();
    {
        struct model md;
        char plain[TU_PATH_MAX];
        make_model(&md, &small_arch, false, 6000);
        tu_in_tmp(plain, "plain.safetensors");
        if (save_model(plain, &md) == 0 && open_good(plain, &g) == 0) {
            cJSON *meta = cJSON_GetObjectItemCaseSensitive(g.root, "__metadata__");
            cJSON_ReplaceItemInObjectCaseSensitive(meta, "optimizer", cJSON_CreateString("adam"));
            cJSON_AddStringToObject(meta, "adam_beta1", "0.9");
            cJSON_AddStringToObject(meta, "adam_beta2", "0.999");
            cJSON_AddStringToObject(meta, "adam_eps", "1e-08");
            tu_expect(write_json_checkpoint(path, g.root, g.data, g.data_len) == 0, "write failed");
            expect_refused(path, "tensor 'optimizer.m.encoder.0.weight' is missing");
            close_good(&g);
        }
        unlink(plain);
        free_model(&md);
    }
    tu_end("refuses optimizer adam without the moments");
    free(good.bytes);
    unlink(path);
}

// The tensors may come in any order in the header and in the data: swapping two same-sized
// tensors' byte ranges swaps what loads, and a reversed header loads the same.
static void test_any_order(const char *good_path, const struct model *md)
{
    char path[TU_PATH_MAX];
    tu_in_tmp(path, "reordered.safetensors");
    struct good_file g;
    tu_begin();
    if (open_good(good_path, &g) == 0) {
        // Reverse the header's entries (cJSON_AddItemToObject copies the key before freeing it).
        cJSON *items[3 * 2 * (VAE_MAX_LAYERS + 1) + 1];
        int n = 0;
        cJSON *item;
        while ((item = g.root->child) != NULL && n < (int)(sizeof items / sizeof items[0])) {
            items[n++] = cJSON_DetachItemViaPointer(g.root, item);
        }
        while (n > 0) {
            item = items[--n];
            cJSON_AddItemToObject(g.root, item->string, item);
        }
        cJSON *mb = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(g.root, "mean.bias"), "data_offsets");
        cJSON *lb = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(g.root, "logvar.bias"), "data_offsets");
        cJSON *tmp = cJSON_Duplicate(mb, 1);
        cJSON_ReplaceItemInObjectCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(g.root, "mean.bias"), "data_offsets",
            cJSON_Duplicate(lb, 1));
        cJSON_ReplaceItemInObjectCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(g.root, "logvar.bias"), "data_offsets", tmp);
        tu_expect(strcmp(g.root->child->string, "optimizer.v.output.bias") == 0,
                  "the header was not reversed (first '%s')", g.root->child->string);
        tu_expect(write_json_checkpoint(path, g.root, g.data, g.data_len) == 0, "write failed");
        close_good(&g);

        struct ckpt c;
        struct clvae_error err = {0};
        int rc = checkpoint_load(path, &c, &err);
        tu_expect(rc == 0, "load: %s", err.msg);
        if (rc == 0) {
            const struct layer *head = &md->vae.layer[md->vae.n_encoder - 1];
            size_t latent = (size_t)md->meta.cfg.latent;
            float *want = malloc(md->n * sizeof(float));
            memcpy(want, md->params, md->n * sizeof(float));
            memcpy(want + head->bias, md->params + head->bias + latent, latent * sizeof(float));
            memcpy(want + head->bias + latent, md->params + head->bias, latent * sizeof(float));
            expect_same_floats("params (mean and logvar bias swapped)", c.params, want, md->n);
            expect_same_floats("adam_m", c.state[0], md->state[0], md->n);
            expect_same_floats("adam_v", c.state[1], md->state[1], md->n);
            free(want);
            checkpoint_free(&c);
        }
    }
    tu_end("a reversed header with two tensors' data swapped loads as written");
    unlink(path);
}

// An AdamW checkpoint: its kind and weight decay (one %g would round) come back with the moments,
// the metadata names them as an Adam one does its betas, and a decay out of range or betas that are
// not PyTorch's are refused.
static void test_adamw(void)
{
    char path[TU_PATH_MAX], edited[TU_PATH_MAX];
    struct model md;
    struct clvae_error err = {0};
    make_model(&md, &small_arch, true, 9000);
    md.meta.optimizer = optimizer_defaults(optimizer_find("adamw"));
    tu_expect(optimizer_set_option(&md.meta.optimizer, "--weight-decay", 0.05 + 1e-12, &err) == 0,
              "--weight-decay: %s", err.msg);
    tu_in_tmp(path, "adamw.safetensors");
    tu_in_tmp(edited, "adamw-edited.safetensors");
    tu_begin();
    struct st_file f;
    if (save_model(path, &md) == 0 && st_open(path, &f) == 0) {
        const char *pairs[][2] = {{"optimizer", "adamw"},
                                  {"adamw_beta1", "0.9"},
                                  {"adamw_beta2", "0.999"},
                                  {"adamw_eps", "1e-08"},
                                  {"adamw_weight_decay", "0.050000000001"}};
        for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
            tu_expect(strcmp(st_meta(&f, pairs[k][0]), pairs[k][1]) == 0,
                      "__metadata__ %s is '%s', expected '%s'", pairs[k][0],
                      st_meta(&f, pairs[k][0]), pairs[k][1]);
        }
        st_close(&f);
        expect_loads_as(path, &md);
    }
    tu_end("round trip with AdamW's moments and weight decay; its metadata");
    static const struct json_edit edits[] = {
        {"__metadata__", "adamw_weight_decay", "\"-1\"", "adamw_weight_decay -1 is out of range"},
        {"__metadata__", "adamw_weight_decay", "\"1e3\"", "out of range (0 to 100)"},
        {"__metadata__", "adamw_weight_decay", "\"nan\"", "not a finite number"},
        {"__metadata__", "adamw_weight_decay", NULL, "\"adamw_weight_decay\" is missing"},
        {"__metadata__", "adamw_beta2", "\"0.99\"", "adamw_beta2 0.99, clvae's AdamW uses 0.999"},
        {"__metadata__", "optimizer", "\"adam\"", "\"adam_beta1\" is missing"},
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        tu_begin();
        if (write_edited(path, &edits[k], 1, edited) == 0) {
            expect_refused(edited, edits[k].word);
        }
        tu_end("AdamW: refuses %s %s", edits[k].key, edits[k].value ? edits[k].value : "removed");
    }
    unlink(edited);
    unlink(path);
    free_model(&md);
}

// Every prefix of a good file is refused: nothing read past the end, nothing left allocated.
static void test_truncations(const char *good_path)
{
    char path[TU_PATH_MAX];
    tu_in_tmp(path, "truncated.safetensors");
    struct blob good = read_blob(good_path);
    tu_begin();
    size_t refused = 0;
    for (size_t cut = 0; cut < good.len && !tu_failing(); cut++) {
        tu_expect(tu_write_file(path, good.bytes, cut) == 0, "cannot write %s", path);
        expect_refused(path, "");
        refused += !tu_failing();
    }
    tu_note("%zu of %zu prefixes refused with status 3", refused, good.len);
    tu_end("truncated at every byte offset 0..%zu", good.len - 1);
    free(good.bytes);
    unlink(path);
}

// checkpoint_free on a zeroed struct and twice on a loaded one.
static void test_free(const char *good_path)
{
    tu_begin();
    struct ckpt c;
    memset(&c, 0, sizeof c);
    checkpoint_free(&c);
    checkpoint_free(NULL);
    struct clvae_error err = {0};
    tu_expect(checkpoint_load(good_path, &c, &err) == 0, "load: %s", err.msg);
    checkpoint_free(&c);
    tu_expect(!c.params && !c.state[0] && !c.state[1], "checkpoint_free left pointers");
    checkpoint_free(&c);
    tu_end("checkpoint_free is safe on a zeroed struct and twice");
}

// Appends n doubles to fp as little-endian bytes; false on a write error.
static bool write_f64s(FILE *fp, const double *v, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        uint64_t bits;
        memcpy(&bits, &v[k], 8);
        uint8_t b[8];
        put_u64_le(b, bits);
        if (fwrite(b, 1, 8, fp) != 8) {
            return false;
        }
    }
    return true;
}

// The fixture for test_checkpoint_numpy.py: DIR/small.safetensors (the small architecture, with
// moments) and DIR/small_expected.bin, all little-endian: u32 rows, latent, in_dim, 0; then f64
// x (rows, in_dim), mean (rows, latent), logvar (rows, latent), z (rows, latent) and the decoder's
// logits (rows, in_dim) for that z, computed here in double from the flat layout.
static int write_numpy_fixture(const char *dir)
{
    enum { ROWS = 4 };
    char path[TU_PATH_MAX], expected_path[TU_PATH_MAX];
    struct model md;
    make_model(&md, &small_arch, true, 7000);
    uint64_t state = 7001;
    for (size_t i = 0; i < md.n; i++) {
        md.params[i] = next_uniform(&state, 0.8f);
    }
    tu_join(path, dir, "small.safetensors");
    tu_join(expected_path, dir, "small_expected.bin");
    struct clvae_error err = {0};
    if (checkpoint_save(path, &md.meta, md.params, state_of(&md), &err) != 0) {
        fprintf(stderr, "test_checkpoint: %s\n", err.msg);
        free_model(&md);
        return 1;
    }

    const struct vae *v = &md.vae;
    int in_dim = md.meta.cfg.in_dim, latent = md.meta.cfg.latent;
    double x[ROWS * 6], ml[ROWS * 6], mean[ROWS * 3], logvar[ROWS * 3], z[ROWS * 3];
    double logits[ROWS * 6];
    for (int k = 0; k < ROWS * in_dim; k++) {
        x[k] = (double)(next_u64(&state) >> 11) / 9007199254740992.0;
    }
    for (int k = 0; k < ROWS * latent; k++) {
        z[k] = 2.0 * next_uniform(&state, 1.0f);
    }
    // The model's own layer list in double (tests/ref_model.c): x -> [mean | logvar]; z -> logits.
    double *params = ref_params(md.params, md.n);
    ref_encode(v, params, x, ROWS, ml, NULL);
    ref_decode(v, params, z, ROWS, logits, NULL);
    free(params);
    for (int r = 0; r < ROWS; r++) {
        for (int k = 0; k < latent; k++) {
            mean[r * latent + k] = ml[r * 2 * latent + k];
            logvar[r * latent + k] = ml[r * 2 * latent + latent + k];
        }
    }

    FILE *fp = fopen(expected_path, "wb");
    uint8_t head_bytes[16] = {0};
    const uint32_t dims[3] = {ROWS, (uint32_t)latent, (uint32_t)in_dim};
    for (int k = 0; k < 3; k++) {
        for (int b = 0; b < 4; b++) {
            head_bytes[4 * k + b] = (uint8_t)(dims[k] >> (8 * b));
        }
    }
    bool ok = fp && fwrite(head_bytes, 1, 16, fp) == 16 &&
              write_f64s(fp, x, (size_t)(ROWS * in_dim)) &&
              write_f64s(fp, mean, (size_t)(ROWS * latent)) &&
              write_f64s(fp, logvar, (size_t)(ROWS * latent)) &&
              write_f64s(fp, z, (size_t)(ROWS * latent)) &&
              write_f64s(fp, logits, (size_t)(ROWS * in_dim));
    if (fp && fclose(fp) != 0) {
        ok = false;
    }
    free_model(&md);
    if (!ok) {
        fprintf(stderr, "test_checkpoint: cannot write %s: %s\n", expected_path, strerror(errno));
        return 1;
    }
    printf("test_checkpoint: wrote %s and %s\n", path, expected_path);
    return 0;
}

// Runs every check in a fresh temporary directory; exits non-zero if any failed. With an
// argument, writes the numpy fixture into that directory instead.
int main(int argc, char **argv)
{
    tu_init("test_checkpoint");
    if (argc == 2) {
        return write_numpy_fixture(argv[1]);
    }
    if (argc > 2) {
        fprintf(stderr, "usage: test_checkpoint [FIXTURE_DIR]\n");
        return 2;
    }
    tu_make_tmp_dir();
    umask(022);

    const struct arch *archs[] = {&small_arch, &default_arch, &colour_arch};
    for (int a = 0; a < 3; a++) {
        test_round_trip(archs[a], false);
        test_round_trip(archs[a], true);
        if (a < 2) {
            test_file_layout(archs[a]);
        }
    }
    test_overwrite();
    test_bad_paths();
    test_invalid_save();
    test_interrupted_save(100);
    test_interrupted_save(64 * 1024);

    // The corrupt cases all start from one good small checkpoint with moments.
    char good_path[TU_PATH_MAX];
    struct model good;
    make_model(&good, &small_arch, true, 8000);
    tu_in_tmp(good_path, "good.safetensors");
    tu_begin();
    save_model(good_path, &good);
    tu_end("a good small checkpoint for the corrupt cases");
    test_corrupt_headers(good_path);
    test_corrupt_files(good_path);
    test_version1(good_path, &good);
    test_version2(good_path, &good);
    test_any_order(good_path, &good);
    test_overflowing_shapes();
    // conv_small: 8 + 2, 2 x (16 + 2), 16 + 8, 8 + 1; dense_small: 30 + 5, 2 x (10 + 2), 10 + 5,
    // 30 + 6.
    test_mismatched_shapes(&conv_small, conv_mismatches,
                           sizeof conv_mismatches / sizeof conv_mismatches[0], 79);
    test_mismatched_shapes(&dense_small, dense_mismatches,
                           sizeof dense_mismatches / sizeof dense_mismatches[0], 110);
    test_adamw();
    test_truncations(good_path);
    test_free(good_path);
    free_model(&good);
    if (tu_remove_tmp_dir() != 0) {
        tu_checks++;
        tu_failures++;
    }
    return tu_summary();
}
