"""Build hook: put the pure parts of the checkout's ``btfd`` package into the wheel.

They live once, in ``../../btfd``; the daemon's distribution ships everything else of that
package (its pyproject excludes exactly these). An editable install gets none of them: its
``.pth`` puts the checkout's root on ``sys.path`` (``dev-mode-dirs``), where the whole package
is, so the dev venv's ``btfd`` is one directory, the checkout's.
"""

from __future__ import annotations

import os
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: What an agent needs of the btfd package: the BTF library, the fd path, the gRPC client and
#: its generated stubs, the socket paths. Kept equal to the daemon's exclude list by a test.
SHIPPED = ("__init__.py", "py.typed", "paths.py", "retry.py", "source.py", "shared.py", "fdproto.py",
           "client.py", "btf", "v1")


class ClientFiles(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        src = os.path.normpath(os.path.join(self.root, "..", "..", "btfd"))
        for name in SHIPPED:
            build_data["force_include"][os.path.join(src, name)] = f"btfd/{name}"
