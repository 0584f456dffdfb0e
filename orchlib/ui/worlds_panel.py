"""Pick the ranges of the random-worlds study (figure 11), press Run, see where learning pays.

The science is in plain functions that tests call directly:

* :func:`default_values` and :func:`study_from_values` -- what the controls say, as a validated
  :class:`orchlib.study.worlds.WorldStudy` (a bad range names its field);
* :func:`run_and_analyse` -- the study (cached in a folder) and its analysis;
* :func:`figure_of` -- figure 11 of an analysis.

:class:`WorldsPanel` lays the controls out with ipywidgets 8 (range sliders with ``continuous_update=False``,
lists of device classes and traces) and calls those functions only when Run is pressed; moving a control marks
the shown result stale. The worlds are the project's reconstruction (``docs/assumptions.md`` W1-W10).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from orchlib.study import plots, worlds
from orchlib.ui.widgets import RunPanel, png_outputs

#: range controls: (WorldRanges field, label, lowest, highest, step); integer ranges have step 1.
_RANGE_CONTROLS: tuple[tuple[str, str, float, float, float], ...] = (
    ("n_users", "users", 1, 32, 1),
    ("n_device_classes", "device classes per fleet", 1, 5, 1),
    ("uplink_mbps", "median uplink (Mbit/s)", 0.1, 100.0, 0.1),
    ("rtt_ms", "access RTT (ms)", 0.0, 200.0, 1.0),
    ("thermal_max_slowdown", "thermal slowdown (x)", 1.0, 4.0, 0.05),
    ("background_slowdown", "background slowdown (x)", 1.0, 4.0, 0.05),
    ("background_busy_share", "background busy share", 0.0, 0.95, 0.01),
    ("cotenant_busy_share", "co-tenant busy share", 0.0, 0.95, 0.01),
    ("n_requirement_classes", "requirement classes", 1, 7, 1),
)
#: size controls: (WorldStudy field, label, lowest, highest).
_SIZE_CONTROLS: tuple[tuple[str, str, int, int], ...] = (
    ("n_worlds", "worlds", 2, 200),
    ("n_replicates", "runs per world", 1, 5),
    ("n_requests", "requests per run", 100, 5000),
)


def default_values(quick: bool = False) -> dict[str, Any]:
    """The controls' values of the study of ``make reproduce`` (``quick``: its quick variant)."""
    study = worlds.QUICK_STUDY if quick else worlds.FULL_STUDY
    values = dataclasses.asdict(study.ranges)
    values.update(n_worlds=study.n_worlds, n_replicates=study.n_replicates, n_requests=study.n_requests)
    return values


def study_from_values(values: Mapping[str, Any], seed: int = worlds.FULL_STUDY.seed) -> worlds.WorldStudy:
    """The study the controls describe (``values``: :class:`~orchlib.study.worlds.WorldRanges` fields and
    ``n_worlds``, ``n_replicates``, ``n_requests``; lists are read as tuples).

    Raises:
        ValueError: an unknown key, or a value the study refuses (the message names the field).
    """
    range_fields = {f.name for f in dataclasses.fields(worlds.WorldRanges)}
    sizes = {"n_worlds", "n_replicates", "n_requests"}
    unknown = sorted(set(values) - range_fields - sizes)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid: {sorted(range_fields | sizes)}")
    plain = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in values.items()}
    ranges = worlds.WorldRanges(**{k: v for k, v in plain.items() if k in range_fields})
    return worlds.WorldStudy(ranges=ranges, seed=seed, **{k: v for k, v in plain.items() if k in sizes})


def run_and_analyse(
    study: worlds.WorldStudy, out_dir: str | os.PathLike[str], n_jobs: int | None = 1, progress: bool = False
) -> worlds.WorldAnalysis:
    """Run the study (cached in ``out_dir``) and analyse it."""
    return worlds.analyse(worlds.run_world_study(study, out_dir, n_jobs=n_jobs, progress=progress))


def figure_of(analysis: worlds.WorldAnalysis) -> Figure:
    """Figure 11 of an analysis."""
    return plots.plot_random_worlds(analysis.table, analysis.comparison, analysis.feature, analysis.reference)


class WorldsPanel(RunPanel):
    """ipywidgets controls for the study's ranges and size, a Run button, a status line and an output.

    Args:
        values: the controls' initial values (default :func:`default_values`).
        out_dir: folder the runs are cached in.
        n_jobs: parallel processes of a run.

    Attributes:
        widget: the laid-out ``ipywidgets.VBox``.
        analysis: the last run's :class:`~orchlib.study.worlds.WorldAnalysis` (None before the first).
        shown_values: the values of the figure in the output (None before the first run).
    """

    def __init__(
        self,
        values: Mapping[str, Any] | None = None,
        out_dir: str | os.PathLike[str] = "results/runs",
        n_jobs: int | None = 1,
    ) -> None:
        base = dict(default_values() if values is None else values)
        study_from_values(base)  # refuse bad initial values here, with the field named
        self.out_dir, self.n_jobs = Path(out_dir), n_jobs
        style, layout = {"description_width": "180px"}, widgets.Layout(width="480px")
        self.controls: dict[str, widgets.ValueWidget] = {}
        for name, label, low, high, step in _RANGE_CONTROLS:
            lo, hi = base[name]
            kind = widgets.IntRangeSlider if step == 1 and isinstance(lo, int) else widgets.FloatRangeSlider
            self.controls[name] = kind(
                value=(lo, hi),
                min=min(low, lo),
                max=max(high, hi),
                step=step,
                description=label,
                continuous_update=False,
                style=style,
                layout=layout,
            )
        for name, label in (("device_classes", "device classes"), ("traces", "network traces")):
            options = tuple(dict.fromkeys((*getattr(worlds.WorldRanges(), name), *base[name])))
            self.controls[name] = widgets.SelectMultiple(
                options=options,
                value=tuple(base[name]),
                rows=6,
                description=label,
                style=style,
                layout=layout,
            )
        self.controls["tolerances_pp"] = widgets.SelectMultiple(
            options=tuple(sorted({*worlds.WorldRanges().tolerances_pp, *base["tolerances_pp"]})),
            value=tuple(base["tolerances_pp"]),
            rows=7,
            description="tolerances (pp)",
            style=style,
            layout=layout,
        )
        for name, label, low, high in _SIZE_CONTROLS:
            self.controls[name] = widgets.IntSlider(
                value=base[name],
                min=min(low, base[name]),
                max=max(high, base[name]),
                description=label,
                continuous_update=False,
                style=style,
                layout=layout,
            )
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.status = widgets.Label(value="no result yet: press Run")
        self.output = widgets.Output(layout=widgets.Layout(height="640px", overflow="auto"))
        names = list(self.controls)
        half = len(names) // 2
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [
                        widgets.VBox([self.controls[n] for n in names[:half]]),
                        widgets.VBox([self.controls[n] for n in names[half:]]),
                    ]
                ),
                widgets.HBox([self.run_button, self.status]),
                self.output,
            ]
        )
        self.analysis: worlds.WorldAnalysis | None = None
        self.shown_values: dict[str, Any] | None = None
        for control in self.controls.values():
            control.observe(self._on_control, names="value")
        self.run_button.on_click(self._on_run_clicked)

    def values(self) -> dict[str, Any]:
        """The values the controls show now."""
        return {name: control.value for name, control in self.controls.items()}

    def run(self) -> worlds.WorldAnalysis:
        """Run the study the controls describe, redraw the output, and return the analysis.

        Raises:
            ValueError: invalid settings (the status line shows the message too).
        """
        self.status.value = "running…"
        try:
            values = self.values()
            analysis = run_and_analyse(study_from_values(values), self.out_dir, self.n_jobs)
            fig = figure_of(analysis)
        except Exception as exc:
            self.status.value = f"error: {exc}"
            raise
        self.output.outputs = png_outputs(fig, "<figure 11: where learning pays>")
        self.analysis, self.shown_values = analysis, values
        wins = analysis.comparison[analysis.comparison["learner"] == "best learner"]["beats_best_fixed"]
        self.status.value = (
            f"fresh: {analysis.table['world'].nunique()} worlds; the best learner beats the best fixed rule in "
            f"{int(wins.sum())} of them"
        )
        return analysis

    def _on_control(self, change: Mapping[str, Any]) -> None:
        if self.shown_values is not None and self.values() != self.shown_values:
            self.status.value = "stale: settings changed since the figure was drawn; press Run"
