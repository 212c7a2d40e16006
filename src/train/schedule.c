#include "schedule.h"

#include <math.h>
#include <string.h>

static const char *const lr_names[] = {"constant", "cosine", "step"};

double schedule_beta(const struct schedule *s, int epoch)
{
    double e = epoch > 1 ? (double)(epoch - 1) : 0.0;
    if (s->kl_cycles > 0 && s->epochs > 0) {
        double period = (double)s->epochs / s->kl_cycles;
        double t = fmod(e, period) / period;
        return s->beta * fmin(1.0, 2.0 * t);
    }
    if (s->kl_warmup > 0)
        return s->beta * fmin(1.0, (double)epoch / s->kl_warmup);
    return s->beta;
}

double schedule_lr(const struct schedule *s, int64_t step)
{
    if (step < 0)
        step = 0;
    if (step < s->lr_warmup)
        return s->lr * (double)(step + 1) / (double)s->lr_warmup;
    int64_t t = step - s->lr_warmup;
    switch (s->lr_schedule) {
    case LR_CONSTANT: break;
    case LR_COSINE: {
        int64_t total = (int64_t)s->epochs * s->steps_per_epoch - s->lr_warmup;
        if (total <= 0)
            return s->lr;
        double f = t >= total ? 1.0 : (double)t / (double)total;
        return s->lr * 0.5 * (1.0 + cos(3.14159265358979323846 * f));
    }
    case LR_STEP: {
        if (s->steps_per_epoch <= 0)
            return s->lr;
        int64_t epoch = step / s->steps_per_epoch; // 0-based epoch of the step
        if (4 * epoch >= 3 * (int64_t)s->epochs)
            return s->lr * 0.01;
        if (2 * epoch >= (int64_t)s->epochs)
            return s->lr * 0.1;
        break;
    }
    }
    return s->lr;
}

int schedule_parse_lr(const char *option, const char *name, enum lr_schedule *kind,
                      struct clvae_error *err)
{
    for (int i = 0; i < (int)(sizeof lr_names / sizeof lr_names[0]); i++) {
        if (strcmp(name, lr_names[i]) == 0) {
            *kind = (enum lr_schedule)i;
            return 0;
        }
    }
    return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not a schedule (constant, cosine, step)",
                      option, name);
}

const char *schedule_lr_name(enum lr_schedule kind)
{
    return (unsigned)kind < sizeof lr_names / sizeof lr_names[0] ? lr_names[kind] : "?";
}
