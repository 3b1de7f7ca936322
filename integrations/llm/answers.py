"""Reading structured answers out of model text."""

import json
import re
from typing import Any

_JSON_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_json_answer(text: str) -> Any:
    """The JSON in a model's answer, tolerating a Markdown code fence around it; ValueError if none."""
    fenced = _JSON_FENCE.match(text)
    return json.loads(fenced.group(1) if fenced else text)
