"""What survives a restart: one JSON record per service (``records``) and the port ledger (``ports``).

Both are written atomically, read defensively (a damaged file fails its service alone), and
stdlib-only, because the launcher and the healthcheck import them and must start fast.
"""
