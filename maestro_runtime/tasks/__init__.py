"""One-shot tasks, schedules, dependencies between entries, and git branch workspaces (issue 14).

- ``state``      a task's phase (pending, waiting, running, succeeded, failed, cancelled), one JSON file each
- ``gate``       pure: may an entry start, given a snapshot of the others' states (:class:`EntryState`)?
- ``schedule``   pure: ``tick(now, tasks, phases) -> actions`` for cron schedules (croniter)
- ``runner``     the thin loop that feeds both from supervisord and acts (standalone until the controller)
- ``workspace``  one shared object store per repository, one writable checkout per branch
- ``hooks``      the few calls provisioning makes into this package
"""
