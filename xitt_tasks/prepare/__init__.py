"""Prepare a real data root (local or gs://) from the official releases, and check any data root
against the official sizes: `python -m xitt_tasks.prepare [--check] --data_dir DIR`.

Modules: units (what the registered tasks read), counts (official example counts, with
sources), check (the --check table), releases (official URLs, archive members, quirks, manual
steps), download (retrying downloads with progress), convert (unpack and convert), lock (the
checksum lock file), pipeline (the prepare run), guard (a full study refuses the sample).
"""
