#include "evaluate.h"

#include "atomic_file.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "dataset.h"
#include "idx.h"
#include "model_io.h"
#include "philox.h"
#include "train.h"

struct eval_options {
    const char *model, *data_dir, *csv;
    int k, images; // images: the first N test images; 0 for all
    const char *platform, *device;
    uint64_t seed;
};

static void eval_defaults(struct eval_options *opt)
{
    struct train_options train;
    train_defaults(&train);
    memset(opt, 0, sizeof *opt);
    opt->data_dir = train.data_dir;
    opt->k = 1000;
    opt->seed = 1;
}

static void print_eval_usage(FILE *out)
{
    struct eval_options d;
    eval_defaults(&d);
    fprintf(out,
            "usage: clvae eval --model FILE [options]\n"
            "\n"
            "Evaluates a trained model on the test images DIR/t10k-images-idx3-ubyte[.gz], or\n"
            "the test images of a PNG folder (DIR/test, or the split training held out), and\n"
            "prints, in nats per image averaged over the images (and bits per dimension), with\n"
            "standard errors:\n"
            "  the negative ELBO: reconstruction + KL with one sample, as training reports it;\n"
            "  the negative IWAE bound (Burda et al. 2015) with k samples,\n"
            "  -log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x):\n"
            "  an estimate of -log p(x) that tightens as k grows.\n"
            "\n"
            "  -m, --model FILE   checkpoint written by clvae train             (required)\n"
            "  -D, --data DIR     directory with t10k-images-idx3-ubyte[.gz], or a PNG folder\n"
            "                     [%s]\n"
            "  -k, --samples N    importance samples per image (1 to %d)   [%d]\n"
            "  -n, --images N     evaluate the first N test images only, N at most   [all]\n"
            "                     the test set's size (one image: no standard error)\n"
            "  -c, --csv FILE     also write the figures to FILE: a header and one row\n"
            "  -s, --seed N       seed of the sampling noise                    [%llu]\n"
            "  -p, --platform P   OpenCL platform: an index (see `clvae devices`) or a part of\n"
            "                     its name; default $CLVAE_PLATFORM, else the first with a GPU\n"
            "  -d, --device D     device: an index within the platform or a part of its name;\n"
            "                     default $CLVAE_DEVICE, else the first GPU, else 0\n"
            "  -h, --help         show this help\n",
            d.data_dir, EVAL_MAX_K, d.k, (unsigned long long)d.seed);
}

// 1: --help was given (usage printed); 0: options parsed; -1: a bad command line.
static int parse_eval(int argc, char **argv, struct eval_options *opt, struct clvae_error *err)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},  {"samples", required_argument, NULL, 'k'},
        {"images", required_argument, NULL, 'n'}, {"csv", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 's'},   CLI_SOURCE_OPTIONS,
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    eval_defaults(opt);
    opterr = 0;
    optind = 1;
    int c, longindex;
    while ((c = getopt_long(argc, argv, ":m:k:n:c:s:" CLI_SOURCE_SHORT "h", longopts,
                            &longindex)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm': opt->model = optarg; break;
        case 'k': rc = cli_parse_int("-k", optarg, 1, EVAL_MAX_K, &opt->k, err); break;
        case 'n': rc = cli_parse_int("-n", optarg, 1, INT32_MAX, &opt->images, err); break;
        case 'c': opt->csv = optarg; break;
        case 's': rc = cli_parse_u64("--seed", optarg, &opt->seed, err); break;
        case 'h': print_eval_usage(stdout); return 1;
        default:
            rc = cli_parse_rest(c, optarg, argv, "eval", &opt->platform, &opt->device,
                                &opt->data_dir, err);
        }
        if (rc)
            return -1;
    }
    if (optind < argc)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: unexpected argument (see clvae eval --help)",
                          argv[optind]);
    if (!opt->model)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--model: required (see clvae eval --help)");
    if (opt->model[0] == '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--model: empty path");
    if (opt->data_dir[0] == '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--data: empty path");
    if (opt->csv && opt->csv[0] == '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--csv: empty path");
    return 0;
}

// The mean of v (n) and its standard error (NaN for fewer than two values).
static void mean_and_se(const double *v, int n, double *mean, double *se)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    *mean = sum / n;
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (v[i] - *mean) * (v[i] - *mean);
    *se = n > 1 ? sqrt(ss / (n - 1) / n) : NAN;
}

// A standard error with digits decimals in buf (32 bytes), or none, the one of a single value
// (NaN): "n/a" in the printout, an empty field in the CSV.
static const char *se_text(double se, int digits, const char *none, char *buf)
{
    if (isnan(se))
        return none;
    snprintf(buf, 32, "%.*f", digits, se);
    return buf;
}

// Everything one evaluation holds on the device besides the model.
struct eval_run {
    struct clrt_parts data; // (images, dim) bytes, in parts of whole images if need be
    cl_mem index;           // (images) ints 0 .. images - 1 for gather_images
    cl_mem rec, kl, bound;  // (images) each: the ELBO's terms and the IWAE bound per image
};

static void eval_run_release(struct eval_run *run)
{
    clrt_parts_release(&run->data);
    cl_mem mems[] = {run->index, run->rec, run->kl, run->bound};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clrt_release_buffer(mems[i]);
}

// Uploads the first n images of test and creates the result buffers.
static int eval_run_setup(struct eval_run *run, struct clrt *rt, const struct image_set *test,
                          int n, struct clvae_error *err)
{
    size_t dim = (size_t)test->height * test->width * test->channels;
    int *identity = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++)
        identity[i] = i;
    int status = -1;
    if (clrt_parts_plan(rt, &run->data, (size_t)n * dim, dim, "test set", err) == 0 &&
        clrt_parts_create(rt, &run->data, "test set", err) == 0 &&
        (run->index = clrt_buffer(rt, (size_t)n * sizeof(int), "test order", err)) &&
        (run->rec = clrt_buffer(rt, (size_t)n * sizeof(float), "test losses", err)) &&
        (run->kl = clrt_buffer(rt, (size_t)n * sizeof(float), "test KL terms", err)) &&
        (run->bound = clrt_buffer(rt, (size_t)n * sizeof(float), "IWAE bounds", err))) {
        clrt_parts_write(rt, &run->data, test->pixels, true);
        clrt_write(rt, run->index, 0, (size_t)n * sizeof(int), identity, true);
        status = 0;
    }
    free(identity);
    return status;
}

// The images to evaluate: the first -n of test, or all of it; -1 with err when -n is past the
// test set (as reconstruct and scatter refuse it) or the count past an int.
static int eval_count(const struct eval_options *opt, const struct image_set *test,
                      const char *path, int *n, struct clvae_error *err)
{
    if ((uint32_t)opt->images > test->count)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "-n %d: %s holds only %u test images", opt->images,
                          path, test->count);
    uint32_t count = opt->images ? (uint32_t)opt->images : test->count;
    if (count > (uint32_t)INT32_MAX)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %u images is more than clvae handles: use -n",
                          path, count);
    *n = (int)count;
    return 0;
}

// What is evaluated: the model, the device, the images, the samples.
static void print_eval_banner(const struct eval_options *opt, const struct model_io *model,
                              const struct image_set *test, int n, const char *path)
{
    const struct ckpt_meta *meta = &model->ckpt.meta;
    char shape[160];
    vae_describe(&meta->cfg, shape, sizeof shape);
    printf("clvae: model %s: %s, %zu parameters, %d epochs; device %s (%s)\n", opt->model, shape,
           model->vae.n_params, meta->epoch, model->rt.device_name, model->rt.platform_name);
    printf("clvae: %d test images of %ux%u, %u channel(s), from %s; %s likelihood; k = %d samples "
           "per image, seed %llu\n",
           n, test->width, test->height, test->channels, path,
           likelihood_name(meta->cfg.likelihood), opt->k, (unsigned long long)opt->seed);
    if (meta->cfg.classes)
        printf("clvae: conditional on %d classes: the bounds are of log p(x | y), y each image's "
               "label\n",
               meta->cfg.classes);
    fflush(stdout);
}

// Each of the n images' ELBO terms and IWAE bound, max_rows at a time, into rec, kl and bound
// (n each) on the host; a count on a terminal as it goes.
static void eval_images(struct model_io *model, struct eval_run *run, struct iwae *iw,
                        uint64_t seed, int n, float *rec, float *kl, float *bound)
{
    struct vae *vae = &model->vae;
    bool live = isatty(STDERR_FILENO);
    for (int start = 0; start < n; start += vae->max_rows) {
        int rows = n - start < vae->max_rows ? n - start : vae->max_rows;
        vae_gather(vae, &run->data, run->index, start, rows);
        if (iw->labels)
            vae_set_labels(vae, iw->labels + start, rows);
        model_io_binarize(&model->ckpt.meta, &model->vae, run->index, start, rows);
        // The ELBO's noise: stream EVAL as in training's evaluation, the batch's first image as
        // the step; the batch size is fixed, so each image's noise depends on the seed alone.
        struct vae_pass pass = {.rows = rows,
                                .seed = seed,
                                .step = (uint64_t)start,
                                .stream = PHILOX_STREAM_EVAL,
                                .noise_scale = 1.0f,
                                .rec = run->rec,
                                .kl = run->kl,
                                .offset = start};
        vae_forward(vae, &pass);
        iwae_bound(iw, rows, (uint64_t)start, seed, run->bound, start);
        size_t off = (size_t)start * sizeof(float), bytes = (size_t)rows * sizeof(float);
        clrt_read(&model->rt, run->rec, off, bytes, rec + start, false);
        clrt_read(&model->rt, run->kl, off, bytes, kl + start, false);
        clrt_read(&model->rt, run->bound, off, bytes, bound + start, true);
        if (live) {
            fprintf(stderr, "\rclvae: evaluated %d of %d images", start + rows, n);
            fflush(stderr);
        }
    }
    if (live)
        fprintf(stderr, "\r%*s\r", 60, "");
}

// The means over the images, in nats per image, and their standard errors.
struct eval_result {
    int images;
    double neg_elbo, neg_elbo_se, neg_iwae, neg_iwae_se, rec, kl;
    double per_bit; // nats per image over this are bits per dimension
};

static struct eval_result summarise(const float *rec, const float *kl, const float *bound, int n,
                                    int in_dim)
{
    struct eval_result r = {.images = n};
    double *neg_elbo = xmalloc(2 * (size_t)n * sizeof(double)), *neg_iwae = neg_elbo + n;
    double rec_sum = 0.0, kl_sum = 0.0;
    for (int i = 0; i < n; i++) {
        rec_sum += rec[i];
        kl_sum += kl[i];
        neg_elbo[i] = (double)rec[i] + (double)kl[i];
        neg_iwae[i] = -(double)bound[i];
    }
    mean_and_se(neg_elbo, n, &r.neg_elbo, &r.neg_elbo_se);
    mean_and_se(neg_iwae, n, &r.neg_iwae, &r.neg_iwae_se);
    free(neg_elbo);
    r.rec = rec_sum / n;
    r.kl = kl_sum / n;
    // Bits per dimension: nats per image over log 2 and the values an image has.
    r.per_bit = log(2.0) * in_dim;
    return r;
}

// The result's lines on stdout.
static void print_result(const struct eval_options *opt, const struct eval_result *r)
{
    char elbo_se[32], iwae_se[32];
    printf("negative ELBO  %10.4f nats/image, std err %s (rec %.4f + KL %.4f, one sample); "
           "%.5f bits/dim\n",
           r->neg_elbo, se_text(r->neg_elbo_se, 4, "n/a", elbo_se), r->rec, r->kl,
           r->neg_elbo / r->per_bit);
    printf("negative IWAE  %10.4f nats/image, std err %s (k = %d: an upper bound on -log p(x)); "
           "%.5f bits/dim\n",
           r->neg_iwae, se_text(r->neg_iwae_se, 4, "n/a", iwae_se), opt->k,
           r->neg_iwae / r->per_bit);
}

// The result as --csv's file: a header and one row, committed.
static int write_csv(const struct eval_options *opt, const struct eval_result *r,
                     struct atomic_file *csv, struct clvae_error *err)
{
    char elbo_se[32], iwae_se[32];
    fprintf(csv->fp, "images,k,neg_elbo,neg_iwae,neg_elbo_se,neg_iwae_se,rec,kl,seed,"
                     "neg_elbo_bits_per_dim,neg_iwae_bits_per_dim\n");
    fprintf(csv->fp, "%d,%d,%.6f,%.6f,%s,%s,%.6f,%.6f,%llu,%.6f,%.6f\n", r->images, opt->k,
            r->neg_elbo, r->neg_iwae, se_text(r->neg_elbo_se, 6, "", elbo_se),
            se_text(r->neg_iwae_se, 6, "", iwae_se), r->rec, r->kl, (unsigned long long)opt->seed,
            r->neg_elbo / r->per_bit, r->neg_iwae / r->per_bit);
    return atomic_file_commit(csv, err);
}

int eval_main(int argc, char **argv, struct clvae_error *err)
{
    struct eval_options opt;
    int parsed = parse_eval(argc, argv, &opt, err);
    if (parsed != 0)
        return parsed > 0 ? 0 : -1;
    struct model_io model;
    struct dataset data = {0};
    struct eval_run run = {0};
    struct iwae iw = {0};
    struct atomic_file csv = {0}; // created before any device work: a bad --csv fails early
    float *host = NULL;
    int status = -1, n = 0;
    double started = train_now_seconds();
    if (model_io_open(&model, opt.model, opt.platform, opt.device, EVAL_ROWS, err))
        return -1;
    const struct ckpt_meta *meta = &model.ckpt.meta;
    if (dataset_read_test(opt.data_dir, meta, opt.model, &data, err) ||
        dataset_check_labels(&data, meta, opt.model, err) ||
        eval_count(&opt, &data.test, data.source, &n, err) ||
        (opt.csv && atomic_file_open(&csv, opt.csv, err)) ||
        iwae_create(&iw, &model.vae, opt.k, EVAL_LOG_WEIGHTS, err) ||
        eval_run_setup(&run, &model.rt, &data.test, n, err))
        goto done;
    if (meta->cfg.classes)
        iw.labels = data.test.labels;
    print_eval_banner(&opt, &model, &data.test, n, data.source);
    host = xmalloc(3 * (size_t)n * sizeof(float));
    float *rec = host, *kl = host + n, *bound = host + 2 * (size_t)n;
    eval_images(&model, &run, &iw, opt.seed, n, rec, kl, bound);
    struct eval_result result = summarise(rec, kl, bound, n, meta->cfg.in_dim);
    print_result(&opt, &result);
    printf("clvae: %.2f s\n", train_now_seconds() - started);
    status = opt.csv ? write_csv(&opt, &result, &csv, err) : 0;
done:
    atomic_file_abort(&csv);
    free(host);
    clrt_drain(&model.rt);
    iwae_release(&iw);
    eval_run_release(&run);
    dataset_free(&data);
    model_io_close(&model);
    return status;
}
