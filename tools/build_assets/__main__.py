"""``python -m tools.build_assets``: see :mod:`tools.build_assets`."""

from tools.build_assets.cli import main

raise SystemExit(main())
