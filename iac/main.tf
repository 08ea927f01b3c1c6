# Runs maestro-runtime with the kreuzwerker/docker provider: SERVICES, volumes,
# HEALTHCHECK, capabilities and the hardened flags of docs/image.md.

locals {
  caps_add = var.full_sandbox ? distinct(concat(var.capabilities, ["SYS_ADMIN", "NET_ADMIN"])) : var.capabilities
  security_opts = concat(
    ["no-new-privileges"],
    var.full_sandbox ? ["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"] : [],
  )
  env = merge(var.env, var.services == "" ? {} : { SERVICES = var.services })
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
  restart = "unless-stopped"
  env     = [for k, v in local.env : "${k}=${v}"]

  read_only     = var.hardened
  memory        = var.memory_mb
  pids_limit    = var.pids_limit
  security_opts = var.hardened || var.full_sandbox ? local.security_opts : []
  stop_timeout  = 30
  stop_signal   = "SIGTERM"

  capabilities {
    drop = var.hardened ? ["ALL"] : []
    add  = var.hardened ? local.caps_add : (var.full_sandbox ? ["SYS_ADMIN", "NET_ADMIN"] : [])
  }

  tmpfs = {
    "/tmp" = "rw,noexec,nosuid,size=64m"
    "/run" = "rw,nosuid,size=16m"
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
    }
  }

  healthcheck {
    test         = ["CMD", "/usr/bin/python3", "-I", "-S", "/opt/maestro/healthcheck/healthcheck.py"]
    interval     = "30s"
    timeout      = "5s"
    start_period = "20s"
    retries      = 3
  }
}
