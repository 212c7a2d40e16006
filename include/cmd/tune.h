// `clvae tune`: measures CLBlast's direct GEMM kernel (XgemmDirect) in several configurations on
// the products of one training step of a model, on the chosen device, and keeps the fastest in
// the device's tuning file (clrt_tuning_path), which every later run on that device, driver and
// CLBlast applies (clrt_tune_clblast).
#ifndef CLVAE_TUNE_H
#define CLVAE_TUNE_H

#include "error.h"

int tune_main(int argc, char **argv, struct clvae_error *err);

#endif
