# Runs maestro-runtime on one Docker host with the kreuzwerker/docker provider:
# the services file (services.tf) bind-mounted read-only, named volumes for
# state, homes and projects, the hardened flags of docs/image.md and the image's
# HEALTHCHECK. Terraform runs on the Docker host: the services file is written
# next to this module and mounted from there.

locals {
  caps_add = var.full_sandbox ? distinct(concat(var.capabilities, ["SYS_ADMIN", "NET_ADMIN"])) : var.capabilities
  security_opts = concat(
    var.no_new_privileges ? ["no-new-privileges"] : [],
    # bubblewrap needs to make namespaces and mounts, which the default profiles forbid.
    var.full_sandbox ? ["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"] : [],
  )
  services_file = abspath("${path.module}/.generated/${var.name}-services.yml")
}

# The file may hold services' env values: its folder is closed to other host users. The
# file stays world-readable so the container's root reads it without DAC_OVERRIDE.
resource "local_file" "services" {
  filename             = local.services_file
  content              = local.services_yaml
  file_permission      = "0644"
  directory_permission = "0700"
}

resource "docker_image" "maestro" {
  name         = var.image
  keep_locally = true
}

resource "docker_volume" "state" {
  name = "${var.name}-state"
}

resource "docker_volume" "home" {
  name = "${var.name}-home"
}

resource "docker_volume" "projects" {
  count = var.projects_host_path == null ? 1 : 0
  name  = "${var.name}-projects"
}

resource "docker_container" "maestro" {
  name    = var.name
  image   = docker_image.maestro.image_id
  restart = var.restart
  env     = [for k, v in var.env : "${k}=${v}"]

  read_only     = var.read_only
  memory        = var.memory_mb
  cpus          = var.cpus
  pids_limit    = var.pids_limit
  security_opts = local.security_opts
  tmpfs         = var.tmpfs
  stop_signal   = "SIGTERM"
  stop_timeout  = var.stop_timeout

  capabilities {
    drop = ["ALL"]
    add  = local.caps_add
  }

  # The runtime reads the file only at boot: a changed file must replace the container.
  labels {
    label = "io.maestro-runtime.services-sha256"
    value = sha256(local.services_yaml)
  }

  mounts {
    type      = "bind"
    source    = local_file.services.filename
    target    = "/etc/maestro/services.yml"
    read_only = true
  }

  volumes {
    volume_name    = docker_volume.state.name
    container_path = "/var/lib/maestro"
  }
  volumes {
    volume_name    = docker_volume.home.name
    container_path = "/home"
  }
  volumes {
    volume_name    = var.projects_host_path == null ? docker_volume.projects[0].name : null
    host_path      = var.projects_host_path
    container_path = "/opt/projects"
  }

  dynamic "ports" {
    for_each = var.ports
    content {
      internal = ports.value
      external = ports.value
      ip       = var.bind_address
    }
  }

  dynamic "healthcheck" {
    for_each = var.healthcheck == null ? [] : [var.healthcheck]
    content {
      test         = ["CMD", "/usr/bin/python3", "-I", "-S", "/opt/maestro/healthcheck/healthcheck.py"]
      interval     = healthcheck.value.interval
      timeout      = healthcheck.value.timeout
      start_period = healthcheck.value.start_period
      retries      = healthcheck.value.retries
    }
  }
}
