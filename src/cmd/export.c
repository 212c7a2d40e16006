// `clvae export`: a trained model's decoder or encoder as an ONNX file (src/io/onnx_export.c),
// for onnxruntime and the other ONNX runtimes. No device: the checkpoint's weights are read and
// written as they are.
#include "export.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "onnx_export.h"

static const char *const usage =
    "usage: clvae export --model FILE -o OUT.onnx [--part decoder|encoder]\n"
    "\n"
    "Writes the decoder or the encoder of a trained model as an ONNX file (opset 13, float32,\n"
    "a dynamic batch N), whole or not at all; no OpenCL device is opened.\n"
    "  decoder: z (N, latent) -> x_mean (N, H, W, C), each pixel's mean under the model's\n"
    "           likelihood in [0, 1], channel-last as clvae generate --raw writes it\n"
    "  encoder: x (N, C, H, W), pixels in [0, 1] (NCHW, as ONNX's image operators take them)\n"
    "           -> z_mean (N, latent), z_logvar (N, latent)\n"
    "A model of flat vectors (no image shape) takes and gives (N, values) in their place.\n"
    "\n"
    "  -m, --model FILE   checkpoint written by clvae train             (required)\n"
    "  -o, --out FILE     the ONNX file to write                        (required)\n"
    "      --part P       decoder or encoder                            [decoder]\n"
    "  -h, --help         show this help\n";

struct export_options {
    const char *model, *out;
    enum onnx_part part;
};

// 1: --help (usage printed); 0: options parsed; -1: a bad command line.
static int parse_export(int argc, char **argv, struct export_options *o, struct clvae_error *err)
{
    enum { OPT_PART = 256 };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"out", required_argument, NULL, 'o'},
        {"part", required_argument, NULL, OPT_PART},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct export_options){.part = ONNX_PART_DECODER};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'o': o->out = optarg; break;
        case OPT_PART:
            if (strcmp(optarg, "decoder") != 0 && strcmp(optarg, "encoder") != 0)
                return clvae_fail(err, CLVAE_EXIT_USAGE,
                                  "--part: '%s' is neither decoder nor encoder", optarg);
            o->part = strcmp(optarg, "decoder") == 0 ? ONNX_PART_DECODER : ONNX_PART_ENCODER;
            break;
        case 'h': fputs(usage, stdout); return 1;
        default: return cli_bad_option(c, argv, "export", err);
        }
    }
    if (optind < argc)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: unexpected argument (see clvae export --help)", argv[optind]);
    if (!o->model || !o->model[0])
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--model: required (see clvae export --help)");
    if (!o->out || !o->out[0])
        return clvae_fail(err, CLVAE_EXIT_USAGE, "-o: required (see clvae export --help)");
    return 0;
}

int export_main(int argc, char **argv, struct clvae_error *err)
{
    struct export_options o;
    int parsed = parse_export(argc, argv, &o, err);
    if (parsed != 0)
        return parsed > 0 ? 0 : -1;
    struct ckpt ckpt;
    if (checkpoint_load(o.model, &ckpt, err))
        return -1;
    size_t bytes = 0;
    int status = onnx_export(&ckpt, o.model, o.part, o.out, &bytes, err);
    if (status == 0)
        printf("wrote the %s of %s to %s (ONNX opset %d, %zu bytes)\n",
               o.part == ONNX_PART_DECODER ? "decoder" : "encoder", o.model, o.out,
               ONNX_EXPORT_OPSET, bytes);
    checkpoint_free(&ckpt);
    return status;
}
