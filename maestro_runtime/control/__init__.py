"""The controller: one long-lived process above the services that supervisord runs.

- ``policy``    the effective restart and probe policy of a service (record + env defaults, pure)
- ``backoff``   restart delays: exponential, capped, with jitter (pure)
- ``runstate``  what the controller knows per service, persisted atomically in the state dir
- ``probes``    health probes (http, tcp, exec) on one asyncio loop
- ``alerts``    webhook events on a worker thread with a bounded queue
- ``metrics``   Prometheus exposition (prometheus_client)
- ``controller`` the loop that ties them to supervisord's process states
"""
