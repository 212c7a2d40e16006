#include "tune.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "cl_runtime.h"
#include "cli.h"
#include "philox.h"
#include "train.h"
#include "vae.h"

#define TUNE_MAX_CANDIDATES 64
#define TUNE_MIN_INDIRECT 1024 // every product of a model's size runs the direct kernel
#define TUNE_ROWS_CPU 1024     // train's micro-batch on a CPU: the rows a pass takes there

struct tune_options {
    const char *platform, *device;
    struct vae_config model;
    const char *model_option; // the option that gave model, for messages (vae_model_option)
    int channels, height, width;
    int batch, candidates;
    uint64_t seed;
};

static const char *const usage =
    "usage: clvae tune [--hidden LIST | --encoder LIST [--decoder LIST]] [--latent N]\n"
    "                  [--image CxHxW] [--batch N] [--likelihood L] [--candidates N] [--seed N]\n"
    "                  [--platform P --device D]\n"
    "\n"
    "Times CLBlast's direct GEMM kernel in --candidates configurations (default 12: the one in "
    "use,\n"
    "then a seeded sample of those CLBlast accepts) on the products of a training step of the\n"
    "model, on images of CxHxW (default 1x28x28) and --batch (default 256) rows, and keeps the\n"
    "fastest for this device, driver and CLBlast in $XDG_CACHE_HOME/clvae/clblast-<key>.txt\n"
    "(~/.cache/clvae without XDG_CACHE_HOME): every later clvae run on the device applies it.\n"
    "Compiling each configuration takes seconds to a minute on PoCL. Delete the file, or set\n"
    "CLVAE_CLBLAST_TUNING=off, to go back to the built-in parameters. On a CPU, where clvae's\n"
    "own kernels run the products unless CLVAE_GEMM=clblast, it times those too.\n";

static int parse_image(const char *text, struct tune_options *o, struct clvae_error *err)
{
    int c, h, w, used = 0;
    if (sscanf(text, "%3dx%5dx%5d%n", &c, &h, &w, &used) != 3 || text[used] != '\0' ||
        (c != 1 && c != 3) || h < 1 || w < 1 || h > 4096 || w > 4096)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--image: '%s' is not CxHxW (C 1 or 3, sides 1 to 4096)", text);
    o->channels = c, o->height = h, o->width = w;
    return 0;
}

// 1: --help printed; 0: parsed; -1: a bad command line.
static int parse_tune(int argc, char **argv, struct tune_options *o, struct clvae_error *err)
{
    enum { OPT_ENCODER = 256, OPT_DECODER, OPT_IMAGE, OPT_CANDIDATES, OPT_LIKELIHOOD };
    static const struct option longopts[] = {
        {"platform", required_argument, NULL, 'p'},
        {"device", required_argument, NULL, 'd'},
        {"hidden", required_argument, NULL, 'H'},
        {"encoder", required_argument, NULL, OPT_ENCODER},
        {"decoder", required_argument, NULL, OPT_DECODER},
        {"latent", required_argument, NULL, 'z'},
        {"image", required_argument, NULL, OPT_IMAGE},
        {"batch", required_argument, NULL, 'b'},
        {"likelihood", required_argument, NULL, OPT_LIKELIHOOD},
        {"candidates", required_argument, NULL, OPT_CANDIDATES},
        {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct tune_options){
        .channels = 1, .height = 28, .width = 28, .batch = 256, .candidates = 12, .seed = 1};
    o->model.n_encoder = o->model.n_decoder = 1;
    o->model.encoder[0] = o->model.decoder[0] =
        (struct layer_spec){.kind = LAYER_DENSE, .units = 128};
    o->model.latent = 10;
    const char *hidden = NULL, *encoder = NULL, *decoder = NULL;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":p:d:H:z:b:s:h", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'H': hidden = optarg; break;
        case OPT_ENCODER: encoder = optarg; break;
        case OPT_DECODER: decoder = optarg; break;
        case 'z': rc = cli_parse_int("--latent", optarg, 1, 4096, &o->model.latent, err); break;
        case 'b': rc = cli_parse_int("--batch", optarg, 1, 1 << 20, &o->batch, err); break;
        case OPT_IMAGE: rc = parse_image(optarg, o, err); break;
        case OPT_LIKELIHOOD:
            rc = likelihood_parse("--likelihood", optarg, &o->model.likelihood, err);
            break;
        case OPT_CANDIDATES:
            rc = cli_parse_int("--candidates", optarg, 1, TUNE_MAX_CANDIDATES, &o->candidates, err);
            break;
        case 's': rc = cli_parse_u64("--seed", optarg, &o->seed, err); break;
        case 'h': fputs(usage, stdout); return 1;
        default: {
            const char *data = NULL;
            rc = cli_parse_rest(c, optarg, argv, "tune", &o->platform, &o->device, &data, err);
        }
        }
        if (rc)
            return -1;
    }
    if (optind < argc)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: unexpected argument (see clvae tune --help)",
                          argv[optind]);
    struct vae_config *m = &o->model;
    if (vae_parse_model(hidden, encoder, decoder, m, err))
        return -1;
    m->channels = o->channels, m->height = o->height, m->width = o->width;
    m->in_dim = o->channels * o->height * o->width;
    o->model_option = vae_model_option(hidden, encoder, decoder);
    // A model refused now, not after opening the device and building the kernels.
    struct vae layout;
    return vae_layout(&layout, m, o->model_option, err);
}

// One forward and backward pass of rows rows, finished.
static void step(struct vae *vae, int rows, cl_mem rec, cl_mem kl)
{
    struct vae_pass pass = {.rows = rows,
                            .seed = 1,
                            .stream = PHILOX_STREAM_TRAIN,
                            .noise_scale = 1.0f,
                            .rec = rec,
                            .kl = kl,
                            .grad_scale = 1.0f / (float)rows};
    vae_forward(vae, &pass);
    vae_backward(vae, &pass, 1.0f);
    clrt_finish(vae->rt);
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The median time of a pass after a first one (which compiles the kernels): at least 3 passes,
// more until 0.5 s have gone by, at most 15.
static double time_passes(struct vae *vae, int rows, cl_mem rec, cl_mem kl)
{
    step(vae, rows, rec, kl);
    double times[15], start = train_now_seconds();
    int n = 0;
    while (n < 15 && (n < 3 || train_now_seconds() - start < 0.5)) {
        double t0 = train_now_seconds();
        step(vae, rows, rec, kl);
        times[n++] = train_now_seconds() - t0;
    }
    qsort(times, (size_t)n, sizeof times[0], compare_doubles);
    return times[n / 2];
}

// Every configuration CLBlast accepts from a grid like its own tuner's exhaustive one (KWID 2:
// with KWID 8, PoCL's compiler took over 7 minutes on one configuration of the conv reference),
// in a seeded order; the first `want` of them into c. Returns how many.
static int sample_candidates(const struct clrt *rt, uint64_t seed, struct clrt_gemm_params *c,
                             int want)
{
    static const int wgd[] = {16, 32, 64}, dims[] = {4, 8, 16}, vw[] = {1, 2, 4, 8};
    enum { MAX = 3 * 3 * 3 * 3 * 3 * 4 * 4 };
    struct clrt_gemm_params *all = xmalloc(MAX * sizeof *all);
    int n = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 81; b++)
            for (int v = 0; v < 16; v++) {
                struct clrt_gemm_params p = {wgd[a],
                                             dims[b % 3],
                                             dims[b / 3 % 3],
                                             dims[b / 9 % 3],
                                             dims[b / 27],
                                             2,
                                             vw[v % 4],
                                             vw[v / 4],
                                             1,
                                             1};
                if (clrt_gemm_params_valid(&p, rt->max_work_group))
                    all[n++] = p;
            }
    for (int i = n - 1; i > 0; i--) { // Fisher-Yates on Philox draws
        uint32_t r[4];
        philox_block(seed, (uint32_t)i, 0, PHILOX_STREAM_SHUFFLE, r);
        int j = (int)(((uint64_t)r[0] * (uint64_t)(i + 1)) >> 32);
        struct clrt_gemm_params t = all[i];
        all[i] = all[j], all[j] = t;
    }
    int take = n < want ? n : want;
    memcpy(c, all, (size_t)take * sizeof *c);
    free(all);
    return take;
}

static void describe(const struct clrt_gemm_params *p, char *buf, size_t len)
{
    snprintf(buf, len,
             "WGD=%d MDIMCD=%d NDIMCD=%d MDIMAD=%d NDIMBD=%d KWID=%d VWMD=%d VWND=%d PADA=%d "
             "PADB=%d",
             p->wgd, p->mdimcd, p->ndimcd, p->mdimad, p->ndimbd, p->kwid, p->vwmd, p->vwnd, p->pada,
             p->padb);
}

// Creates the directories above path.
static int make_parents(const char *path, struct clvae_error *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    return train_make_dirs(dir, err);
}

// Writes the tuning file: the key line, the winner, and how it was found.
static int write_tuning(const char *path, const char *key, const struct clrt_gemm_params *p,
                        const char *model, double best, double baseline, struct clvae_error *err)
{
    struct atomic_file f;
    char params[200];
    describe(p, params, sizeof params);
    if (make_parents(path, err) || atomic_file_open(&f, path, err))
        return -1;
    fprintf(f.fp, "# clvae tune: %s\n", key);
    fprintf(f.fp, "# model %s: %.3f ms a pass against %.3f ms as it was\n", model, 1e3 * best,
            1e3 * baseline);
    fprintf(f.fp, "XgemmDirect %s\n", params);
    fprintf(f.fp, "GemmRoutine XGEMM_MIN_INDIRECT_SIZE=%d\n", TUNE_MIN_INDIRECT);
    return atomic_file_commit(&f, err);
}

// Random parameters (the model's initialisation) and images for the passes.
static void fill_inputs(struct vae *vae, int rows, uint64_t seed)
{
    size_t n = vae->n_params, dim = (size_t)rows * (size_t)vae->cfg.in_dim;
    float *host = xmalloc((n > dim ? n : dim) * sizeof(float));
    vae_init_params_host(vae, seed, host);
    clrt_parts_write(vae->rt, &vae->params, host, true);
    for (size_t i = 0; i < dim; i++)
        host[i] = (float)philox_uniform(seed, (uint32_t)i, 1, PHILOX_STREAM_INIT);
    clrt_write(vae->rt, vae->x, 0, dim * sizeof(float), host, true);
    free(host);
}

// Times the configuration in use, then each candidate; the fastest into *best (its time in
// *best_time, the first's in *baseline); prints a line each.
static void measure(struct vae *vae, int rows, const struct clrt_gemm_params *cand, int n,
                    cl_mem rec, cl_mem kl, struct clrt_gemm_params *best, double *best_time,
                    double *baseline)
{
    *baseline = time_passes(vae, rows, rec, kl);
    printf("clvae tune: as configured now: %.3f ms a pass\n", 1e3 * *baseline);
    *best_time = INFINITY;
    for (int i = 0; i < n; i++) {
        char params[200];
        describe(&cand[i], params, sizeof params);
        printf("clvae tune: %2d/%d %s: ", i + 1, n, params);
        fflush(stdout);
        clrt_apply_gemm_params(vae->rt, &cand[i], TUNE_MIN_INDIRECT);
        double t = time_passes(vae, rows, rec, kl);
        printf("%.3f ms\n", 1e3 * t);
        if (t < *best_time)
            *best_time = t, *best = cand[i];
    }
}

int tune_main(int argc, char **argv, struct clvae_error *err)
{
    struct tune_options o;
    int parsed = parse_tune(argc, argv, &o, err);
    if (parsed)
        return parsed > 0 ? 0 : -1;
    struct clrt rt;
    struct vae vae = {0};
    cl_mem rec = NULL, kl = NULL;
    int status = -1;
    if (clrt_open(&rt, o.platform, o.device, false, err) || clrt_build(&rt, err))
        goto done;
    // What is tuned is CLBlast: where clvae's own kernels run the products (a CPU), they are
    // timed too, and the file serves runs with CLVAE_GEMM=clblast.
    bool own = rt.own_gemm;
    rt.own_gemm = false;
    int rows =
        rt.device_type & CL_DEVICE_TYPE_CPU && o.batch > TUNE_ROWS_CPU ? TUNE_ROWS_CPU : o.batch;
    if (vae_create(&vae, &rt, &o.model, rows, o.model_option, err) ||
        !(rec = clrt_buffer(&rt, (size_t)rows * sizeof(float), "losses", err)) ||
        !(kl = clrt_buffer(&rt, (size_t)rows * sizeof(float), "KL terms", err)))
        goto done;
    char path[4200], key[512], model[160];
    if (clrt_tuning_path(&rt, path, sizeof path, key, sizeof key)) {
        clvae_fail(err, CLVAE_EXIT_OUTPUT, "tune: no cache directory: set XDG_CACHE_HOME or HOME");
        goto done;
    }
    vae_describe(&vae.cfg, model, sizeof model);
    printf("clvae tune: %s on %s (%s), %d rows a pass\n", model, rt.device_name, rt.platform_name,
           rows);
    fflush(stdout);
    fill_inputs(&vae, rows, o.seed);
    struct clrt_gemm_params cand[TUNE_MAX_CANDIDATES], best = {0};
    int n = sample_candidates(&rt, o.seed, cand, o.candidates);
    double best_time, baseline;
    measure(&vae, rows, cand, n, rec, kl, &best, &best_time, &baseline);
    if (own) {
        rt.own_gemm = true;
        double t = time_passes(&vae, rows, rec, kl);
        printf(
            "clvae tune: clvae's own kernels (cl/gemm.cl), which run the products on this device "
            "unless CLVAE_GEMM=clblast: %.3f ms a pass, %.2fx the fastest CLBlast "
            "configuration's speed\n",
            1e3 * t, fmin(best_time, baseline) / t);
    }
    char params[200];
    describe(&best, params, sizeof params);
    if (best_time >= baseline) {
        printf("clvae tune: the configuration in use is the fastest; nothing written\n");
        status = 0;
        goto done;
    }
    if (write_tuning(path, key, &best, model, best_time, baseline, err))
        goto done;
    printf("clvae tune: fastest %s: %.3f ms a pass, %.2fx faster than the configuration in use; "
           "kept in %s\n",
           params, 1e3 * best_time, baseline / best_time, path);
    status = 0;
done:
    clrt_release_buffer(rec);
    clrt_release_buffer(kl);
    vae_release(&vae);
    clrt_close(&rt);
    return status;
}
