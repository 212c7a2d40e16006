// `clvae encode`: a trained model's posterior of every test (or training) image, for PCA, t-SNE,
// clustering or outlier detection elsewhere: per image its mean and log-variance, its label when
// the data has classes, and with --elbo its negative ELBO and negative IWAE bound, computed with
// eval's noise (the same numbers `clvae eval` averages). Written as NumPy .npy (format 1.0,
// little-endian float32 of shape (images, columns)) or CSV with a header line, whole or not at
// all (atomic_file.h).
#include "evaluate.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "cli.h"
#include "dataset.h"
#include "model_io.h"
#include "philox.h"
#include "train.h"

struct encode_options {
    const char *model, *data_dir, *out;
    bool train; // --split train
    bool elbo;  // --elbo: the bounds too
    bool npy;   // -o ends in .npy, else .csv
    int k;
    uint64_t seed;
    const char *platform, *device;
};

static void encode_defaults(struct encode_options *opt)
{
    struct train_options train;
    train_defaults(&train);
    *opt = (struct encode_options){.data_dir = train.data_dir, .k = 1000, .seed = 1};
}

static void print_encode_usage(FILE *out)
{
    struct encode_options d;
    encode_defaults(&d);
    fprintf(out,
            "usage: clvae encode --model FILE -o latents.npy|latents.csv [options]\n"
            "\n"
            "Writes, for every test (or training) image in file order, the posterior q(z|x):\n"
            "the columns mu_0 .. mu_{L-1} and logvar_0 .. logvar_{L-1} (L the latent size),\n"
            "then label when the data has classes, then with --elbo neg_elbo and neg_iwae (nats,\n"
            "as clvae eval computes them with the same --seed and -k). A .npy file holds them as\n"
            "float32 of shape (images, columns), numpy.load(FILE) reads it; a .csv file has a\n"
            "header line of the column names. The file is written whole or not at all.\n"
            "\n"
            "  -m, --model FILE   checkpoint written by clvae train             (required)\n"
            "  -o, --out FILE     FILE.npy or FILE.csv                          (required)\n"
            "  -D, --data DIR     IDX files or a folder of images               [%s]\n"
            "      --split S      test or train                                 [test]\n"
            "      --elbo         also each image's negative ELBO and negative IWAE bound\n"
            "  -k, --samples N    importance samples per image for --elbo (1 to %d)  [%d]\n"
            "  -s, --seed N       seed of --elbo's sampling noise                [%llu]\n"
            "  -p, --platform P   OpenCL platform: an index or a part of its name\n"
            "  -d, --device D     device: an index within the platform or a part of its name\n"
            "  -h, --help         show this help\n",
            d.data_dir, EVAL_MAX_K, d.k, (unsigned long long)d.seed);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// 1: --help was given (usage printed); 0: options parsed; -1: a bad command line.
static int parse_encode(int argc, char **argv, struct encode_options *opt, struct clvae_error *err)
{
    enum { OPT_SPLIT = 256, OPT_ELBO };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"out", required_argument, NULL, 'o'},
        {"split", required_argument, NULL, OPT_SPLIT},
        {"elbo", no_argument, NULL, OPT_ELBO},
        {"samples", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 's'},
        CLI_SOURCE_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    encode_defaults(opt);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:k:s:" CLI_SOURCE_SHORT "h", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm': opt->model = optarg; break;
        case 'o': opt->out = optarg; break;
        case OPT_SPLIT:
            if (strcmp(optarg, "test") != 0 && strcmp(optarg, "train") != 0)
                return clvae_fail(err, CLVAE_EXIT_USAGE, "--split: '%s' is neither test nor train",
                                  optarg);
            opt->train = strcmp(optarg, "train") == 0;
            break;
        case OPT_ELBO: opt->elbo = true; break;
        case 'k': rc = cli_parse_int("-k", optarg, 1, EVAL_MAX_K, &opt->k, err); break;
        case 's': rc = cli_parse_u64("--seed", optarg, &opt->seed, err); break;
        case 'h': print_encode_usage(stdout); return 1;
        default:
            rc = cli_parse_rest(c, optarg, argv, "encode", &opt->platform, &opt->device,
                                &opt->data_dir, err);
        }
        if (rc)
            return -1;
    }
    if (optind < argc)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: unexpected argument (see clvae encode --help)", argv[optind]);
    if (!opt->model || !opt->model[0])
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--model: required (see clvae encode --help)");
    if (!opt->out || !opt->out[0])
        return clvae_fail(err, CLVAE_EXIT_USAGE, "-o: required (see clvae encode --help)");
    if (!ends_with(opt->out, ".npy") && !ends_with(opt->out, ".csv"))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "-o %s: the name ends in .npy or .csv", opt->out);
    if (opt->data_dir[0] == '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--data: empty path");
    opt->npy = ends_with(opt->out, ".npy");
    return 0;
}

// The columns of each row, in order: (2 latent) + label + 2 with --elbo.
struct columns {
    int latent, count;
    bool label, elbo;
};

// The column names, comma-separated, as the CSV's header (and the banner) gives them.
static void print_names(FILE *fp, const struct columns *c)
{
    for (int j = 0; j < 2 * c->latent; j++)
        fprintf(fp, "%s%s_%d", j ? "," : "", j < c->latent ? "mu" : "logvar", j % c->latent);
    if (c->label)
        fputs(",label", fp);
    if (c->elbo)
        fputs(",neg_elbo,neg_iwae", fp);
}

// NumPy's format 1.0: magic, version, the header's length (little-endian u16), then the header
// dict padded with spaces to a multiple of 64 bytes in all and ended by a newline.
static void write_npy_header(FILE *fp, int rows, int cols)
{
    char dict[160];
    int n = snprintf(dict, sizeof dict,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols);
    int total = (10 + n + 1 + 63) / 64 * 64, len = total - 10;
    fwrite("\x93NUMPY\x01\x00", 1, 8, fp);
    fputc(len & 0xff, fp);
    fputc(len >> 8, fp);
    fprintf(fp, "%s%*s\n", dict, len - n - 1, "");
}

// One row: to the CSV as text (%.9g: a float read back exactly), to the .npy as float32 bytes.
static void write_row(FILE *fp, bool npy, const float *v, int n)
{
    if (npy) {
        for (int j = 0; j < n; j++) {
            uint32_t u;
            memcpy(&u, &v[j], 4);
            uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
            fwrite(b, 1, 4, fp);
        }
        return;
    }
    for (int j = 0; j < n; j++)
        fprintf(fp, "%s%.9g", j ? "," : "", (double)v[j]);
    fputc('\n', fp);
}

// The posterior of images [start, start + rows) from vae->ml, with the labels and bounds, into
// the file.
static void write_rows(FILE *fp, const struct encode_options *opt, const struct columns *c,
                       const float *ml, const int32_t *labels, const float *rec, const float *kl,
                       const float *bound, int start, int rows)
{
    float *v = xmalloc((size_t)c->count * sizeof(float));
    for (int r = 0; r < rows; r++) {
        int j = 2 * c->latent;
        memcpy(v, ml + (size_t)r * 2 * c->latent, (size_t)j * sizeof(float));
        if (c->label)
            v[j++] = (float)labels[start + r];
        if (c->elbo) {
            v[j++] = rec[r] + kl[r];
            v[j++] = -bound[r];
        }
        write_row(fp, opt->npy, v, c->count);
    }
    free(v);
}

int encode_main(int argc, char **argv, struct clvae_error *err)
{
    struct encode_options opt;
    int parsed = parse_encode(argc, argv, &opt, err);
    if (parsed != 0)
        return parsed > 0 ? 0 : -1;
    struct model_io model;
    struct dataset data = {0};
    struct iwae iw = {0};
    struct atomic_file out = {0};
    struct clrt_parts images = {0};
    cl_mem index = NULL, rec_buf = NULL, kl_buf = NULL, bound_buf = NULL;
    float *host = NULL;
    int *identity = NULL;
    int status = -1;
    if (model_io_open(&model, opt.model, opt.platform, opt.device, EVAL_ROWS, err))
        return -1;
    struct vae *vae = &model.vae;
    const struct ckpt_meta *meta = &model.ckpt.meta;
    if (dataset_read_split(opt.data_dir, meta, opt.model, opt.train, &data, err) ||
        dataset_check_labels(&data, meta, opt.model, err) || atomic_file_open(&out, opt.out, err) ||
        (opt.elbo && iwae_create(&iw, vae, opt.k, EVAL_LOG_WEIGHTS, err)))
        goto done;
    const struct image_set *set = &data.test;
    if (set->count > (uint32_t)INT32_MAX) {
        clvae_fail(err, CLVAE_EXIT_DATA, "%s: %u images is more than clvae handles", data.source,
                   set->count);
        goto done;
    }
    int n = (int)set->count, chunk = vae->max_rows;
    size_t dim = (size_t)set->height * set->width * set->channels;
    identity = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++)
        identity[i] = i;
    if (clrt_parts_plan(&model.rt, &images, (size_t)n * dim, dim, "images", err) ||
        clrt_parts_create(&model.rt, &images, "images", err) ||
        !(index = clrt_buffer(&model.rt, (size_t)n * sizeof(int), "image order", err)) ||
        !(rec_buf = clrt_buffer(&model.rt, (size_t)n * sizeof(float), "losses", err)) ||
        !(kl_buf = clrt_buffer(&model.rt, (size_t)n * sizeof(float), "KL terms", err)) ||
        !(bound_buf = clrt_buffer(&model.rt, (size_t)n * sizeof(float), "IWAE bounds", err)))
        goto done;
    clrt_parts_write(&model.rt, &images, set->pixels, true);
    if (meta->cfg.classes)
        iw.labels = set->labels;
    clrt_write(&model.rt, index, 0, (size_t)n * sizeof(int), identity, true);
    struct columns c = {.latent = meta->cfg.latent, .label = set->labels != NULL, .elbo = opt.elbo};
    c.count = 2 * c.latent + c.label + 2 * c.elbo;
    if (opt.npy) {
        write_npy_header(out.fp, n, c.count);
    } else {
        print_names(out.fp, &c);
        fputc('\n', out.fp);
    }
    host = xmalloc((size_t)chunk * (2 * (size_t)c.latent + 3) * sizeof(float));
    float *ml = host, *rec = ml + (size_t)chunk * 2 * c.latent, *kl = rec + chunk,
          *bound = kl + chunk;
    for (int start = 0; start < n; start += chunk) {
        int rows = n - start < chunk ? n - start : chunk;
        vae_gather(vae, &images, index, start, rows);
        if (meta->cfg.classes) // each image's own class (dataset_check_labels)
            vae_set_labels(vae, set->labels + start, rows);
        model_io_binarize(meta, vae, index, start, rows);
        // eval's noise: stream EVAL, the batch's first image as the step (eval_images).
        struct vae_pass pass = {.rows = rows,
                                .seed = opt.seed,
                                .step = (uint64_t)start,
                                .stream = PHILOX_STREAM_EVAL,
                                .noise_scale = 1.0f,
                                .rec = rec_buf,
                                .kl = kl_buf,
                                .offset = start};
        vae_forward(vae, &pass);
        if (opt.elbo)
            iwae_bound(&iw, rows, (uint64_t)start, opt.seed, bound_buf, start);
        size_t off = (size_t)start * sizeof(float), bytes = (size_t)rows * sizeof(float);
        clrt_read(&model.rt, vae->ml, 0, (size_t)rows * 2 * c.latent * sizeof(float), ml, false);
        clrt_read(&model.rt, rec_buf, off, bytes, rec, false);
        clrt_read(&model.rt, kl_buf, off, bytes, kl, false);
        clrt_read(&model.rt, bound_buf, off, bytes, bound, true);
        write_rows(out.fp, &opt, &c, ml, set->labels, rec, kl, bound, start, rows);
    }
    status = atomic_file_commit(&out, err);
    if (status == 0) {
        printf("clvae: %d %s images of %s encoded to %s: ", n, opt.train ? "training" : "test",
               data.source, opt.out);
        print_names(stdout, &c);
        printf("\n");
    }
done:
    atomic_file_abort(&out);
    free(host);
    free(identity);
    clrt_drain(&model.rt);
    cl_mem mems[] = {index, rec_buf, kl_buf, bound_buf};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clrt_release_buffer(mems[i]);
    clrt_parts_release(&images);
    iwae_release(&iw);
    dataset_free(&data);
    model_io_close(&model);
    return status;
}
