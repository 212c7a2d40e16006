// clvae: a variational autoencoder trainer for any OpenCL device. main dispatches to the
// subcommands of src/cmd/, each of which parses its own options.
#include <stdio.h>
#include <string.h>

#include "devices.h"
#include "dist.h"
#include "error.h"
#include "evaluate.h"
#include "export.h"
#include "images.h"
#include "train_cmd.h"
#include "tune.h"

#ifndef CLVAE_VERSION
#define CLVAE_VERSION "unknown"
#endif

// A subcommand: its name, its line in the usage, and its main (argv from its name on: 0, or -1
// with the error).
struct command {
    const char *name, *summary;
    int (*main)(int argc, char **argv, struct clvae_error *err);
};

static const struct command commands[] = {
    {"devices", "list every OpenCL platform and device, with the indices to pick them",
     devices_main},
    {"train", "train a variational autoencoder, report and write images", train_main},
    {"generate", "decode draws from the prior of a trained model into a grid", generate_main},
    {"reconstruct", "test images beside their reconstructions", reconstruct_main},
    {"interpolate", "a straight walk in latent space between two test images", interpolate_main},
    {"manifold", "the decoded latent space: a 2-D grid, or each dimension's traversal",
     manifold_main},
    {"eval", "a trained model's test-set negative ELBO and IWAE bound (nats/image)", eval_main},
    {"encode", "each image's posterior mean and log-variance (and bounds) to .npy or .csv",
     encode_main},
    {"tune", "find the fastest GEMM parameters for a model on this device", tune_main},
    {"export", "a trained model's decoder or encoder as an ONNX file", export_main},
    {"scatter", "the test images' latent means, coloured by class", scatter_main},
    {"plot", "the learning curves of a metrics.csv", plot_main},
};

static void print_usage(FILE *out)
{
    fprintf(out, "usage: clvae <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n  clvae --help, clvae --version, clvae <command> --help\n");
}

// The command argv[1] with its options: its exit status, its error printed (by rank 0).
static int run(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return CLVAE_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        print_usage(stdout);
        return CLVAE_EXIT_OK;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
        printf("clvae %s\n", CLVAE_VERSION);
        return CLVAE_EXIT_OK;
    }
    struct clvae_error err = {0};
    const struct command *cmd = NULL;
    for (size_t i = 0; !cmd && i < sizeof commands / sizeof commands[0]; i++)
        cmd = strcmp(name, commands[i].name) == 0 ? &commands[i] : NULL;
    int rc =
        cmd ? cmd->main(argc - 1, argv + 1, &err)
            : clvae_fail(&err, CLVAE_EXIT_USAGE, "%s: unknown command (try clvae --help)", name);
    if (rc == 0)
        return CLVAE_EXIT_OK;
    if (dist_rank() == 0)
        clvae_print_error(&err);
    return err.status ? err.status : CLVAE_EXIT_FAILURE;
}

int main(int argc, char **argv)
{
    dist_init(&argc, &argv);
    int status;
    if (dist_size() > 1 && (argc < 2 || strcmp(argv[1], "train") != 0)) {
        // Only training is data-parallel: N ranks of another command would write N times.
        if (dist_rank() == 0)
            fprintf(stderr,
                    "clvae: %s: runs in one process; start it without mpirun (only clvae train "
                    "runs across ranks)\n",
                    argc < 2 ? "clvae" : argv[1]);
        status = CLVAE_EXIT_USAGE;
    } else {
        status = run(argc, argv);
    }
    dist_finalize();
    return status;
}
