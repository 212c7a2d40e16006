// The training schedules: the KL weight beta an epoch trains with (constant, linear warm-up, or
// cyclical annealing) and the learning rate a step takes (constant, cosine or step decay, after an
// optional linear warm-up). Pure functions of the options and the position in the run, so that a
// resumed run recomputes exactly the values the uninterrupted one used.
#ifndef CLVAE_SCHEDULE_H
#define CLVAE_SCHEDULE_H

#include <stdint.h>

#include "error.h"

enum lr_schedule { LR_CONSTANT, LR_COSINE, LR_STEP };

struct schedule {
    double beta;   // --beta: the KL weight once warmed up
    int kl_warmup; // --kl-warmup N: beta rises linearly from 0 to beta over epochs 1 .. N; 0: none
    int kl_cycles; // --kl-cycles C: cyclical annealing over the run's epochs; 0: none
    double lr;     // --lr: the peak learning rate
    enum lr_schedule lr_schedule;
    int64_t lr_warmup; // --lr-warmup STEPS: lr rises linearly over the first STEPS steps
    int epochs;        // the run's epochs (--epochs): the cycles' and decays' length
    int64_t steps_per_epoch;
};

// The KL weight of epoch (1-based):
//   warm-up N (Bowman et al. 2016): beta * min(1, epoch / N), rising from 0 before the first
//     epoch: beta / N in epoch 1, beta from epoch N on;
//   C cycles (Fu et al. 2019): the run's epochs split into C cycles of epochs / C; in each, beta
//     rises linearly from 0 over its first half and stays at beta for the second:
//     beta * min(1, 2 * t) with t the epoch's position (epoch - 1) mod (epochs / C) over
//     (epochs / C);
//   neither: beta.
double schedule_beta(const struct schedule *s, int epoch);

// The learning rate of step (0-based over the whole run, the optimizer's step count before it):
//   warm-up W: lr * (step + 1) / W for step < W, then the schedule over the remaining steps;
//   constant: lr;
//   cosine: lr * (1 + cos(pi * t / T)) / 2, t the steps since the warm-up, T the run's steps
//     after it (PyTorch's CosineAnnealingLR with eta_min 0, stepped every step);
//   step: lr, times 0.1 from half the run's epochs on and 0.01 from three quarters on
//     (MultiStepLR with milestones at 1/2 and 3/4 of the epochs).
double schedule_lr(const struct schedule *s, int64_t step);

// "constant", "cosine" or "step" -> *kind; -1 with CLVAE_EXIT_USAGE naming option otherwise.
int schedule_parse_lr(const char *option, const char *name, enum lr_schedule *kind,
                      struct clvae_error *err);
const char *schedule_lr_name(enum lr_schedule kind);

#endif
