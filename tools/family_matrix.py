"""Which model families work: every decoder-only architecture TransformerLens 4.3 has an adapter for and the
installed transformers ships, tried as a tiny random model built from transformers' own config class.

For each family: build a tiny config (small widths, 2 layers) and a random model, save it with the tiny
byte-level tokenizer, then on both backends: load (which runs the self-check: cached decoding and the stack
runner against an uncached forward), compare logits with plain transformers (eager, fp32; 1e-4 of the logits'
scale) and every canonical site across the backends (1e-4). Writes ``docs/families.md`` (the table the README
links to) and prints a summary. The named families also have their own tests (tests/workbench/test_families.py).

Each family runs in its own process with a time limit (``--timeout``), so one that crashes or hangs the
interpreter (a missing optional dependency, a native abort) is reported as failing and the survey goes on.

Usage: python tools/family_matrix.py [--out docs/families.md] [--only gemma2,qwen3] [--timeout 300] [--update]

``--update`` (with ``--only``) reruns just the named families and replaces their rows (adding any that are
missing, in order), the counts line and the date in the existing table, keeping every other row as it is, so
the table can be completed or refreshed without rerunning all families.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SMALL = dict(vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=256, n_embd=64, n_layer=2, n_head=4,
             n_positions=256, num_experts=4, num_local_experts=4, n_routed_experts=4, num_experts_per_tok=2,
             moe_intermediate_size=32, n_shared_experts=1, first_k_dense_replace=0, moe_layer_freq=1,
             shared_expert_intermediate_size=32, bos_token_id=256, eos_token_id=256, pad_token_id=259,
             tie_word_embeddings=False, sliding_window=8, initializer_range=0.1, d_model=64, ffn_dim=128,
             kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16,
             rotary_dim=8, partial_rotary_factor=0.5, attention_dropout=0.0, hidden_dropout=0.0, resid_pdrop=0.0,
             embd_pdrop=0.0, attn_pdrop=0.0,
             # multipliers whose defaults of 1 would hide a missed scale (Granite's, applied outside the modules)
             embedding_multiplier=2.0, residual_multiplier=0.5, attention_multiplier=0.1, logits_scaling=2.0,
             mup_enabled=True)


def candidates() -> list[tuple[str, str]]:
    """(model_type, HF causal-LM class name) of every TransformerLens adapter transformers ships."""
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    by_class: dict[str, str] = {}
    for mt, cls in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items():
        # several model types can share a class (exaone -> LlamaForCausalLM): keep the one the class is named after
        key = cls.lower().replace("forcausallm", "").replace("lmheadmodel", "").replace("forconditionalgeneration", "")
        if cls not in by_class or mt.replace("_", "").replace("-", "") == key.replace("_", ""):
            by_class[cls] = mt
    return sorted((by_class[cls], cls) for cls in SUPPORTED_ARCHITECTURES if cls in by_class)


# per family: settings a tiny config of it needs besides SMALL (XGLM offsets its sinusoidal positions by the pad id;
# GPT-Neo lists its attention layers by kind and count)
OVERRIDES: dict[str, dict] = {
    "xglm": dict(pad_token_id=1),
    "gpt_neo": dict(num_layers=2, attention_types=[[["global", "local"], 1]], num_heads=4, max_position_embeddings=256),
}


def _shrink(cfg, overrides: dict, set_keys: bool = True) -> None:
    """Set SMALL's (and the family's) keys that ``cfg`` has, in place (``set_keys``: a nested config; the top level
    got them at construction, which derived fields follow); per-layer lists cut to the tiny model's layers."""
    keys = set(cfg.to_dict()) | set(getattr(cfg, "attribute_map", {}))
    for k, v in {**SMALL, **overrides}.items() if set_keys else ():
        old = getattr(cfg, k, None)
        if k in keys and (old is None or type(old) is type(v)):  # nested configs validate their fields' types
            try:
                setattr(cfg, k, v)
            except (AttributeError, TypeError, ValueError):  # a derived, read-only field
                pass
    plc = getattr(cfg, "per_layer_config", None)  # per-layer settings of the full-size model's layers (Gemma 4)
    if isinstance(plc, dict) and plc:
        n = getattr(cfg, "num_hidden_layers", 2)
        try:
            cfg.per_layer_config = {k: v for k, v in plc.items() if int(k) < n}
        except (AttributeError, TypeError, ValueError):
            pass
    if getattr(cfg, "layer_types", None):
        n = getattr(cfg, "num_hidden_layers", 2)
        kinds = list(dict.fromkeys(cfg.layer_types))
        try:
            cfg.layer_types = [kinds[i % len(kinds)] for i in range(n)]
        except (AttributeError, TypeError, ValueError):  # derived from other fields (Mamba hybrids)
            pass


def tiny_config(model_type: str):
    from transformers import AutoConfig

    base = AutoConfig.for_model(model_type)
    keys = set(base.to_dict()) | set(getattr(base, "attribute_map", {}))
    over = OVERRIDES.get(model_type, {})
    kw = {k: v for k, v in {**SMALL, **over}.items() if k in keys}
    if "qk_rope_head_dim" in kw and "head_dim" in kw:  # multi-head latent attention: rotary on the rope part
        kw["head_dim"] = kw["qk_rope_head_dim"]
    cfg = AutoConfig.for_model(model_type, **kw)
    _shrink(cfg, over, set_keys=False)
    # multimodal checkpoints nest the text decoder's config (and vision/audio towers'): tiny too
    for name in getattr(cfg, "sub_configs", {}) or {}:
        sub = getattr(cfg, name, None)
        if sub is not None and hasattr(sub, "to_dict"):
            _shrink(sub, over)
    return cfg


def try_family(model_type: str, root: Path) -> tuple[str, str, list[str]]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from workbench.models import load
    from workbench.models.arch import UnsupportedArchitecture, arch_for_config
    from workbench.models.tiny import build_tiny_tokenizer

    d = root / model_type
    try:
        cfg = tiny_config(model_type)
    except Exception as e:  # noqa: BLE001
        return "not tried", f"no tiny model from its config class ({type(e).__name__}: {str(e)[:90]})", []
    try:  # what the workbench says from the config alone, before any weights (as `workbench models --check`)
        arch_for_config(cfg)
    except UnsupportedArchitecture as e:
        return "fails", f"refused from its config: {str(e)[:170]}", []
    except Exception:  # noqa: BLE001 - reported by the loads below, with the backend that fails
        pass
    try:
        torch.manual_seed(0)
        hf = AutoModelForCausalLM.from_config(cfg).eval()
        hf.save_pretrained(d)
        AutoConfig.from_pretrained(d)  # the saved tiny config must load back
        build_tiny_tokenizer(d)
    except Exception as e:  # noqa: BLE001
        return "not tried", f"no tiny model from its config class ({type(e).__name__}: {str(e)[:90]})", []
    ids = torch.tensor([[256] + [40 + (7 * i) % 90 for i in range(19)]])
    try:
        with torch.no_grad():
            ref = hf(ids, use_cache=False).logits
    except Exception as e:  # noqa: BLE001
        return "fails", f"transformers' own forward fails on the tiny model ({type(e).__name__}: {str(e)[:110]})", []
    models, quirks = {}, []
    for backend in ("tl", "nnsight"):
        try:
            m = load(str(d), backend=backend, device="cpu")
        except Exception as e:  # noqa: BLE001
            return "fails", f"{backend}: {type(e).__name__}: {str(e)[:140]}", []
        err = float((m.forward(ids).float() - ref).abs().max()) / max(1.0, float(ref.abs().max()))
        if not err < 1e-4:
            return "fails", f"{backend}: logits differ from transformers by {err:.1e}", []
        models[backend] = m
        quirks = list(m.arch.quirks)
    try:
        sites = models["tl"].all_sites()
        _, a = models["tl"].run_with_cache(ids, sites)
        _, b = models["nnsight"].run_with_cache(ids, sites)
        bad = [s.name for s in sites if not float((a[s] - b[s]).abs().max()) / max(1.0, float(b[s].abs().max())) < 1e-4]
    except Exception as e:  # noqa: BLE001
        return "partial", f"logits and self-check pass; sites: {type(e).__name__}: {str(e)[:120]}", quirks
    if bad:
        return "partial", f"logits and self-check pass; backends differ at {', '.join(bad[:4])}", quirks
    return "passes", "", quirks


STATUSES = ("passes", "partial", "fails", "not tried")
ROW = re.compile(r"^\| `(?P<mt>[^`]+)` \| (?P<cls>[^|]+) \| (?P<status>passes|partial|fails|not tried) \| (?P<why>.*) \|$")


def format_row(row: tuple) -> str:
    mt, cls, status, why, quirks = row
    # a reason is one table cell: no pipes or line breaks
    cell = (why or ", ".join(quirks) or "-").replace("|", "/").replace("\n", " ")
    return f"| `{mt}` | {cls} | {status} | {cell} |"


def parse_rows(text: str) -> dict[str, str]:
    """model_type -> status of every row of a table this tool wrote."""
    return {m["mt"]: m["status"] for m in map(ROW.match, text.splitlines()) if m}


def count_rows(rows: list | dict) -> dict[str, int]:
    statuses = list(rows.values()) if isinstance(rows, dict) else [r[2] for r in rows]
    return {s: statuses.count(s) for s in STATUSES}


def counts_line(counts: dict[str, int], missing: list[str]) -> str:
    line = (f"{counts['passes']} pass, {counts['partial']} partly, {counts['fails']} fail, {counts['not tried']} could "
            "not be built from their config class alone")
    return line + (f"; not reached: {', '.join(missing)}." if missing else ".")


def replace_row(text: str, row: tuple, order: list[str]) -> str:
    """``text`` with the row of ``row``'s family replaced, or inserted where ``order`` puts it."""
    lines = text.splitlines()
    new = format_row(row)
    table = [i for i, ln in enumerate(lines) if ROW.match(ln)]
    if not table:
        raise SystemExit("--update: no table rows found in the existing file; run without --update first")
    for i in table:
        if ROW.match(lines[i])["mt"] == row[0]:
            lines[i] = new
            break
    else:
        rank = {mt: k for k, mt in enumerate(order)}
        after = [i for i in table if rank.get(ROW.match(lines[i])["mt"], -1) < rank.get(row[0], len(order))]
        lines.insert((after[-1] + 1) if after else table[0], new)
    return "\n".join(lines) + "\n"


def replace_counts(text: str, order: list[str]) -> str:
    rows = parse_rows(text)
    line = counts_line(count_rows(rows), [mt for mt in order if mt not in rows])
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if re.match(r"^\d+ pass, \d+ partly, ", ln):
            lines[i] = line
            break
    else:
        raise SystemExit("--update: no counts line found in the existing file; run without --update first")
    return "\n".join(lines) + "\n"


def updated_header(header: str, families: list[str]) -> str:
    """The header paragraph with a note of the rows rerun by ``--update`` (one note; the families accumulate)."""
    m = re.search(r" Rows rerun with `--update` \(last on [^)]*\): ([^.]*)\.$", header)
    before = set(m[1].split(", ")) if m else set()
    base = header[:m.start()] if m else header
    return base + (f" Rows rerun with `--update` (last on {time.strftime('%Y-%m-%d')}): "
                   f"{', '.join(sorted(before | set(families)))}.")


def write_update(out: Path, row: tuple) -> None:
    """Replace (or insert) one family's row in the existing table, recount and note the rerun in the header."""
    order = [mt for mt, _ in candidates()]
    text = replace_counts(replace_row(out.read_text(), row, order), order)
    lines = text.splitlines()
    lines[2] = updated_header(lines[2], [row[0]])
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "families.md"))
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per family")
    ap.add_argument("--update", action="store_true",
                    help="replace only the --only families' rows and the counts line in the existing --out table")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # internal: try one family, print JSON
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.one:
        import torch

        torch.set_num_threads(1)
        root = Path(tempfile.mkdtemp(prefix="workbench-family-"))
        try:
            status, why, quirks = try_family(args.one, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print("RESULT " + json.dumps([status, why, quirks]))
        return
    import torch
    import transformer_lens
    import transformers

    torch.set_num_threads(1)
    only = set(filter(None, args.only.split(",")))
    if args.update and not only:
        ap.error("--update needs --only (the families to rerun)")
    unknown = only - {mt for mt, _ in candidates()}
    if unknown:
        ap.error(f"not a surveyed family: {', '.join(sorted(unknown))} (model_type names, as in the table)")
    rows = []
    root = Path(tempfile.mkdtemp(prefix="workbench-families-"))
    t0 = time.time()
    try:
        for mt, cls in candidates():
            if only and mt not in only:
                continue
            env = {**os.environ, "PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error"}
            try:
                proc = subprocess.run([sys.executable, __file__, "--one", mt], capture_output=True, text=True,
                                      timeout=args.timeout, env=env)
                res = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if res:
                    status, why, quirks = json.loads(res[-1][len("RESULT "):])
                else:
                    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    status, why, quirks = "fails", f"the process died (exit {proc.returncode}): {tail[:140]}", []
            except subprocess.TimeoutExpired:
                status, why, quirks = "fails", f"no result within {args.timeout:.0f} s", []
            rows.append((mt, cls, status, why, quirks))
            print(f"{mt:<22} {status:<9} {why or ', '.join(quirks)}", flush=True)
            if args.update:  # row by row, so an interrupted run keeps what it measured
                write_update(Path(args.out), rows[-1])
            shutil.rmtree(root / mt, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    header = (
        f"Written by `python tools/family_matrix.py` on {time.strftime('%Y-%m-%d')} (transformers "
        f"{transformers.__version__}, TransformerLens {transformer_lens.__version__ if hasattr(transformer_lens, '__version__') else '4.3'}"
        f"; {time.time() - t0:.0f} s). Every decoder-only architecture TransformerLens has an adapter for and transformers "
        "ships, as a tiny random model from transformers' own config class: *passes* = both backends load it (the "
        "load-time self-check compares cached decoding and the stack runner with an uncached forward), logits equal "
        "plain transformers within 1e-4 and every canonical site agrees across the backends within 1e-4."
    )
    out = Path(args.out)
    if args.update:
        counts = count_rows(parse_rows(out.read_text()))
    else:
        counts = count_rows(rows)
        lines = ["# Model families", "", header, "", counts_line(counts, []), "",
                 "| model_type | class | status | quirks handled / why not |", "|---|---|---|---|"]
        lines += [format_row(r) for r in rows]
        out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}: {counts}")


if __name__ == "__main__":
    main()
