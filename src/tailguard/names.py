"""The one rule for names that end up in paths, URLs and metric labels.

Deployments, artifact names and versions, and tenant ids: 1-128 characters of letters, digits,
``_``, ``.`` and ``-``, starting with a letter or digit (so never ``..`` or a hidden file).
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
