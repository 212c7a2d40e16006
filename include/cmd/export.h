// `clvae export`: a trained model's decoder or encoder as an ONNX file (onnx_export.h).
#ifndef CLVAE_EXPORT_H
#define CLVAE_EXPORT_H

#include "error.h"

int export_main(int argc, char **argv, struct clvae_error *err);

#endif
