#include "checkpoint.h"

#include "atomic_file.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// A header this long is already absurd for at most a few hundred tensors; the cap keeps a corrupt
// length from driving a large allocation.
#define CKPT_MAX_HEADER ((uint64_t)100 << 20)
// Every width, latent size and image side: keeps each tensor's element count (< 2^48) and the sum
// of them all far inside size_t, and exact in a double (what JSON numbers become in cJSON).
#define CKPT_MAX_DIM (1 << 24)
// vae_create's limit: a larger model could never be used, so its size is no reason to allocate.
#define CKPT_MAX_PARAMS ((size_t)INT32_MAX)
// Byte offsets beyond 2^53 cannot be told apart once cJSON has made them doubles.
#define CKPT_MAX_OFFSET 9007199254740992.0
// Per layer its kind's tensors (LAYER_MAX_TENSORS at most), a copy for each host array.
#define CKPT_MAX_TENSORS (CKPT_ARRAYS * LAYER_MAX_TENSORS * VAE_MAX_LAYERS)
#define CKPT_LAYOUT "weight (out, in) as torch.nn.Linear"
#define CKPT_WHY_MAX 1024

// The host arrays a tensor lives in: the parameters, then the optimizer's state in its kind's
// order.
#define CKPT_ARRAYS (1 + OPTIMIZER_MAX_STATE)

// One tensor of the file and where its elements live in clvae's flat layout: element
// (i0, i1, ...) of the row-major tensor is flat[base + i0 stride[0] + i1 stride[1] + ...].
struct tensor {
    char name[48];
    int ndim, shape[4];
    size_t stride[4], count, base;
    int array; // 0: the parameters; 1 + s: the optimizer's state s
    // What the file's header says, while loading.
    bool seen;
    uint64_t begin, end;
};

// Formats a reason into why (CKPT_WHY_MAX bytes); always returns -1.
static int bad(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(char *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, CKPT_WHY_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

// Little-endian byte order whatever the host's: the format fixes it.
static void put_u64_le(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++) {
        p[k] = (uint8_t)(v >> (8 * k));
    }
}

// The inverse of put_u64_le.
static uint64_t get_u64_le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) {
        v |= (uint64_t)p[k] << (8 * k);
    }
    return v;
}

// A float's bits as 4 little-endian bytes: copies NaN payloads and signed zeros exactly.
static void put_f32_le(uint8_t *p, float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    for (int k = 0; k < 4; k++) {
        p[k] = (uint8_t)(bits >> (8 * k));
    }
}

// The inverse of put_f32_le.
static float get_f32_le(const uint8_t *p)
{
    uint32_t bits =
        (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

// x with the fewest digits that read back as x ("0.9", not %.17g's "0.90000000000000002"), in
// text (32 bytes).
static const char *shortest(double x, char *text)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(text, 32, "%.*g", digits, x);
        if (strtod(text, NULL) == x) {
            break;
        }
    }
    return text;
}

// Fails unless lo <= v <= hi, naming the metadata field.
static int check_range(char *why, const char *name, int64_t v, int64_t lo, int64_t hi)
{
    if (v < lo || v > hi) {
        return bad(why, "%s %" PRId64 " is out of range (%" PRId64 " to %" PRId64 ")", name, v, lo,
                   hi);
    }
    return 0;
}

// The architecture of m on its images: channels of image_rows x image_cols.
static struct vae_config meta_config(const struct ckpt_meta *m)
{
    struct vae_config cfg = m->cfg;
    cfg.channels = m->channels;
    cfg.height = m->image_rows;
    cfg.width = m->image_cols;
    return cfg;
}

// t's shape as "[a,b,c]" for a message (64 bytes suffice for four ints).
static const char *shape_text(const struct tensor *t, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "[%d", t->shape[0]);
    for (int d = 1; d < t->ndim && used < size; d++) {
        used += (size_t)snprintf(buf + used, size - used, ",%d", t->shape[d]);
    }
    if (used < size) {
        snprintf(buf + used, size - used, "]");
    }
    return buf;
}

// One layer tensor lt into *t, its element count and the flat index of its last element computed
// without wrapping: every size is the metadata's, so a count past CKPT_MAX_PARAMS (65536^4 wraps
// a size_t to 0) or an element outside the n_params of the flat layout (a layout whose own sums
// wrapped) is refused here, before anything is allocated for it. 0, or -1 with why.
static int take_tensor(const struct layer_tensor *lt, size_t n_params, struct tensor *t, char *why)
{
    *t = (struct tensor){.ndim = lt->ndim, .count = 1, .base = lt->base};
    memcpy(t->name, lt->name, sizeof t->name);
    t->name[sizeof t->name - 1] = '\0';
    if (lt->ndim < 1 || lt->ndim > 4) {
        return bad(why, "tensor '%s' has %d dimensions (1 to 4)", t->name, lt->ndim);
    }
    memcpy(t->shape, lt->shape, sizeof t->shape);
    memcpy(t->stride, lt->stride, sizeof t->stride);
    size_t last = lt->base;
    bool wrapped = false;
    for (int d = 0; d < lt->ndim && !wrapped; d++) {
        size_t reach;
        wrapped = lt->shape[d] < 1 ||
                  __builtin_mul_overflow(t->count, (size_t)lt->shape[d], &t->count) ||
                  __builtin_mul_overflow((size_t)lt->shape[d] - 1, lt->stride[d], &reach) ||
                  __builtin_add_overflow(last, reach, &last);
    }
    char shape[64];
    if (wrapped || t->count > CKPT_MAX_PARAMS) {
        return bad(why, "tensor '%s' would be %s, more than the %zu elements clvae handles",
                   t->name, shape_text(t, shape, sizeof shape), CKPT_MAX_PARAMS);
    }
    if (last >= n_params) {
        return bad(why, "tensor '%s' (%s) lies outside the layout's %zu parameters", t->name,
                   shape_text(t, shape, sizeof shape), n_params);
    }
    return 0;
}

// Lists the file's tensors in header order for vae's layout (CKPT_MAX_TENSORS at most): every
// layer's own (layer_ops.tensors), then each of optimizer's states of each (optimizer.<state>.
// <name>) unless optimizer is NULL; returns how many, or -1 with why when a tensor is refused by
// take_tensor or their counts, summed without wrapping, are not the layout's n_params.
static int list_tensors(const struct vae *vae, const struct optimizer_kind *optimizer,
                        struct tensor *t, char *why)
{
    int n = 0;
    size_t total = 0;
    for (int k = 0; k < vae->n_layers; k++) {
        struct layer_tensor lt[LAYER_MAX_TENSORS];
        int count = vae->layer[k].ops->tensors(&vae->layer[k], lt);
        if (n + count > CKPT_MAX_TENSORS / CKPT_ARRAYS) {
            return bad(why, "the model has more than the %d tensors clvae handles",
                       CKPT_MAX_TENSORS / CKPT_ARRAYS);
        }
        for (int j = 0; j < count; j++, n++) {
            if (take_tensor(&lt[j], vae->n_params, &t[n], why)) {
                return -1;
            }
            // At most CKPT_MAX_TENSORS counts of at most CKPT_MAX_PARAMS each: no wrap.
            total += t[n].count;
        }
    }
    if (total > CKPT_MAX_PARAMS) {
        return bad(why, "the model has %zu parameters, out of range (clvae handles at most %zu)",
                   total, CKPT_MAX_PARAMS);
    }
    if (total != vae->n_params) {
        return bad(why, "the tensors hold %zu parameters but the layout counts %zu", total,
                   vae->n_params);
    }
    int n_params = n;
    for (int s = 0; optimizer && s < optimizer->n_state; s++) {
        for (int k = 0; k < n_params; k++) {
            struct tensor state = t[k];
            if (snprintf(state.name, sizeof state.name, "optimizer.%s.%s", optimizer->state[s],
                         t[k].name) >= (int)sizeof state.name) {
                return bad(why, "tensor name 'optimizer.%s.%s' is too long", optimizer->state[s],
                           t[k].name);
            }
            state.array = 1 + s;
            t[n++] = state;
        }
    }
    return n;
}

// The metadata key of kind's hyper-parameter h: "<kind>_<name>" (adam_beta1), in key (64 bytes).
static const char *hyper_key(const struct optimizer_kind *kind, const struct optimizer_hyper *h,
                             char *key)
{
    snprintf(key, 64, "%s_%s", kind->name, h->name);
    return key;
}

// The optimizer's hyper-parameters (none without one): the fixed ones at their values, the others
// within their range.
static int check_optimizer(const struct optimizer_config *cfg, char *why)
{
    const struct optimizer_kind *kind = cfg->kind;
    for (int i = 0; kind && i < kind->n_hyper; i++) {
        const struct optimizer_hyper *h = &kind->hyper[i];
        double v = cfg->hyper[i];
        char key[64], have[32], want[32];
        if (!h->option && v != h->value) {
            return bad(why, "%s %s, clvae's %s uses %s", hyper_key(kind, h, key), shortest(v, have),
                       kind->title, shortest(h->value, want));
        }
        if (h->option && !(v >= h->min && v <= h->max)) {
            return bad(why, "%s %s is out of range (%g to %g)", hyper_key(kind, h, key),
                       shortest(v, have), h->min, h->max);
        }
    }
    return 0;
}

// The rules every checkpoint's metadata obeys, saved or loaded: positive sizes below CKPT_MAX_DIM,
// in_dim = image_rows * image_cols, 1..VAE_MAX_HIDDEN hidden layers, a model vae_create accepts.
static int check_meta(const struct ckpt_meta *m, char *why)
{
    const struct vae_config *cfg = &m->cfg;
    const struct layer_spec *side[2] = {cfg->encoder, cfg->decoder};
    const int count[2] = {cfg->n_encoder, cfg->n_decoder};
    static const char *const side_name[2] = {"encoder", "decoder"};
    for (int s = 0; s < 2; s++) {
        if (count[s] < 1 || count[s] > VAE_MAX_HIDDEN) {
            return bad(why, "%s: %d hidden layers, clvae handles 1 to %d (too many or none)",
                       side_name[s], count[s], VAE_MAX_HIDDEN);
        }
        for (int i = 0; i < count[s]; i++) {
            // The kinds and the other sizes are the parser's and the layout's to check.
            if (check_range(why, "layer width or channels", side[s][i].units, 1, CKPT_MAX_DIM)) {
                return -1;
            }
        }
    }
    if (check_range(why, "latent", cfg->latent, 1, CKPT_MAX_DIM) ||
        check_range(why, "image_rows", m->image_rows, 1, CKPT_MAX_DIM) ||
        check_range(why, "image_cols", m->image_cols, 1, CKPT_MAX_DIM) ||
        check_range(why, "channels", m->channels, 1, 3) ||
        check_range(why, "in_dim", cfg->in_dim, 1, CKPT_MAX_DIM) ||
        check_range(why, "classes", m->n_classes, 0, CKPT_MAX_CLASSES) ||
        check_range(why, "batch", m->batch, 1, INT_MAX) ||
        check_range(why, "epoch", m->epoch, 0, INT_MAX) ||
        check_range(why, "step", m->step, 0, INT64_MAX) ||
        check_range(why, "epoch_step", m->epoch_step, 0, INT_MAX)) {
        return -1;
    }
    if (m->channels == 2) {
        return bad(why, "channels 2: clvae's images have 1 or 3");
    }
    if (cfg->classes != 0 && cfg->classes != m->n_classes) {
        return bad(why, "a model conditional on %d classes lists %d class names", cfg->classes,
                   m->n_classes);
    }
    if ((int64_t)m->image_rows * m->image_cols * m->channels != cfg->in_dim) {
        return bad(why, "in_dim %d is not image_rows x image_cols x channels (%d x %d x %d)",
                   cfg->in_dim, m->image_rows, m->image_cols, m->channels);
    }
    if (!(m->test_split > 0 && m->test_split < 1)) {
        return bad(why, "test_split %g is out of range (between 0 and 1)", m->test_split);
    }
    if (!isfinite(m->lr) || m->lr <= 0) {
        return bad(why, "lr %g is out of range (a finite number above 0)", m->lr);
    }
    if (!isfinite(m->beta) || m->beta < 0) {
        return bad(why, "beta %g is out of range (a finite number from 0)", m->beta);
    }
    struct vae vae;
    struct clvae_error err;
    struct vae_config shaped = meta_config(m);
    if (vae_layout(&vae, &shaped, "architecture", &err)) {
        return bad(why, "%.900s", err.msg);
    }
    // The sizes the layout computed, recounted without wrapping (list_tensors), before the
    // loader or the saver allocates by them.
    struct tensor *t = xmalloc(CKPT_MAX_TENSORS * sizeof *t);
    int n = list_tensors(&vae, NULL, t, why);
    free(t);
    return n < 0 ? -1 : check_optimizer(&m->optimizer, why);
}

// The flat index of element k (row-major) of t.
static size_t flat_index(const struct tensor *t, size_t k)
{
    size_t at = t->base;
    for (int d = t->ndim - 1; d >= 0; d--) {
        at += (k % (size_t)t->shape[d]) * t->stride[d];
        k /= (size_t)t->shape[d];
    }
    return at;
}

// Flat layout -> the tensor's row-major little-endian bytes (4 * t->count of them).
static void pack_tensor(const struct tensor *t, const float *flat, uint8_t *bytes)
{
    for (size_t k = 0; k < t->count; k++) {
        put_f32_le(bytes + 4 * k, flat[flat_index(t, k)]);
    }
}

// The inverse of pack_tensor: the file's bytes into their places in the flat layout.
static void unpack_tensor(const struct tensor *t, const uint8_t *bytes, float *flat)
{
    for (size_t k = 0; k < t->count; k++) {
        flat[flat_index(t, k)] = get_f32_le(bytes + 4 * k);
    }
}

// Adds key: printf-formatted string to obj; false when cJSON is out of memory.
static bool add_string(cJSON *obj, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool add_string(cJSON *obj, const char *key, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return cJSON_AddStringToObject(obj, key, text) != NULL;
}

// Adds key: [numbers...] to obj; false when cJSON is out of memory.
static bool add_numbers(cJSON *obj, const char *key, const double *numbers, int count)
{
    cJSON *array = cJSON_CreateDoubleArray(numbers, count);
    if (!array) {
        return false;
    }
    if (!cJSON_AddItemToObject(obj, key, array)) {
        cJSON_Delete(array);
        return false;
    }
    return true;
}

// Adds key: x printed by shortest; false when cJSON is out of memory.
static bool add_shortest(cJSON *obj, const char *key, double x)
{
    char text[32];
    return cJSON_AddStringToObject(obj, key, shortest(x, text)) != NULL;
}

// "classes": the class names as a JSON array in a string (safetensors' metadata values are
// strings), when there are any; false when cJSON is out of memory.
static bool add_classes(cJSON *md, const struct ckpt_meta *m)
{
    if (m->n_classes == 0) {
        return true;
    }
    cJSON *array = cJSON_CreateStringArray((const char *const *)m->class_names, m->n_classes);
    char *text = array ? cJSON_PrintUnformatted(array) : NULL;
    bool ok = text && cJSON_AddStringToObject(md, "classes", text) != NULL;
    cJSON_free(text);
    cJSON_Delete(array);
    return ok;
}

// "crop" and "flip", how a folder's images were fitted and augmented, only when they are not the
// defaults (stretched, no flips): a checkpoint of the default options is what it always was.
static bool add_image_options(cJSON *md, const struct ckpt_meta *m)
{
    return (m->crop == 0 || add_string(md, "crop", "%s", m->crop == 1 ? "center" : "none")) &&
           (!m->flip || add_string(md, "flip", "1"));
}

// "conditional": "1" for a model conditional on its "classes" (--conditional), only then: an
// unconditional checkpoint is what it always was.
static bool add_conditional(cJSON *md, const struct ckpt_meta *m)
{
    return m->cfg.classes == 0 || add_string(md, "conditional", "1");
}

static const char *const binarize_names[] = {"none", "dynamic", "static"};

int checkpoint_parse_binarize(const char *option, const char *name, int *mode,
                              struct clvae_error *err)
{
    for (int i = CKPT_BINARIZE_DYNAMIC; i <= CKPT_BINARIZE_STATIC; i++) {
        if (strcmp(name, binarize_names[i]) == 0) {
            *mode = i;
            return 0;
        }
    }
    return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is neither dynamic nor static", option,
                      name);
}

const char *checkpoint_binarize_name(int mode)
{
    return mode >= 0 && mode <= CKPT_BINARIZE_STATIC ? binarize_names[mode] : "?";
}

// The schedules' keys (ckpt_meta), only those that are not their defaults.
static bool add_schedule(cJSON *md, const struct ckpt_meta *m)
{
    return (m->kl_warmup == 0 || add_string(md, "kl_warmup", "%d", m->kl_warmup)) &&
           (m->kl_cycles == 0 || add_string(md, "kl_cycles", "%d", m->kl_cycles)) &&
           (m->lr_schedule == LR_CONSTANT ||
            add_string(md, "lr_schedule", "%s", schedule_lr_name(m->lr_schedule))) &&
           (m->lr_warmup == 0 || add_string(md, "lr_warmup", "%d", m->lr_warmup)) &&
           (m->schedule_epochs == 0 ||
            add_string(md, "schedule_epochs", "%d", m->schedule_epochs)) &&
           (m->free_bits == 0 || add_string(md, "free_bits", "%.17g", m->free_bits)) &&
           (m->clip_grad == 0 || add_string(md, "clip_grad", "%.17g", m->clip_grad)) &&
           (m->binarize == CKPT_BINARIZE_NONE ||
            add_string(md, "binarize", "%s", checkpoint_binarize_name(m->binarize)));
}

// The __metadata__ object: every value a string, as safetensors requires.
static bool add_metadata(cJSON *root, const struct ckpt_meta *m)
{
    const struct optimizer_kind *optimizer = m->optimizer.kind;
    cJSON *md = cJSON_AddObjectToObject(root, "__metadata__");
    if (!md) {
        return false;
    }
    char encoder[VAE_LAYERS_TEXT_MAX], decoder[VAE_LAYERS_TEXT_MAX];
    vae_format_layers(m->cfg.encoder, m->cfg.n_encoder, encoder, sizeof encoder);
    vae_format_layers(m->cfg.decoder, m->cfg.n_decoder, decoder, sizeof decoder);
    bool ok =
        add_string(md, "format", "clvae") &&
        add_string(md, "format_version", "%d", CKPT_FORMAT_VERSION) &&
        add_string(md, "in_dim", "%d", m->cfg.in_dim) &&
        add_string(md, "image_rows", "%d", m->image_rows) &&
        add_string(md, "image_cols", "%d", m->image_cols) &&
        add_string(md, "channels", "%d", m->channels) &&
        add_string(md, "likelihood", "%s", likelihood_name(m->cfg.likelihood)) &&
        add_string(md, "background", "%d,%d,%d", m->background[0], m->background[1],
                   m->background[2]) &&
        add_shortest(md, "test_split", m->test_split) && add_classes(md, m) &&
        add_image_options(md, m) && add_conditional(md, m) &&
        add_string(md, "encoder", "%s", encoder) && add_string(md, "decoder", "%s", decoder) &&
        add_string(md, "latent", "%d", m->cfg.latent) && add_string(md, "batch", "%d", m->batch) &&
        add_string(md, "lr", "%.17g", m->lr) && add_string(md, "beta", "%.17g", m->beta) &&
        add_schedule(md, m) && add_string(md, "seed", "%" PRIu64, m->seed) &&
        add_string(md, "epoch", "%d", m->epoch) && add_string(md, "step", "%" PRId64, m->step) &&
        add_string(md, "epoch_step", "%d", m->epoch_step) &&
        add_string(md, "optimizer", "%s", optimizer ? optimizer->name : "none");
    for (int i = 0; ok && optimizer && i < optimizer->n_hyper; i++) {
        char key[64];
        ok = add_shortest(md, hyper_key(optimizer, &optimizer->hyper[i], key),
                          m->optimizer.hyper[i]);
    }
    return ok && add_string(md, "layout", "%s", CKPT_LAYOUT);
}

// The header JSON, padded with spaces to a multiple of 8 bytes; *len its length. NULL when out of
// memory. Tensors' data follow each other in list order.
static char *build_header(const struct ckpt_meta *m, const struct tensor *t, int n, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root && add_metadata(root, m);
    uint64_t offset = 0;
    for (int k = 0; ok && k < n; k++) {
        cJSON *entry = cJSON_AddObjectToObject(root, t[k].name);
        double shape[4] = {t[k].shape[0], t[k].shape[1], t[k].shape[2], t[k].shape[3]};
        double offsets[2] = {(double)offset, (double)(offset + 4 * t[k].count)};
        offset += 4 * t[k].count;
        ok = entry && add_string(entry, "dtype", "F32") &&
             add_numbers(entry, "shape", shape, t[k].ndim) &&
             add_numbers(entry, "data_offsets", offsets, 2);
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) {
        return NULL;
    }
    size_t json_len = strlen(json);
    *len = (json_len + 7) / 8 * 8;
    char *header = xmalloc(*len);
    memcpy(header, json, json_len);
    memset(header + json_len, ' ', *len - json_len);
    cJSON_free(json);
    return header;
}

// Header length, header and every tensor's bytes into fp; -1 with errno's text in why.
static int write_stream(FILE *fp, const char *header, size_t header_len, const struct tensor *t,
                        int n, const float *const arrays[CKPT_ARRAYS], char *why)
{
    uint8_t len_bytes[8];
    put_u64_le(len_bytes, header_len);
    size_t max_count = 0;
    for (int k = 0; k < n; k++) {
        max_count = t[k].count > max_count ? t[k].count : max_count;
    }
    errno = 0;
    if (fwrite(len_bytes, 1, 8, fp) != 8 || fwrite(header, 1, header_len, fp) != header_len) {
        return bad(why, "%s", errno ? strerror(errno) : "write failed");
    }
    uint8_t *bytes = xmalloc(4 * max_count);
    for (int k = 0; k < n; k++) {
        pack_tensor(&t[k], arrays[t[k].array], bytes);
        if (fwrite(bytes, 4, t[k].count, fp) != t[k].count) {
            free(bytes);
            return bad(why, "%s", errno ? strerror(errno) : "write failed");
        }
    }
    free(bytes);
    return 0;
}

// Checks the arguments, then writes path atomically (include/io/atomic_file.h).
int checkpoint_save(const char *path, const struct ckpt_meta *meta, const float *params,
                    const float *const *state, struct clvae_error *err)
{
    char why[CKPT_WHY_MAX];
    if (!path || !*path) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "checkpoint_save: empty output path");
    }
    const struct optimizer_kind *optimizer = meta ? meta->optimizer.kind : NULL;
    const float *arrays[CKPT_ARRAYS] = {params};
    bool state_ok = !optimizer == !state;
    for (int s = 0; state_ok && optimizer && s < optimizer->n_state; s++) {
        state_ok = (arrays[1 + s] = state[s]) != NULL;
    }
    if (!meta || !params || !state_ok) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE,
                          "%s: checkpoint_save: needs meta, params, and each of the optimizer's "
                          "state arrays when meta names one (none otherwise)",
                          path);
    }
    // A bug in the caller, not the disk: status 1, as png_write_gray does for bad arguments.
    if (check_meta(meta, why)) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: checkpoint_save: %s", path, why);
    }
    struct vae vae;
    struct vae_config cfg = meta_config(meta);
    vae_layout(&vae, &cfg, "architecture", NULL); // check_meta has laid it out already
    struct tensor *tensors = xmalloc(CKPT_MAX_TENSORS * sizeof *tensors);
    int n = list_tensors(&vae, optimizer, tensors, why); // check_meta has counted them
    if (n < 0) {
        free(tensors);
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: checkpoint_save: %s", path, why);
    }
    size_t header_len;
    char *header = build_header(meta, tensors, n, &header_len);
    if (!header) {
        free(tensors);
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: out of host memory building the header",
                          path);
    }

    struct atomic_file out;
    int status = atomic_file_open(&out, path, err);
    if (status == 0) {
        if (write_stream(out.fp, header, header_len, tensors, n, arrays, why)) {
            atomic_file_abort(&out);
            status = clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path, why);
        } else {
            status = atomic_file_commit(&out, err);
        }
    }
    free(header);
    free(tensors);
    return status;
}

// Reads exactly len bytes at offset; -1 with the reason in why (a short read: the file shrank).
static int read_at(int fd, void *buf, size_t len, uint64_t offset, char *why)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t got = pread(fd, p, len, (off_t)offset);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return bad(why, "%s", strerror(errno));
        }
        if (got == 0) {
            return bad(why, "unexpected end of file at byte %" PRIu64 " (truncated while read?)",
                       offset);
        }
        p += got;
        len -= (size_t)got;
        offset += (uint64_t)got;
    }
    return 0;
}

// The string value of __metadata__[key]; NULL with why set when it is missing or not a string.
static const char *meta_string(const cJSON *md, const char *key, char *why)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(md, key);
    if (!item) {
        bad(why, "__metadata__: \"%s\" is missing", key);
        return NULL;
    }
    if (!cJSON_IsString(item) || !item->valuestring) {
        bad(why, "__metadata__: \"%s\" is not a string", key);
        return NULL;
    }
    return item->valuestring;
}

// An integer written as digits with an optional leading '-' and nothing else, within [lo, hi].
static int parse_i64(const char *key, const char *text, int64_t lo, int64_t hi, int64_t *out,
                     char *why)
{
    const char *digits = text[0] == '-' ? text + 1 : text;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!isdigit((unsigned char)digits[0]) || *end != '\0') {
        return bad(why, "__metadata__: %s '%.64s' is not an integer", key, text);
    }
    if (errno == ERANGE || v < lo || v > hi) {
        return bad(why, "__metadata__: %s %.64s is out of range (%" PRId64 " to %" PRId64 ")", key,
                   text, lo, hi);
    }
    *out = v;
    return 0;
}

// __metadata__[key] as an int in [lo, hi] (the limits check_meta holds saved checkpoints to).
static int meta_int(const cJSON *md, const char *key, int lo, int hi, int *out, char *why)
{
    const char *text = meta_string(md, key, why);
    int64_t v = 0;
    if (!text || parse_i64(key, text, lo, hi, &v, why)) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

// __metadata__[key] as a finite double, written as %.17g writes it or any way strtod reads.
static int meta_double(const cJSON *md, const char *key, double *out, char *why)
{
    const char *text = meta_string(md, key, why);
    if (!text) {
        return -1;
    }
    char *end;
    double v = strtod(text, &end);
    if (isspace((unsigned char)text[0]) || end == text || *end != '\0' || !isfinite(v)) {
        return bad(why, "__metadata__: %s '%.64s' is not a finite number", key, text);
    }
    *out = v;
    return 0;
}

// __metadata__[key] as an unsigned 64-bit integer: digits only.
static int meta_u64(const cJSON *md, const char *key, uint64_t *out, char *why)
{
    const char *text = meta_string(md, key, why);
    if (!text) {
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (!isdigit((unsigned char)text[0]) || *end != '\0' || errno == ERANGE) {
        return bad(why, "__metadata__: %s '%.64s' is not an integer from 0 to 2^64-1", key, text);
    }
    *out = v;
    return 0;
}

// Format version 1's "512,256" -> dense encoder layers and their mirror as the decoder (range
// rules are check_meta's).
static int meta_hidden(const cJSON *md, struct vae_config *cfg, char *why)
{
    const char *text = meta_string(md, "hidden", why);
    if (!text) {
        return -1;
    }
    int n = 0;
    for (const char *p = text;;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (!isdigit((unsigned char)p[0]) || (*end != '\0' && *end != ',')) {
            return bad(why, "__metadata__: hidden '%.64s' is not a comma-separated list of widths",
                       text);
        }
        if (n == VAE_MAX_HIDDEN) {
            return bad(why, "__metadata__: hidden '%.64s': too many hidden layers (at most %d)",
                       text, VAE_MAX_HIDDEN);
        }
        if (errno == ERANGE || v < 1 || v > CKPT_MAX_DIM) {
            return bad(why, "__metadata__: hidden width %.*s is out of range (1 to %d)",
                       (int)(end - p > 32 ? 32 : end - p), p, CKPT_MAX_DIM);
        }
        cfg->encoder[n++] = (struct layer_spec){.kind = LAYER_DENSE, .units = (int)v};
        if (*end == '\0') {
            break;
        }
        p = end + 1;
    }
    cfg->n_encoder = cfg->n_decoder = n;
    for (int i = 0; i < n; i++) {
        cfg->decoder[i] = cfg->encoder[n - 1 - i];
    }
    return 0;
}

// Format version 2's __metadata__[key], "dense:512,dense:256", -> specs, *n.
static int meta_layers(const cJSON *md, const char *key, struct layer_spec *specs, int *n,
                       char *why)
{
    const char *text = meta_string(md, key, why);
    if (!text) {
        return -1;
    }
    char option[48];
    snprintf(option, sizeof option, "__metadata__: %s", key);
    struct clvae_error err;
    if (vae_parse_layers(option, text, specs, n, &err)) {
        return bad(why, "%.900s", err.msg);
    }
    return 0;
}

// Format version 3's "background": "R,G,B", each 0 to 255.
static int meta_background(const cJSON *md, uint8_t rgb[3], char *why)
{
    const char *text = meta_string(md, "background", why);
    if (!text) {
        return -1;
    }
    int v[3], used = 0;
    if (sscanf(text, "%3d,%3d,%3d%n", &v[0], &v[1], &v[2], &used) != 3 || text[used] != '\0' ||
        !isdigit((unsigned char)text[0])) {
        return bad(why, "__metadata__: background '%.64s' is not R,G,B", text);
    }
    for (int i = 0; i < 3; i++) {
        if (v[i] < 0 || v[i] > 255) {
            return bad(why, "__metadata__: background '%.64s': each of R,G,B is 0 to 255", text);
        }
        rgb[i] = (uint8_t)v[i];
    }
    return 0;
}

// Format version 3's optional "classes": a JSON array of CKPT_MAX_CLASSES names at most, each a
// non-empty string without control characters, into m->class_names (owned).
static int meta_classes(const cJSON *md, struct ckpt_meta *m, char *why)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(md, "classes");
    if (!item) {
        return 0;
    }
    if (!cJSON_IsString(item) || !item->valuestring) {
        return bad(why, "__metadata__: \"classes\" is not a string");
    }
    cJSON *array = cJSON_Parse(item->valuestring);
    int n = cJSON_IsArray(array) ? cJSON_GetArraySize(array) : -1;
    if (n < 1 || n > CKPT_MAX_CLASSES) {
        cJSON_Delete(array);
        return bad(why, "__metadata__: classes is not a JSON array of 1 to %d names",
                   CKPT_MAX_CLASSES);
    }
    m->class_names = xcalloc((size_t)n, sizeof *m->class_names);
    m->n_classes = n;
    int k = 0;
    for (const cJSON *name = array->child; name; name = name->next, k++) {
        bool ok = cJSON_IsString(name) && name->valuestring && name->valuestring[0];
        for (const char *c = ok ? name->valuestring : ""; ok && *c; c++) {
            ok = (unsigned char)*c >= 0x20;
        }
        if (!ok) {
            cJSON_Delete(array);
            return bad(why, "__metadata__: classes: item %d is not a name", k);
        }
        m->class_names[k] = xmalloc(strlen(name->valuestring) + 1);
        strcpy(m->class_names[k], name->valuestring);
    }
    cJSON_Delete(array);
    return 0;
}

// "optimizer": a kind's name or "none", and the kind's hyper-parameters ("adam_beta1", ...), each
// checked here (check_optimizer) as it was before there were kinds.
static int meta_optimizer(const cJSON *md, struct optimizer_config *cfg, char *why)
{
    const char *text = meta_string(md, "optimizer", why);
    if (!text) {
        return -1;
    }
    memset(cfg, 0, sizeof *cfg);
    if (strcmp(text, "none") == 0) {
        return 0;
    }
    const struct optimizer_kind *kind = optimizer_find(text);
    if (!kind) {
        char names[128] = "";
        for (int k = 0; optimizer_kinds[k]; k++) {
            size_t used = strlen(names);
            snprintf(names + used, sizeof names - used, "%s, ", optimizer_kinds[k]->name);
        }
        return bad(why, "__metadata__: optimizer '%.64s' unknown (%snone)", text, names);
    }
    cfg->kind = kind;
    for (int i = 0; i < kind->n_hyper; i++) {
        char key[64];
        if (meta_double(md, hyper_key(kind, &kind->hyper[i], key), &cfg->hyper[i], why)) {
            return -1;
        }
    }
    char rule[CKPT_WHY_MAX];
    if (check_optimizer(cfg, rule)) {
        return bad(why, "__metadata__: %.900s", rule);
    }
    return 0;
}

// The optional "crop" ("none" or "center") and "flip" ("0" or "1"); absent: none, off.
static int meta_image_options(const cJSON *md, struct ckpt_meta *m, char *why)
{
    const cJSON *crop = cJSON_GetObjectItemCaseSensitive(md, "crop");
    const cJSON *flip = cJSON_GetObjectItemCaseSensitive(md, "flip");
    const char *c = crop && cJSON_IsString(crop) ? crop->valuestring : NULL;
    const char *f = flip && cJSON_IsString(flip) ? flip->valuestring : NULL;
    if (crop && (!c || (strcmp(c, "none") != 0 && strcmp(c, "center") != 0))) {
        return bad(why, "__metadata__: crop '%.64s' is neither none nor center", c ? c : "?");
    }
    if (flip && (!f || (strcmp(f, "0") != 0 && strcmp(f, "1") != 0))) {
        return bad(why, "__metadata__: flip '%.64s' is neither 0 nor 1", f ? f : "?");
    }
    m->crop = c && strcmp(c, "center") == 0;
    m->flip = f && strcmp(f, "1") == 0;
    return 0;
}

// The optional "conditional" (add_conditional): the model takes the one-hot of its classes, whose
// names "classes" must then list.
static int meta_conditional(const cJSON *md, struct ckpt_meta *m, char *why)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(md, "conditional");
    const char *v = item && cJSON_IsString(item) ? item->valuestring : NULL;
    if (item && (!v || (strcmp(v, "0") != 0 && strcmp(v, "1") != 0))) {
        return bad(why, "__metadata__: conditional '%.64s' is neither 0 nor 1", v ? v : "?");
    }
    bool on = v && strcmp(v, "1") == 0;
    if (on && m->n_classes == 0) {
        return bad(why, "__metadata__: conditional is 1 but no classes are listed");
    }
    m->cfg.classes = on ? m->n_classes : 0;
    return 0;
}

// The optional schedule keys (add_schedule); absent: the defaults.
static int meta_schedule(const cJSON *md, struct ckpt_meta *m, char *why)
{
    static const struct {
        const char *key;
        size_t at;
    } ints[] = {{"kl_warmup", offsetof(struct ckpt_meta, kl_warmup)},
                {"kl_cycles", offsetof(struct ckpt_meta, kl_cycles)},
                {"lr_warmup", offsetof(struct ckpt_meta, lr_warmup)},
                {"schedule_epochs", offsetof(struct ckpt_meta, schedule_epochs)}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (cJSON_GetObjectItemCaseSensitive(md, ints[i].key) &&
            meta_int(md, ints[i].key, 1, INT_MAX, (int *)((char *)m + ints[i].at), why)) {
            return -1;
        }
    }
    const char *keys[] = {"free_bits", "clip_grad"};
    double *values[] = {&m->free_bits, &m->clip_grad};
    for (int i = 0; i < 2; i++) {
        if (cJSON_GetObjectItemCaseSensitive(md, keys[i]) &&
            meta_double(md, keys[i], values[i], why)) {
            return -1;
        }
        if (*values[i] < 0) {
            return bad(why, "__metadata__: %s %g is below 0", keys[i], *values[i]);
        }
    }
    if (cJSON_GetObjectItemCaseSensitive(md, "binarize")) {
        const char *text = meta_string(md, "binarize", why);
        struct clvae_error err;
        if (!text) {
            return -1;
        }
        if (checkpoint_parse_binarize("__metadata__: binarize", text, &m->binarize, &err)) {
            return bad(why, "%.200s", err.msg);
        }
        if (m->cfg.likelihood != LIKELIHOOD_BERNOULLI) {
            return bad(why, "__metadata__: binarize %s with the %s likelihood", text,
                       likelihood_name(m->cfg.likelihood));
        }
    }
    if (cJSON_GetObjectItemCaseSensitive(md, "lr_schedule")) {
        const char *text = meta_string(md, "lr_schedule", why);
        struct clvae_error err;
        if (!text) {
            return -1;
        }
        if (schedule_parse_lr("__metadata__: lr_schedule", text, &m->lr_schedule, &err)) {
            return bad(why, "%.200s", err.msg);
        }
    }
    return 0;
}

// __metadata__ -> *m, every field present and well-formed, then check_meta's rules.
static int parse_meta(const cJSON *md, struct ckpt_meta *m, char *why)
{
    memset(m, 0, sizeof *m);
    m->channels = 1;
    m->background[0] = m->background[1] = m->background[2] = 255;
    m->test_split = 0.1;
    const char *text = meta_string(md, "format", why);
    if (!text) {
        return -1;
    }
    if (strcmp(text, "clvae") != 0) {
        return bad(why, "__metadata__: format '%.64s' is not clvae's (\"clvae\")", text);
    }
    if (!(text = meta_string(md, "format_version", why))) {
        return -1;
    }
    int64_t version = 0;
    if (parse_i64("format_version", text, 0, INT_MAX, &version, why)) {
        return -1;
    }
    if (version < 1 || version > CKPT_FORMAT_VERSION) {
        return bad(why, "format version %" PRId64 ", this clvae reads 1 to %d", version,
                   CKPT_FORMAT_VERSION);
    }
    if (!(text = meta_string(md, "layout", why))) {
        return -1;
    }
    if (strcmp(text, CKPT_LAYOUT) != 0) {
        return bad(why, "__metadata__: layout '%.64s' unknown, clvae reads '%s'", text,
                   CKPT_LAYOUT);
    }
    if (meta_int(md, "in_dim", 1, CKPT_MAX_DIM, &m->cfg.in_dim, why) ||
        meta_int(md, "image_rows", 1, CKPT_MAX_DIM, &m->image_rows, why) ||
        meta_int(md, "image_cols", 1, CKPT_MAX_DIM, &m->image_cols, why) ||
        (version == 1 ? meta_hidden(md, &m->cfg, why)
                      : meta_layers(md, "encoder", m->cfg.encoder, &m->cfg.n_encoder, why) ||
                            meta_layers(md, "decoder", m->cfg.decoder, &m->cfg.n_decoder, why)) ||
        meta_int(md, "latent", 1, CKPT_MAX_DIM, &m->cfg.latent, why) ||
        meta_int(md, "batch", 1, INT_MAX, &m->batch, why) || meta_double(md, "lr", &m->lr, why) ||
        meta_double(md, "beta", &m->beta, why) || meta_u64(md, "seed", &m->seed, why) ||
        meta_int(md, "epoch", 0, INT_MAX, &m->epoch, why) ||
        meta_int(md, "epoch_step", 0, INT_MAX, &m->epoch_step, why)) {
        return -1;
    }
    if (version >= 3) {
        if (meta_int(md, "channels", 1, 3, &m->channels, why) ||
            !(text = meta_string(md, "likelihood", why))) {
            return -1;
        }
        struct clvae_error err;
        if (likelihood_parse("__metadata__: likelihood", text, &m->cfg.likelihood, &err)) {
            return bad(why, "%.200s", err.msg);
        }
        if (meta_background(md, m->background, why) ||
            meta_double(md, "test_split", &m->test_split, why) || meta_classes(md, m, why) ||
            meta_image_options(md, m, why) || meta_conditional(md, m, why)) {
            return -1;
        }
    }
    int64_t step = 0;
    if (!(text = meta_string(md, "step", why)) ||
        parse_i64("step", text, 0, INT64_MAX, &step, why)) {
        return -1;
    }
    m->step = step;
    if (meta_optimizer(md, &m->optimizer, why) || meta_schedule(md, m, why)) {
        return -1;
    }
    m->cfg = meta_config(m);
    char rule[CKPT_WHY_MAX];
    if (check_meta(m, rule)) {
        return bad(why, "__metadata__: %.900s", rule);
    }
    return 0;
}

// item's dimensions as "[a,b]" for a message, whatever JSON it holds.
static void describe_shape(const cJSON *item, char *buf, size_t size)
{
    if (!cJSON_IsArray(item)) {
        snprintf(buf, size, "%s", item ? "(not an array)" : "(missing)");
        return;
    }
    size_t used = (size_t)snprintf(buf, size, "[");
    int k = 0;
    for (const cJSON *d = item->child; d && used < size; d = d->next, k++) {
        const char *sep = k ? "," : "";
        if (k == 4) {
            used += (size_t)snprintf(buf + used, size - used, ",...");
            break;
        }
        double v = cJSON_IsNumber(d) ? d->valuedouble : NAN;
        if (v == floor(v) && fabs(v) < 1e20) { // a whole number as digits, 2^62 too
            used += (size_t)snprintf(buf + used, size - used, "%s%.0f", sep, v);
        } else if (cJSON_IsNumber(d)) {
            used += (size_t)snprintf(buf + used, size - used, "%s%.17g", sep, v);
        } else {
            used += (size_t)snprintf(buf + used, size - used, "%s?", sep);
        }
    }
    if (used < size) {
        snprintf(buf + used, size - used, "]");
    }
}

// A JSON number that is a whole byte offset a double holds exactly.
static bool json_offset(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item)) {
        return false;
    }
    double v = item->valuedouble;
    if (!(v >= 0 && v <= CKPT_MAX_OFFSET) || v != floor(v)) {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

// Checks one header entry against the tensor the architecture needs and records its byte range,
// which must lie inside the data_len bytes of the data section.
static int check_entry(const cJSON *entry, struct tensor *t, uint64_t data_len, char *why)
{
    if (!cJSON_IsObject(entry)) {
        return bad(why, "tensor '%s' is not an object", t->name);
    }
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dtype) || !dtype->valuestring) {
        return bad(why, "tensor '%s': dtype missing or not a string", t->name);
    }
    if (strcmp(dtype->valuestring, "F32") != 0) {
        return bad(why, "tensor '%s': dtype %.16s, clvae reads F32 only", t->name,
                   dtype->valuestring);
    }
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    bool shape_ok = cJSON_IsArray(shape) && cJSON_GetArraySize(shape) == t->ndim;
    int k = 0;
    for (const cJSON *d = shape_ok ? shape->child : NULL; d; d = d->next, k++) {
        shape_ok = shape_ok && cJSON_IsNumber(d) && d->valuedouble == t->shape[k];
    }
    if (!shape_ok) {
        char have[128], want[64];
        describe_shape(shape, have, sizeof have);
        return bad(why, "tensor '%s': shape %s, the architecture needs %s", t->name, have,
                   shape_text(t, want, sizeof want));
    }
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_offset(offsets->child, &t->begin) || !json_offset(offsets->child->next, &t->end)) {
        return bad(why, "tensor '%s': data_offsets is not [begin, end] (two whole byte offsets)",
                   t->name);
    }
    if (t->begin > t->end) {
        return bad(why, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before begin",
                   t->name, t->begin, t->end);
    }
    uint64_t bytes = 4 * (uint64_t)t->count;
    if (t->end - t->begin != bytes) {
        return bad(why,
                   "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                   " bytes, its shape needs %" PRIu64,
                   t->name, t->begin, t->end, t->end - t->begin, bytes);
    }
    if (t->end > data_len) {
        return bad(why,
                   "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                   "] outside the data section (%" PRIu64 " bytes: is the file truncated?)",
                   t->name, t->begin, t->end, data_len);
    }
    return 0;
}

// qsort order: by first byte.
static int by_begin(const void *a, const void *b)
{
    const struct tensor *x = *(const struct tensor *const *)a;
    const struct tensor *y = *(const struct tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// Requires the tensors' byte ranges to cover the data section exactly once, in any order.
static int check_tiling(struct tensor *t, int n, uint64_t data_len, char *why)
{
    struct tensor *sorted[CKPT_MAX_TENSORS];
    for (int k = 0; k < n; k++) {
        sorted[k] = &t[k];
    }
    qsort(sorted, (size_t)n, sizeof *sorted, by_begin);
    uint64_t covered = 0;
    for (int k = 0; k < n; k++) {
        if (sorted[k]->begin < covered) {
            return bad(why, "tensors '%s' and '%s' overlap (data_offsets)", sorted[k - 1]->name,
                       sorted[k]->name);
        }
        if (sorted[k]->begin > covered) {
            return bad(why,
                       "a gap of %" PRIu64 " bytes before tensor '%s' (data_offsets must tile "
                       "the data section)",
                       sorted[k]->begin - covered, sorted[k]->name);
        }
        covered = sorted[k]->end;
    }
    if (covered != data_len) {
        return bad(why,
                   "the data section is %" PRIu64 " bytes but its tensors take %" PRIu64
                   " (trailing bytes)",
                   data_len, covered);
    }
    return 0;
}

// Matches the header's entries with the tensors the metadata's architecture needs: each once,
// none missing, none extra, each well-formed, together tiling the data section.
static int check_tensors(const cJSON *root, struct tensor *t, int n,
                         const struct optimizer_kind *optimizer, uint64_t data_len, char *why)
{
    int n_meta = 0;
    for (const cJSON *entry = root->child; entry; entry = entry->next) {
        const char *key = entry->string ? entry->string : "";
        if (strcmp(key, "__metadata__") == 0) {
            if (++n_meta > 1) {
                return bad(why, "__metadata__ appears twice");
            }
            continue;
        }
        struct tensor *match = NULL;
        for (int k = 0; k < n && !match; k++) {
            match = strcmp(t[k].name, key) == 0 ? &t[k] : NULL;
        }
        if (!match) {
            bool moment = strncmp(key, "optimizer.", 10) == 0;
            return bad(why, "unexpected tensor '%.64s'%s", key,
                       moment && !optimizer ? " (metadata optimizer is none)"
                                            : " (not in this architecture)");
        }
        if (match->seen) {
            return bad(why, "tensor '%s' appears twice", key);
        }
        match->seen = true;
        if (check_entry(entry, match, data_len, why)) {
            return -1;
        }
    }
    for (int k = 0; k < n; k++) {
        if (!t[k].seen) {
            return bad(why, "tensor '%s' is missing", t[k].name);
        }
    }
    return check_tiling(t, n, data_len, why);
}

// The header JSON (len bytes of buf, NUL-terminated): one object and then only the padding.
static cJSON *parse_header(const char *buf, size_t len, char *why)
{
    // cJSON would skip any leading bytes up to ' ', NULs included; safetensors readers want '{'.
    if (buf[0] != '{') {
        bad(why, "the header JSON is not an object (its first byte is not '{')");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    if (!root) {
        size_t at = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        bad(why, "the header is not valid JSON (near byte %zu of %zu)", at, len);
        return NULL;
    }
    for (const char *p = end; p < buf + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            bad(why, "the header is not valid JSON (more after the object, at byte %zu)",
                (size_t)(p - buf));
            return NULL;
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        bad(why, "the header JSON is not an object");
        return NULL;
    }
    return root;
}

// The tensors of the parsed header root into *c (whose meta parse_meta has filled): checks them
// against the architecture, then reads each from the data section at data_start into its place.
static int load_tensors(int fd, const cJSON *root, uint64_t data_start, uint64_t data_len,
                        struct ckpt *c, char *why)
{
    struct tensor *t = xmalloc(CKPT_MAX_TENSORS * sizeof *t);
    struct vae vae;
    struct vae_config cfg = meta_config(&c->meta);
    // parse_meta has laid it out and counted its tensors already.
    vae_layout(&vae, &cfg, "architecture", NULL);
    const struct optimizer_kind *optimizer = c->meta.optimizer.kind;
    int n = list_tensors(&vae, optimizer, t, why);
    if (n < 0 || check_tensors(root, t, n, optimizer, data_len, why)) {
        free(t);
        return -1;
    }
    // The sizes are now the architecture's, which check_meta bounded, and the file holds them all.
    c->n_params = vae.n_params;
    float *arrays[CKPT_ARRAYS] = {NULL};
    arrays[0] = c->params = xmalloc(c->n_params * sizeof(float));
    for (int s = 0; optimizer && s < optimizer->n_state; s++) {
        arrays[1 + s] = c->state[s] = xmalloc(c->n_params * sizeof(float));
    }
    size_t max_count = 0;
    for (int k = 0; k < n; k++) {
        max_count = t[k].count > max_count ? t[k].count : max_count;
    }
    uint8_t *bytes = xmalloc(4 * max_count);
    int rc = 0;
    for (int k = 0; k < n && rc == 0; k++) {
        rc = read_at(fd, bytes, 4 * t[k].count, data_start + t[k].begin, why);
        if (rc == 0) {
            unpack_tensor(&t[k], bytes, arrays[t[k].array]);
        }
    }
    free(bytes);
    free(t);
    return rc;
}

// The header of the file of size bytes open on fd, parsed; NULL with the reason in why.
static cJSON *read_header(int fd, uint64_t size, uint64_t *header_len, char *why)
{
    uint8_t len_bytes[8];
    if (size < 8) {
        bad(why, "the file is %" PRIu64 " bytes, too short for the 8-byte header length", size);
        return NULL;
    }
    if (read_at(fd, len_bytes, 8, 0, why)) {
        return NULL;
    }
    uint64_t len = get_u64_le(len_bytes);
    if (len == 0) {
        bad(why, "header length 0");
        return NULL;
    }
    if (len > CKPT_MAX_HEADER) {
        bad(why, "header length %" PRIu64 " is over the limit of 100 MiB", len);
        return NULL;
    }
    if (len > size - 8) {
        bad(why,
            "header length %" PRIu64 " runs past the end of the file (%" PRIu64
            " bytes: is it truncated?)",
            len, size);
        return NULL;
    }
    // One byte more, a NUL: nothing cJSON does can read past the header.
    char *text = xmalloc((size_t)len + 1);
    text[len] = '\0';
    cJSON *root = read_at(fd, text, (size_t)len, 8, why) ? NULL : parse_header(text, len, why);
    free(text);
    *header_len = len;
    return root;
}

// Loads the checkpoint of size bytes open on fd into out; -1 with the reason in why, out untouched.
static int load_fd(int fd, uint64_t size, struct ckpt *out, char *why)
{
    uint64_t header_len;
    cJSON *root = read_header(fd, size, &header_len, why);
    if (!root) {
        return -1;
    }
    struct ckpt c = {0};
    int rc = -1;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (!md) {
        bad(why, "the header has no __metadata__ (missing)");
    } else if (!cJSON_IsObject(md)) {
        bad(why, "__metadata__ is not an object");
    } else if (parse_meta(md, &c.meta, why) == 0) {
        rc = load_tensors(fd, root, 8 + header_len, size - 8 - header_len, &c, why);
    }
    cJSON_Delete(root);
    if (rc != 0) {
        checkpoint_free(&c);
        return -1;
    }
    *out = c;
    return 0;
}

// Opens path without blocking (a FIFO would wait for a writer), checks it is a regular file and
// loads it; every failure is CLVAE_EXIT_DATA naming path, with *out left zeroed.
int checkpoint_load(const char *path, struct ckpt *out, struct clvae_error *err)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path) {
        return clvae_fail(err, CLVAE_EXIT_DATA, "checkpoint_load: empty checkpoint path");
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    char why[CKPT_WHY_MAX];
    int rc;
    if (fstat(fd, &st) != 0) {
        rc = bad(why, "%s", strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        rc = bad(why, "%s", strerror(EISDIR));
    } else if (!S_ISREG(st.st_mode)) {
        rc = bad(why, "not a regular file");
    } else {
        rc = load_fd(fd, (uint64_t)st.st_size, out, why);
    }
    close(fd);
    if (rc != 0) {
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", path, why);
    }
    return 0;
}

// Frees the arrays and zeroes the struct: safe on a zeroed struct and twice.
void checkpoint_free(struct ckpt *ckpt)
{
    if (!ckpt) {
        return;
    }
    free(ckpt->params);
    for (int s = 0; s < OPTIMIZER_MAX_STATE; s++) {
        free(ckpt->state[s]);
    }
    for (int i = 0; ckpt->meta.class_names && i < ckpt->meta.n_classes; i++) {
        free(ckpt->meta.class_names[i]);
    }
    free(ckpt->meta.class_names);
    memset(ckpt, 0, sizeof *ckpt);
}
