"""Home Assistant MQTT discovery payloads for one edge-sdk device.

Home Assistant (with its MQTT integration) creates entities from retained JSON configs published
under ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``. We announce two sensors on
the device's prediction topic:

* ``label``: state is the top label's name; attributes are ``{"scores": {label: score, ...},
  "model": ..., "frame": ...}`` from the same message.
* ``score``: the top label's score in percent (a measurement, so Home Assistant keeps history).

Both are tied to the retained status topic (``online`` / ``offline``), so they show as unavailable
when the device is stopped or its connection dies (last will). Keys are those of Home Assistant's
MQTT sensor and its shared ``device`` / ``origin`` blocks (https://www.home-assistant.io/integrations/sensor.mqtt/).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from edge_sdk import __version__

#: Status payloads on `{prefix}/{device_id}/status`.
ONLINE = "online"
OFFLINE = "offline"

#: Home Assistant's default discovery prefix.
DEFAULT_DISCOVERY_PREFIX = "homeassistant"

# Jinja, evaluated by Home Assistant on each prediction message. `top` may be empty when a score
# threshold filtered every class out: the label is then "none" (an answer: nothing above the
# threshold), the score "None", which Home Assistant's MQTT sensor turns into unknown (a score
# of 0 would draw a false drop in its history).
LABEL_TEMPLATE = "{{ value_json.top[0].label if value_json.top else 'none' }}"
SCORE_TEMPLATE = "{{ (value_json.top[0].score * 100) | round(1) if value_json.top else None }}"
# Two classes may share a name (ImageNet has two "crane" and two "maillot"): the second keeps
# its score under "name #index" instead of overwriting the first's.
ATTRIBUTES_TEMPLATE = (
    "{% set ns = namespace(scores={}) %}"
    "{% for t in value_json.top %}"
    "{% set key = t.label if t.label not in ns.scores else t.label ~ ' #' ~ t.index %}"
    "{% set ns.scores = dict(ns.scores, **{key: t.score}) %}"
    "{% endfor %}"
    "{{ {'scores': ns.scores, 'model': value_json.model, 'frame': value_json.frame} | tojson }}"
)

_NODE_ID = re.compile(r"[^a-zA-Z0-9_-]")
#: The topic prefix that leaves node ids as they are (the sink's default).
DEFAULT_PREFIX = "edge-sdk"


def node_id(device_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the device's id in discovery topics and unique ids: [a-zA-Z0-9_-] only, and
    distinct for distinct devices.

    An id that is already of those characters, under the default prefix, is used as it is.
    Otherwise the characters Home Assistant refuses become "_" and a short hash of prefix and
    id follows, so "cam 1", "cam.1" and "cam_1", or two non-Latin names of one length, or one
    id under two prefixes, do not overwrite each other's entities.
    """
    node = _NODE_ID.sub("_", device_id)
    if node == device_id and prefix == DEFAULT_PREFIX:
        return node
    digest = hashlib.sha256(f"{prefix}/{device_id}".encode()).hexdigest()[:8]
    return f"{node}_{digest}"


@dataclass(frozen=True)
class DiscoveryMessage:
    """One retained discovery config: where it goes and what it says."""

    topic: str
    payload: dict[str, Any]

    def encode(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":"), sort_keys=True).encode()


def discovery_messages(
    *,
    device_id: str,
    prediction_topic: str,
    status_topic: str,
    model: str = "",
    qos: int = 1,
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
    prefix: str = DEFAULT_PREFIX,
) -> list[DiscoveryMessage]:
    """Build the retained discovery configs of one device.

    Args:
        device_id: The device's id (also its Home Assistant device identifier).
        prediction_topic: Where predictions are published (JSON, `Prediction.to_dict()`).
        status_topic: The retained `online` / `offline` topic.
        model: Model name, shown as the device's model.
        qos: QoS Home Assistant subscribes with.
        discovery_prefix: Home Assistant's discovery prefix.
        prefix: The device's own topic prefix (part of its node id when not the default).

    Returns:
        The messages, each to be published retained.
    """
    node = node_id(device_id, prefix)
    device = {
        "identifiers": [f"edge-sdk-{node}"],
        "name": f"edge-sdk {device_id}",
        "manufacturer": "edge-sdk",
        "model": model or "image classifier",
        "sw_version": __version__,
    }
    origin = {"name": "edge-sdk", "sw_version": __version__}
    common = {
        "state_topic": prediction_topic,
        "availability_topic": status_topic,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": qos,
        "device": device,
        "origin": origin,
    }
    label = {
        **common,
        "name": "Label",
        "unique_id": f"edge-sdk-{node}-label",
        "icon": "mdi:image-search",
        "value_template": LABEL_TEMPLATE,
        "json_attributes_topic": prediction_topic,
        "json_attributes_template": ATTRIBUTES_TEMPLATE,
    }
    score = {
        **common,
        "name": "Score",
        "unique_id": f"edge-sdk-{node}-score",
        "icon": "mdi:percent",
        "value_template": SCORE_TEMPLATE,
        "unit_of_measurement": "%",
        "state_class": "measurement",
        "suggested_display_precision": 1,
    }
    return [
        DiscoveryMessage(f"{discovery_prefix}/sensor/{node}/label/config", label),
        DiscoveryMessage(f"{discovery_prefix}/sensor/{node}/score/config", score),
    ]
