"""The work behind the commands: ``provision`` (one service: spec -> account -> source -> build ->
port -> command, then its plan applied), ``plan`` (pure: the record and every text to write for one
service), ``reconcile`` (boot and deploy-from-env over many), ``accounts``
(users, homes, folders), ``inventory`` (what list-services shows), ``export`` (Kubernetes and
compose manifests from the same specs: ``manifests`` the shared pure model, ``kubernetes`` and
``compose`` the two targets).
"""
