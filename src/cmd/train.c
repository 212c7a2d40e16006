// `clvae train`: its options, the checkpoint a --resume carries on from, and the run
// (src/train/). Every option is a row of one table, which the parser, the help and the resume's
// checks read: a new option is a row (and its field in struct train_options).
#include "train_cmd.h"

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cl_runtime.h"
#include "cli.h"
#include "dist.h"
#include "image_folder.h"
#include "likelihood.h"
#include "optimizer.h"
#include "schedule.h"
#include "train.h"

// What the command line gave: the options, and the values read once all options are (the
// architecture's lists, --weight-decay).
struct command_line {
    struct train_options opt;
    const char *hidden, *encoder, *decoder;
    double weight_decay;
    uint64_t given; // bit i: option row i was given
};

// How a value is read (unless the row has its own parse) and shown (unless it has its own show);
// VALUE_OTHER: by the row's own.
enum value_type { VALUE_INT, VALUE_DOUBLE, VALUE_U64, VALUE_TEXT, VALUE_FLAG, VALUE_OTHER };

// What a checkpoint resumed says of an option given with --resume.
enum on_resume {
    RESUME_ANY,   // nothing: a resumed run may change it
    RESUME_SAME,  // the checkpoint fixes it: given, it must be the checkpoint's
    RESUME_MODEL, // part of the architecture, which the checkpoint fixes as a whole
};

struct option_row {
    const char *name; // "--batch"
    char letter;      // its short form, or 0
    const char *arg;  // the value's name in the help; NULL: a flag
    enum value_type type;
    size_t at, size; // the value in struct command_line (compared as bytes on resume)
    double min, max; // VALUE_INT, VALUE_DOUBLE: the range (above min when open)
    bool open;
    int (*parse)(const char *text, struct command_line *cl, struct clvae_error *err);
    void (*show)(const struct command_line *cl, char *buf, size_t len);
    enum on_resume resume;
    const char *trained; // the resume message's words for the checkpoint's value; NULL "with %s"
    // RESUME_SAME's own check, in place of comparing bytes: 0, or -1 with err.
    int (*check)(const struct command_line *cl, const struct ckpt_meta *m, const char *path,
                 struct clvae_error *err);
    bool png_only;    // applies to PNG folders alone: refused for IDX files (train_options)
    const char *help; // its help; lines after the first are indented; "{}" is the default
};

#define AT(field)                                                                                  \
    .at = offsetof(struct command_line, field), .size = sizeof(((struct command_line *)NULL)->field)

// --image-size compares width and height as one value.
_Static_assert(offsetof(struct image_folder_options, height) ==
                   offsetof(struct image_folder_options, width) + sizeof(int),
               "--image-size's two numbers are compared as one");

static int parse_platform(const char *text, struct command_line *cl, struct clvae_error *err)
{
    cl->opt.platform = text;
    return clrt_parse_selector("--platform", text, err);
}

static int parse_device(const char *text, struct command_line *cl, struct clvae_error *err)
{
    cl->opt.device = text;
    return clrt_parse_selector("--device", text, err);
}

static int parse_channels(const char *text, struct command_line *cl, struct clvae_error *err)
{
    int *channels = &cl->opt.folder.channels;
    if (cli_parse_int("--channels", text, 1, 3, channels, err))
        return -1;
    if (*channels == 2)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--channels: 2 is neither 1 (grey) nor 3 (RGB)");
    return 0;
}

static int parse_background(const char *text, struct command_line *cl, struct clvae_error *err)
{
    return image_folder_parse_background("--background", text, cl->opt.folder.background, err);
}

static void show_background(const struct command_line *cl, char *buf, size_t len)
{
    const uint8_t *rgb = cl->opt.folder.background;
    snprintf(buf, len, "%d,%d,%d", rgb[0], rgb[1], rgb[2]);
}

static int parse_image_size(const char *text, struct command_line *cl, struct clvae_error *err)
{
    return image_folder_parse_size("--image-size", text, &cl->opt.folder.width,
                                   &cl->opt.folder.height, err);
}

static void show_image_size(const struct command_line *cl, char *buf, size_t len)
{
    snprintf(buf, len, "%dx%d", cl->opt.folder.width, cl->opt.folder.height);
}

static int parse_crop(const char *text, struct command_line *cl, struct clvae_error *err)
{
    return image_folder_parse_crop("--crop", text, &cl->opt.folder.crop, err);
}

static void show_crop(const struct command_line *cl, char *buf, size_t len)
{
    snprintf(buf, len, "%s", image_folder_crop_name(cl->opt.folder.crop));
}

static int parse_no_cache(const char *text, struct command_line *cl, struct clvae_error *err)
{
    (void)text;
    (void)err;
    cl->opt.folder.cache = false;
    return 0;
}

static int parse_test_split(const char *text, struct command_line *cl, struct clvae_error *err)
{
    double *split = &cl->opt.folder.test_split;
    if (cli_parse_double("--test-split", text, 0.0, true, 1.0, split, err))
        return -1;
    if (*split >= 1.0)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--test-split: %s leaves no training images (a fraction below 1)", text);
    return 0;
}

static int parse_likelihood(const char *text, struct command_line *cl, struct clvae_error *err)
{
    return likelihood_parse("--likelihood", text, &cl->opt.model.likelihood, err);
}

static void show_likelihood(const struct command_line *cl, char *buf, size_t len)
{
    snprintf(buf, len, "%s", likelihood_name(cl->opt.model.likelihood));
}

static int parse_optimizer(const char *text, struct command_line *cl, struct clvae_error *err)
{
    return optimizer_parse("--optimizer", text, &cl->opt.optimizer, err);
}

static void show_optimizer(const struct command_line *cl, char *buf, size_t len)
{
    snprintf(buf, len, "%s", cl->opt.optimizer.kind->name);
}

// The checkpoint's optimizer must take a weight decay, and have the one given.
static int check_weight_decay(const struct command_line *cl, const struct ckpt_meta *m,
                              const char *path, struct clvae_error *err)
{
    struct optimizer_config given = m->optimizer;
    if (optimizer_set_option(&given, "--weight-decay", cl->weight_decay, err))
        return -1;
    int i = optimizer_option_index(given.kind, "--weight-decay");
    if (given.hyper[i] != m->optimizer.hyper[i])
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--weight-decay %g: the checkpoint %s was trained with %g",
                          cl->weight_decay, path, m->optimizer.hyper[i]);
    return 0;
}

static int parse_binarize(const char *text, struct command_line *cl, struct clvae_error *err)
{
    return checkpoint_parse_binarize("--binarize", text, &cl->opt.binarize, err);
}

static void show_binarize(const struct command_line *cl, char *buf, size_t len)
{
    snprintf(buf, len, "%s", checkpoint_binarize_name(cl->opt.binarize));
}

static int parse_lr_schedule(const char *text, struct command_line *cl, struct clvae_error *err)
{
    return schedule_parse_lr("--lr-schedule", text, &cl->opt.lr_schedule, err);
}

static void show_lr_schedule(const struct command_line *cl, char *buf, size_t len)
{
    snprintf(buf, len, "%s", schedule_lr_name(cl->opt.lr_schedule));
}

// The default encoder's widths, "128" (--hidden's default).
static void show_hidden(const struct command_line *cl, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < cl->opt.model.n_encoder && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%d", i ? "," : "",
                                 cl->opt.model.encoder[i].units);
}

// The options in the order of the help.
static const struct option_row rows[] = {
    {.name = "--platform",
     .letter = 'p',
     .arg = "P",
     .type = VALUE_TEXT,
     AT(opt.platform),
     .parse = parse_platform,
     .help = "OpenCL platform: an index (see `clvae devices`) or a part of\n"
             "its name; default $CLVAE_PLATFORM, else the first with a GPU"},
    {.name = "--device",
     .letter = 'd',
     .arg = "D",
     .type = VALUE_TEXT,
     AT(opt.device),
     .parse = parse_device,
     .help = "device: an index within the platform or a part of its name;\n"
             "default $CLVAE_DEVICE, else the first GPU, else 0"},
    {.name = "--data",
     .letter = 'D',
     .arg = "DIR",
     .type = VALUE_TEXT,
     AT(opt.data_dir),
     .help = "IDX files (train-images-idx3-ubyte[.gz], t10k-images-...) or\n"
             "a folder of images  [{}]"},
    {.name = "--channels",
     .arg = "N",
     .type = VALUE_INT,
     AT(opt.folder.channels),
     .parse = parse_channels,
     .resume = RESUME_SAME,
     .png_only = true,
     .help = "1 (grey) or 3 (RGB) for a folder's images  [3 if any is colour]"},
    {.name = "--background",
     .arg = "V",
     .type = VALUE_OTHER,
     AT(opt.folder.background),
     .parse = parse_background,
     .show = show_background,
     .resume = RESUME_SAME,
     .trained = "on %s",
     .png_only = true,
     .help = "grey level 0-255, R,G,B or #rrggbb under transparent pixels\n"
             "[255: white]"},
    {.name = "--image-size",
     .arg = "WxH",
     .type = VALUE_OTHER,
     .at = offsetof(struct command_line, opt.folder.width),
     .size = 2 * sizeof(int),
     .parse = parse_image_size,
     .show = show_image_size,
     .resume = RESUME_SAME,
     .trained = "on %s images",
     .png_only = true,
     .help = "resize every image to W x H  [all must share one size]"},
    {.name = "--crop",
     .arg = "C",
     .type = VALUE_OTHER,
     AT(opt.folder.crop),
     .parse = parse_crop,
     .show = show_crop,
     .resume = RESUME_SAME,
     .png_only = true,
     .help = "fit to --image-size: none (stretch) or center (scale to cover\n"
             "it, keep the centre: torchvision's Resize + CenterCrop)  [{}]"},
    {.name = "--flip",
     .type = VALUE_FLAG,
     AT(opt.flip),
     .resume = RESUME_SAME,
     .png_only = true,
     .help = "flip training images left to right at random (keyed by seed,\n"
             "epoch and image: a resumed run flips the same), never test images"},
    {.name = "--test-split",
     .arg = "F",
     .type = VALUE_DOUBLE,
     AT(opt.folder.test_split),
     .parse = parse_test_split,
     .resume = RESUME_SAME,
     .png_only = true,
     .help = "fraction of a PNG folder held out for testing (without\n"
             "DIR/test), stratified by class, the same for the same seed [{}]"},
    {.name = "--skip-bad-images",
     .type = VALUE_FLAG,
     AT(opt.folder.skip_bad),
     .png_only = true,
     .help = "leave out image files that cannot be read, with a warning"},
    {.name = "--no-cache",
     .type = VALUE_OTHER,
     .parse = parse_no_cache,
     .help = "decode a folder's images even when $XDG_CACHE_HOME/clvae\n"
             "(else ~/.cache/clvae) holds them decoded, and keep no copy"},
    {.name = "--likelihood",
     .arg = "L",
     .type = VALUE_OTHER,
     AT(opt.model.likelihood),
     .parse = parse_likelihood,
     .show = show_likelihood,
     .resume = RESUME_SAME,
     .help = "bernoulli (pixels as probabilities) or logistic (a discretised\n"
             "logistic per pixel and channel for 8-bit images)  [{}]"},
    {.name = "--binarize",
     .arg = "B",
     .type = VALUE_OTHER,
     AT(opt.binarize),
     .parse = parse_binarize,
     .show = show_binarize,
     .resume = RESUME_SAME,
     .help = "bernoulli's pixels drawn as 0 or 1 with their intensity as the\n"
             "probability: dynamic (every epoch) or static (once)  [none]"},
    {.name = "--out",
     .letter = 'o',
     .arg = "DIR",
     .type = VALUE_TEXT,
     AT(opt.out_dir),
     .help = "output directory, created if missing          [{}]"},
    {.name = "--epochs",
     .letter = 'e',
     .arg = "N",
     .type = VALUE_INT,
     AT(opt.epochs),
     .min = 1,
     .max = 1000000,
     .help = "passes over the training set                  [{}]"},
    {.name = "--batch",
     .letter = 'b',
     .arg = "N",
     .type = VALUE_INT,
     AT(opt.batch),
     .min = 1,
     .max = 1 << 20,
     .resume = RESUME_SAME,
     .help = "images per step                               [{}]"},
    {.name = "--lr",
     .letter = 'l',
     .arg = "X",
     .type = VALUE_DOUBLE,
     AT(opt.lr),
     .min = 0.0,
     .open = true,
     .max = 10.0,
     .resume = RESUME_SAME,
     .help = "learning rate                                 [{}]"},
    {.name = "--lr-schedule",
     .arg = "S",
     .type = VALUE_OTHER,
     AT(opt.lr_schedule),
     .parse = parse_lr_schedule,
     .show = show_lr_schedule,
     .resume = RESUME_SAME,
     .help = "constant, cosine (to 0 over the run's steps after the warm-up)\n"
             "or step (x0.1 from half the epochs, x0.01 from 3/4)  [{}]"},
    {.name = "--lr-warmup",
     .arg = "STEPS",
     .type = VALUE_INT,
     AT(opt.lr_warmup),
     .min = 0,
     .max = 1 << 30,
     .resume = RESUME_SAME,
     .help = "the learning rate rises linearly to --lr over the first STEPS\n"
             "steps  [{}: none]"},
    {.name = "--schedule-epochs",
     .arg = "N",
     .type = VALUE_INT,
     AT(opt.schedule_epochs),
     .min = 1,
     .max = 1000000,
     .resume = RESUME_SAME,
     .help = "the epochs --lr-schedule cosine|step and --kl-cycles span\n"
             "[--epochs of the first run; a checkpoint keeps it]"},
    {.name = "--clip-grad",
     .arg = "X",
     .type = VALUE_DOUBLE,
     AT(opt.clip_grad),
     .min = 0.0,
     .open = true,
     .max = 1e9,
     .resume = RESUME_SAME,
     .help = "scale the gradient down to a global norm of X when it is larger\n"
             "(torch.nn.utils.clip_grad_norm_)  [none]"},
    {.name = "--optimizer",
     .arg = "O",
     .type = VALUE_OTHER,
     AT(opt.optimizer.kind),
     .parse = parse_optimizer,
     .show = show_optimizer,
     .resume = RESUME_SAME,
     .help = "adam (torch.optim.Adam: betas 0.9, 0.999, eps 1e-8) or adamw\n"
             "(the same with decoupled weight decay, torch.optim.AdamW) [{}]"},
    {.name = "--weight-decay",
     .arg = "X",
     .type = VALUE_DOUBLE,
     AT(weight_decay),
     .min = 0.0,
     .max = 100.0,
     .resume = RESUME_SAME,
     .check = check_weight_decay,
     .help = "adamw's: every step multiplies the weights by 1 - lr X\n"
             "before Adam's update  [{}]"},
    {.name = "--hidden",
     .letter = 'H',
     .arg = "LIST",
     .type = VALUE_TEXT,
     AT(hidden),
     .show = show_hidden,
     .resume = RESUME_MODEL,
     .help = "encoder widths, comma-separated; the decoder mirrors them [{}]"},
    {.name = "--encoder",
     .arg = "LIST",
     .type = VALUE_TEXT,
     AT(encoder),
     .resume = RESUME_MODEL,
     .help = "layers, e.g. conv:32,conv:64,dense:256: dense:N, or\n"
             "conv:C[:K[:S[:P]]] (C channels, kernel K, stride S, padding P;\n"
             "4, 2, 1 unless given), res:C[:G] (a residual block, G groups\n"
             "of group normalisation, 8 unless given), up:F (upsampling)"},
    {.name = "--decoder",
     .arg = "LIST",
     .type = VALUE_TEXT,
     AT(decoder),
     .resume = RESUME_MODEL,
     .help = "dense:N, deconv:C[:K[:S[:P]]], conv:..., res:C[:G], up:F,\n"
             "reshape:CxHxW; the output layer follows  [the encoder's mirror]"},
    {.name = "--latent",
     .letter = 'z',
     .arg = "N",
     .type = VALUE_INT,
     AT(opt.model.latent),
     .min = 1,
     .max = 4096,
     .resume = RESUME_MODEL,
     .help = "latent dimensions                             [{}]"},
    {.name = "--conditional",
     .type = VALUE_FLAG,
     AT(opt.conditional),
     .resume = RESUME_SAME,
     .help = "a class-conditional VAE: each image's one-hot class beside the\n"
             "encoder's features and beside z (the data's labels: class\n"
             "folders or IDX label files; the decoder's first layer dense)"},
    {.name = "--beta",
     .arg = "X",
     .type = VALUE_DOUBLE,
     AT(opt.beta),
     .min = 0.0,
     .max = 1e6,
     .resume = RESUME_SAME,
     .help = "weight of the KL term (the seed article's is about 0.31) [{}]"},
    {.name = "--kl-warmup",
     .arg = "N",
     .type = VALUE_INT,
     AT(opt.kl_warmup),
     .min = 0,
     .max = 1000000,
     .resume = RESUME_SAME,
     .help = "beta rises linearly from 0 in epoch 1 to --beta in epoch N + 1\n"
             "(Bowman et al. 2016)  [{}: none]"},
    {.name = "--kl-cycles",
     .arg = "C",
     .type = VALUE_INT,
     AT(opt.kl_cycles),
     .min = 0,
     .max = 1000000,
     .resume = RESUME_SAME,
     .help = "cyclical annealing (Fu et al. 2019): C cycles over the epochs,\n"
             "beta rising from 0 over each one's first half  [{}: none]"},
    {.name = "--free-bits",
     .arg = "L",
     .type = VALUE_DOUBLE,
     AT(opt.free_bits),
     .min = 0.0,
     .max = 1000.0,
     .resume = RESUME_SAME,
     .help = "each latent dimension's KL, averaged over the batch, counts as\n"
             "at least L nats (Kingma et al. 2016)  [{}: none]"},
    {.name = "--seed",
     .letter = 's',
     .arg = "N",
     .type = VALUE_U64,
     AT(opt.seed),
     .resume = RESUME_SAME,
     .help = "seed of initialisation, shuffling and noise   [{}]"},
    {.name = "--quiet",
     .letter = 'q',
     .type = VALUE_FLAG,
     AT(opt.quiet),
     .help = "print nothing but errors"},
    {.name = "--profile",
     .type = VALUE_FLAG,
     AT(opt.profile),
     .help = "time every kernel and GEMM on the device; print the table at the end"},
    {.name = "--save",
     .arg = "FILE",
     .type = VALUE_TEXT,
     AT(opt.save_path),
     .help = "write a checkpoint (safetensors) after every epoch and on Ctrl-C,\n"
             "and FILE with .best before its extension at the epoch with the\n"
             "lowest test loss"},
    {.name = "--resume",
     .arg = "FILE",
     .type = VALUE_TEXT,
     AT(opt.resume_path),
     .help = "carry on from a checkpoint of --save; the model, likelihood,\n"
             "batch, lr, optimizer, beta, schedules, seed and how PNG images\n"
             "are read come from it; --epochs is the total to reach"},
    {.name = "--help", .letter = 'h', .type = VALUE_FLAG, .help = "show this help"},
};

#define N_ROWS ((int)(sizeof rows / sizeof rows[0]))
_Static_assert(N_ROWS <= 64, "command_line.given has a bit a row");

// The defaults: train_defaults, and AdamW's weight decay.
static void command_line_defaults(struct command_line *cl)
{
    memset(cl, 0, sizeof *cl);
    train_defaults(&cl->opt);
    const struct optimizer_kind *adamw = optimizer_find("adamw");
    cl->weight_decay = adamw->hyper[optimizer_option_index(adamw, "--weight-decay")].value;
}

// Row r's value in cl as text.
static void show_value(const struct option_row *r, const struct command_line *cl, char *buf,
                       size_t len)
{
    const void *v = (const char *)cl + r->at;
    if (r->show)
        r->show(cl, buf, len);
    else if (r->type == VALUE_INT)
        snprintf(buf, len, "%d", *(const int *)v);
    else if (r->type == VALUE_DOUBLE)
        snprintf(buf, len, "%g", *(const double *)v);
    else if (r->type == VALUE_U64)
        snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)v);
    else if (r->type == VALUE_TEXT)
        snprintf(buf, len, "%s", *(const char *const *)v ? *(const char *const *)v : "");
    else
        snprintf(buf, len, "%s", r->type == VALUE_FLAG && *(const bool *)v ? "on" : "off");
}

// Row r's text into cl: its own parse, or its type's within its range.
static int parse_value(const struct option_row *r, const char *text, struct command_line *cl,
                       struct clvae_error *err)
{
    void *v = (char *)cl + r->at;
    if (r->parse)
        return r->parse(text, cl, err);
    switch (r->type) {
    case VALUE_INT: return cli_parse_int(r->name, text, (long)r->min, (long)r->max, v, err);
    case VALUE_DOUBLE: return cli_parse_double(r->name, text, r->min, r->open, r->max, v, err);
    case VALUE_U64: return cli_parse_u64(r->name, text, v, err);
    case VALUE_TEXT: *(const char **)v = text; return 0;
    case VALUE_FLAG: *(bool *)v = true; return 0;
    case VALUE_OTHER: break;
    }
    return 0;
}

// One option's lines of the help: "  -e, --epochs N" in a column of 21, then its text.
static void print_row(FILE *out, const struct option_row *r, const struct command_line *defaults)
{
    char left[64], value[64];
    snprintf(left, sizeof left, "  %c%c%c --%s%s%s", r->letter ? '-' : ' ',
             r->letter ? r->letter : ' ', r->letter ? ',' : ' ', r->name + 2, r->arg ? " " : "",
             r->arg ? r->arg : "");
    // At least two spaces before the text (help2man and clvae_help.py read a single one as part
    // of the option), the text in column 21 when the option leaves room.
    int used = (int)strlen(left);
    fprintf(out, "%s%*s", left, used < 20 ? 21 - used : 2, "");
    for (const char *p = r->help; *p; p++) {
        if (p[0] == '{' && p[1] == '}') {
            show_value(r, defaults, value, sizeof value);
            fputs(value, out);
            p++;
        } else {
            fputc(*p, out);
            if (*p == '\n')
                fprintf(out, "%21s", "");
        }
    }
    fputc('\n', out);
}

static void print_usage(FILE *out)
{
    struct command_line defaults;
    command_line_defaults(&defaults);
    fputs("usage: clvae train [options]\n"
          "\n"
          "Trains a VAE (dense or convolutional) on IDX image files or a folder of images;\n"
          "after each epoch prints the train and test negative ELBO (nats per image, and bits\n"
          "per dimension), appends them to OUT/metrics.csv and writes OUT/curves.png,\n"
          "OUT/samples_epochNNN.png and OUT/reconstructions_epochNNN.png.\n"
          "\n"
          "A folder of images: every .png, .jpg, .jpeg, .webp, .bmp, .gif, .pgm, .ppm, .pnm\n"
          "and .tga file under DIR (read by content, formats mixed; hidden files and symbolic\n"
          "links skipped); its subfolders are classes, or DIR/train and DIR/test, if both\n"
          "exist, are the two sets; transparent pixels are composited onto --background. The\n"
          "decoded images are kept in a cache for the next run on the same files (--no-cache).\n"
          "\n",
          out);
    for (int i = 0; i < N_ROWS; i++)
        print_row(out, &rows[i], &defaults);
    if (dist_built())
        fputs("\nData-parallel: `mpirun -np N clvae train ...` splits every batch of --batch\n"
              "images across N ranks, one OpenCL device each (a node's GPUs in turn unless\n"
              "--device says), sums their gradients and takes the same optimizer step in each.\n",
              out);
}

// getopt_long's tables for rows: a long option each, valued by its letter or 256 + its row.
static void getopt_tables(struct option *longopts, char *shortopts)
{
    char *s = shortopts;
    *s++ = ':';
    for (int i = 0; i < N_ROWS; i++) {
        const struct option_row *r = &rows[i];
        longopts[i] = (struct option){r->name + 2, r->arg ? required_argument : no_argument, NULL,
                                      r->letter ? r->letter : 256 + i};
        if (r->letter) {
            *s++ = r->letter;
            if (r->arg)
                *s++ = ':';
        }
    }
    longopts[N_ROWS] = (struct option){NULL, 0, NULL, 0};
    *s = '\0';
}

// The row getopt_long's c names, or NULL (an unknown option, a missing value).
static const struct option_row *row_of(int c)
{
    if (c >= 256 && c < 256 + N_ROWS)
        return &rows[c - 256];
    for (int i = 0; c > 0 && i < N_ROWS; i++)
        if (rows[i].letter == c)
            return &rows[i];
    return NULL;
}

static bool given(const struct command_line *cl, const struct option_row *r)
{
    return cl->given >> (r - rows) & 1;
}

// Whether the option called name was given.
static bool given_name(const struct command_line *cl, const char *name)
{
    for (int i = 0; i < N_ROWS; i++)
        if (strcmp(rows[i].name, name) == 0)
            return given(cl, &rows[i]);
    return false;
}

// The first option given that applies to PNG folders alone ("--channels 3": one channel is what
// IDX files have), for train to refuse on IDX files.
static const char *png_only_option(const struct command_line *cl)
{
    for (int i = 0; i < N_ROWS; i++) {
        const struct option_row *r = &rows[i];
        if (!r->png_only || !given(cl, r))
            continue;
        if (strcmp(r->name, "--channels") != 0)
            return r->name;
        if (cl->opt.folder.channels == 3)
            return "--channels 3";
    }
    return NULL;
}

// What follows the options: the architecture from its lists, --weight-decay on the optimizer (a
// resumed run's is the checkpoint's: merge_resume checks it), paths not empty.
static int finish_options(struct command_line *cl, struct clvae_error *err)
{
    struct train_options *opt = &cl->opt;
    if (vae_parse_model(cl->hidden, cl->encoder, cl->decoder, &opt->model, err))
        return -1;
    opt->model_option = vae_model_option(cl->hidden, cl->encoder, cl->decoder);
    if (given_name(cl, "--weight-decay") && !opt->resume_path &&
        optimizer_set_option(&opt->optimizer, "--weight-decay", cl->weight_decay, err))
        return -1;
    opt->png_only_option = png_only_option(cl);
    if (opt->binarize && opt->model.likelihood != LIKELIHOOD_BERNOULLI && !opt->resume_path)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--binarize: applies to the bernoulli likelihood, not %s",
                          likelihood_name(opt->model.likelihood));
    if (opt->kl_warmup && opt->kl_cycles)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--kl-cycles: takes the place of --kl-warmup; give one of them");
    int span = opt->schedule_epochs ? opt->schedule_epochs : opt->epochs;
    if (opt->kl_cycles > span && !opt->resume_path)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--kl-cycles %d: more cycles than the %d epochs they span",
                          opt->kl_cycles, span);
    if (opt->data_dir[0] == '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--data: empty path");
    if (opt->out_dir[0] == '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--out: empty path");
    return 0;
}

// argv (from "train" on) into *cl. 1: --help was given (usage printed); 0: options parsed; -1: a
// bad command line.
static int parse_train(int argc, char **argv, struct command_line *cl, struct clvae_error *err)
{
    static struct option longopts[N_ROWS + 1];
    static char shortopts[2 + 2 * N_ROWS];
    getopt_tables(longopts, shortopts);
    command_line_defaults(cl);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        const struct option_row *r = row_of(c);
        if (!r)
            return cli_bad_option(c, argv, "train", err);
        if (r->letter == 'h') {
            print_usage(stdout);
            return 1;
        }
        cl->given |= UINT64_C(1) << (r - rows);
        if (parse_value(r, optarg, cl, err))
            return -1;
    }
    if (optind < argc)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: unexpected argument (see clvae train --help)",
                          argv[optind]);
    return finish_options(cl, err);
}

// The options a checkpoint fixes, as it holds them, into opt.
static void options_of_checkpoint(const struct ckpt_meta *m, struct train_options *o)
{
    o->model = m->cfg;
    // A PNG folder is read as it was: its images resized to the model's size if they differ.
    o->folder.channels = m->channels;
    o->folder.width = m->image_cols;
    o->folder.height = m->image_rows;
    memcpy(o->folder.background, m->background, 3);
    o->folder.test_split = m->test_split;
    o->folder.crop = m->crop;
    o->flip = m->flip;
    o->conditional = m->cfg.classes > 0;
    o->batch = m->batch;
    o->lr = m->lr;
    o->optimizer = m->optimizer;
    o->beta = m->beta;
    o->kl_warmup = m->kl_warmup;
    o->kl_cycles = m->kl_cycles;
    o->free_bits = m->free_bits;
    o->lr_schedule = m->lr_schedule;
    o->lr_warmup = m->lr_warmup;
    o->schedule_epochs = m->schedule_epochs;
    o->clip_grad = m->clip_grad;
    o->binarize = m->binarize;
    o->seed = m->seed;
}

// Row r given with --resume against the checkpoint's value (in was): the same, or -1 naming both.
static int check_same(const struct option_row *r, const struct command_line *cl,
                      const struct command_line *was, const struct ckpt_meta *m,
                      struct clvae_error *err)
{
    const char *path = cl->opt.resume_path;
    if (r->check)
        return r->check(cl, m, path, err);
    if (memcmp((const char *)cl + r->at, (const char *)was + r->at, r->size) == 0)
        return 0;
    char have[64], want[64], trained[96];
    show_value(r, cl, have, sizeof have);
    show_value(r, was, want, sizeof want);
    // The row's words for the checkpoint's value: "with 256", "on 28x28 images".
    const char *words = r->trained ? r->trained : "with %s";
    const char *at = strstr(words, "%s");
    snprintf(trained, sizeof trained, "%.*s%s%s", (int)(at - words), words, want, at + 2);
    return clvae_fail(err, CLVAE_EXIT_USAGE, "%s %s: the checkpoint %s was trained %s", r->name,
                      have, path, trained);
}

// With --resume: the options the checkpoint fixes, checked against those given, then taken.
static int merge_resume(struct command_line *cl, const struct ckpt *ck, struct clvae_error *err)
{
    const struct ckpt_meta *m = &ck->meta;
    struct train_options *o = &cl->opt;
    const char *path = o->resume_path;
    if (!m->optimizer.kind)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: holds no optimizer state; --resume needs a checkpoint written by "
                          "clvae train --save",
                          path);
    bool model_given = false;
    for (int i = 0; i < N_ROWS; i++)
        model_given = model_given || (rows[i].resume == RESUME_MODEL && given(cl, &rows[i]));
    if (model_given && !vae_same_layers(&o->model, &m->cfg))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--resume %s: the checkpoint's architecture differs from "
                          "--hidden/--encoder/--decoder/--latent given (leave them out to take "
                          "the checkpoint's)",
                          path);
    struct command_line was = *cl;
    options_of_checkpoint(m, &was.opt);
    for (int i = 0; i < N_ROWS; i++)
        if (rows[i].resume == RESUME_SAME && given(cl, &rows[i]) &&
            check_same(&rows[i], cl, &was, m, err))
            return -1;
    if (m->epoch >= o->epochs)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--epochs %d: the checkpoint %s has already trained %d epochs", o->epochs,
                          path, m->epoch);
    options_of_checkpoint(m, o);
    return 0;
}

// --resume's checkpoint into *ck and its options into cl; every rank agrees (dist_agree) so that
// all stop together.
static int load_resume(struct command_line *cl, struct ckpt *ck, struct clvae_error *err)
{
    int status =
        checkpoint_load(cl->opt.resume_path, ck, err) == 0 ? merge_resume(cl, ck, err) : -1;
    return dist_agree(status, err);
}

int train_main(int argc, char **argv, struct clvae_error *err)
{
    struct command_line cl;
    int parsed = parse_train(argc, argv, &cl, err);
    if (parsed != 0)
        return parsed > 0 ? 0 : -1;
    struct ckpt resume = {0};
    if (cl.opt.resume_path && load_resume(&cl, &resume, err)) {
        checkpoint_free(&resume);
        return -1;
    }
    return train_run(&cl.opt, cl.opt.resume_path ? &resume : NULL, err);
}
