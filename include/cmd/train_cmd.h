// `clvae train`: the command line (src/cmd/train.c) of the training run (include/train/train.h).
#ifndef CLVAE_TRAIN_CMD_H
#define CLVAE_TRAIN_CMD_H

#include "error.h"

// Parses argv (from "train" on), loads the checkpoint --resume names and trains: 0 (also after
// --help), or -1 with err filled.
int train_main(int argc, char **argv, struct clvae_error *err);

#endif
