"""For callers that send the window alone: a sequence model and a learned degradation onset, by grouped CV
on training engines only (no test data).

Usage: ``python bench/sequence_cv.py [--subsets FD001,FD002] [--seed 0] [--epochs 40] [--arch flat|pool|gru]
[--patience 5] [--lr 1e-3] [--weight-decay 0] [--members 1] [--weights-out F.npz] [--time-forward]``, or
``python bench/sequence_cv.py --time-weights F-FD001.npz``; needs ``jax`` and ``optax`` (bench-only: not in the
project's requirements; ``pip install "jax[cpu]" optax``). One thread per process (XLA and OpenMP pools).

The protocol, folds and cuts of ``bench/life_cv.py`` and ``bench/summary_cv.py``
(``training_src/selection.py``: 3 asset-grouped folds, everything fitted on the other folds' engines, 5
test-like random cuts per validation engine, W 30, cap 125); every candidate is scored at the same cuts as
the window model (the product's features without life columns, the fixed proxy XGBoost), and its change of
RMSE against it is given with its paired standard error (``summary_cv._paired``):

* ``cnn``: a small 1-D CNN on the last 30 normalised readings. Its channels are the product's pointwise
  signals (``features._pointwise``, fitted inside the fold: per-regime z-scored kept sensors, and the health
  index, here divided by the cap) and the cycle count / 100. Windows at the start of a life are
  padded with the life's first reading. Two convolutions (32 filters of width 5, ReLU), a dense layer of
  64 and one output; label: the RUL capped at 125 (scaled by 1/125), mean squared error, Adam (learning rate
  1e-3, batch 256), at most ``--epochs`` epochs with early stopping (patience 5) on 20 % of the fold's
  training engines held out (seeded); the weights of the best inner epoch are kept. Variants: ``--arch pool``
  (the dense layer reads the mean over positions and the last position), ``--arch gru`` (one convolution,
  then a GRU of 32 units whose last state gives the output), ``--lr``, ``--weight-decay`` (AdamW),
  ``--members N`` (the mean of N networks trained with seeds seed + 1000 m).
* ``cnn + window``: the mean of the two predictions at each cut.
* ``onset``: the window model trained on a per-engine piecewise-linear label whose knee is learned from
  the health index instead of the fixed cap: for every training engine, a hinge (flat, then linear down to
  the end) is fitted by least squares to its health index over its life (knee on a grid of every cycle
  from 10 cycles in to 10 before the end); the engine's label is ``min(RUL, RUL at the knee)``, the knee's
  RUL bounded to [``ONSET_MIN``, ``ONSET_MAX``]. ``onset, median at cap``: the same knees multiplied by one
  factor per fold so that their median is the cap (the engines' spread of onsets at the cap's level).
  ``..., clipped``: predictions clipped at the cap (125), as the product clips what it serves.

``--time-forward`` also measures a NumPy forward pass of the last fold's trained CNN for one asset
(the served form: the weights as NumPy arrays, one window of 30 readings), checks it against the JAX
predictions, and prints the median over repeated calls.
"""

from __future__ import annotations

import os

# one thread per process (the machine is shared): XLA's CPU thread pools, before jax is imported
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import sys
import time
import timeit
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from summary_cv import _paired, cut_rows  # noqa: E402  (the same cuts and paired errors as summary_cv)

from training_src import features as F  # noqa: E402
from training_src import selection as S  # noqa: E402
from training_src.dataio import read_table, resolve_file  # noqa: E402
from training_src.profiles import load_profile  # noqa: E402

WINDOW, CAP = 30, 125.0
ONSET_MIN, ONSET_MAX, KNEE_MARGIN = 60.0, 250.0, 10
KERNEL, FILTERS, HIDDEN, GRU_UNITS = 5, 32, 64, 32
BATCH, LR, PATIENCE, INNER = 256, 1e-3, 5, 0.2


# ------------------------------------------------------------------------------------------------ inputs
def sequences(df, spec: F.FeatureSpec, prof) -> np.ndarray:
    """(n, WINDOW, channels) float32: for every row of ``df``, the trailing WINDOW readings of its engine's
    pointwise signals (padded with the life's first reading), the health index scaled by 1/CAP and the
    cycle count / 100 as channels."""
    z, _ = F._pointwise(spec, df)
    z = z.copy()
    if spec.hi_weights:
        z[:, -1] /= CAP
    t = df[prof.time_column].to_numpy(dtype=float)[:, None] / 100.0
    sig = np.hstack([z, t]).astype(np.float32)
    ids = df[prof.id_column].to_numpy()
    out = np.empty((len(df), WINDOW, sig.shape[1]), dtype=np.float32)
    for lo, hi in itertools.pairwise(np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])):
        padded = np.vstack([np.repeat(sig[lo:lo + 1], WINDOW - 1, axis=0), sig[lo:hi]])
        out[lo:hi] = np.lib.stride_tricks.sliding_window_view(padded, WINDOW, axis=0).transpose(0, 2, 1)
    return out


# ------------------------------------------------------------------------------------------------ the CNN
def init_params(key, channels: int, arch: str = "flat") -> dict[str, np.ndarray]:
    """He-initialised weights of conv(KERNEL, FILTERS) -> conv(KERNEL, FILTERS) -> dense(HIDDEN) -> 1; the
    dense layer reads every position (``flat``) or the mean over positions and the last one (``pool``)."""
    import jax

    k = jax.random.split(key, 4)
    flat = (WINDOW - 2 * (KERNEL - 1)) * FILTERS if arch == "flat" else 2 * FILTERS

    def he(kk, shape, fan_in):
        return jax.random.normal(kk, shape) * np.sqrt(2.0 / fan_in)

    if arch == "gru":  # conv(KERNEL, FILTERS) -> GRU(GRU_UNITS) over the positions -> its last state -> 1
        g = GRU_UNITS
        return {"c1": he(k[0], (KERNEL, channels, FILTERS), KERNEL * channels), "b1": np.zeros(FILTERS, np.float32),
                "gx": he(k[1], (FILTERS, 3 * g), FILTERS) / np.sqrt(2.0), "gh": he(k[2], (g, 3 * g), g) / np.sqrt(2.0),
                "gb": np.zeros(3 * g, np.float32), "gbn": np.zeros(g, np.float32),
                "d2": he(k[3], (g, 1), g) * 0.1, "e2": np.full(1, 0.5, np.float32)}
    return {"c1": he(k[0], (KERNEL, channels, FILTERS), KERNEL * channels), "b1": np.zeros(FILTERS, np.float32),
            "c2": he(k[1], (KERNEL, FILTERS, FILTERS), KERNEL * FILTERS), "b2": np.zeros(FILTERS, np.float32),
            "d1": he(k[2], (flat, HIDDEN), flat), "e1": np.zeros(HIDDEN, np.float32),
            "d2": he(k[3], (HIDDEN, 1), HIDDEN) * 0.1, "e2": np.full(1, 0.5, np.float32)}


def forward(p, x):
    """Predictions (scaled RUL, (b,)) of windows ``x`` (b, WINDOW, channels), in JAX (what training
    differentiates); ``forward_numpy`` is the same network in NumPy."""
    import jax.numpy as jnp

    def conv(h, w, b):  # valid 1-D convolution as a sum of KERNEL shifted matrix products
        n = h.shape[1] - KERNEL + 1
        return sum(h[:, j:j + n, :] @ w[j] for j in range(KERNEL)) + b

    h = jnp.maximum(conv(x, p["c1"], p["b1"]), 0.0)
    if "gx" in p:
        import jax

        g = p["gh"].shape[0]
        xs = jnp.swapaxes(h @ p["gx"] + p["gb"], 0, 1)  # (positions, b, 3 g)

        def cell(state, xt):
            hh = state @ p["gh"]
            z = jax.nn.sigmoid(xt[:, :g] + hh[:, :g])
            r = jax.nn.sigmoid(xt[:, g:2 * g] + hh[:, g:2 * g])
            n = jnp.tanh(xt[:, 2 * g:] + r * (hh[:, 2 * g:] + p["gbn"]))
            return (1 - z) * n + z * state, None

        last, _ = jax.lax.scan(cell, jnp.zeros((x.shape[0], g), x.dtype), xs)
        return (last @ p["d2"] + p["e2"])[:, 0]
    h = jnp.maximum(conv(h, p["c2"], p["b2"]), 0.0)
    h = jnp.concatenate([h.mean(axis=1), h[:, -1]], axis=1) if p["d1"].shape[0] == 2 * FILTERS \
        else h.reshape(h.shape[0], -1)
    h = jnp.maximum(h @ p["d1"] + p["e1"], 0.0)
    return (h @ p["d2"] + p["e2"])[:, 0]


def forward_numpy(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The same network in NumPy alone (the served form): ``x`` (b, WINDOW, channels) -> (b,)."""
    def conv(h, w, b):  # one matrix product per layer: the (b, n, KERNEL * channels) patches times the kernel
        cols = np.lib.stride_tricks.sliding_window_view(h, KERNEL, axis=1)  # (b, n, channels, KERNEL)
        patches = cols.transpose(0, 1, 3, 2).reshape(h.shape[0], cols.shape[1], -1)
        return patches @ w.reshape(-1, w.shape[2]) + b

    h = np.maximum(conv(x, p["c1"], p["b1"]), 0.0)
    if "gx" in p:
        g = p["gh"].shape[0]
        xs = h @ p["gx"] + p["gb"]
        state = np.zeros((x.shape[0], g), x.dtype)
        for t in range(xs.shape[1]):
            xt, hh = xs[:, t], state @ p["gh"]
            z = 1.0 / (1.0 + np.exp(-(xt[:, :g] + hh[:, :g])))
            r = 1.0 / (1.0 + np.exp(-(xt[:, g:2 * g] + hh[:, g:2 * g])))
            n = np.tanh(xt[:, 2 * g:] + r * (hh[:, 2 * g:] + p["gbn"]))
            state = (1 - z) * n + z * state
        return (state @ p["d2"] + p["e2"])[:, 0]
    h = np.maximum(conv(h, p["c2"], p["b2"]), 0.0)
    h = np.concatenate([h.mean(axis=1), h[:, -1]], axis=1) if p["d1"].shape[0] == 2 * FILTERS \
        else h.reshape(h.shape[0], -1)
    h = np.maximum(h @ p["d1"] + p["e1"], 0.0)
    return (h @ p["d2"] + p["e2"])[:, 0]


def train_cnn(X: np.ndarray, y: np.ndarray, owner: np.ndarray, seed: int, epochs: int, arch: str = "flat",
              patience: int = PATIENCE, lr: float = LR, weight_decay: float = 0.0) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Fit the CNN on windows ``X`` and capped labels ``y`` of engines ``owner``; early stopping on INNER of
    the engines (seeded). Returns the best epoch's weights (NumPy) and a record (epochs run, best epoch,
    inner RMSE, seconds)."""
    import jax
    import jax.numpy as jnp
    import optax

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    engines = np.unique(owner)
    inner = rng.choice(engines, size=max(1, round(INNER * len(engines))), replace=False)
    is_in = np.isin(owner, inner)
    Xt, yt = X[~is_in], (y[~is_in] / CAP).astype(np.float32)
    Xi, yi = jnp.asarray(X[is_in]), jnp.asarray((y[is_in] / CAP).astype(np.float32))
    params = jax.tree_util.tree_map(jnp.asarray, init_params(jax.random.PRNGKey(seed), X.shape[2], arch))
    opt = optax.adamw(lr, weight_decay=weight_decay) if weight_decay else optax.adam(lr)
    state = opt.init(params)

    def loss(p, xb, yb):
        return jnp.mean((forward(p, xb) - yb) ** 2)

    @jax.jit
    def step(p, s, xb, yb):
        g = jax.grad(loss)(p, xb, yb)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s

    inner_loss = jax.jit(loss)
    best, best_p, best_epoch, done = np.inf, params, 0, 0
    for epoch in range(epochs):
        order = rng.permutation(len(Xt))
        for b in range(0, len(order) - BATCH + 1, BATCH):  # full batches only: one compiled shape
            idx = order[b:b + BATCH]
            params, state = step(params, state, Xt[idx], yt[idx])
        v = float(inner_loss(params, Xi, yi))
        done = epoch + 1
        if v < best:
            best, best_p, best_epoch = v, params, epoch + 1
        elif epoch + 1 - best_epoch >= patience:
            break
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in best_p.items()}
    return weights, {"epochs": done, "best_epoch": best_epoch, "inner_rmse": float(np.sqrt(best)) * CAP,
                     "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------ onset
def knee_rul(h: np.ndarray, t: np.ndarray) -> float:
    """RUL at the knee of the least-squares hinge fit of one life's health index ``h`` over cycles ``t``:
    flat at a level, then linear from the knee to the end (every knee KNEE_MARGIN cycles from either end)."""
    best, best_k = np.inf, t[0]
    for k in t[KNEE_MARGIN:len(t) - KNEE_MARGIN]:
        A = np.column_stack([np.ones_like(t), np.maximum(t - k, 0.0)])
        coef, *_ = np.linalg.lstsq(A, h, rcond=None)
        sse = float(np.sum((A @ coef - h) ** 2))
        if sse < best:
            best, best_k = sse, k
    return float(t[-1] - best_k)


def onset_labels(df, spec: F.FeatureSpec, prof) -> tuple[np.ndarray, np.ndarray]:
    """Per-engine piecewise-linear labels of ``df``: ``min(RUL, knee RUL)``, the knee's RUL from the health
    index and bounded to [ONSET_MIN, ONSET_MAX]. Returns (labels (n,), knee RUL per engine)."""
    h = F._pointwise(spec, df)[0][:, -1]
    t = df[prof.time_column].to_numpy(dtype=float)
    ids = df[prof.id_column].to_numpy()
    rul = F.rul_labels(df, prof, None)
    out, knees = np.empty(len(df)), []
    for lo, hi in itertools.pairwise(np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])):
        k = float(np.clip(knee_rul(h[lo:hi], t[lo:hi]), ONSET_MIN, ONSET_MAX))
        knees.append(k)
        out[lo:hi] = np.minimum(rul[lo:hi], k)
    return out, np.asarray(knees)


# ------------------------------------------------------------------------------------------------ CV
def cross_validate(subset: str, data_dir: Path, seed: int, epochs: int, time_forward: bool, arch: str = "flat",
                   patience: int = PATIENCE, weights_out: Path | None = None, lr: float = LR,
                   weight_decay: float = 0.0, members: int = 1
                   ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Out-of-fold predictions of every candidate at the cuts of ``summary_cv``, and notes per fold;
    ``weights_out``: where to save the last fold's CNN weights and validation windows (``--time-weights``);
    ``members``: how many networks' predictions are averaged (the last one is saved and timed)."""
    prof = load_profile("cmapss", subset)
    train = F.validate_readings(read_table(resolve_file(data_dir, prof.file("train")), prof), prof)
    ids = train[prof.id_column].to_numpy()
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("window", "cnn", "onset", "onset, median at cap",
                                                          "true", "owner")}
    notes: list[str] = []
    for i, group in enumerate(S.folds(ids, S.FOLDS, seed)):
        tr = train[~np.isin(ids, group)].reset_index(drop=True)
        va = train[np.isin(ids, group)].reset_index(drop=True)
        spec = F.with_choice(F.fit_spec(tr, prof, seed=seed, window_sizes=[WINDOW]), tr, prof, [WINDOW], CAP)
        k = len(F.life_names(spec))
        rows, true, owner = cut_rows(va, prof, seed + 1 + i)
        keep = tr.groupby(prof.id_column, sort=False).cumcount().to_numpy() % S.STRIDE == S.STRIDE - 1
        Xtr = F.transform(tr, spec).to_numpy()[:, :-k]
        Xva = F.transform(va, spec).to_numpy()[rows][:, :-k]
        y = F.rul_labels(tr, prof, CAP)
        out["window"].append(S._fit_predict(Xtr[keep], y[keep], Xva, seed))
        y_on, knees = onset_labels(tr, spec, prof)
        out["onset"].append(S._fit_predict(Xtr[keep], y_on[keep], Xva, seed))
        # the same knees moved so that their median is the cap: the engines' spread of onsets, the cap's level
        scale = CAP / np.median(knees)
        y_sc = np.minimum(F.rul_labels(tr, prof, None), np.repeat(knees * scale, tr.groupby(
            prof.id_column, sort=False).size().to_numpy()))
        out["onset, median at cap"].append(S._fit_predict(Xtr[keep], y_sc[keep], Xva, seed))
        Q_tr, Q_va = sequences(tr, spec, prof), sequences(va, spec, prof)[rows]
        preds, recs = [], []
        for m in range(members):  # members differ in initialisation, batch order and inner engines
            weights, rec = train_cnn(Q_tr, y, tr[prof.id_column].to_numpy(), seed + 1000 * m, epochs, arch, patience,
                                     lr, weight_decay)
            preds.append(np.clip(forward_numpy(weights, Q_va) * CAP, 0.0, None))
            recs.append(rec)
        out["cnn"].append(np.mean(preds, axis=0))
        out["true"].append(true)
        out["owner"].append(owner)
        ep = ", ".join(f"{r['epochs']} epochs (best {r['best_epoch']}), inner capped RMSE {r['inner_rmse']:.2f}"
                       for r in recs)
        notes.append(f"{subset} fold {i}: CNN {ep}, {sum(r['seconds'] for r in recs):.0f} s on {len(Q_tr):,} "
                     f"windows; onset knee RUL "
                     f"median {np.median(knees):.0f} (10-90 %: {np.quantile(knees, 0.1):.0f}-"
                     f"{np.quantile(knees, 0.9):.0f}) over {len(knees)} engines")
        print("  " + notes[-1], file=sys.stderr, flush=True)
        if weights_out is not None and i == S.FOLDS - 1:
            np.savez(weights_out, windows=Q_va, **weights)
        if time_forward and i == S.FOLDS - 1:
            notes.append(forward_cost(weights, Q_va))
            print("  " + notes[-1], file=sys.stderr, flush=True)
    r = {key: np.concatenate(v) for key, v in out.items()}
    r["cnn + window"] = (r["cnn"] + r["window"]) / 2
    r["onset, clipped"] = np.minimum(r["onset"], CAP)
    r["onset, median at cap, clipped"] = np.minimum(r["onset, median at cap"], CAP)
    return r, notes


def forward_cost(weights: dict[str, np.ndarray], Q: np.ndarray) -> str:
    """Median seconds of a NumPy forward pass for one asset (one window), and its agreement with JAX."""
    import jax.numpy as jnp

    ref = np.asarray(forward({k: jnp.asarray(v) for k, v in weights.items()}, jnp.asarray(Q)))
    mine = forward_numpy(weights, Q)
    one = Q[:1].copy()
    runs = timeit.repeat(lambda: forward_numpy(weights, one), number=200, repeat=15)
    per = sorted(runs)[len(runs) // 2] / 200
    n_params = sum(v.size for v in weights.values())
    return (f"NumPy forward pass, one asset (window {one.shape[1]} x {one.shape[2]} channels, {n_params:,} weights, "
            f"{n_params * 4 / 1024:.0f} KiB float32): median {per * 1e3:.3f} ms over 15 x 200 calls; max |NumPy - JAX| "
            f"over {len(Q)} cuts {np.max(np.abs(mine - ref)) * CAP:.2e} cycles")


ROWS = ("window", "cnn", "cnn + window", "onset", "onset, clipped", "onset, median at cap",
        "onset, median at cap, clipped")


def table(subset: str, r: dict[str, np.ndarray]) -> list[str]:
    """Markdown rows: capped and uncapped RMSE ± s.e. over engines, and the change of each against the window
    model on the same cuts ± paired s.e. (capped / uncapped)."""
    true, owner, cap = r["true"], r["owner"], np.minimum(r["true"], CAP)
    lines = []
    for name in ROWS:
        rc, sc = S._rmse_se(r[name], cap, owner)
        ru, su = S._rmse_se(r[name], true, owner)
        if name == "window":
            diff = ""
        else:
            dc, sdc = _paired(r[name], r["window"], cap, owner)
            du, sdu = _paired(r[name], r["window"], true, owner)
            diff = f"{dc:+.2f} ± {sdc:.2f} | {du:+.2f} ± {sdu:.2f}"
        lines.append(f"| {subset} | {name} | {rc:.2f} ± {sc:.2f} | {ru:.2f} ± {su:.2f} | {diff or ' | '} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subsets", default="FD001,FD002")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40, help="most epochs of the CNN (early stopping may end sooner)")
    ap.add_argument("--time-forward", action="store_true", help="time a NumPy forward pass of the last fold's CNN")
    ap.add_argument("--arch", choices=("flat", "pool", "gru"), default="flat",
                    help="two convolutions and a dense layer reading every position (flat) or their mean and the "
                         "last one (pool); or one convolution and a GRU (gru)")
    ap.add_argument("--patience", type=int, default=PATIENCE, help="epochs without inner improvement before stopping")
    ap.add_argument("--lr", type=float, default=LR, help="Adam's learning rate")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="AdamW's decoupled weight decay (0: Adam)")
    ap.add_argument("--members", type=int, default=1, help="average this many networks (seeds seed + 1000 m)")
    ap.add_argument("--weights-out", type=Path, help="save the last fold's CNN weights and windows here (.npz)")
    ap.add_argument("--time-weights", type=Path, help="only time the NumPy forward pass of weights saved by "
                                                        "--weights-out, and exit")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    if a.time_weights:
        saved = dict(np.load(a.time_weights))
        print(forward_cost({k: v for k, v in saved.items() if k != "windows"}, saved["windows"]))
        return 0
    subsets = a.subsets.split(",")
    if not subsets or any(s not in ("FD001", "FD002", "FD003", "FD004") for s in subsets):
        ap.error(f"--subsets: C-MAPSS subsets FD001..FD004, comma-separated (got {a.subsets!r})")
    print(f"# sequence-model and onset CV · {time.strftime('%Y-%m-%d %H:%M')} UTC · seed {a.seed} · {S.FOLDS} folds, "
          f"{S.CUTS} cuts per engine, W {WINDOW}, cap {CAP:g} · CNN {a.arch}, at most {a.epochs} epochs, "
          f"patience {a.patience}, learning rate {a.lr:g}, weight decay {a.weight_decay:g}, {a.members} member(s)\n")
    print("| fleet | candidate | capped RMSE | uncapped RMSE | change capped (paired) | change uncapped (paired) |")
    print("|---|---|---:|---:|---:|---:|")
    all_notes = []
    for subset in subsets:
        t0 = time.time()
        out = a.weights_out.with_name(f"{a.weights_out.stem}-{subset}.npz") if a.weights_out else None
        r, notes = cross_validate(subset, Path(a.data_dir), a.seed, a.epochs, a.time_forward, a.arch, a.patience, out,
                                  a.lr, a.weight_decay, a.members)
        for line in table(subset, r):
            print(line, flush=True)
        all_notes += [*notes, f"{subset}: {time.time() - t0:.0f} s in all"]
    print()
    for n in all_notes:
        print(f"* {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
