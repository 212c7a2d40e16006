// The schedules of src/train/schedule.c against values worked out by hand from their definitions
// (include/train/schedule.h): KL warm-up and cycles by epoch, learning-rate warm-up, cosine and
// step decay by step, and the names --lr-schedule takes.
#include <math.h>
#include <stdio.h>

#include "schedule.h"
#include "test_util.h"

static bool near(double a, double b)
{
    return fabs(a - b) <= 1e-12 * (fabs(b) > 1 ? fabs(b) : 1);
}

static void check_betas(const char *what, const struct schedule *s, const double *want, int n)
{
    tu_begin();
    for (int e = 1; e <= n; e++)
        tu_expect(near(schedule_beta(s, e), want[e - 1]), "epoch %d: beta %.17g, want %.17g", e,
                  schedule_beta(s, e), want[e - 1]);
    tu_end("%s", what);
}

static void check_lrs(const char *what, const struct schedule *s, const int64_t *steps,
                      const double *want, int n)
{
    tu_begin();
    for (int i = 0; i < n; i++)
        tu_expect(near(schedule_lr(s, steps[i]), want[i]), "step %lld: lr %.17g, want %.17g",
                  (long long)steps[i], schedule_lr(s, steps[i]), want[i]);
    tu_end("%s", what);
}

int main(void)
{
    tu_init("test_schedule");
    struct schedule s = {.beta = 2.0, .lr = 1e-3, .epochs = 10, .steps_per_epoch = 10};

    static const double constant[] = {2, 2, 2, 2};
    check_betas("no KL schedule: beta in every epoch", &s, constant, 4);

    s.kl_warmup = 5;
    static const double warm[] = {0.4, 0.8, 1.2, 1.6, 2, 2, 2, 2};
    check_betas("--kl-warmup 5: beta/5 in epoch 1, rising by beta/5, beta from epoch 5", &s, warm,
                8);

    s.kl_warmup = 0, s.kl_cycles = 2; // cycles of 5 epochs: positions 0, .2, .4, .6, .8
    static const double cycles[] = {0, 0.8, 1.6, 2, 2, 0, 0.8, 1.6, 2, 2};
    check_betas("--kl-cycles 2 over 10 epochs: rises over each cycle's first half", &s, cycles, 10);
    s.kl_cycles = 4; // cycles of 2.5 epochs: positions 0, .4, .8, .2, .6, 0, ...
    static const double quarter[] = {0, 1.6, 2, 0.8, 2, 0, 1.6, 2, 0.8, 2};
    check_betas("--kl-cycles 4 over 10 epochs (cycles of 2.5 epochs)", &s, quarter, 10);
    s.kl_cycles = 0;

    static const int64_t steps[] = {0, 1, 49, 50, 74, 75, 99};
    static const double flat[] = {1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3};
    check_lrs("--lr-schedule constant", &s, steps, flat, 7);

    s.lr_schedule = LR_STEP;
    static const double stepped[] = {1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5};
    static const int64_t ssteps[] = {0, 1, 49, 50, 79, 80, 99};
    check_lrs("--lr-schedule step over 10 epochs: x0.1 from epoch 6 (step 50), x0.01 from epoch 9 "
              "(step 80)",
              &s, ssteps, stepped, 7);

    s.lr_schedule = LR_COSINE; // 100 steps: half way is lr/2, a quarter is lr (1 + cos(pi/4))/2
    static const int64_t csteps[] = {0, 25, 50, 75, 100, 120};
    const double c45 = 0.5 * (1 + sqrt(0.5)) * 1e-3;
    const double cosine[] = {1e-3, c45, 0.5e-3, 1e-3 - c45, 0, 0};
    check_lrs("--lr-schedule cosine over 100 steps", &s, csteps, cosine, 6);

    s.lr_warmup = 4, s.lr_schedule = LR_CONSTANT;
    static const int64_t wsteps[] = {0, 1, 2, 3, 4, 50};
    static const double warmed[] = {0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3, 1e-3};
    check_lrs("--lr-warmup 4: lr (step + 1) / 4, then lr", &s, wsteps, warmed, 6);
    s.lr_schedule = LR_COSINE; // 96 steps after the warm-up: step 52 is half way
    static const int64_t w2[] = {0, 3, 4, 52, 100};
    const double w2want[] = {0.25e-3, 1e-3, 1e-3, 0.5e-3, 0};
    check_lrs("--lr-warmup 4 then cosine over the 96 steps after it", &s, w2, w2want, 5);

    struct clvae_error err;
    enum lr_schedule k;
    tu_check(schedule_parse_lr("--lr-schedule", "cosine", &k, &err) == 0 && k == LR_COSINE,
             "--lr-schedule cosine parses");
    tu_check(schedule_parse_lr("--lr-schedule", "linear", &k, &err) != 0 &&
                 err.status == CLVAE_EXIT_USAGE,
             "--lr-schedule linear is refused: %s", err.msg);
    return tu_summary();
}
