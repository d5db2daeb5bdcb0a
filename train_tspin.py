"""
T-SPIN: Triplet-based SPIN (Wang, Sun, Chen, Xu, Luo, Zhang, Zhang; NeurIPS 2025; arXiv 2601.08198).
The authors released no code; this is a from-the-paper implementation.

Once, the initial policy theta_0 answers every training prompt x: the proto-synthetic answers y0, reused
in every iteration. Each iteration t, the current model theta_t answers every prompt afresh, y_gen, and
we train on triplets (x, y, y_gen, y0):

    loss = -logsigmoid(a * (logp_y - logp_y_gen))  -  b * logsigmoid(a * (logp_y_gen - logp_y0))

All three log-probs come from the model being trained. There is NO reference model: the entropy
constraint on the opponent makes the reward a * log p itself, so only one model is ever in memory.
b = 0 at iteration 0, where y_gen and y0 come from the same policy. Compare with train_spin.py: the two
differ in the loss and in y0, and nothing else; the training loop they share is model/selfplay.py's
fit_iteration.

    python train_tspin.py                       # 3 iterations from runs/sft/ckpt.pt
    python train_tspin.py --b 0 --name tspin_nohist   # the paper's ablation: no historical advantage
    python train_tspin.py --resume              # continue from the last checkpoint (mid-iteration too)
"""

from model.baseline import continued_sft
from model.checks import param_checksum
from model.losses import tspin_loss
from model.selfplay import (
    evaluate_iteration,
    fit_iteration,
    load_answers,
    per_iteration,
    play,
    save_answers,
    save_iteration,
    synthesize,
)
from model.selfplay_run import SELFPLAY_DEFAULTS, finish, start

# -----------------------------------------------------------------------------------------------------
# defaults; every one can be overridden: python train_tspin.py --lr 1e-4 --iters 2 (--help lists them all)
defaults = dict(
    name="tspin",                # writes <out_dir>/<name>/
    a=1.0,                       # scale of both advantages
    b="0.0,0.1",                 # weight of the historical advantage per iteration: 0 at iteration 0, then 0.1
    iters=3,                     # self-play iterations t = 0 .. iters-1
    epochs=2,                    # passes over the triplets per iteration (the paper: 2)
    batch_size=64,               # examples per optimizer step, all processes together (the paper: 64)
    lr=1e-5,                     # peak lr (RMSprop); 1e-5: best on val at the regime map's last iteration (plateau; 1e-4 wins only if stopped after one)
    temperature=1.0,             # sampling temperature of y_gen and y0
    **SELFPLAY_DEFAULTS,         # data, template, optimizer, baseline, checkpoints... (model/selfplay_run.py)
)
run = start(defaults, "T-SPIN", __file__)  # command line, --resume, processes, theta_0, prompts, log
cfg, model = run.cfg, run.model

if not run.resumed:
    evaluate_iteration(run, -1)  # the initial policy, the first row of the table
    save_iteration(run, -1)  # a checkpoint: a run stopped from here on does not evaluate theta_0 again

# the proto-synthetic answers y0: generated once by theta_0, reused in every iteration
y0_path = run.run_dir / "proto.jsonl"
if run.resumed and y0_path.exists():  # (a run stopped while generating them generates them again)
    y0 = load_answers(y0_path)
else:
    y0 = synthesize(model, run.tok, run.records, cfg, seed=cfg.seed, dist=run.dist)
    if run.dist.main:
        save_answers(y0_path, run.records, run.y, y0, run.tok, cfg.template)
for it in range(run.start_iter, cfg.iters):
    b = per_iteration(cfg.b, it, "b")  # the one place b is decided; the loss only receives the number
    start_sum = param_checksum(model) if cfg.debug else None  # the tests' check that training moved the policy

    # 1. no opponent copy: theta_t is the current model itself, before this iteration's training
    # 2. theta_t answers every training prompt afresh: the synthetic answers y_gen (not accumulated)
    y_gen = play(run, it, model)
    x, y, y_gen_train, y0_train = list(run.prompts), list(run.y), list(y_gen), list(y0)
    if cfg.mix_previous and it > 0:  # the official SPIN code's data mixing: the previous iteration's y_gen too
        y_gen_previous = load_answers(run.run_dir / f"iter{it - 1}" / "synthetic.jsonl")
        x, y, y_gen_train, y0_train = x + run.prompts, y + run.y, y_gen_train + y_gen_previous, y0_train + y0
    # with b = 0 the historical term is exactly zero: y0 is left out of the stacked forward (pairs, not triplets)
    answer_sets = [(t_y, t_g, t_0) if b else (t_y, t_g) for t_y, t_g, t_0 in zip(y, y_gen_train, y0_train)]
    if cfg.drop_identical and not b:  # y_gen == y with b = 0: exactly zero gradient, dropping saves compute
        keep = [j for j in range(len(x)) if y[j] != y_gen_train[j]]
        x, answer_sets = [x[j] for j in keep], [answer_sets[j] for j in keep]

    # 3. no reference log-probs: all three terms come from the model being trained
    # 4. train from theta_t on triplets: y beats y_gen, and y_gen beats y0
    def loss_fn(logps, idx):
        logp_y, logp_y_gen, logp_y0 = logps if b else (*logps, None)
        return tspin_loss(logp_y, logp_y_gen, logp_y0, cfg.a, b)

    print(f"T-SPIN iteration {it}: b {b}, {len(x):,} {'triplets' if b else 'pairs'}", flush=True)
    fit_iteration(run, it, x, answer_sets, loss_fn)

    # 5. evaluate, checkpoint; the trained model is theta_{t+1}
    if cfg.debug and run.dist.main:
        run.log.log(step=run.step, iter=it, policy_changed=param_checksum(model) != start_sum)
    evaluate_iteration(run, it)

    # 6. the equal-compute baseline: continued SFT from theta_0 on the same x and y, same steps
    if cfg.baseline:
        continued_sft(run, it, x, [s[0] for s in answer_sets])
    save_iteration(run, it)

finish(run)
