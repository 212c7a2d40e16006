// clvae: a variational autoencoder trainer for any OpenCL device.
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_runtime.h"
#include "cli.h"
#include "dist.h"
#include "error.h"
#include "evaluate.h"
#include "images.h"
#include "train.h"
#include "tune.h"

#ifndef CLVAE_VERSION
#define CLVAE_VERSION "unknown"
#endif

static void print_usage(FILE *out)
{
    fprintf(out, "usage: clvae <command> [options]\n"
                 "\n"
                 "commands:\n"
                 "  devices     list every OpenCL platform and device, with the indices to pick them\n"
                 "  train       train a variational autoencoder, report and write images\n"
                 "  generate    decode draws from the prior of a trained model into a grid\n"
                 "  reconstruct test images beside their reconstructions\n"
                 "  interpolate a straight walk in latent space between two test images\n"
                 "  manifold    the decoded latent space: a 2-D grid, or each dimension's traversal\n"
                 "  eval        a trained model's test-set negative ELBO and IWAE bound (nats/image)\n"                 "  tune        find the fastest GEMM parameters for a model on this device\n"
            "  scatter     the test images' latent means, coloured by class\n"
            "  plot        the learning curves of a metrics.csv\n"
                 "\n"
                 "  clvae --help, clvae --version, clvae <command> --help\n");
}

static void print_train_usage(FILE *out)
{
    struct train_options d;
    train_defaults(&d);
    fprintf(out,
            "usage: clvae train [options]\n"
            "\n"
            "Trains a VAE (dense or convolutional) on IDX image files or a folder of PNG images;\n"
            "after each epoch prints the train and test negative ELBO (nats per image, and bits\n"
            "per dimension), appends them to OUT/metrics.csv and writes OUT/curves.png,\n"
            "OUT/samples_epochNNN.png and OUT/reconstructions_epochNNN.png.\n"
            "\n"
            "A PNG folder: every .png under DIR (any format; hidden files and symbolic links\n"
            "skipped); its subfolders are classes, or DIR/train and DIR/test, if both exist, are\n"
            "the two sets; transparent pixels are composited onto --background.\n"
            "\n"
            "  -p, --platform P   OpenCL platform: an index (see `clvae devices`) or a part of\n"
            "                     its name; default $CLVAE_PLATFORM, else the first with a GPU\n"
            "  -d, --device D     device: an index within the platform or a part of its name;\n"
            "                     default $CLVAE_DEVICE, else the first GPU, else 0\n"
            "  -D, --data DIR     IDX files (train-images-idx3-ubyte[.gz], t10k-images-...) or\n"
            "                     a folder of PNG images  [%s]\n"
            "      --channels N   1 (grey) or 3 (RGB) for PNG images  [3 if any is colour]\n"
            "      --background V grey level 0-255, R,G,B or #rrggbb under transparent pixels\n"
            "                     [255: white]\n"
            "      --image-size WxH  resize every PNG image to W x H  [all must share one size]\n"
            "      --test-split F fraction of a PNG folder held out for testing (without\n"
            "                     DIR/test), stratified by class, the same for the same seed [0.1]\n"
            "      --skip-bad-images  leave out PNG files that cannot be read, with a warning\n"
            "      --likelihood L bernoulli (pixels as probabilities) or logistic (a discretised\n"
            "                     logistic per pixel and channel for 8-bit images)  [bernoulli]\n"
            "  -o, --out DIR      output directory, created if missing          [%s]\n"
            "  -e, --epochs N     passes over the training set                  [%d]\n"
            "  -b, --batch N      images per step                               [%d]\n"
            "  -l, --lr X         Adam learning rate                            [%g]\n"
            "  -H, --hidden LIST  encoder widths, comma-separated; the decoder mirrors them [%d]\n"
            "      --encoder LIST layers, e.g. conv:32,conv:64,dense:256: dense:N, or\n"
            "                     conv:C[:K[:S[:P]]] (C channels, kernel K, stride S, padding P;\n"
            "                     4, 2, 1 unless given)\n"
            "      --decoder LIST dense:N, deconv:C[:K[:S[:P]]], reshape:CxHxW; the output layer\n"
            "                     follows  [the encoder's mirror]\n"
            "  -z, --latent N     latent dimensions                             [%d]\n"
            "      --beta X       weight of the KL term (the seed article's is about 0.31) [%g]\n"
            "  -s, --seed N       seed of initialisation, shuffling and noise   [%llu]\n"
            "  -q, --quiet        print nothing but errors\n"
            "      --profile      time every kernel and GEMM on the device; print the table at the end\n"
            "      --save FILE    write a checkpoint (safetensors) after every epoch and on Ctrl-C,\n"
            "                     and FILE with .best before its extension at the epoch with the\n"
            "                     lowest test loss\n"
            "      --resume FILE  carry on from a checkpoint of --save; the model, likelihood,\n"
            "                     batch, lr, beta, seed and how PNG images are read come from it;\n"
            "                     --epochs is the total to reach\n"
            "  -h, --help         show this help\n",
            d.data_dir, d.out_dir, d.epochs, d.batch, d.lr, d.model.encoder[0].units, d.model.latent,
            d.beta, (unsigned long long)d.seed);
    if (dist_built())
        fprintf(out, "\nData-parallel: `mpirun -np N clvae train ...` splits every batch of --batch\n"
                     "images across N ranks, one OpenCL device each (a node's GPUs in turn unless\n"
                     "--device says), sums their gradients and takes the same Adam step in each.\n");
}

static int parse_train(int argc, char **argv, struct train_options *opt, struct clvae_error *err)
{
    enum { OPT_BETA = 256, OPT_PROFILE, OPT_SAVE, OPT_RESUME, OPT_ENCODER, OPT_DECODER,
           OPT_CHANNELS, OPT_BACKGROUND, OPT_IMAGE_SIZE, OPT_TEST_SPLIT, OPT_SKIP_BAD,
           OPT_LIKELIHOOD };
    static const struct option longopts[] = {
        CLI_SOURCE_OPTIONS,                         {"out", required_argument, NULL, 'o'},
        {"epochs", required_argument, NULL, 'e'},   {"batch", required_argument, NULL, 'b'},
        {"lr", required_argument, NULL, 'l'},       {"hidden", required_argument, NULL, 'H'},
        {"latent", required_argument, NULL, 'z'},   {"beta", required_argument, NULL, OPT_BETA},
        {"seed", required_argument, NULL, 's'},     {"quiet", no_argument, NULL, 'q'},
        {"profile", no_argument, NULL, OPT_PROFILE}, {"save", required_argument, NULL, OPT_SAVE},
        {"resume", required_argument, NULL, OPT_RESUME},
        {"encoder", required_argument, NULL, OPT_ENCODER},
        {"decoder", required_argument, NULL, OPT_DECODER},
        {"channels", required_argument, NULL, OPT_CHANNELS},
        {"background", required_argument, NULL, OPT_BACKGROUND},
        {"image-size", required_argument, NULL, OPT_IMAGE_SIZE},
        {"test-split", required_argument, NULL, OPT_TEST_SPLIT},
        {"skip-bad-images", no_argument, NULL, OPT_SKIP_BAD},
        {"likelihood", required_argument, NULL, OPT_LIKELIHOOD},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    train_defaults(opt);
    const char *hidden = NULL, *encoder = NULL, *decoder = NULL;
    opterr = 0;
    optind = 1;
    int c, longindex;
    while ((c = getopt_long(argc, argv, ":" CLI_SOURCE_SHORT "o:e:b:l:H:z:s:qh", longopts,
                            &longindex)) != -1) {
        int rc = 0;
        switch (c) {
        case 'o': opt->out_dir = optarg; break;
        case 'e': rc = cli_parse_int("--epochs", optarg, 1, 1000000, &opt->epochs, err); break;
        case 'b':
            rc = cli_parse_int("--batch", optarg, 1, 1 << 20, &opt->batch, err);
            opt->set_batch = true;
            break;
        case 'l':
            rc = cli_parse_double("--lr", optarg, 0.0, true, 10.0, &opt->lr, err);
            opt->set_lr = true;
            break;
        case 'H': hidden = optarg; break;
        case OPT_ENCODER: encoder = optarg; break;
        case OPT_DECODER: decoder = optarg; break;
        case 'z':
            rc = cli_parse_int("--latent", optarg, 1, 4096, &opt->model.latent, err);
            opt->set_model = true;
            break;
        case OPT_BETA:
            rc = cli_parse_double("--beta", optarg, 0.0, false, 1e6, &opt->beta, err);
            opt->set_beta = true;
            break;
        case 's':
            rc = cli_parse_u64("--seed", optarg, &opt->seed, err);
            opt->set_seed = true;
            break;
        case 'q': opt->quiet = true; break;
        case OPT_PROFILE: opt->profile = true; break;
        case OPT_CHANNELS:
            rc = cli_parse_int("--channels", optarg, 1, 3, &opt->folder.channels, err);
            if (rc == 0 && opt->folder.channels == 2)
                rc = clvae_fail(err, CLVAE_EXIT_USAGE, "--channels: 2 is neither 1 (grey) nor 3 (RGB)");
            opt->set_channels = true;
            break;
        case OPT_BACKGROUND:
            rc = image_folder_parse_background("--background", optarg, opt->folder.background, err);
            opt->set_background = true;
            break;
        case OPT_IMAGE_SIZE:
            rc = image_folder_parse_size("--image-size", optarg, &opt->folder.width,
                                         &opt->folder.height, err);
            opt->set_image_size = true;
            break;
        case OPT_TEST_SPLIT:
            rc = cli_parse_double("--test-split", optarg, 0.0, true, 1.0, &opt->folder.test_split,
                                  err);
            if (rc == 0 && opt->folder.test_split >= 1.0)
                rc = clvae_fail(err, CLVAE_EXIT_USAGE,
                                "--test-split: %s leaves no training images (a fraction below 1)",
                                optarg);
            opt->set_test_split = true;
            break;
        case OPT_SKIP_BAD: opt->folder.skip_bad = true; break;
        case OPT_LIKELIHOOD:
            rc = likelihood_parse("--likelihood", optarg, &opt->model.likelihood, err);
            opt->set_likelihood = true;
            break;
        case OPT_SAVE: opt->save_path = optarg; break;
        case OPT_RESUME: opt->resume_path = optarg; break;
        case 'h': print_train_usage(stdout); exit(CLVAE_EXIT_OK);
        default:
            rc = cli_parse_rest(c, optarg, argv, "train", &opt->platform, &opt->device,
                                &opt->data_dir, err);
        }
        if (rc)
            return -1;
    }
    if (optind < argc)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: unexpected argument (see clvae train --help)",
                          argv[optind]);
    if (vae_parse_model(hidden, encoder, decoder, &opt->model, err))
        return -1;
    opt->model_option = vae_model_option(hidden, encoder, decoder);
    opt->set_model = opt->set_model || hidden || encoder || decoder;
    if (opt->data_dir[0] == '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--data: empty path");
    if (opt->out_dir[0] == '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--out: empty path");
    return 0;
}

// The command argv[1] with its options: its exit status, its error printed (by rank 0).
static int run(int argc, char **argv)
{
    struct clvae_error err = {0};
    if (argc < 2) {
        print_usage(stderr);
        return CLVAE_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        print_usage(stdout);
        return CLVAE_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("clvae %s\n", CLVAE_VERSION);
        return CLVAE_EXIT_OK;
    }
    int rc;
    if (!strcmp(cmd, "devices")) {
        if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
            printf("usage: clvae devices [--verbose]\n\nLists every OpenCL platform and device "
                   "with the indices that --platform and --device take; --verbose adds each\n"
                   "device's version, driver and limits and what clvae will use there.\n");
            return CLVAE_EXIT_OK;
        }
        bool verbose = argc == 3 && (!strcmp(argv[2], "--verbose") || !strcmp(argv[2], "-v"));
        if (argc > 3 || (argc == 3 && !verbose)) {
            clvae_fail(&err, CLVAE_EXIT_USAGE, "devices: unexpected argument '%s'", argv[argc - 1]);
            rc = -1;
        } else {
            rc = clrt_list_devices(stdout, verbose, &err);
        }
    } else if (!strcmp(cmd, "train")) {
        struct train_options opt;
        rc = parse_train(argc - 1, argv + 1, &opt, &err);
        if (rc == 0)
            rc = train_run(&opt, &err);
    } else if (!strcmp(cmd, "generate")) {
        rc = generate_main(argc - 1, argv + 1, &err);
    } else if (!strcmp(cmd, "reconstruct")) {
        rc = reconstruct_main(argc - 1, argv + 1, &err);
    } else if (!strcmp(cmd, "interpolate")) {
        rc = interpolate_main(argc - 1, argv + 1, &err);
    } else if (!strcmp(cmd, "eval")) {
        rc = eval_main(argc - 1, argv + 1, &err);
    } else if (!strcmp(cmd, "manifold")) {
        rc = manifold_main(argc - 1, argv + 1, &err);
    } else if (!strcmp(cmd, "scatter")) {
        rc = scatter_main(argc - 1, argv + 1, &err);
    } else if (!strcmp(cmd, "tune")) {
        rc = tune_main(argc - 1, argv + 1, &err);
    } else if (!strcmp(cmd, "plot")) {
        rc = plot_main(argc - 1, argv + 1, &err);
    } else {
        clvae_fail(&err, CLVAE_EXIT_USAGE, "%s: unknown command (try clvae --help)", cmd);
        rc = -1;
    }
    if (rc) {
        if (dist_rank() == 0)
            clvae_print_error(&err);
        return err.status ? err.status : CLVAE_EXIT_FAILURE;
    }
    return CLVAE_EXIT_OK;
}

int main(int argc, char **argv)
{
    dist_init(&argc, &argv);
    int status;
    if (dist_size() > 1 && (argc < 2 || strcmp(argv[1], "train") != 0)) {
        // Only training is data-parallel: N ranks of another command would write N times.
        if (dist_rank() == 0)
            fprintf(stderr, "clvae: %s: runs in one process; start it without mpirun (only "
                            "clvae train runs across ranks)\n",
                    argc < 2 ? "clvae" : argv[1]);
        status = CLVAE_EXIT_USAGE;
    } else {
        status = run(argc, argv);
    }
    dist_finalize();
    return status;
}
