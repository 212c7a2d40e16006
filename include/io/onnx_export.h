// ONNX export of a trained model: its decoder (z to each pixel's mean under the likelihood) or its
// encoder (an image to the posterior's mean and log-variance) as an ONNX graph of standard
// operators (opset 13), the weights the checkpoint's, written through protobuf-c with messages
// generated at build time from ONNX's own schema (onnx.proto).
#ifndef CLVAE_ONNX_EXPORT_H
#define CLVAE_ONNX_EXPORT_H

#include "checkpoint.h"
#include "error.h"

#define ONNX_EXPORT_OPSET 13

enum onnx_part { ONNX_PART_DECODER, ONNX_PART_ENCODER };

// The graphs' inputs and outputs, N a dynamic batch ('N'), float32; an image is (C, H, W) as the
// checkpoint's, a model of flat vectors (no image shape) has vectors of in_dim in their place:
//   decoder: z (N, latent) -> x_mean (N, H, W, C), each pixel's mean in [0, 1], channel-last as
//            `clvae generate --raw` writes it (flat: (N, in_dim));
//   encoder: x (N, C, H, W), pixels in [0, 1] as ONNX's image operators take them (flat: (N,
//            in_dim)) -> z_mean (N, latent), z_logvar (N, latent).
// Writes part of the model ckpt (loaded from model, named in errors) to path, whole or not at all
// (atomic_file.h); *bytes (unless NULL) the file's size. Errors: CLVAE_EXIT_USAGE naming model
// for a layer kind the export has no operators for or a part of more than 2 GiB (protobuf's
// limit); CLVAE_EXIT_OUTPUT naming path.
int onnx_export(const struct ckpt *ckpt, const char *model, enum onnx_part part, const char *path,
                size_t *bytes, struct clvae_error *err);

#endif
