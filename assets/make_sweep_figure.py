"""Draws the README's sweep pictures from a finished sweep folder: ``assets/sweep_cue_success.png``
(success by delay × hidden size over seeds) and ``assets/sweep_cue_probes.png`` (how well the cue can
be read from the hidden state, by steps since reset, per hidden size, at the longest delay).

    python -m workbench sweep --env workbench/CueMemory-v0 --grid hidden_size=2,4,8,16 \\
        --grid delay=4,8,16,32 --seeds 2 --out sweeps/cue
    python assets/make_sweep_figure.py sweeps/cue

An existing picture is replaced only with ``--overwrite``. Needs plotly, kaleido and Chromium.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.figures.sweep import sweep_heatmap, sweep_probe_figure
from workbench.sweep import latest_records, load_records

HERE = Path(__file__).resolve().parent
PICTURES = {"success": HERE / "sweep_cue_success.png", "probes": HERE / "sweep_cue_probes.png"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="a folder written by `python -m workbench sweep` on the cue task")
    parser.add_argument("--overwrite", action="store_true", help="replace the pictures if they exist")
    args = parser.parse_args(argv)
    taken = [str(p) for p in PICTURES.values() if p.exists()]
    if taken and not args.overwrite:
        print(f"make_sweep_figure: error: {', '.join(taken)} exist(s); pass --overwrite to replace", file=sys.stderr)
        return 2
    records = latest_records(load_records(args.sweep))
    if not records:
        print(f"make_sweep_figure: error: sweep: no finished trials in {args.sweep!r}", file=sys.stderr)
        return 2
    delays = sorted({r["params"].get("delay") for r in records if r["params"].get("delay") is not None})
    heat = sweep_heatmap(records, x="delay", y="hidden_size", metric="success", width=640, height=420,
                         title="Cue task: greedy success by delay × hidden size (mean ± sd over seeds)")
    probes = sweep_probe_figure(records, state="cue", by="hidden_size", where={"delay": delays[-1]},
                                width=640, height=420,
                                title=f"Cue R² from the hidden state by steps since reset (delay {delays[-1]})")
    for fig, path in ((heat, PICTURES["success"]), (probes, PICTURES["probes"])):
        fig.write_image(path, scale=1)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
