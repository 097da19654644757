"""``check_public_api.py`` is type-checked by mypy (``mypy --strict tests/typing``), never run."""

collect_ignore_glob = ["check_*.py"]
