"""Regenerates ``assets/hidden_states.png``, the README's picture.

A random-action CartPole rollout (episodes end and restart inside it) is
replayed through ``workbench.GRUModule`` in recurrent mode twice: once with
``is_init`` (memory restarts at each episode) and once with ``is_init``
removed (memory leaks across episodes). Needs plotly, kaleido and Chromium.

    python assets/make_readme_figure.py
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torchrl.envs import GymEnv, InitTracker, TransformedEnv

from workbench import GRUModule, set_recurrent_mode

OUT = Path(__file__).with_name("hidden_states.png")


def main(steps: int = 160, hidden: int = 16, seed: int = 3) -> Path:
    torch.manual_seed(seed)
    env = TransformedEnv(GymEnv("CartPole-v1"), InitTracker())
    env.set_seed(seed)
    traj = env.rollout(steps, break_when_any_done=False)
    module = GRUModule(4, hidden, in_key="observation", out_key="features", hidden_trace_key="trace")
    with torch.no_grad(), set_recurrent_mode(True):
        kept = module(traj.clone())["trace"][:, 0]
        leaky = traj.clone()
        leaky["is_init"] = torch.zeros_like(leaky["is_init"])
        leaked = module(leaky)["trace"][:, 0]
    resets = traj["is_init"].squeeze(-1).nonzero().flatten().tolist()[1:]
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
        subplot_titles=("with is_init: memory restarts at every episode", "is_init removed: memory leaks across episodes"),
    )
    for row, trace in ((1, kept), (2, leaked)):
        fig.add_trace(
            go.Heatmap(z=trace.T.numpy(), colorscale="RdBu", zmid=0, zmin=-1, zmax=1, showscale=row == 1,
                       colorbar=dict(title="h"), hovertemplate="step %{x}<br>unit %{y}<br>h %{z:.3f}<extra></extra>"),
            row=row, col=1,
        )
        for t in resets:
            fig.add_vline(x=t - 0.5, line=dict(color="black", width=2, dash="dot"), row=row, col=1)
        fig.update_yaxes(title_text="hidden unit", row=row, col=1)
    fig.update_xaxes(title_text="step (dotted lines: episode resets)", row=2, col=1)
    fig.update_layout(title="GRU hidden states over a CartPole rollout (workbench.GRUModule)", width=1000, height=560,
                      margin=dict(l=70, r=30, t=90, b=60))
    fig.write_image(OUT, scale=1)
    return OUT


if __name__ == "__main__":
    print(main())
