"""The timeline: actions dom0 takes on guests at given simulated times, one model per `action`.

When each action may happen (while its domain exists, before the run ends) is a cross-field
rule, checked in `rules`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictStr

from framework.scenario.fields import Duration, ScenarioModel, devtree_text, non_empty

__all__ = [
    "TIMELINE_MODELS",
    "ConsoleInputAction",
    "DestroyAction",
    "TimelineAction",
]


class ConsoleInputAction(ScenarioModel):
    """Characters typed on a guest's console (`xm console`), delivered into its input ring."""

    action: Literal["console_input"] = Field("console_input", description="`console_input`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain that receives the text")
    text: Annotated[StrictStr, non_empty("text"), devtree_text("text")] = Field(
        description="the characters typed, ASCII without NUL (bytes of the console ring)"
    )


class DestroyAction(ScenarioModel):
    """`xm destroy`: dom0 pauses the guest, unplugs its devices (the backends finish what
    the disks hold and unmap every grant), then destroys it and frees its memory."""

    action: Literal["destroy"] = Field("destroy", description="`destroy`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain to destroy")


# `save`, `restore`, `pause` ... join this union later.
TimelineAction = Annotated[ConsoleInputAction | DestroyAction, Field(discriminator="action")]
TIMELINE_MODELS: dict[str, type[ScenarioModel]] = {
    "console_input": ConsoleInputAction,
    "destroy": DestroyAction,
}
