"""maestro-runtime: many projects in one container, each as its own user, sandboxed, under supervisord.

Data flows one way: settings -> specs -> plan -> side effects -> supervisord.

- ``settings``   the only reader of the environment (validated once, exit 2 on bad values)
- ``spec/``      what the user asked for: value objects and parsers (pure)
- ``sources/``   where code comes from and how it is made runnable: fetch, git, extraction, builds, detection
- ``sandbox/``   bubblewrap, cgroup limits, network policy, firewall, egress proxy, the ``maestro-sandbox`` command
- ``engine/``    supervisord: program files, XML-RPC client, launch scripts, its parent process, the log listener
- ``state/``     what survives a restart: service records and the port ledger
- ``ops/``       the commands' work: provision one service, reconcile many, accounts, inventory, export
- ``control/``   the controller program beside the services: restart policy with backoff, health probes,
                 alerts, metrics; its run state lives in the state dir
- ``safefs``     how root touches folders a service can write: by descriptor, never following links
- ``cli``, ``entrypoint``  thin shells: parse, call, print
"""
