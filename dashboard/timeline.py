"""The Call page's timeline: who talked when, the silences, how the caller felt, and when the
rules fired, on one time axis.

A pure function of the call detail (``GET /v1/calls/{id}``) and its events (``GET
/v1/calls/{id}/events``) to an Altair chart, so it is tested without Streamlit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd

SPEAKER_COLORS = {"agent": "#1c83e1", "customer": "#803df5", "mixed": "#7f7f7f"}
SEVERITY_COLORS = {"critical": "#e0262b", "warning": "#ff8700", "info": "#1c83e1"}
LINE_COLORS = {"anger index": "#e0262b", "valence": "#21a35a"}
SILENCE_COLOR = "#b8b8b8"
WIDTH = "container"
# Streamlit's default autosize "fit" shrinks a chart to its (content-sized) element's height
FIT_X = alt.AutoSizeParams(type="fit-x", contains="padding")
Y_AXIS_PX = 56  # both panels' y axes take this room, so their time axes line up


@dataclass
class TimelineData:
    """The chart's tables, one per layer (kept apart so tests can check them)."""

    talk: pd.DataFrame  # speaker, t, t_end, text
    silences: pd.DataFrame  # t, t_end, duration
    mood: pd.DataFrame  # t, series ("anger index" | "valence"), value, label
    hits: pd.DataFrame  # t, rule_id, severity, message, audience
    duration: float


def _num(v: Any, default: float = 0.0) -> float:
    return float(v) if isinstance(v, int | float) else default


def timeline_data(
    detail: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = (), speaker: str = "customer"
) -> TimelineData:
    """The layers' rows: transcript lines as talk, silence events, ``speaker``'s emotion
    readings (anger index and valence), and alerts as rule hits."""
    evs = list(events)
    talk = pd.DataFrame(
        [
            {
                "speaker": str(line.get("speaker") or "?"),
                "t": _num(line.get("t")),
                "t_end": max(_num(line.get("t_end")), _num(line.get("t")) + 0.1),
                "text": str(line.get("text") or "")[:160],
            }
            for line in detail.get("transcript") or []
        ],
        columns=["speaker", "t", "t_end", "text"],
    )
    silence_rows = list(detail.get("silences") or []) or [
        e for e in evs if e.get("type") == "silence"
    ]
    silences = pd.DataFrame(
        [
            {
                "t": _num(s.get("t")),
                "t_end": _num(s.get("t_end"), _num(s.get("t")) + _num(s.get("duration"))),
                "duration": round(_num(s.get("duration")), 1),
            }
            for s in silence_rows
        ],
        columns=["t", "t_end", "duration"],
    )
    mood_rows: list[dict[str, Any]] = []
    for e in evs:
        if e.get("type", "emotion") != "emotion" or e.get("speaker") != speaker:
            continue
        t = _num(e.get("t_end"), _num(e.get("t")))
        label = str(e.get("label") or "")
        if isinstance(e.get("anger_index"), int | float):
            mood_rows.append(
                {"t": t, "series": "anger index", "value": e["anger_index"], "label": label}
            )
        if isinstance(e.get("valence"), int | float):
            mood_rows.append({"t": t, "series": "valence", "value": e["valence"], "label": label})
    mood = pd.DataFrame(mood_rows, columns=["t", "series", "value", "label"]).sort_values("t")
    alert_rows = list(detail.get("alerts") or []) or [e for e in evs if e.get("type") == "alert"]
    hits = pd.DataFrame(
        [
            {
                "t": _num(a.get("t")),
                "rule_id": str(a.get("rule_id") or ""),
                "severity": str(a.get("severity") or "info"),
                "message": str(a.get("message") or ""),
                "audience": str(a.get("audience") or ""),
            }
            for a in alert_rows
        ],
        columns=["t", "rule_id", "severity", "message", "audience"],
    )
    ends = [_num(detail.get("duration_s"))]
    ends += [float(x) for df in (talk, silences) for x in df.get("t_end", pd.Series(dtype=float))]
    ends += [float(x) for df in (mood, hits) for x in df.get("t", pd.Series(dtype=float))]
    return TimelineData(talk, silences, mood, hits, max([*ends, 1.0]))


def timeline_panels(
    detail: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]] = (),
    t_mark: float | None = None,
    speaker: str = "customer",
) -> tuple[alt.LayerChart, alt.LayerChart]:
    """Two panels on the same time axis, each as wide as its container: talk lanes per
    speaker over grey silence bands, and ``speaker``'s anger index and valence with the rule
    hits as marked rules and points (tooltips: rule id and message). ``t_mark`` draws the
    moment the page was opened at."""
    data = timeline_data(detail, events, speaker)
    x_scale = alt.Scale(domain=[0, data.duration], nice=False)
    x = alt.X("t:Q", title="call time (s)", scale=x_scale)
    speakers = sorted(set(data.talk["speaker"]) | {"agent", "customer"})
    color = alt.Scale(domain=speakers, range=[SPEAKER_COLORS.get(s, "#7f7f7f") for s in speakers])

    def silence_band(y_title: str | None = None) -> alt.Chart:
        return (
            alt.Chart(data.silences)
            .mark_rect(color=SILENCE_COLOR, opacity=0.35)
            .encode(
                x=x,
                x2="t_end:Q",
                tooltip=[
                    alt.Tooltip("t:Q", title="silence from (s)", format=".1f"),
                    alt.Tooltip("duration:Q", title="seconds"),
                ],
            )
        )

    def hit_rules(legend: bool) -> alt.Chart:
        return (
            alt.Chart(data.hits)
            .mark_rule(strokeWidth=2, strokeDash=[4, 2])
            .encode(
                x=x,
                color=alt.Color(
                    "severity:N",
                    scale=alt.Scale(
                        domain=list(SEVERITY_COLORS), range=list(SEVERITY_COLORS.values())
                    ),
                    legend=alt.Legend(title="rule hits", orient="bottom") if legend else None,
                ),
                tooltip=["rule_id:N", "message:N", "severity:N", alt.Tooltip("t:Q", format=".1f")],
            )
        )

    mark = pd.DataFrame({"t": [t_mark] if t_mark is not None else []}, columns=["t"])
    marker = alt.Chart(mark).mark_rule(color="#262730", strokeWidth=2).encode(x=x)

    talk = (
        alt.Chart(data.talk)
        .mark_bar(height=16, cornerRadius=3)
        .encode(
            x=x,
            x2="t_end:Q",
            y=alt.Y(
                "speaker:N",
                title="talk",
                sort=speakers,
                scale=alt.Scale(domain=speakers),
                axis=alt.Axis(minExtent=Y_AXIS_PX, maxExtent=Y_AXIS_PX),
            ),
            color=alt.Color("speaker:N", scale=color, legend=None),  # the lanes are labelled
            tooltip=["speaker:N", alt.Tooltip("t:Q", format=".1f"), "text:N"],
        )
    )
    lanes = (
        alt.layer(silence_band(), talk, hit_rules(False), marker)
        .resolve_scale(color="independent")
        .properties(width=WIDTH, height=90, title="Talk and silence", autosize=FIT_X)
    )

    lines = (
        alt.Chart(data.mood)
        .mark_line(point=True, interpolate="monotone")
        .encode(
            x=x,
            y=alt.Y(
                "value:Q",
                title=f"{speaker} mood",
                scale=alt.Scale(domain=[-1, 1]),
                axis=alt.Axis(minExtent=Y_AXIS_PX, maxExtent=Y_AXIS_PX),
            ),
            color=alt.Color(
                "series:N",
                scale=alt.Scale(domain=list(LINE_COLORS), range=list(LINE_COLORS.values())),
                legend=alt.Legend(title="caller", orient="bottom"),
            ),
            tooltip=[
                "series:N",
                alt.Tooltip("value:Q", format=".2f"),
                "label:N",
                alt.Tooltip("t:Q", format=".1f"),
            ],
        )
    )
    points = (
        alt.Chart(data.hits)
        .mark_point(shape="triangle-down", size=140, filled=True, yOffset=0)
        .encode(
            x=x,
            y=alt.datum(1.0),
            color=alt.Color(
                "severity:N",
                scale=alt.Scale(domain=list(SEVERITY_COLORS), range=list(SEVERITY_COLORS.values())),
                legend=None,
            ),
            tooltip=["rule_id:N", "message:N", "severity:N", alt.Tooltip("t:Q", format=".1f")],
        )
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#d0d0d0").encode(y="y:Q")
    mood_panel = (
        alt.layer(silence_band(), zero, lines, hit_rules(True), points, marker)
        .resolve_scale(color="independent")
        .properties(width=WIDTH, height=170, title="Caller mood and rule hits", autosize=FIT_X)
    )
    return lanes, mood_panel


def timeline_chart(
    detail: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]] = (),
    t_mark: float | None = None,
    speaker: str = "customer",
    width: int = 900,
) -> alt.VConcatChart:
    """Both panels stacked as one chart of a fixed ``width`` (Vega-Lite cannot stretch a
    concatenation to its container; the Call page draws the panels one under the other)."""
    panels = []
    for panel in timeline_panels(detail, events, t_mark, speaker):
        sized = panel.properties(width=width)
        sized.autosize = alt.Undefined  # only a top-level chart may say how it is sized
        panels.append(sized)
    return (
        alt.vconcat(*panels, spacing=8)
        .resolve_scale(x="shared", color="independent")
        .configure_view(stroke=None)
    )
