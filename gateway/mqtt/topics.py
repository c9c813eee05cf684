"""The topic layout both sides of the gateway keep: `<prefix>/v1/...`.

<prefix>/v1/<vehicle_id>/<kind>              units publish, the bus driver reads
<prefix>/v1/vehicles/<id>/status             the gateway publishes, retained
<prefix>/v1/alerts/<kind>/<asset>            the gateway publishes
"""

from __future__ import annotations

import re
from typing import Final

VERSION: Final = "v1"
DEFAULT_PREFIX: Final = "pmpml"
STATUS_LEVEL: Final = "vehicles"  # reserved: never a vehicle id

_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"topic prefix {prefix!r} must be MQTT levels of letters, digits, '_', '-', '.', "
            "with no wildcards, e.g. 'pmpml' or 'city/pmpml'"
        )
    return prefix


def status_topic(vehicle: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/{VERSION}/{STATUS_LEVEL}/{vehicle}/status"
