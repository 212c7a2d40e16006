// The class-conditional inputs of --conditional (Sohn et al. 2015): a dense layer with classes
// (struct layer) takes its input x (rows, in) and each image's one-hot class, concatenated, as
// torch.nn.Linear(in + classes, out) would, without the concatenated copy. Its weight block is
// (in + classes, out) as every dense weight is kept (in, out), so the one-hot columns are its last
// classes rows: the forward pass adds row in + label of W to each image's product over the first
// in rows; the weight gradient of those rows is the sum of dy's rows of each class (a fixed order,
// no atomics); they take no input gradient. The labels of a batch are in ctx->labels.
#ifndef CLVAE_CONDITION_H
#define CLVAE_CONDITION_H

#include "layer_kind.h"

// The condition kernels in l->kernel, numbered after the dense ones (a dense layer only).
enum { CONDITION_K_FORWARD = DENSE_KERNELS, CONDITION_K_BACKWARD, CONDITION_KERNELS };

// The kernels of a layer with classes.
void condition_create(const struct layer_ctx *ctx, struct layer *l);

// y (rows, out) += W's row in + labels[r] for each row r, then ReLU when l->relu: after the
// product over the first in rows and the bias, with no ReLU yet.
void condition_forward(const struct layer_ctx *ctx, const struct layer *l, int rows);

// The class rows' gradient (classes, out) at l->weight + in x out: for each class c the sum over
// the rows r of class c of dy[r] (masked by y > 0 when l->relu), added when accumulate.
void condition_backward(const struct layer_ctx *ctx, const struct layer *l, int rows,
                        bool accumulate);

#endif
