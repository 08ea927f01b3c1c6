"""Where a service's code comes from and how it is made runnable.

``classify`` (fetch options, which kind a ``repo`` is, pure), ``fetch`` (archives over HTTP,
GitHub, local folders; stage, swap in, roll back), ``git``
(clones at a ref), ``extract`` (safe archive extraction), ``builds`` (venv / Node installs as
the project's user, skipped when the lock hash is unchanged), ``detect`` (start-command rules,
pure), ``redact`` (credentials out of every URL that is shown).
"""
