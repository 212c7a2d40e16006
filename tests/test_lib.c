// libclvae through include/clvae.h alone, against the clvae program ($CLVAE): trains the default
// MLP one epoch (a callback stops a 2-epoch run), then checks clvae_sample against `clvae generate
// --raw`, clvae_encode, clvae_elbo and clvae_iwae against `clvae encode --elbo` (bit for bit),
// clvae_reconstruct and clvae_decode against each other, the ELBO's mean against `clvae eval`, and
// that bad arguments, a missing file and a bad device come back as statuses with messages. A
// second run of this program (--fault) makes every kernel launch fail (this file's
// clEnqueueNDRangeKernel takes the place of the driver's) to check that the failure, which ends
// the clvae program, comes back from the library as a status and leaves the device closable.
#define _GNU_SOURCE // RTLD_NEXT
#define CL_TARGET_OPENCL_VERSION 120
#include <clvae.h>

#include <CL/cl.h>
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#define N_IMAGES 300 // test images taken from Fashion-MNIST into a small IDX set
#define K 5          // IWAE samples
#define SEED 7

static int checks, failures;

static bool check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s", ok ? "ok   " : "FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    checks++;
    failures += !ok;
    return ok;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("test_lib: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    exit(1);
}

static char tmp[256], path_buf[8][512];

// tmp/name, in one of 8 rotating buffers.
static const char *in_tmp(const char *name)
{
    static int next;
    char *p = path_buf[next++ % 8];
    snprintf(p, sizeof path_buf[0], "%s/%s", tmp, name);
    return p;
}

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        die("failed: %s", cmd);
}

static void *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        die("%s: cannot open", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    void *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, fp) != (size_t)n)
        die("%s: cannot read", path);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

// The first n images or labels of a gzipped IDX file of Fashion-MNIST (header bytes skipped).
static void read_gz(const char *path, size_t header, void *out, size_t bytes)
{
    gzFile gz = gzopen(path, "rb");
    unsigned char skip[16];
    if (!gz || gzread(gz, skip, (unsigned)header) != (int)header ||
        gzread(gz, out, (unsigned)bytes) != (int)bytes)
        die("%s: cannot read", path);
    gzclose(gz);
}

static void write_idx(const char *path, const unsigned char *head, size_t head_len,
                      const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(head, 1, head_len, fp) != head_len || fwrite(data, 1, len, fp) != len ||
        fclose(fp) != 0)
        die("%s: cannot write", path);
}

// Set: every kernel launch fails as a driver's out of resources would.
static int fail_launches;

cl_int clEnqueueNDRangeKernel(cl_command_queue queue, cl_kernel kernel, cl_uint dims,
                              const size_t *offset, const size_t *global, const size_t *local,
                              cl_uint n_events, const cl_event *events, cl_event *event)
{
    typedef cl_int (*launch_fn)(cl_command_queue, cl_kernel, cl_uint, const size_t *,
                                const size_t *, const size_t *, cl_uint, const cl_event *,
                                cl_event *);
    static launch_fn real;
    if (fail_launches)
        return CL_OUT_OF_RESOURCES;
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "clEnqueueNDRangeKernel");
    return real(queue, kernel, dims, offset, global, local, n_events, events, event);
}

// --fault CKPT: a failed launch inside clvae_encode is its status; the device is then broken
// (its calls refused, closing works), and a device opened afresh works. Ends with _exit: what the
// trapped call had allocated is not reclaimed (clvae.h), which LeakSanitizer must not count.
static int fault_run(const char *ckpt)
{
    struct clvae_status st;
    struct clvae_device *dev;
    struct clvae_model *model;
    if (clvae_device_open(NULL, NULL, &dev, &st) || clvae_model_load(dev, ckpt, &model, &st))
        die("--fault: %s", st.message);
    float x[784] = {0}, mean[10], out[784];
    fail_launches = 1;
    int rc = clvae_encode(model, x, 1, NULL, mean, NULL, &st);
    fail_launches = 0;
    check(rc == CLVAE_STATUS_DEVICE &&
              strstr(st.message, "clEnqueueNDRangeKernel failed: CL_OUT_OF_RESOURCES"),
          "a failed launch in clvae_encode: status %d, \"%s\" (the program exits with it)", rc,
          st.message);
    rc = clvae_sample(model, 1, 1, 1.0, -1, out, &st);
    check(rc == CLVAE_STATUS_FAILURE && strstr(st.message, "failed part-way"),
          "the device is broken: clvae_sample refused, %d, \"%s\"", rc, st.message);
    rc = clvae_model_load(dev, ckpt, &model, &st);
    check(rc == CLVAE_STATUS_FAILURE, "clvae_model_load onto the broken device refused: %d", rc);
    clvae_model_close(model);
    clvae_device_close(dev);
    rc = clvae_device_open(NULL, NULL, &dev, &st);
    if (rc == 0)
        rc = clvae_model_load(dev, ckpt, &model, &st);
    if (rc == 0)
        rc = clvae_encode(model, x, 1, NULL, mean, NULL, &st);
    check(rc == 0 && isfinite(mean[0]), "a device opened afresh encodes: %d %s", rc, st.message);
    if (rc == 0) {
        clvae_model_close(model);
        clvae_device_close(dev);
    }
    fflush(stdout);
    _exit(failures ? 1 : 0);
}

static int epochs_seen;
static struct clvae_epoch last_epoch;

static int stop_after_first(const struct clvae_epoch *e, void *user)
{
    (void)user;
    epochs_seen++;
    last_epoch = *e;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--fault") == 0)
        return fault_run(argv[2]);
    const char *prog = getenv("CLVAE");
    if (!prog)
        die("CLVAE (the clvae program) is not set");
    const char *fashion = "/usr/share/datasets/fashion-mnist";
    snprintf(tmp, sizeof tmp, "/tmp/test_lib.XXXXXX");
    if (!mkdtemp(tmp))
        die("cannot make a temporary directory");
    struct clvae_status st;

    check(strcmp(clvae_version(), "0.1.0") == 0, "clvae_version() is %s", clvae_version());

    // Training: 2 epochs asked, the callback stops after the first.
    struct clvae_train_options opt;
    clvae_train_defaults(&opt);
    check(opt.epochs == 30 && opt.batch == 256 && opt.latent == 10 && opt.seed == 1 &&
              strcmp(opt.data, fashion) == 0,
          "clvae_train_defaults: train's defaults (30 epochs, batch 256, latent 10, seed 1)");
    const char *ckpt = in_tmp("model.safetensors");
    char ckpt_path[512];
    snprintf(ckpt_path, sizeof ckpt_path, "%s", ckpt);
    char out_dir[512];
    snprintf(out_dir, sizeof out_dir, "%s", in_tmp("out"));
    opt.epochs = 2;
    opt.out_dir = out_dir;
    opt.checkpoint = ckpt_path;
    opt.on_epoch = stop_after_first;
    int rc = clvae_train(&opt, &st);
    check(rc == 0 && st.code == 0 && st.message[0] == '\0', "clvae_train: status %d (%s)", rc,
          st.message);
    check(epochs_seen == 1 && last_epoch.epoch == 1 && isfinite(last_epoch.test_rec) &&
              last_epoch.test_rec > 0 && last_epoch.train_kl > 0,
          "the callback saw epoch 1 once (test rec %.2f, train kl %.2f) and stopped the run",
          last_epoch.test_rec, last_epoch.train_kl);
    if (access(ckpt_path, R_OK) != 0)
        die("clvae_train wrote no checkpoint %s", ckpt_path);

    // Errors come back as statuses.
    struct clvae_train_options bad = opt;
    bad.data = in_tmp("no-such-data");
    bad.on_epoch = NULL;
    rc = clvae_train(&bad, &st);
    check(rc == 3 && st.code == 3 && strstr(st.message, "no-such-data"),
          "clvae_train on a missing directory: status %d, \"%s\"", rc, st.message);
    bad = opt;
    bad.encoder = "conv:x";
    rc = clvae_train(&bad, &st);
    check(rc == 2 && strstr(st.message, "conv:x"), "clvae_train with a bad encoder: %d, \"%s\"", rc,
          st.message);
    struct clvae_device *dev = NULL;
    rc = clvae_device_open(NULL, "999", &dev, &st);
    check(rc == CLVAE_STATUS_DEVICE && dev == NULL && strstr(st.message, "999"),
          "clvae_device_open(NULL, \"999\"): status %d, \"%.60s...\"", rc, st.message);
    rc = clvae_device_open("", NULL, &dev, &st);
    check(rc == CLVAE_STATUS_USAGE && dev == NULL, "clvae_device_open(\"\", NULL): %d, \"%s\"", rc,
          st.message);
    rc = clvae_device_open(NULL, NULL, &dev, &st);
    if (!check(rc == 0 && dev, "clvae_device_open(NULL, NULL): %d %s, on %s", rc, st.message,
               dev ? clvae_device_name(dev) : "-"))
        return 1;
    struct clvae_model *model = NULL;
    rc = clvae_model_load(dev, in_tmp("missing.safetensors"), &model, &st);
    check(rc == CLVAE_STATUS_DATA && !model && strstr(st.message, "missing.safetensors"),
          "clvae_model_load of a missing file: status %d, \"%s\"", rc, st.message);
    rc = clvae_model_load(dev, ckpt_path, &model, &st);
    if (!check(rc == 0 && model, "clvae_model_load: %d %s", rc, st.message))
        return 1;
    struct clvae_shape shape;
    clvae_model_shape(model, &shape, &st);
    check(shape.latent == 10 && shape.width == 28 && shape.height == 28 && shape.channels == 1 &&
              shape.pixels == 784 && shape.likelihood == CLVAE_LIKELIHOOD_BERNOULLI &&
              shape.classes == 0 && !shape.binarized && clvae_model_class_name(model, 0) == NULL,
          "clvae_model_shape: latent %d, %dx%dx%d, likelihood %d, %d classes", shape.latent,
          shape.width, shape.height, shape.channels, shape.likelihood, shape.classes);
    size_t dim = (size_t)shape.pixels, latent = (size_t)shape.latent;

    // Sampling: `clvae generate --raw`'s bits.
    float *sample = calloc(64 * dim, sizeof(float));
    rc = clvae_sample(model, 64, SEED, 1.0, -1, sample, &st);
    run("'%s' generate --model '%s' -n 64 --seed %d --raw '%s'", prog, ckpt_path, SEED,
        in_tmp("gen.raw"));
    size_t len;
    float *gen = read_file(in_tmp("gen.raw"), &len);
    check(rc == 0 && len == 64 * dim * sizeof(float) && memcmp(gen, sample, len) == 0,
          "clvae_sample(64, seed %d) == clvae generate --raw, bit for bit (%zu bytes)", SEED, len);
    float *decoded = calloc(64 * dim, sizeof(float));
    check(clvae_sample(model, 64, SEED, 1.0, 3, decoded, &st) == CLVAE_STATUS_USAGE &&
              strstr(st.message, "not conditional"),
          "clvae_sample with a class on an unconditional model: \"%s\"", st.message);
    check(clvae_sample(model, 0, SEED, 1.0, -1, decoded, &st) == CLVAE_STATUS_USAGE,
          "clvae_sample(n 0): \"%s\"", st.message);

    // A small IDX set of the first N_IMAGES test images, which `clvae encode` reads whole.
    unsigned char *pixels = malloc(N_IMAGES * dim), labels[N_IMAGES];
    char gz[512];
    snprintf(gz, sizeof gz, "%s/t10k-images-idx3-ubyte.gz", fashion);
    read_gz(gz, 16, pixels, N_IMAGES * dim);
    snprintf(gz, sizeof gz, "%s/t10k-labels-idx1-ubyte.gz", fashion);
    read_gz(gz, 8, labels, N_IMAGES);
    run("mkdir -p '%s'", in_tmp("data"));
    unsigned char ih[16] = {0, 0,  8, 3, 0, 0, N_IMAGES >> 8, N_IMAGES & 255, 0, 0,
                            0, 28, 0, 0, 0, 28};
    unsigned char lh[8] = {0, 0, 8, 1, 0, 0, N_IMAGES >> 8, N_IMAGES & 255};
    write_idx(in_tmp("data/t10k-images-idx3-ubyte"), ih, 16, pixels, N_IMAGES * dim);
    write_idx(in_tmp("data/t10k-labels-idx1-ubyte"), lh, 8, labels, N_IMAGES);
    write_idx(in_tmp("data/train-images-idx3-ubyte"), ih, 16, pixels, N_IMAGES * dim);
    write_idx(in_tmp("data/train-labels-idx1-ubyte"), lh, 8, labels, N_IMAGES);
    float *x = malloc(N_IMAGES * dim * sizeof(float));
    for (size_t i = 0; i < N_IMAGES * dim; i++)
        x[i] = (float)pixels[i] * (1.0f / 255.0f);

    run("'%s' encode --model '%s' --data '%s' --elbo -k %d --seed %d -o '%s' > /dev/null", prog,
        ckpt_path, in_tmp("data"), K, SEED, in_tmp("enc.npy"));
    unsigned char *npy = read_file(in_tmp("enc.npy"), &len);
    size_t header = 10 + (size_t)(npy[8] | npy[9] << 8), cols = 2 * latent + 3;
    if (len != header + N_IMAGES * cols * sizeof(float))
        die("enc.npy: %zu bytes, not %zu rows of %zu floats", len, (size_t)N_IMAGES, cols);
    float *enc = malloc(N_IMAGES * cols * sizeof(float));
    memcpy(enc, npy + header, N_IMAGES * cols * sizeof(float));
    float *mean = malloc(N_IMAGES * latent * sizeof(float));
    float *logvar = malloc(N_IMAGES * latent * sizeof(float));
    float *elbo = malloc(N_IMAGES * sizeof(float)), *iwae = malloc(N_IMAGES * sizeof(float));
    int rc1 = clvae_encode(model, x, N_IMAGES, NULL, mean, logvar, &st);
    int rc2 = clvae_elbo(model, x, N_IMAGES, NULL, SEED, elbo, &st);
    int rc3 = clvae_iwae(model, x, N_IMAGES, NULL, K, SEED, iwae, &st);
    int differ[4] = {0};
    for (size_t i = 0; i < N_IMAGES; i++) {
        const float *row = enc + i * cols;
        differ[0] += memcmp(row, mean + i * latent, latent * sizeof(float)) != 0;
        differ[1] += memcmp(row + latent, logvar + i * latent, latent * sizeof(float)) != 0;
        differ[2] += memcmp(row + 2 * latent + 1, elbo + i, sizeof(float)) != 0;
        differ[3] += memcmp(row + 2 * latent + 2, iwae + i, sizeof(float)) != 0;
    }
    check(rc1 == 0 && differ[0] == 0 && differ[1] == 0,
          "clvae_encode == clvae encode's mu and logvar, bit for bit (%d and %d of %d images "
          "differ)",
          differ[0], differ[1], N_IMAGES);
    check(rc2 == 0 && rc3 == 0 && differ[2] == 0 && differ[3] == 0,
          "clvae_elbo and clvae_iwae (k %d, seed %d) == clvae encode --elbo's columns, bit for bit "
          "(%d and %d differ)",
          K, SEED, differ[2], differ[3]);

    // `clvae eval`'s means (its CSV: images,k,neg_elbo,neg_iwae,...) of the per-image values.
    run("'%s' eval --model '%s' --data '%s' -k %d --seed %d --csv '%s' > /dev/null", prog,
        ckpt_path, in_tmp("data"), K, SEED, in_tmp("eval.csv"));
    char *csv = read_file(in_tmp("eval.csv"), &len);
    csv[len] = '\0';
    double sum_elbo = 0, sum_iwae = 0, eval_elbo = NAN, eval_iwae = NAN;
    for (int i = 0; i < N_IMAGES; i++)
        sum_elbo += elbo[i], sum_iwae += iwae[i];
    const char *line = strchr(csv, '\n');
    int images = 0, k = 0;
    if (line)
        sscanf(line + 1, "%d,%d,%lf,%lf", &images, &k, &eval_elbo, &eval_iwae);
    check(images == N_IMAGES && k == K && fabs(sum_elbo / N_IMAGES - eval_elbo) < 1e-4 &&
              fabs(sum_iwae / N_IMAGES - eval_iwae) < 1e-4,
          "clvae eval's mean negative ELBO %.6f and IWAE %.6f are the per-image values' means "
          "(%.6f, %.6f)",
          eval_elbo, eval_iwae, sum_elbo / N_IMAGES, sum_iwae / N_IMAGES);

    // Reconstruct == decode(encode's means); decode of the sample's z is generate's.
    float *recon = malloc(N_IMAGES * dim * sizeof(float));
    float *again = malloc(N_IMAGES * dim * sizeof(float));
    rc1 = clvae_reconstruct(model, x, N_IMAGES, NULL, recon, &st);
    rc2 = clvae_decode(model, mean, N_IMAGES, NULL, again, &st);
    check(rc1 == 0 && rc2 == 0 && memcmp(recon, again, N_IMAGES * dim * sizeof(float)) == 0,
          "clvae_reconstruct == clvae_decode of clvae_encode's means");
    int cls[2] = {0, 1};
    check(clvae_encode(model, x, 2, cls, mean, NULL, &st) == CLVAE_STATUS_USAGE,
          "clvae_encode with classes on an unconditional model: \"%s\"", st.message);
    check(clvae_iwae(model, x, 2, NULL, 0, SEED, iwae, &st) == CLVAE_STATUS_USAGE,
          "clvae_iwae with k 0: \"%s\"", st.message);

    // The grid writer: the PNG `clvae generate -o` writes for the same images.
    run("'%s' generate --model '%s' -n 64 --seed %d -o '%s'", prog, ckpt_path, SEED,
        in_tmp("gen.png"));
    rc = clvae_write_png_grid(in_tmp("lib.png"), &shape, sample, 64, 0, &st);
    void *a = read_file(in_tmp("gen.png"), &len);
    size_t len_b;
    void *b = read_file(in_tmp("lib.png"), &len_b);
    check(rc == 0 && len == len_b && memcmp(a, b, len) == 0,
          "clvae_write_png_grid of the samples == clvae generate -o's PNG, byte for byte");
    rc = clvae_write_png_grid(in_tmp("no-dir/x.png"), &shape, sample, 64, 0, &st);
    check(rc == CLVAE_STATUS_OUTPUT && strstr(st.message, "no-dir"),
          "clvae_write_png_grid into a missing directory: %d, \"%s\"", rc, st.message);

    clvae_model_close(model);
    clvae_device_close(dev);

    // The failure that ends the program, inside a library call (a run of its own).
    char self[512];
    ssize_t n_self = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n_self < 0)
        die("/proc/self/exe: cannot read");
    self[n_self] = '\0';
    fflush(stdout);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' --fault '%s'", self, ckpt_path);
    check(system(cmd) == 0, "%s: every check passed", cmd);
    run("rm -rf '%s'", tmp);
    free(sample), free(decoded), free(gen), free(pixels), free(x), free(npy), free(enc);
    free(mean), free(logvar), free(elbo), free(iwae), free(csv), free(recon), free(again);
    free(a), free(b);
    printf("test_lib: %d of %d checks %s\n", failures ? failures : checks, checks,
           failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
