"""The upsampler zoo: one module per operator, each registering itself with upbench.

Installed as the import package ``upbench_operators`` (the PyPI name ``operators`` belongs to an
unrelated project). ``upbench.registry`` imports this package on the first registry lookup, and
importing it imports every public module in this folder (names not starting with ``_``), so a new
built-in is one new file ``operators/<name>.py`` decorated with ``@register_operator``.
Private helpers shared by several operators live in ``_*.py`` modules.
"""

from __future__ import annotations

import importlib
import pkgutil

BUILTIN_MODULES: tuple[str, ...] = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
)

for _name in BUILTIN_MODULES:
    importlib.import_module(f"{__name__}.{_name}")
