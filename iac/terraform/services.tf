# The services file: var.services rendered to the YAML the runtime reads at
# /etc/maestro/services.yml (README "How projects are found", item 2).
# yamlencode does the quoting, so no value is ever hand-escaped; attributes left
# null are dropped because the runtime treats a key that is present as set.

locals {
  services_yaml = yamlencode({
    services = [for s in var.services : { for k, v in s : k => v if v != null }]
  })
}
