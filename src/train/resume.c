// Where a run starts and where an interrupted one can carry on from: the parameters and the
// optimizer's state of a --resume checkpoint (or a fresh initialisation), and the checkpoint of a
// stop in the middle of an epoch.
#include <stdlib.h>

#include "trainer.h"

// The parameters and the optimizer's state: the checkpoint's with --resume, else a fresh start.
void load_state(struct trainer *t)
{
    size_t param_bytes = t->vae.n_params * sizeof(float);
    t->start_epoch = 1;
    t->start_step = 0;
    if (t->opt.resume_path) {
        clrt_parts_write(&t->rt, &t->vae.params, t->resume.params, false);
        for (int s = 0; s < t->optimizer.cfg.kind->n_state; s++)
            clrt_parts_write(&t->rt, &t->optimizer.state[s], t->resume.state[s], false);
        clrt_finish(&t->rt);
        t->run.step = t->resume.meta.step;
        t->start_epoch = t->resume.meta.epoch + 1;
        t->start_step = t->resume.meta.epoch_step;
        checkpoint_free(&t->resume);
    } else {
        float *init = xmalloc(param_bytes);
        vae_init_params_host(&t->vae, t->opt.seed, init);
        clrt_parts_write(&t->rt, &t->vae.params, init, true);
        free(init);
    }
}

// A stop requested in the middle of epoch after done_steps of its steps: the checkpoint, then
// the message saying where it is; always -1 (CLVAE_EXIT_INTERRUPTED).
int stop_mid_epoch(struct trainer *t, int epoch, int done_steps, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    if (t->prog.live)
        fprintf(stderr, "\r%*s\r", 90, "");
    // Every rank stops after the same step (exchange_gradients); rank 0 writes.
    t->collective = true;
    if (t->root && opt->save_path &&
        save_checkpoint(t, opt->save_path, epoch - 1, done_steps, err)) {
        t->collective = false;
        return -1;
    }
    if (opt->save_path)
        return clvae_fail(err, CLVAE_EXIT_INTERRUPTED,
                          "interrupted in epoch %d after step %d of %d; checkpoint written to %s "
                          "(carry on with: clvae train --resume %s --save %s)",
                          epoch, done_steps, t->prog.steps, opt->save_path, opt->save_path,
                          opt->save_path);
    return clvae_fail(err, CLVAE_EXIT_INTERRUPTED,
                      "interrupted in epoch %d after step %d of %d; no checkpoint written (train "
                      "with --save FILE to keep one)",
                      epoch, done_steps, t->prog.steps);
}
