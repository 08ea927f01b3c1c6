"""supervisord as the process engine, and what sits around it.

``supervisord`` (program and main config rendering, the XML-RPC client), ``launch`` (the
launch script of one service, pure rendering), ``programs`` (writes and removes a service's
scripts and program files), ``parent`` (supervisord's parent process:
signals, parallel stop), ``log_listener`` (the event listener that prefixes service output).
"""
