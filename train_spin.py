"""
SPIN: Self-Play fINe-tuning (Chen, Deng, Yuan, Ji, Gu; ICML 2024; arXiv 2401.01335).

Each iteration t, the frozen previous model theta_t (the opponent) answers every training prompt x once,
y_gen ~ p_t(.|x); then, starting from theta_t, we train so that the real answer y beats y_gen:

    loss = -logsigmoid(lam * ((logp_y - ref_logp_y) - (logp_y_gen - ref_logp_y_gen)))

logp_*: summed log-prob of the response tokens (EOS included) under the model being trained; ref_logp_*:
the same under theta_t. It is DPO with y as "chosen", the model's own answer as "rejected", the previous
iterate as reference. Compare with train_tspin.py: the two differ in the loss and in y0, and nothing else;
the training loop they share is model/selfplay.py's fit_iteration.

    python train_spin.py                        # 3 iterations from runs/sft/ckpt.pt
    python train_spin.py --lam 0.1,0.1,0.1,5.0 --iters 4   # the paper's schedule
    python train_spin.py --resume               # continue from the last checkpoint (mid-iteration too)
"""

import copy

from model.baseline import continued_sft
from model.checks import param_checksum
from model.losses import spin_loss
from model.selfplay import (
    dataset_logprobs,
    evaluate_iteration,
    fit_iteration,
    load_answers,
    per_iteration,
    play,
    save_iteration,
)
from model.selfplay_run import SELFPLAY_DEFAULTS, finish, start

# -----------------------------------------------------------------------------------------------------
# defaults; every one can be overridden: python train_spin.py --lr 1e-4 --iters 2 (--help lists them all)
defaults = dict(
    name="spin",                 # writes <out_dir>/<name>/
    lam="0.1",                   # lam ("beta" in the official code); a schedule "0.1,0.1,0.1,5.0" per iteration
    iters=3,                     # self-play iterations t = 0 .. iters-1
    epochs=2,                    # passes over the pairs per iteration (the paper: 2)
    batch_size=64,               # examples per optimizer step, all processes together (the paper: 64)
    lr=1e-5,                     # peak lr (RMSprop); 1e-5: best on val at the regime map's last iteration (plateau; 1e-4 wins only if stopped after one)
    temperature=1.0,             # sampling temperature of y_gen
    **SELFPLAY_DEFAULTS,         # data, template, optimizer, baseline, checkpoints... (model/selfplay_run.py)
)
run = start(defaults, "SPIN", __file__)  # command line, --resume, processes, theta_0, prompts, log
cfg, model = run.cfg, run.model

if not run.resumed:
    evaluate_iteration(run, -1)  # the initial policy, the first row of the table
    save_iteration(run, -1)  # a checkpoint: a run stopped from here on does not evaluate theta_0 again

y_gen_previous = None
if cfg.mix_previous and run.start_iter > 0:
    y_gen_previous = load_answers(run.run_dir / f"iter{run.start_iter - 1}" / "synthetic.jsonl")
for it in range(run.start_iter, cfg.iters):
    lam = per_iteration(cfg.lam, it, "lam")

    # 1. the opponent theta_t: a frozen copy of the current model
    opponent = copy.deepcopy(model).eval().requires_grad_(False)
    opponent_sum = param_checksum(opponent) if cfg.debug else None  # the tests' check that it stays frozen

    # 2. theta_t answers every training prompt: the synthetic answers y_gen
    y_gen = play(run, it, opponent)
    x, y, y_gen_train = list(run.prompts), list(run.y), list(y_gen)
    if cfg.mix_previous and y_gen_previous is not None:  # the official code adds the previous iteration's pairs
        x, y, y_gen_train = x + run.prompts, y + run.y, y_gen_train + y_gen_previous
    if cfg.drop_identical:  # y_gen == y gives exactly zero gradient: dropping it only saves compute
        keep = [j for j in range(len(x)) if y[j] != y_gen_train[j]]
        x, y, y_gen_train = [x[j] for j in keep], [y[j] for j in keep], [y_gen_train[j] for j in keep]

    # 3. the reference log-probs under theta_t, once for the whole iteration
    average = cfg.logp == "mean"
    ref_logp_y = dataset_logprobs(opponent, x, y, run.tok.pad_id, run.device, average).to(run.device)
    ref_logp_y_gen = dataset_logprobs(opponent, x, y_gen_train, run.tok.pad_id, run.device, average).to(run.device)

    # 4. train from theta_t so that y beats y_gen (y and y_gen stacked in one forward)
    def loss_fn(logps, idx):
        logp_y, logp_y_gen = logps
        return spin_loss(logp_y, logp_y_gen, ref_logp_y[idx], ref_logp_y_gen[idx], lam)

    print(f"SPIN iteration {it}: lam {lam}, {len(x):,} pairs", flush=True)
    fit_iteration(run, it, x, list(zip(y, y_gen_train)), loss_fn)

    # 5. evaluate, checkpoint; the trained model is the next iteration's opponent
    if cfg.debug and run.dist.main:
        run.log.log(step=run.step, iter=it, opponent_unchanged=param_checksum(opponent) == opponent_sum,
                    policy_changed=param_checksum(model) != opponent_sum)
    del opponent
    y_gen_previous = y_gen
    evaluate_iteration(run, it)

    # 6. the equal-compute baseline: continued SFT from theta_0 on the same x and y, same steps
    if cfg.baseline:
        continued_sft(run, it, x, y)
    save_iteration(run, it)

finish(run)
