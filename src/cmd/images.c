#include "images.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "cli.h"
#include "dataset.h"
#include "idx.h"
#include "model_io.h"
#include "philox.h"
#include "plot.h"
#include "png_grid.h"

#define CHUNK_ROWS MODEL_IO_DECODE_ROWS // images decoded at once

// The options of the image subcommands; each uses the ones its usage lists.
struct image_options {
    const char *model, *out, *data, *each, *raw;
    const char *class_text; // --class NAME|INDEX, for a conditional model; NULL: not given
    const char *platform, *device;
    int n, cols, from, to, steps;
    bool images;
    double temperature, range;
    uint64_t seed;
};

static const char *const usage_generate =
    "usage: clvae generate --model FILE [-n 64] [--seed S] [--temperature T] [--cols C]\n"
    "                      [-o grid.png] [--each DIR] [--raw FILE] [--class NAME|INDEX]\n"
    "                      [--platform N --device N]\n"
    "\n"
    "Decodes n draws of z ~ N(0, T^2 I) into a grid. The draws depend only on the seed: with the\n"
    "training seed, the first 64 are those of the samples_epochNNN.png grids. --each writes one\n"
    "PNG per image into DIR (grey or RGB as the model's images); --raw writes each pixel's mean\n"
    "under the model's likelihood, in [0, 1], as little-endian float32 (n, height, width,\n"
    "channels). Defaults: -n 64, --seed 1, --temperature 1, --cols sqrt(n).\n"
    "A conditional model (train --conditional) decodes every draw as --class NAME|INDEX, or by\n"
    "default the classes in turn, a row each (then -n defaults to a row of --cols 8 a class).\n";
static const char *const usage_reconstruct =
    "usage: clvae reconstruct --model FILE [--data DIR] [-n 32] [--cols C] -o recon.png\n"
    "                         [--platform N --device N]\n"
    "\n"
    "The first n test images of DIR (default /usr/share/datasets/fashion-mnist: IDX files, or a\n"
    "PNG folder read as training read it), each followed by its reconstruction from the\n"
    "posterior mean; an -n past the test set is an error. Defaults: -n 32 (all the test\n"
    "images when there are fewer), --cols 8 (4 pairs a row). A conditional model takes each\n"
    "image's class from DIR's labels.\n";
static const char *const usage_interpolate =
    "usage: clvae interpolate --model FILE --from I --to J [--steps 10] [--data DIR] -o walk.png\n"
    "                         [--class NAME|INDEX] [--platform N --device N]\n"
    "\n"
    "A straight walk in latent space from the posterior mean of test image I to that of test\n"
    "image J: test image I, the decoded steps (both ends included), test image J, in one row.\n"
    "A conditional model encodes each end with its class and decodes the first half of the walk\n"
    "as I's class, the second as J's; --class NAME|INDEX decodes all of it as that class.\n";
static const char *const usage_scatter =
    "usage: clvae scatter --model FILE [--data DIR] [-n N] [--images] -o latent.png\n"
    "                     [--platform N --device N]\n"
    "\n"
    "The posterior means of the first N test images of DIR (default all; an N past the test\n"
    "set is an error), one dot each coloured by its class: a PNG folder's class folder, or for\n"
    "IDX files the label in DIR's t10k-labels-idx1-ubyte[.gz] (one colour without), named by\n"
    "DIR/classes.txt (a name a line), else Fashion-MNIST's names when DIR's path says fashion,\n"
    "else the class numbers.\n"
    "A 2-D latent is drawn as it is, a larger one on its first two\n"
    "principal components. --images draws up to 600 of the images, decoded from their means,\n"
    "instead of dots.\n";
static const char *const usage_plot =
    "usage: clvae plot --metrics FILE -o curves.png\n"
    "\n"
    "The learning curves of a metrics.csv that clvae train wrote (also one a resumed run\n"
    "appended to): negative ELBO, reconstruction and KL against epoch, train and test.\n";
static const char *const usage_manifold =
    "usage: clvae manifold --model FILE [-n 20] [--range R] -o manifold.png [--class NAME|INDEX]\n"
    "                      [--platform N --device N]\n"
    "\n"
    "For a 2-dimensional latent: an n x n grid of decoded images over the inverse normal CDF of a\n"
    "regular grid in (0, 1)^2. For a larger latent: one row per latent dimension, n images\n"
    "walking that dimension from -R to R (default 3) with the others at the prior mean 0.\n"
    "A conditional model needs --class NAME|INDEX: the class every image is decoded as.\n";

// Parses the options of subcommand name; usage is its help text. 1: --help was given (usage
// printed); 0: options parsed; -1: a bad command line.
static int parse_image_options(int argc, char **argv, const char *name, const char *usage,
                               struct image_options *o, struct clvae_error *err)
{
    enum {
        OPT_TEMPERATURE = 256,
        OPT_FROM,
        OPT_TO,
        OPT_STEPS,
        OPT_EACH,
        OPT_RAW,
        OPT_COLS,
        OPT_RANGE,
        OPT_IMAGES,
        OPT_CLASS
    };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"out", required_argument, NULL, 'o'},
        CLI_SOURCE_OPTIONS,
        {"seed", required_argument, NULL, 's'},
        {"temperature", required_argument, NULL, OPT_TEMPERATURE},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"steps", required_argument, NULL, OPT_STEPS},
        {"each", required_argument, NULL, OPT_EACH},
        {"raw", required_argument, NULL, OPT_RAW},
        {"cols", required_argument, NULL, OPT_COLS},
        {"range", required_argument, NULL, OPT_RANGE},
        {"images", no_argument, NULL, OPT_IMAGES},
        {"class", required_argument, NULL, OPT_CLASS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->data = "/usr/share/datasets/fashion-mnist";
    o->temperature = 1.0;
    o->seed = 1;
    o->from = o->to = -1;
    o->range = 3.0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:" CLI_SOURCE_SHORT "s:n:h", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'o': o->out = optarg; break;
        case 's': rc = cli_parse_u64("--seed", optarg, &o->seed, err); break;
        case 'n': rc = cli_parse_int("-n", optarg, 1, 100000, &o->n, err); break;
        case OPT_TEMPERATURE:
            rc = cli_parse_double("--temperature", optarg, 0.0, false, 100.0, &o->temperature, err);
            break;
        case OPT_FROM: rc = cli_parse_int("--from", optarg, 0, INT32_MAX, &o->from, err); break;
        case OPT_TO: rc = cli_parse_int("--to", optarg, 0, INT32_MAX, &o->to, err); break;
        case OPT_STEPS: rc = cli_parse_int("--steps", optarg, 2, 1000, &o->steps, err); break;
        case OPT_EACH: o->each = optarg; break;
        case OPT_RAW: o->raw = optarg; break;
        case OPT_COLS: rc = cli_parse_int("--cols", optarg, 1, 1000, &o->cols, err); break;
        case OPT_IMAGES: o->images = true; break;
        case OPT_CLASS: o->class_text = optarg; break;
        case OPT_RANGE:
            rc = cli_parse_double("--range", optarg, 0.0, true, 100.0, &o->range, err);
            break;
        case 'h': fputs(usage, stdout); return 1;
        default:
            rc = cli_parse_rest(c, optarg, argv, name, &o->platform, &o->device, &o->data, err);
        }
        if (rc)
            return -1;
    }
    if (optind < argc)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: unexpected argument (see clvae %s --help)",
                          argv[optind], name);
    if (!o->model || !o->model[0])
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: --model FILE is required", name);
    return 0;
}

// Fails unless -o was given (or, where allowed, another output).
static int need_out(const struct image_options *o, const char *name, bool other,
                    struct clvae_error *err)
{
    if ((!o->out || !o->out[0]) && !other)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: -o FILE is required", name);
    return 0;
}

// The model's image: values a pixel row, channels.
static size_t image_dim(const struct model_io *m)
{
    return (size_t)m->vae.cfg.in_dim;
}

// The class --class names (a class name of the model, or its index) into *cls; -1 when the model
// is not conditional or has no such class, one line naming it and the model's classes
// (CLVAE_EXIT_USAGE). Not given: *cls -1.
static int resolve_class(const struct model_io *m, const struct image_options *o, int *cls,
                         struct clvae_error *err)
{
    const struct ckpt_meta *meta = &m->ckpt.meta;
    *cls = -1;
    if (!o->class_text)
        return 0;
    if (!meta->cfg.classes)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--class %s: the model %s is not conditional (trained without "
                          "--conditional)",
                          o->class_text, o->model);
    for (int k = 0; k < meta->n_classes; k++)
        if (strcmp(meta->class_names[k], o->class_text) == 0)
            return *cls = k, 0;
    char *end;
    errno = 0;
    long k = strtol(o->class_text, &end, 10);
    if (o->class_text[0] && *end == '\0' && errno == 0 && k >= 0 && k < meta->n_classes &&
        isdigit((unsigned char)o->class_text[0]))
        return *cls = (int)k, 0;
    char names[512];
    size_t used = 0;
    names[0] = '\0';
    for (int i = 0; i < meta->n_classes && used < sizeof names - 64; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%d '%s'", i ? ", " : "", i,
                                 meta->class_names[i]);
    if (used >= sizeof names - 64)
        snprintf(names + used, sizeof names - used, ", ...");
    return clvae_fail(err, CLVAE_EXIT_USAGE,
                      "--class %s: no such class of the model %s; its %d classes are %s",
                      o->class_text, o->model, meta->n_classes, names);
}

// z (rows, latent) -> the pixel means into mean and as bytes into pixels (model_io_decode).
static void decode_images(struct model_io *m, const float *z, const int *labels, int rows,
                          float *mean, uint8_t *pixels)
{
    model_io_decode(&m->vae, z, labels, rows, mean, pixels);
}

// Writes tiles (n images of the model's size and channels) as a grid of cols a row.
static int write_tiles(const struct model_io *m, const char *path, const uint8_t *tiles, int n,
                       int cols, int pad, struct clvae_error *err)
{
    const struct ckpt_meta *meta = &m->ckpt.meta;
    return png_write_tiles(path, tiles, n, meta->image_rows, meta->image_cols, meta->channels, cols,
                           pad, err);
}

// Fails (CLVAE_EXIT_USAGE) unless a grid of rows x cols of the model's images (n of them) fits
// one PNG: refused before anything is decoded, naming what asked for it: counted (the count
// option as given, "-n 500"; NULL when left at its default) and --cols, else the model.
static int check_grid(const struct model_io *m, const struct image_options *o, const char *counted,
                      long long n, int rows, int cols, int pad, struct clvae_error *err)
{
    const struct ckpt_meta *meta = &m->ckpt.meta;
    int64_t height, width;
    if (png_grid_size(rows, cols, meta->image_rows, meta->image_cols, pad, &height, &width) == 0)
        return 0;
    char what[4200];
    if (counted && o->cols)
        snprintf(what, sizeof what, "%s with --cols %d", counted, o->cols);
    else if (counted)
        snprintf(what, sizeof what, "%s", counted);
    else if (o->cols)
        snprintf(what, sizeof what, "--cols %d", o->cols);
    else
        snprintf(what, sizeof what, "%s", o->model);
    return clvae_fail(err, CLVAE_EXIT_USAGE,
                      "%s: %lld images of %dx%d, %d a row, make a grid of %lldx%lld pixels, more "
                      "than %d a side: ask for fewer",
                      what, n, meta->image_cols, meta->image_rows, cols, (long long)width,
                      (long long)height, PNG_GRID_MAX_SIDE);
}

// DIR's test images for the model, with at least count of them (and their classes for a
// conditional model).
static int load_test_images(const struct image_options *o, const struct model_io *m, uint32_t count,
                            struct dataset *data, struct clvae_error *err)
{
    if (dataset_read_test(o->data, &m->ckpt.meta, o->model, data, err))
        return -1;
    if (dataset_check_labels(data, &m->ckpt.meta, o->model, err)) {
        dataset_free(data);
        return -1;
    }
    if (count > data->test.count) {
        clvae_fail(err, CLVAE_EXIT_USAGE, "-n %u: %s holds only %u test images", count,
                   data->source, data->test.count);
        dataset_free(data);
        return -1;
    }
    return 0;
}

// Encodes test images (indices, count <= max_rows) and returns their posterior means
// (count, latent) in mu, and their pixels scaled to [0, 1] in x (count, in_dim) if not NULL.
static int encode_means(struct model_io *m, const struct image_set *test, const int *indices,
                        int count, float *mu, float *x, struct clvae_error *err)
{
    size_t dim = image_dim(m), latent = (size_t)m->vae.cfg.latent;
    float *scaled = xmalloc((size_t)count * dim * sizeof(float));
    for (int i = 0; i < count; i++)
        for (size_t j = 0; j < dim; j++)
            scaled[(size_t)i * dim + j] =
                (float)test->pixels[(size_t)indices[i] * dim + j] * (1.0f / 255.0f);
    cl_mem rec = clrt_buffer(&m->rt, (size_t)count * sizeof(float), "losses", err);
    cl_mem kl = rec ? clrt_buffer(&m->rt, (size_t)count * sizeof(float), "KL terms", err) : NULL;
    if (!rec || !kl) {
        clrt_release_buffer(rec);
        free(scaled);
        return -1;
    }
    clrt_write(&m->rt, m->vae.x, 0, (size_t)count * dim * sizeof(float), scaled, true);
    if (m->vae.cfg.classes) {
        int *labels = xmalloc((size_t)count * sizeof *labels);
        for (int i = 0; i < count; i++)
            labels[i] = test->labels[indices[i]];
        vae_set_labels(&m->vae, labels, count);
        free(labels);
    }
    struct vae_pass pass = {.rows = count, .stream = PHILOX_STREAM_EVAL, .rec = rec, .kl = kl};
    vae_forward(&m->vae, &pass);
    float *ml = xmalloc((size_t)count * 2 * latent * sizeof(float));
    clrt_read(&m->rt, m->vae.ml, 0, (size_t)count * 2 * latent * sizeof(float), ml, true);
    for (int i = 0; i < count; i++)
        memcpy(mu + (size_t)i * latent, ml + (size_t)i * 2 * latent, latent * sizeof(float));
    if (x)
        memcpy(x, scaled, (size_t)count * dim * sizeof(float));
    free(ml);
    free(scaled);
    clrt_release_buffer(rec);
    clrt_release_buffer(kl);
    return 0;
}

// Writes len bytes to path atomically.
static int write_file_atomic(const char *path, const void *bytes, size_t len,
                             struct clvae_error *err)
{
    struct atomic_file out;
    if (atomic_file_open(&out, path, err))
        return -1;
    if (fwrite(bytes, 1, len, out.fp) != len) {
        int saved = errno;
        atomic_file_abort(&out);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path, strerror(saved));
    }
    return atomic_file_commit(&out, err);
}

int generate_main(int argc, char **argv, struct clvae_error *err)
{
    struct image_options o;
    int parsed = parse_image_options(argc, argv, "generate", usage_generate, &o, err);
    if (parsed != 0)
        return parsed > 0 ? 0 : -1;
    if (need_out(&o, "generate", o.each || o.raw, err))
        return -1;
    char counted[32] = "";
    snprintf(counted, sizeof counted, "-n %d", o.n);
    bool n_given = o.n > 0;
    struct model_io m;
    int cls;
    if (model_io_open(&m, o.model, o.platform, o.device, CHUNK_ROWS, err))
        return -1;
    if (resolve_class(&m, &o, &cls, err)) {
        model_io_close(&m);
        return -1;
    }
    // A conditional model's draws without --class: the classes in turn, a row of cols each.
    int classes = m.vae.cfg.classes, in_turn = classes && cls < 0;
    if (o.n == 0)
        o.n = in_turn ? (o.cols ? o.cols : 8) * (classes < 100000 / 8 ? classes : 1) : 64;
    int cols = o.cols ? o.cols : in_turn ? 8 : (int)ceil(sqrt((double)o.n));
    if (o.each && mkdir(o.each, 0777) != 0 && errno != EEXIST) {
        model_io_close(&m);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: cannot create directory: %s", o.each,
                          strerror(errno));
    }
    if (o.out &&
        check_grid(&m, &o, n_given ? counted : NULL, o.n, (o.n + cols - 1) / cols, cols, 2, err)) {
        model_io_close(&m);
        return -1;
    }
    const struct ckpt_meta *meta = &m.ckpt.meta;
    size_t latent = (size_t)meta->cfg.latent, dim = (size_t)meta->cfg.in_dim;
    float *z = xmalloc((size_t)o.n * latent * sizeof(float));
    model_io_prior(z, (size_t)o.n * latent, o.seed, o.temperature);
    int *labels = NULL;
    if (classes) {
        labels = xmalloc((size_t)o.n * sizeof *labels);
        for (int i = 0; i < o.n; i++)
            labels[i] = cls >= 0 ? cls : i / cols % classes;
    }
    float *mean = xmalloc((size_t)o.n * dim * sizeof(float));
    uint8_t *pixels = xmalloc((size_t)o.n * dim);
    decode_images(&m, z, labels, o.n, mean, pixels);
    free(labels);
    int status = 0;
    if (o.out)
        status = write_tiles(&m, o.out, pixels, o.n, cols, 2, err);
    for (int i = 0; status == 0 && o.each && i < o.n; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/image_%05d.png", o.each, i);
        status = png_write_pixels(path, pixels + (size_t)i * dim, meta->image_rows,
                                  meta->image_cols, meta->channels, err);
    }
    if (status == 0 && o.raw)
        status = write_file_atomic(o.raw, mean, (size_t)o.n * dim * sizeof(float), err);
    free(z);
    free(mean);
    free(pixels);
    model_io_close(&m);
    return status;
}

int reconstruct_main(int argc, char **argv, struct clvae_error *err)
{
    struct image_options o;
    int parsed = parse_image_options(argc, argv, "reconstruct", usage_reconstruct, &o, err);
    if (parsed != 0)
        return parsed > 0 ? 0 : -1;
    if (need_out(&o, "reconstruct", false, err))
        return -1;
    char counted[32] = "";
    snprintf(counted, sizeof counted, "-n %d", o.n);
    bool n_given = o.n > 0;
    if (o.n == 0)
        o.n = 32;
    struct model_io m;
    struct dataset data = {0};
    const struct image_set *test = &data.test;
    if (model_io_open(&m, o.model, o.platform, o.device, o.n > CHUNK_ROWS ? o.n : CHUNK_ROWS, err))
        return -1;
    int cols = o.cols ? o.cols : 8;
    int status = check_grid(&m, &o, n_given ? counted : NULL, 2 * (long long)o.n,
                            (2 * o.n + cols - 1) / cols, cols, 2, err);
    if (status == 0)
        status = load_test_images(&o, &m, n_given ? (uint32_t)o.n : 0, &data, err);
    if (status == 0 && !n_given && (uint32_t)o.n > test->count)
        o.n = (int)test->count; // the default, 32, is "up to 32": no -n to blame
    if (status == 0) {
        size_t latent = (size_t)m.vae.cfg.latent, dim = image_dim(&m);
        int *indices = xmalloc((size_t)o.n * sizeof(int));
        for (int i = 0; i < o.n; i++)
            indices[i] = i;
        float *mu = xmalloc((size_t)o.n * latent * sizeof(float));
        float *x = xmalloc((size_t)o.n * dim * sizeof(float));
        uint8_t *decoded = xmalloc((size_t)o.n * dim);
        uint8_t *tiles = xmalloc(2 * (size_t)o.n * dim);
        int *labels = NULL;
        if (status == 0 && m.vae.cfg.classes) {
            labels = xmalloc((size_t)o.n * sizeof *labels);
            memcpy(labels, test->labels, (size_t)o.n * sizeof *labels);
        }
        if (status == 0 && o.class_text)
            status = clvae_fail(err, CLVAE_EXIT_USAGE,
                                "--class: reconstruct takes each test image's own class");
        if (status == 0)
            status = encode_means(&m, test, indices, o.n, mu, x, err);
        if (status == 0) {
            decode_images(&m, mu, labels, o.n, NULL, decoded);
            for (size_t i = 0; i < (size_t)o.n; i++) {
                memcpy(tiles + 2 * i * dim, test->pixels + i * dim, dim);
                memcpy(tiles + (2 * i + 1) * dim, decoded + i * dim, dim);
            }
            status = write_tiles(&m, o.out, tiles, 2 * o.n, o.cols ? o.cols : 8, 2, err);
        }
        free(indices);
        free(labels);
        free(mu);
        free(x);
        free(decoded);
        free(tiles);
    }
    dataset_free(&data);
    model_io_close(&m);
    return status;
}

int interpolate_main(int argc, char **argv, struct clvae_error *err)
{
    struct image_options o;
    int parsed = parse_image_options(argc, argv, "interpolate", usage_interpolate, &o, err);
    if (parsed != 0)
        return parsed > 0 ? 0 : -1;
    if (need_out(&o, "interpolate", false, err))
        return -1;
    if (o.from < 0 || o.to < 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "interpolate: --from I and --to J are required");
    bool steps_given = o.steps > 0;
    o.steps = steps_given ? o.steps : 10;
    struct model_io m;
    struct dataset data = {0};
    const struct image_set *test = &data.test;
    if (model_io_open(&m, o.model, o.platform, o.device, o.steps > 64 ? o.steps : 64, err))
        return -1;
    char counted[32];
    snprintf(counted, sizeof counted, "--steps %d", o.steps);
    int status =
        check_grid(&m, &o, steps_given ? counted : NULL, o.steps + 2, 1, o.steps + 2, 2, err);
    if (status == 0)
        status = load_test_images(&o, &m, 0, &data, err);
    if (status == 0 && (uint32_t)(o.from > o.to ? o.from : o.to) >= test->count)
        status = clvae_fail(
            err, CLVAE_EXIT_USAGE, "--%s %d: no such test image (%s holds %u, numbered from 0)",
            o.from > o.to ? "from" : "to", o.from > o.to ? o.from : o.to, data.source, test->count);
    size_t latent = (size_t)m.vae.cfg.latent, dim = image_dim(&m);
    int ends[2] = {o.from, o.to}, cls = -1;
    float *mu = xmalloc(2 * latent * sizeof *mu); // latent: up to the checkpoint's limit
    if (status == 0)
        status = resolve_class(&m, &o, &cls, err);
    if (status == 0)
        status = encode_means(&m, test, ends, 2, mu, NULL, err);
    if (status == 0) {
        float *z = xmalloc((size_t)o.steps * latent * sizeof(float));
        for (int s = 0; s < o.steps; s++) {
            float t = (float)s / (float)(o.steps - 1);
            for (size_t k = 0; k < latent; k++)
                z[(size_t)s * latent + k] = (1.0f - t) * mu[k] + t * mu[latent + k];
        }
        int n = o.steps + 2, *labels = NULL;
        if (m.vae.cfg.classes) { // --class's, or I's in the first half of the walk, J's after
            labels = xmalloc((size_t)o.steps * sizeof *labels);
            for (int s = 0; s < o.steps; s++)
                labels[s] = cls >= 0 ? cls : test->labels[2 * s < o.steps ? o.from : o.to];
        }
        uint8_t *tiles = xmalloc((size_t)n * dim);
        memcpy(tiles, test->pixels + (size_t)o.from * dim, dim);
        decode_images(&m, z, labels, o.steps, NULL, tiles + dim);
        free(labels);
        memcpy(tiles + (size_t)(n - 1) * dim, test->pixels + (size_t)o.to * dim, dim);
        status = write_tiles(&m, o.out, tiles, n, n, 2, err);
        free(z);
        free(tiles);
    }
    free(mu);
    dataset_free(&data);
    model_io_close(&m);
    return status;
}

double normal_quantile(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    const double low = 0.02425;
    if (p < low) {
        double q = sqrt(-2.0 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    if (p > 1.0 - low)
        return -normal_quantile(1.0 - p);
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
}

int manifold_main(int argc, char **argv, struct clvae_error *err)
{
    struct image_options o;
    int parsed = parse_image_options(argc, argv, "manifold", usage_manifold, &o, err);
    if (parsed != 0)
        return parsed > 0 ? 0 : -1;
    if (need_out(&o, "manifold", false, err))
        return -1;
    char counted[32] = "";
    snprintf(counted, sizeof counted, "-n %d", o.n);
    bool n_given = o.n > 0;
    if (o.n == 0)
        o.n = 20;
    struct model_io m;
    int cls;
    if (model_io_open(&m, o.model, o.platform, o.device, CHUNK_ROWS, err))
        return -1;
    if (resolve_class(&m, &o, &cls, err) ||
        (m.vae.cfg.classes && cls < 0 &&
         clvae_fail(err, CLVAE_EXIT_USAGE,
                    "manifold: the model %s is conditional: give --class NAME|INDEX, the class "
                    "to decode as",
                    o.model))) {
        model_io_close(&m);
        return -1;
    }
    int latent = m.vae.cfg.latent;
    size_t dim = image_dim(&m);
    // One row a latent dimension (n x n for two), checked as a grid: then rows * n is an int.
    int rows = latent == 2 ? o.n : latent;
    if (check_grid(&m, &o, n_given ? counted : NULL, (long long)rows * o.n, rows, o.n,
                   latent == 2 ? 0 : 2, err)) {
        model_io_close(&m);
        return -1;
    }
    int count = rows * o.n;
    float *z = xcalloc((size_t)count * (size_t)latent, sizeof(float));
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < o.n; c++) {
            float *zi = z + ((size_t)r * o.n + c) * (size_t)latent;
            if (latent == 2) {
                // Rows go down the second dimension from its high end, as plotted in Kingma and
                // Welling's figures; quantiles of (i + 0.5) / n keep clear of 0 and 1.
                zi[0] = (float)normal_quantile((c + 0.5) / o.n);
                zi[1] = (float)normal_quantile(1.0 - (r + 0.5) / o.n);
            } else {
                zi[r] = (float)(o.n > 1 ? -o.range + 2.0 * o.range * c / (o.n - 1) : 0.0);
            }
        }
    uint8_t *tiles = xmalloc((size_t)count * dim);
    int *labels = NULL;
    if (cls >= 0) {
        labels = xmalloc((size_t)count * sizeof *labels);
        for (int i = 0; i < count; i++)
            labels[i] = cls;
    }
    decode_images(&m, z, labels, count, NULL, tiles);
    free(labels);
    int status = write_tiles(&m, o.out, tiles, count, o.n, latent == 2 ? 0 : 2, err);
    free(z);
    free(tiles);
    model_io_close(&m);
    return status;
}

#define SCATTER_MAX_THUMBS 600
#define SCATTER_MAX_POINTS (1 << 24) // keeps every count and index of the points inside an int

// The posterior means (n, latent) of test images 0 .. n - 1 into mu, CHUNK_ROWS at a time; a
// non-finite one is refused (CLVAE_EXIT_DATA naming model).
static int scatter_means(struct model_io *m, const struct image_set *test, int n, const char *model,
                         float *mu, struct clvae_error *err)
{
    int latent = m->vae.cfg.latent, status = 0;
    int *idx = xmalloc(CHUNK_ROWS * sizeof *idx);
    for (int start = 0; status == 0 && start < n; start += CHUNK_ROWS) {
        int rows = n - start < CHUNK_ROWS ? n - start : CHUNK_ROWS;
        for (int i = 0; i < rows; i++)
            idx[i] = start + i;
        status = encode_means(m, test, idx, rows, mu + (size_t)start * latent, NULL, err);
    }
    free(idx);
    for (size_t i = 0; status == 0 && i < (size_t)n * latent; i++)
        if (!isfinite(mu[i]))
            status =
                clvae_fail(err, CLVAE_EXIT_DATA,
                           "%s: test image %zu's posterior mean is not finite: nothing to plot",
                           model, i / latent);
    return status;
}

// The plane the means (n, latent) are drawn on: xs, ys (n each) and the axes' labels (96 bytes
// each): a 1- or 2-D latent as it is, a larger one on its first two principal components.
static int scatter_axes(const float *mu, int n, int latent, double *xs, double *ys, char *x_label,
                        char *y_label, struct clvae_error *err)
{
    snprintf(x_label, 96, "z1 (latent dimension 1)");
    snprintf(y_label, 96, "z2 (latent dimension 2)");
    if (latent == 1) {
        for (int i = 0; i < n; i++)
            xs[i] = mu[i], ys[i] = 0;
        snprintf(y_label, 96, "(a 1-dimensional latent)");
        return 0;
    }
    if (latent == 2 || n < 2) {
        for (int i = 0; i < n; i++)
            xs[i] = mu[(size_t)i * latent], ys[i] = mu[(size_t)i * latent + 1];
        return 0;
    }
    double *points = xmalloc((size_t)n * latent * sizeof *points);
    double *proj = xmalloc((size_t)n * 2 * sizeof *proj);
    double explained[2], *components = xmalloc((size_t)2 * latent * sizeof *components);
    for (size_t i = 0; i < (size_t)n * latent; i++)
        points[i] = mu[i];
    int rc = plot_pca(points, n, latent, proj, explained, components);
    for (int i = 0; rc == 0 && i < n; i++)
        xs[i] = proj[2 * i], ys[i] = proj[2 * i + 1];
    free(points);
    free(proj);
    free(components);
    if (rc)
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "scatter: LAPACK's eigensolver failed");
    snprintf(x_label, 96, "principal component 1 (%.1f%% of the variance)", 100 * explained[0]);
    snprintf(y_label, 96, "principal component 2 (%.1f%% of the variance)", 100 * explained[1]);
    return 0;
}

// --images: every k-th of the n points kept at the front of xs, ys and cls (unless NULL), as few
// as SCATTER_MAX_THUMBS allow, and their images decoded from their means (mu) into *thumbs;
// returns how many.
static int scatter_thumbs(struct model_io *m, const float *mu, int n, double *xs, double *ys,
                          int *cls, uint8_t **thumbs)
{
    int *labels = m->vae.cfg.classes ? xmalloc((size_t)n * sizeof *labels) : NULL;
    int latent = m->vae.cfg.latent;
    int step = (n + SCATTER_MAX_THUMBS - 1) / SCATTER_MAX_THUMBS, k = (n + step - 1) / step;
    float *z = xmalloc((size_t)k * latent * sizeof *z);
    for (int i = 0; i < k; i++) {
        memcpy(z + (size_t)i * latent, mu + (size_t)i * step * latent, latent * sizeof *z);
        xs[i] = xs[i * step], ys[i] = ys[i * step];
        if (cls)
            cls[i] = cls[i * step];
        if (labels) // a conditional model's images carry labels: cls holds them
            labels[i] = cls[i];
    }
    *thumbs = xmalloc((size_t)k * image_dim(m));
    decode_images(m, z, labels, k, NULL, *thumbs);
    free(labels);
    free(z);
    return k;
}

int scatter_main(int argc, char **argv, struct clvae_error *err)
{
    struct image_options o;
    int parsed = parse_image_options(argc, argv, "scatter", usage_scatter, &o, err);
    if (parsed != 0)
        return parsed > 0 ? 0 : -1;
    if (need_out(&o, "scatter", false, err))
        return -1;
    struct model_io m;
    struct dataset data = {0};
    const struct image_set *test = &data.test;
    float *mu = NULL;
    double *xs = NULL, *ys = NULL;
    int *cls = NULL, status = -1;
    uint8_t *thumbs = NULL;
    if (model_io_open(&m, o.model, o.platform, o.device, CHUNK_ROWS, err))
        return -1;
    if (load_test_images(&o, &m, (uint32_t)o.n, &data, err))
        goto done;
    if (o.class_text) {
        clvae_fail(err, CLVAE_EXIT_USAGE, "--class: scatter takes each test image's own class");
        goto done;
    }
    if (!o.n && test->count > SCATTER_MAX_POINTS) {
        clvae_fail(err, CLVAE_EXIT_USAGE,
                   "scatter: %s holds %u test images, more than %d points: give -n", data.source,
                   test->count, SCATTER_MAX_POINTS);
        goto done;
    }
    int n = o.n ? o.n : (int)test->count, latent = m.vae.cfg.latent;
    if (!test->labels)
        printf("clvae scatter: %s has no labels (IDX t10k-labels-idx1-ubyte[.gz], or class "
               "folders): one colour\n",
               o.data);
    mu = xmalloc((size_t)n * latent * sizeof *mu);
    xs = xmalloc((size_t)n * sizeof *xs);
    ys = xmalloc((size_t)n * sizeof *ys);
    char x_label[96], y_label[96];
    if (scatter_means(&m, test, n, o.model, mu, err) ||
        scatter_axes(mu, n, latent, xs, ys, x_label, y_label, err))
        goto done;
    int n_classes = test->labels ? data.n_classes : 0;
    if (test->labels) {
        cls = xmalloc((size_t)n * sizeof *cls);
        for (int i = 0; i < n; i++)
            cls[i] = test->labels[i];
    }
    char title[160];
    snprintf(title, sizeof title, "posterior means of %d test images, latent %d", n, latent);
    struct plot_scatter_data d = {.n = n,
                                  .x = xs,
                                  .y = ys,
                                  .cls = cls,
                                  .n_classes = n_classes,
                                  .class_names = (const char *const *)data.class_names,
                                  .x_label = x_label,
                                  .y_label = y_label,
                                  .title = title};
    if (o.images) {
        d.n = scatter_thumbs(&m, mu, n, xs, ys, cls, &thumbs);
        d.thumbs = thumbs;
        d.thumb_h = m.ckpt.meta.image_rows;
        d.thumb_w = m.ckpt.meta.image_cols;
        d.thumb_channels = m.ckpt.meta.channels;
        snprintf(title, sizeof title, "%d of %d test images decoded from their means, latent %d",
                 d.n, n, latent);
    }
    status = plot_scatter(&d, o.out, err);
done:
    free(mu);
    free(xs);
    free(ys);
    free(cls);
    free(thumbs);
    dataset_free(&data);
    model_io_close(&m);
    return status;
}

int plot_main(int argc, char **argv, struct clvae_error *err)
{
    static const struct option longopts[] = {{"metrics", required_argument, NULL, 'm'},
                                             {"out", required_argument, NULL, 'o'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *metrics = NULL, *out = NULL;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': metrics = optarg; break;
        case 'o': out = optarg; break;
        case 'h': fputs(usage_plot, stdout); return 0;
        default: return cli_bad_option(c, argv, "plot", err);
        }
    }
    if (optind < argc)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: unexpected argument (see clvae plot --help)",
                          argv[optind]);
    if (!metrics || !metrics[0])
        return clvae_fail(err, CLVAE_EXIT_USAGE, "plot: --metrics FILE is required");
    if (!out || !out[0])
        return clvae_fail(err, CLVAE_EXIT_USAGE, "plot: -o FILE is required");
    return plot_curves(metrics, out, false, err) < 0 ? -1 : 0;
}
