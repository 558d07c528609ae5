"""Collection: a module of an optional extra that is not installed is not imported for its doctests."""

from __future__ import annotations

import importlib.util


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules as None: blocked
        return False


collect_ignore = [path for path, module in (("textgym/integrations/openenv.py", "openenv"),
                                            ("textgym/integrations/skyrl.py", "skyrl_gym")) if not _installed(module)]
