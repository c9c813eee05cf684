"""MQTT topic names: `<prefix>/v1/<vehicle_id>/<kind>`, what units publish.

    pmpml/v1/MH12-KQ-4321/pvt        position, velocity, time (JSON)
    pmpml/v1/MH12-KQ-4321/can        decoded J1939 signals or raw frames (JSON)
    pmpml/v1/MH12-KQ-4321/dtc        DM1 active faults (JSON, decoded or raw frames)
    pmpml/v1/MH12-KQ-4321/alert      panic button, tamper, power cut (JSON)
    pmpml/v1/MH12-KQ-4321/health     the unit's own battery, signal, firmware (JSON)
    pmpml/v1/MH12-KQ-4321/ais140     raw AIS-140 ASCII packets

The vehicle id is the topic level the broker's ACLs can pin to a unit's
credentials (`pattern read/write pmpml/v1/%u/#`), so it is the trusted one; a
payload naming another vehicle is rejected as spoofed.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final, Literal, get_args

from gateway.mqtt.topics import DEFAULT_PREFIX, STATUS_LEVEL, VERSION

Kind = Literal["pvt", "can", "dtc", "alert", "health", "ais140"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)

# the same alphabet as a stream name level, so `bus/<id>/<quantity>` is always valid
_VEHICLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")


class TopicError(ValueError):
    """A topic that is not `<prefix>/v1/<vehicle_id>/<kind>`; `reason` is a reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Topic:
    prefix: str
    vehicle: str
    kind: Kind


def is_vehicle_id(text: str) -> bool:
    return text != STATUS_LEVEL and _VEHICLE.match(text) is not None


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> Topic:
    """Split a data topic; raise TopicError (reason `bad_topic`) for anything else."""
    head = f"{prefix}/{VERSION}/"
    if not topic.startswith(head):
        raise TopicError("bad_topic", f"topic {topic!r} does not start with {head!r}")
    rest = topic[len(head) :].split("/")
    if len(rest) != 2:
        raise TopicError("bad_topic", f"topic {topic!r} is not {head}<vehicle_id>/<kind>")
    vehicle, kind = rest
    if not is_vehicle_id(vehicle):
        raise TopicError("bad_topic", f"vehicle id {vehicle!r} in {topic!r} is not valid")
    if kind not in KINDS:
        raise TopicError("bad_topic", f"kind {kind!r} in {topic!r} is not one of {KINDS}")
    return Topic(prefix, vehicle, kind)  # type: ignore[arg-type]  # checked just above


def data_topic(vehicle: str, kind: Kind, prefix: str = DEFAULT_PREFIX) -> str:
    if not is_vehicle_id(vehicle):
        raise ValueError(f"vehicle id {vehicle!r} is not valid")
    return f"{prefix}/{VERSION}/{vehicle}/{kind}"


def subscription(prefix: str = DEFAULT_PREFIX, share_group: str = "") -> str:
    """The filter for every unit's data topics, shared across a group when one is named.

    `+/+` matches `<vehicle>/<kind>` but not the four-level status topics we publish."""
    base = f"{prefix}/{VERSION}/+/+"
    return f"$share/{share_group}/{base}" if share_group else base
