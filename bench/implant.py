"""Implanted ground truth in a pretrained model: known concept neurons edited into one block's FFN
(reference addendum C.2), so that ranking methods get a recall target and causal scorers a known answer
on a real network.

A `conf/model/*_implanted.yaml` names a base model and an `implant:` block (regime, layer, concepts, gain,
seed). `implanted_folder` measures the concept at the FFN input on train words of the concept's task,
overwrites a few seeded low-contribution neurons so that each fires on the concept and writes the concept's
own residual direction, and saves the edited model once under `$NEURONBENCH_CACHE/models/<name>/<key>/`
(the key fingerprints the implant block, the base revision and IMPLANT_VERSION), with `implant.json`: the
neurons per concept task, which `bench.run` turns into the cell's ground truth (site mlp, that layer).

Regimes mirror the planted suite (tasks/planted.py): `single` one neuron; `redundant` three neurons reading
the direction perturbed by small orthogonal noise, each writing a third; `distributed` sixteen graded
(not thresholded) neurons reading it under large orthogonal noise (one alone has train AUC near 0.7), each
writing a sixteenth, so that only their sum carries the concept; `polysemantic` one neuron firing on either of
two concepts (e.g. plural nouns, past verbs) plus one weaker neuron per concept.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from hydra.utils import instantiate

from bench.cache import cache_root
from bench.errors import NeuronbenchError
from bench.intervene import model_inputs, site_hook
from bench.models import LoadedModel
from bench.seeds import cell_rng

log = logging.getLogger(__name__)

CONF = Path(__file__).resolve().parent.parent / "conf"
IMPLANT_VERSION = 2  # bump when the construction changes, so cached implanted models are rebuilt
REGIMES = ("single", "redundant", "distributed", "polysemantic")
# Neurons per concept and each one's share of the written output (tasks/planted.py's per_class).
SIZES = {"single": 1, "redundant": 3, "distributed": 16}
REDUNDANT_NOISE = 0.05  # norm of the orthogonal perturbation of each redundant neuron's direction
DISTRIBUTED_AUC = 0.7  # target train AUC of one distributed neuron alone (addendum C.2)
NOISE_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
# Off-state margins: z at the 99th percentile of other words. GELU(-3) = -0.004; SiLU's tail is slower,
# SiLU(-8) = -0.003 (addendum C.2).
MARGINS = {"gelu": 3.0, "silu": 8.0}
# Lowest z of a graded (distributed) neuron at the 0.5th percentile of words, in standard deviations of s:
# inside GELU's and SiLU's monotone ranges (they turn back up below z = -0.75 and -1.28).
MONOTONE_FLOOR = {"gelu": 0.5, "silu": 1.0}
LINEAR_GATE = 8.0  # gate input of a gated distributed neuron at the mean token: SiLU(8 r) = 8 r within 0.3%
CANDIDATE_SHARE = 0.10  # implants are drawn among this share of neurons that contribute least
SHRINKAGE = 0.1  # covariance shrinkage of the LDA concept direction
CALIBRATION_ROUNDS = 3


class _Stop(Exception):
    """Raised by a hook once the layers a measurement needs have run."""


def check_spec(name: str, spec: dict, loaded: LoadedModel | None = None) -> dict:
    """The implant block of model `name`, checked (regime, layer, concepts, explicit neurons)."""
    implant = spec.get("implant")
    if not isinstance(implant, dict):
        raise NeuronbenchError(f"conf/model/{name}.yaml: source implant needs an `implant:` block")
    for key in ("base", "regime", "layer", "concepts"):
        if key not in implant:
            raise NeuronbenchError(f"conf/model/{name}.yaml: implant.{key} is missing")
    if implant["regime"] not in REGIMES:
        raise NeuronbenchError(f"conf/model/{name}.yaml: implant.regime={implant['regime']!r}; valid: "
                               f"{', '.join(REGIMES)}")
    concepts = implant["concepts"]
    wanted = 2 if implant["regime"] == "polysemantic" else 1
    if not isinstance(concepts, list) or len(concepts) < wanted or any(
            not isinstance(c, dict) or set(c) != {"task", "label"} for c in concepts):
        raise NeuronbenchError(f"conf/model/{name}.yaml: implant.concepts must list {wanted} concept(s) as "
                               "{task: <conf/task name>, label: <its label>}, e.g. {task: templated_number, "
                               "label: Plur}")
    if loaded is not None:
        layers = loaded.layers("mlp")
        if implant["layer"] not in layers:
            raise NeuronbenchError(f"conf/model/{name}.yaml: implant.layer={implant['layer']} is not an FFN "
                                   f"layer of {implant['base']} (valid: {layers[0]}..{layers[-1]})")
        loaded.ffn_inputs(implant["layer"])  # raises for an architecture whose FFN inputs are unmapped
        width = loaded.width("mlp")
        neurons = implant.get("neurons")
        if neurons is not None and (not isinstance(neurons, list) or
                                    any(not isinstance(j, int) or not 0 <= j < width for j in neurons)):
            raise NeuronbenchError(f"conf/model/{name}.yaml: implant.neurons={neurons!r}: expected FFN neuron "
                                   f"indices in 0..{width - 1}")
        if neurons is not None and len(set(neurons)) != n_implants(implant["regime"]):
            raise NeuronbenchError(f"conf/model/{name}.yaml: implant.neurons lists {len(set(neurons))} distinct "
                                   f"neurons; regime {implant['regime']} implants {n_implants(implant['regime'])}")
    return implant


def n_implants(regime: str) -> int:
    return 3 if regime == "polysemantic" else SIZES[regime]


def implant_key(implant: dict, pooling: str, base_revision: str) -> str:
    """What decides an implanted folder's weights: the implant block, the word pooling it measures with,
    the base model's revision and the construction's version."""
    keyed = {"implant": implant, "pooling": pooling, "base_revision": base_revision, "version": IMPLANT_VERSION}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def implanted_folder(name: str, spec: dict, cache_dir, load_base) -> Path:
    """The cached folder of model `name` (`source: implant`), built on first use from the base model that
    `load_base(base_name, base_spec)` loads (a LoadedModel, left unchanged)."""
    implant = check_spec(name, spec)
    base_path = CONF / "model" / f"{implant['base']}.yaml"
    if not base_path.is_file():
        raise NeuronbenchError(f"conf/model/{name}.yaml: implant.base={implant['base']!r} has no config {base_path}")
    base_spec = yaml.safe_load(base_path.read_text())
    base = load_base(implant["base"], base_spec)
    check_spec(name, spec, base)
    pooling = spec.get("pooling") or base_spec["pooling"]
    key = implant_key(implant, pooling, base.revision)
    folder = cache_root(cache_dir) / "models" / name / key
    if (folder / "implant.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{key}."))
    tmp.chmod(0o755)
    try:
        log.info("model %s: implanting %s neurons into %s layer %d", name, implant["regime"], base.name,
                 implant["layer"])
        model, meta = implanted_model(base, implant, pooling)
        model.save_pretrained(tmp)
        base.tokenizer.save_pretrained(tmp)
        (tmp / "implant.json").write_text(json.dumps({**meta, "base_revision": base.revision, "key": key},
                                                     indent=1, sort_keys=True))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same folder first
            if not (folder / "implant.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_meta(folder: Path) -> dict:
    return json.loads((Path(folder) / "implant.json").read_text())


def implant_truth(meta: dict | None, task: str, site: str, layer: int) -> tuple[frozenset[int], ...] | None:
    """Ground truth of a cell of an implanted model: one group, the neurons implanted for `task`'s concept,
    at (mlp, implant layer); () at the model's other cells (nothing implanted there); None where the model
    carries no implant for this task."""
    if not meta or task not in meta["neurons"]:
        return None
    if site != meta["site"] or layer != meta["layer"]:
        return ()
    return (frozenset(meta["neurons"][task]),)


# --- measurement ------------------------------------------------------------------------------------

def _concept_words(concepts: list[dict], max_sentences: int, split: str = "train"):
    """Sentences of the concepts' tasks (they must share them) and per concept its word labels (flat)."""
    sentences, labels = None, []
    for concept in concepts:
        path = CONF / "task" / f"{concept['task']}.yaml"
        if not path.is_file():
            raise NeuronbenchError(f"implant concept task {concept['task']!r} has no config {path}")
        cfg = yaml.safe_load(path.read_text())
        task = instantiate(cfg["loader"], name=cfg["name"], version=str(cfg["version"]))
        sents = task.sentences[split][:max_sentences]
        if sentences is not None and sents != sentences:
            raise NeuronbenchError(f"implant concepts {[c['task'] for c in concepts]} must share their sentences "
                                   "(e.g. two templated features of one seed)")
        sentences = sents
        flat = [lab for sent in task.labels[split][:max_sentences] for lab in sent]
        if concept["label"] not in flat:
            raise NeuronbenchError(f"implant concept label {concept['label']!r} does not occur in task "
                                   f"{concept['task']!r}; its labels: {sorted({lab for lab in flat if lab})}")
        labels.append(np.array([lab if lab is not None else "" for lab in flat], dtype=object))
    refs = np.array([(s, w) for s, sent in enumerate(sentences) for w in range(len(sent))], dtype=np.int64)
    return sentences, refs, labels


def measure(loaded: LoadedModel, sentences, refs, layer: int, pooling: str,
            batch_size: int = 32) -> dict[str, np.ndarray]:
    """Pooled (N, D) FFN input `x`, FFN activations `a` (site mlp) and residual `h` (site hidden) of block
    `layer` at every word; the forward stops after that block."""
    inputs = model_inputs(loaded, sentences, refs, pooling, batch_size=batch_size)
    ffn_in = loaded.ffn_inputs(layer)[0]
    out = {name: None for name in ("x", "a", "h")}
    device = next(loaded.model.parameters()).device
    with torch.inference_mode():
        for batch in inputs.batches:
            seen = {}

            def grab_x(_module, args, seen=seen):
                seen["x"] = args[0]

            def grab(name, seen=seen):
                def record(h):
                    seen[name] = h
                    if name == "h":
                        raise _Stop
                    return h
                return record

            handle = ffn_in.register_forward_pre_hook(grab_x)
            try:
                with site_hook(loaded, "mlp", layer, grab("a")), site_hook(loaded, "hidden", layer, grab("h")):
                    loaded.model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                                 **({"use_cache": False} if loaded.decoder else {}))
            except _Stop:
                pass
            finally:
                handle.remove()
            for name, h in seen.items():
                pooled = (batch.pool.to(h.device) @ h.reshape(-1, h.shape[-1]).float()).cpu().numpy()
                if out[name] is None:
                    out[name] = np.zeros((inputs.n_words, h.shape[-1]), dtype=np.float64)
                out[name][batch.words] = pooled
    return out


def lda_direction(x: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Unit shrinkage-LDA direction Σ⁻¹(μ+ − μ−) of positive vs other words (train words only)."""
    mu_p, mu_o = x[positive].mean(axis=0), x[~positive].mean(axis=0)
    centred = np.concatenate([x[positive] - mu_p, x[~positive] - mu_o])
    cov = centred.T @ centred / len(centred)
    cov += SHRINKAGE * np.trace(cov) / len(cov) * np.eye(len(cov))
    d = np.linalg.solve(cov, mu_p - mu_o)
    return d / np.linalg.norm(d)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney)."""
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]), kind="stable"), kind="stable") + 1.0
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def threshold(s_pos: np.ndarray, s_other: np.ndarray, margin: float) -> tuple[float, float]:
    """(τ, γ) of a detector z = γ(s − τ): τ maximizes balanced accuracy of 1[s > τ], and γ puts the 99th
    percentile of other words at z = −margin. Where that percentile lies above τ (a weak direction, the
    distributed regime) τ moves up to it and γ puts the median other word at −margin instead."""
    grid = np.unique(np.quantile(np.concatenate([s_pos, s_other]), np.linspace(0.005, 0.995, 199)))
    balanced = [(s_pos > t).mean() + (s_other <= t).mean() for t in grid]
    tau = float(grid[int(np.argmax(balanced))])
    q99 = float(np.quantile(s_other, 0.99))
    spread = float(np.std(s_other))
    if tau - q99 > 0.05 * spread:
        return tau, margin / (tau - q99)
    tau = max(tau, q99)
    return tau, margin / max(tau - float(np.median(s_other)), 1e-6)


def graded(s: np.ndarray, act: str) -> tuple[float, float]:
    """(τ, γ) of a graded neuron z = γ(s − τ) (the distributed regime): z stays in the activation's monotone
    range on all but the lowest 0.5% of words (GELU and SiLU dip below zero and turn back up under z ≈ −0.75
    and −1.28, which would make a weak direction fire *less* on the concept), and one standard deviation of s
    spans one unit of z, so a = act(z) ranks words as s does and its train AUC is that of s."""
    low, spread = float(np.quantile(s, 0.005)), float(np.std(s))
    return low - MONOTONE_FLOOR[act] * spread, 1.0 / max(spread, 1e-9)


def _orthogonal(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    rho = rng.normal(size=d.shape)
    rho -= (rho @ d) * d
    return rho / np.linalg.norm(rho)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# --- construction -----------------------------------------------------------------------------------

def implanted_model(base: LoadedModel, implant: dict, pooling: str) -> tuple[torch.nn.Module, dict]:
    """A deep copy of `base.model` with the implant written into block `layer`'s FFN, and its metadata;
    words are pooled over their pieces by `pooling`, as extraction pools them."""
    layer, regime = int(implant["layer"]), implant["regime"]
    concepts = implant["concepts"][:2 if regime == "polysemantic" else 1]
    gain = float(implant.get("gain", 2.0))
    rng = cell_rng(int(implant.get("seed", 0)), "implant", regime, layer)
    act = base.model.config.hidden_act
    if act not in MARGINS:
        raise NeuronbenchError(f"implant: FFN activation {act!r} of {base.name} is not supported; "
                               f"valid: {', '.join(MARGINS)}")
    gated = len(base.ffn_inputs(layer)) == 2
    margin = MARGINS[act]
    sentences, refs, labels = _concept_words(concepts, int(implant.get("max_sentences", 600)))
    clean = measure(base, sentences, refs, layer, pooling)
    x, h = clean["x"], clean["h"]
    positives = [lab == c["label"] for lab, c in zip(labels, concepts)]
    contrasts = [(lab != "") & (lab != c["label"]) for lab, c in zip(labels, concepts)]
    directions = [lda_direction(x, p) for p in positives]
    writes = [_unit(h[p].mean(axis=0) - h[c].mean(axis=0)) for p, c in zip(positives, contrasts)]
    separations = [float((h[p].mean(axis=0) - h[c].mean(axis=0)) @ w)
                   for p, c, w in zip(positives, contrasts, writes)]

    # (input direction, positive mask, share of concept i's output for each concept) per implanted neuron
    plan: list[tuple[np.ndarray, np.ndarray, list[float], str]] = []
    noise = 0.0
    if regime == "single":
        plan.append((directions[0], positives[0], [1.0], concepts[0]["task"]))
    elif regime == "redundant":
        for _ in range(3):
            d = _unit(directions[0] + REDUNDANT_NOISE * _orthogonal(rng, directions[0]))
            plan.append((d, positives[0], [1.0 / 3], concepts[0]["task"]))
    elif regime == "distributed":
        rhos = [_orthogonal(rng, directions[0]) for _ in range(16)]
        s_pos, s_con = x[positives[0]], x[contrasts[0]]
        aucs = {eta: np.median([auc(s_pos @ _unit(directions[0] + eta * r), s_con @ _unit(directions[0] + eta * r))
                                for r in rhos[:4]]) for eta in NOISE_GRID}
        noise = min(NOISE_GRID, key=lambda eta: (abs(aucs[eta] - DISTRIBUTED_AUC), eta))
        for r in rhos:
            plan.append((_unit(directions[0] + noise * r), positives[0], [1.0 / 16], concepts[0]["task"]))
    else:  # polysemantic: a shared neuron on either concept, writing half of each, and a weaker one per concept
        shared = _unit(directions[0] + directions[1])
        plan.append((shared, positives[0] | positives[1], [0.5, 0.5], "shared"))
        for i, c in enumerate(concepts):
            plan.append((directions[i], positives[i], [0.5 if j == i else 0.0 for j in range(2)], c["task"]))

    width = base.width("mlp")
    ffn_out = base.ffn_module(layer)
    W_out = ffn_out.weight.detach().double().numpy()  # (D_model, width)
    a_old = clean["a"]
    removed = a_old.var(axis=0) if ffn_out.bias is not None else (a_old ** 2).mean(axis=0)
    contribution = removed * (W_out ** 2).sum(axis=0)
    if implant.get("neurons") is not None:
        chosen = np.asarray(implant["neurons"], dtype=np.int64)
    else:
        pool = np.argsort(contribution, kind="stable")[:max(int(CANDIDATE_SHARE * width), len(plan))]
        chosen = rng.choice(pool, size=len(plan), replace=False)

    model = copy.deepcopy(base.model)
    edited = LoadedModel(name=base.name + "+implant", revision=base.revision, model=model,
                         tokenizer=base.tokenizer, decoder=base.decoder, device=base.device)
    inputs_mods, out_mod = edited.ffn_inputs(layer), edited.ffn_module(layer)
    mean_dir = _unit(x.mean(axis=0))
    c_mean = float((x @ mean_dir).mean())
    cv = float((x @ mean_dir).std() / c_mean)
    detectors = []
    with torch.no_grad():
        for j, (d, pos, _, _) in zip(chosen, plan):
            # gated: no bias, so z = γ(s − τ r) with r = m̂ᵀx / c ≈ 1; its sign is that of s / r − τ exactly
            r = x @ mean_dir / c_mean if gated else np.ones(len(x))
            s = x @ d / r
            if regime == "distributed" and gated:
                # linear and centred: the gate sits on the near-constant mean-token direction, deep in SiLU's
                # linear range, and the up projection reads the noisy concept direction minus its mean on other
                # words, so a ≈ K r γ (dᵀx − τ r) is graded, signed and averages zero off the concept (no bias to
                # take a graded neuron's mean back)
                dx = x @ d
                tau = float((r[~pos] * dx[~pos]).mean() / (r[~pos] ** 2).mean())
                gamma = 1.0 / max(float(np.std(dx - tau * r)), 1e-9)
                detectors.append({"tau": tau, "gamma": gamma, "linear_gate": LINEAR_GATE})
                gate, up = inputs_mods
                gate.weight[j] = torch.as_tensor(LINEAR_GATE * mean_dir / c_mean, dtype=gate.weight.dtype)
                up.weight[j] = torch.as_tensor(gamma * (d - (tau / c_mean) * mean_dir), dtype=up.weight.dtype)
                continue
            if regime == "distributed":  # graded: each neuron alone is a weak reader (AUC near 0.7)
                tau, gamma = graded(r * s, act)
            else:
                tau, gamma = threshold(s[pos], s[~pos], margin)
                below = float(np.quantile(r[~pos] * (s[~pos] - tau), 0.99))  # z / γ: r rescales the margin
                gamma = margin / -below if gated and below < 0 else gamma
            detectors.append({"tau": tau, "gamma": gamma})
            if gated:
                gate, up = inputs_mods
                gate.weight[j] = torch.as_tensor(gamma * (d - (tau / c_mean) * mean_dir), dtype=gate.weight.dtype)
                up.weight[j] = torch.as_tensor(mean_dir / c_mean, dtype=up.weight.dtype)
            else:
                (proj,) = inputs_mods
                proj.weight[j] = torch.as_tensor(gamma * d, dtype=proj.weight.dtype)
                proj.bias[j] = -gamma * tau
        if out_mod.bias is not None:  # the replaced neurons' mean contribution goes into the bias
            out_mod.bias += torch.as_tensor(W_out[:, chosen] @ a_old[:, chosen].mean(axis=0), dtype=out_mod.bias.dtype)
        out_mod.weight[:, torch.as_tensor(chosen)] = 0.0
    a_new = measure(edited, sentences, refs, layer, pooling)["a"][:, chosen]
    bias0 = None if out_mod.bias is None else out_mod.bias.detach().clone()

    def write(scale: float) -> None:
        """Output columns: each neuron writes its shares of the concepts' directions, sized so that the whole
        implant adds about `scale` x the clean separation; its mean on other words is taken off the bias."""
        with torch.no_grad():
            offset = np.zeros(W_out.shape[0])
            for n, (j, (_, pos, shares, _)) in enumerate(zip(chosen, plan)):
                i = next(i for i, share in enumerate(shares) if share > 0)  # the concept its swing is read on
                swing = float(a_new[positives[i], n].mean() - a_new[contrasts[i], n].mean())
                if swing <= 0:  # it would write the concept on the wrong words (seen: distributed on minilm)
                    raise NeuronbenchError(
                        f"implant {regime} at layer {layer}: neuron {j} is not more active on "
                        f"{concepts[i]['label']} than on the other {concepts[i]['task']} words (swing {swing:.3g}); "
                        "this regime's detectors do not fire on the concept here: use another regime or layer")
                column = sum(share * separations[c] * writes[c] for c, share in enumerate(shares)) * scale / swing
                out_mod.weight[:, j] = torch.as_tensor(column, dtype=out_mod.weight.dtype)
                offset += column * a_new[~pos, n].mean()
            if bias0 is not None:
                out_mod.bias.copy_(bias0 - torch.as_tensor(offset, dtype=bias0.dtype))

    def shift() -> float:
        """Mean rise along concept 0's direction at the block output, positives minus contrast words, in units
        of the clean separation."""
        moved = (measure(edited, sentences, refs, layer, pooling)["h"] - h) @ writes[0]
        return float((moved[positives[0]].mean() - moved[contrasts[0]].mean()) / separations[0])

    scale, reached = gain, 0.0
    for _ in range(CALIBRATION_ROUNDS):  # post-LN blocks renormalize after the FFN: rescale to the target
        write(scale)
        reached = shift()
        if reached <= 0 or abs(reached - gain) < 0.02 * gain:
            break
        scale *= gain / reached
    first = inputs_mods[0]
    z = x @ first.weight.detach().double().numpy()[chosen].T + (
        0.0 if gated else first.bias.detach().double().numpy()[chosen])
    z_other = [float(np.quantile(z[~pos, n], 0.99)) for n, (_, pos, _, _) in enumerate(plan)]
    neurons: dict[str, list[int]] = {c["task"]: [] for c in concepts}
    for j, (_, _, shares, role) in zip(chosen, plan):
        for i, share in enumerate(shares):
            if share > 0:
                neurons[concepts[i]["task"]].append(int(j))
    meta = {
        "regime": regime, "layer": layer, "site": "mlp", "base": implant["base"], "concepts": concepts,
        "neurons": neurons, "implanted": [int(j) for j in chosen], "roles": [p[3] for p in plan],
        "gain": gain, "reached_gain": reached, "output_scale": scale, "separation": separations,
        "detectors": detectors, "z_other_p99": z_other, "distributed_noise": noise,
        "neuron_auc": [auc(a_new[positives[i], n], a_new[contrasts[i], n])
                       for n, i in enumerate(next(i for i, sh in enumerate(p[2]) if sh > 0) for p in plan)],
        "mean_token_cv": cv if gated else None, "n_words": int(len(refs)),
    }
    log.info("implant %s L%d neurons %s: gain %.2f reached %.2f, p99 z of other words %s", regime, layer,
             meta["implanted"], gain, reached, np.round(z_other, 2).tolist())
    return model, meta
